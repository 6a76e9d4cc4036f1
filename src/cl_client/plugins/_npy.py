""".npy files (what the embedding plugins write) read without numpy: :func:`parse_npy` gives a
flat :class:`NpyArray`, turned into a numpy array only when numpy is importable."""

from __future__ import annotations

import importlib.util
import math
import re
import struct
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, cast

from .._core.errors import ProtocolError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["NpyArray", "numpy_available", "parse_npy"]

_NPY_MAGIC = b"\x93NUMPY"
_FLOAT_CODES = {2: "e", 4: "f", 8: "d"}
_BYTE_ORDERS = {"<": "<", ">": ">", "=": "=", "|": "<"}


@cache
def numpy_available() -> bool:
    """Whether numpy can be imported (then embeddings come back as numpy arrays)."""
    return importlib.util.find_spec("numpy") is not None


@dataclass(frozen=True, slots=True)
class NpyArray:
    """A floating-point array read from a ``.npy`` file, without numpy.

    ``data`` holds the raw element bytes in the file's byte order (``descr``, e.g. ``'<f4'``).
    """

    descr: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def size(self) -> int:
        """Number of elements (the product of ``shape``)."""
        return math.prod(self.shape)

    def tolist(self) -> list[float]:
        """The elements as Python floats, flattened in C order."""
        order = _BYTE_ORDERS[self.descr[0]]
        code = _FLOAT_CODES[int(self.descr[2:])]
        values = cast(tuple[float, ...], struct.unpack(f"{order}{self.size}{code}", self.data))
        return list(values)

    def to_numpy(self) -> NDArray[np.float32]:
        """A writable numpy float32 array of ``shape`` (needs numpy)."""
        import numpy as np

        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf
            flat = np.frombuffer(self.data, dtype=np.dtype(self.descr)).astype(np.float32)
        return flat.reshape(self.shape)


_NPY_MAX_HEADER = 10_000
"""numpy's own limit for safely reading a header (``numpy.lib.format._MAX_HEADER_SIZE``)."""
_NPY_SPACE = re.compile(r"[ \t\r\n]*")
_NPY_STRING = re.compile(r"'([^'\\\n]{0,64})'")
_NPY_INT = re.compile(r"[0-9]{1,18}(?![0-9])")
_NPY_WORD = re.compile(r"True|False")


class _HeaderReader:
    """A strict reader of the Python literal in a ``.npy`` header: a dict of str keys whose
    values are short strings, True/False or tuples of small ints. Linear in the length."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self) -> ProtocolError:
        return ProtocolError(f"malformed .npy header {self.text[:80]!r} (at {self.pos})")

    def space(self) -> None:
        match = _NPY_SPACE.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()

    def char(self, wanted: str) -> bool:
        self.space()
        if self.text.startswith(wanted, self.pos):
            self.pos += 1
            return True
        return False

    def token(self, pattern: re.Pattern[str]) -> re.Match[str]:
        self.space()
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise self.fail()
        self.pos = match.end()
        return match

    def value(self) -> object:
        self.space()
        if self.char("("):
            items: list[int] = []
            while not self.char(")"):
                items.append(int(self.token(_NPY_INT).group()))
                if not self.char(",") and not self.text.startswith(")", self.pos):
                    raise self.fail()
            return tuple(items)
        if self.text.startswith("'", self.pos):
            return self.token(_NPY_STRING).group(1)
        return self.token(_NPY_WORD).group() == "True"

    def header(self) -> dict[str, object]:
        if not self.char("{"):
            raise self.fail()
        found: dict[str, object] = {}
        while not self.char("}"):
            key = self.token(_NPY_STRING).group(1)
            if not self.char(":"):
                raise self.fail()
            found[key] = self.value()
            if not self.char(",") and not self.text.startswith("}", self.pos):
                raise self.fail()
        self.space()
        if self.pos != len(self.text):
            raise self.fail()
        return found


def _npy_header(data: bytes) -> tuple[dict[str, object], int]:
    """The header dict of a ``.npy`` file, read by a strict pattern, never by ``eval``.

    numpy writes ``{'descr': '<f4', 'fortran_order': False, 'shape': (512,), }`` padded with
    spaces; the keys may come in any order. Anything else is a ProtocolError.
    """
    if len(data) < 10 or not data.startswith(_NPY_MAGIC):
        raise ProtocolError("not a .npy file: the magic string \\x93NUMPY is missing")
    major = data[6]
    if major == 1:
        (length,) = struct.unpack("<H", data[8:10])
        start = 10
    elif major in (2, 3):
        if len(data) < 12:
            raise ProtocolError("truncated .npy header")
        (length,) = struct.unpack("<I", data[8:12])
        start = 12
    else:
        raise ProtocolError(f"unsupported .npy format version {major}.{data[7]}")
    if length > _NPY_MAX_HEADER:
        raise ProtocolError(f".npy header of {length} bytes: more than {_NPY_MAX_HEADER}")
    end = start + length
    if len(data) < end:
        raise ProtocolError("truncated .npy header")
    raw = data[start:end]
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1").strip()
    except UnicodeDecodeError:
        raise ProtocolError(".npy header is not UTF-8 text") from None
    return _HeaderReader(text).header(), end


def parse_npy(data: bytes) -> NpyArray:
    """Parse a ``.npy`` file holding a floating-point array (``f2``/``f4``/``f8``, any byte order).

    Raises ProtocolError for anything else: another dtype, Fortran order, a data length that does
    not match the shape.
    """
    header, offset = _npy_header(data)
    descr, fortran, shape = header.get("descr"), header.get("fortran_order"), header.get("shape")
    if (
        not isinstance(descr, str)
        or len(descr) < 3
        or descr[0] not in _BYTE_ORDERS
        or descr[1] != "f"
        or descr[2:] not in ("2", "4", "8")
    ):
        raise ProtocolError(f"unsupported .npy dtype {descr!r}: a float array was expected")
    if fortran is not False:
        raise ProtocolError(".npy arrays in Fortran order are not supported")
    if not isinstance(shape, tuple):
        raise ProtocolError(f"malformed .npy shape {shape!r}")
    dims: list[int] = []
    for dim in cast(tuple[object, ...], shape):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ProtocolError(f"malformed .npy shape {shape!r}")
        dims.append(dim)
    payload = data[offset:]
    expected = math.prod(dims) * int(descr[2:])
    if len(payload) != expected:
        raise ProtocolError(
            f".npy data is {len(payload)} bytes, but shape {tuple(dims)} of {descr} "
            f"needs {expected}"
        )
    return NpyArray(descr=descr, shape=tuple(dims), data=payload)
