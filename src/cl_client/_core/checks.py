"""Argument checks shared by the client and the plugins: a bad value is a ParameterError that
names the argument and says what is allowed, raised before anything is sent."""

from __future__ import annotations

import math
from collections.abc import Collection

from .errors import ParameterError

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_float",
    "check_int",
    "check_optional_int",
    "check_timeout",
]


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool, else ParameterError naming ``name``."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an int within ``[minimum, maximum]``, else ParameterError."""
    allowed = _range_text(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


def check_optional_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """Like :func:`check_int`, with None allowed."""
    if value is None:
        return None
    try:
        return check_int(name, value, minimum=minimum, maximum=maximum)
    except ParameterError:
        allowed = _range_text(minimum, maximum)
        raise ParameterError(
            f"{name} must be None or an integer {allowed}, got {value!r}"
        ) from None


def check_float(name: str, value: object, *, minimum: float, maximum: float) -> float:
    """``value`` as a float if it is a finite number within ``[minimum, maximum]``."""
    allowed = f"from {minimum:g} to {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{name} must be a number {allowed}, got {value!r}")
    number = float(value)
    if math.isnan(number) or not minimum <= number <= maximum:
        raise ParameterError(f"{name} must be a number {allowed}, got {value!r}")
    return number


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else ParameterError listing them."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ParameterError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum} to {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


def check_timeout(timeout: object) -> float | None:
    """None, or ``timeout`` as a float if it is a number of seconds > 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ParameterError(f"timeout must be None or a number of seconds > 0, got {timeout!r}")
    return float(timeout)


def check_callable(name: str, value: object) -> None:
    """None or a callable, else ParameterError."""
    if value is not None and not callable(value):
        raise ParameterError(f"{name} must be None or a callable, got {value!r}")
