"""The HTTP boundary: one request and its whole answer, bounded in time and size.

Everything httpx (and the socket under it) can raise while a request is sent or its answer read
becomes a library error here, with the method and the URL (credentials hidden) in the message:

* connection failures, protocol violations (a truncated body, bad chunked encoding, malformed
  headers) and OS errors: :class:`TransportError`;
* a body that cannot be decoded (``Content-Encoding: gzip`` that is not gzip) or that is larger
  than allowed: :class:`ProtocolError`;
* the deadline: ``timeout`` covers the whole request, from connecting to the last byte of the
  body, so a server that trickles bytes cannot hold a call longer (httpx's own timeouts apply
  per read). Raises :class:`TransportError` saying that the request timed out.

Used by ComputeHttp and AuthClient; no other module sends a request or reads an answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Generator
from contextlib import aclosing, contextmanager
from typing import cast

import anyio
import httpx

from .._core.errors import ClClientError, ProtocolError, TransportError
from .._core.settings import redact_url

__all__ = [
    "close_response",
    "describe",
    "exchange",
    "mapped_errors",
    "read_body",
    "timed_out",
]

_CLOSE_TIMEOUT = 1.0


def describe(request: httpx.Request) -> str:
    """``METHOD url`` for messages, without credentials or the query string."""
    return f"{request.method} {redact_url(request.url.copy_with(query=None))}"


@contextmanager
def mapped_errors(shown: str, hint: str = "") -> Generator[None]:
    """Turn httpx's and the OS's errors into TransportError/ProtocolError naming ``shown``.

    ``hint`` is added to the message when the connection could not be made.
    """
    try:
        yield
    except ClClientError:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        kind = type(exc).__name__
        extra = f" ({hint})" if hint else ""
        raise TransportError(f"{shown} failed: {kind}: {exc or 'no detail'}{extra}") from exc
    except httpx.DecodingError as exc:
        raise ProtocolError(f"{shown}: the answer could not be decoded ({exc})") from exc
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__
        raise TransportError(f"{shown} timed out ({kind}: {exc or 'no detail'})") from exc
    except httpx.HTTPError as exc:
        kind = type(exc).__name__
        raise TransportError(f"{shown} failed: {kind}: {exc or 'no detail'}") from exc
    except OSError as exc:
        raise TransportError(f"{shown} failed: {type(exc).__name__}: {exc}") from exc


def timed_out(shown: str, timeout: float) -> TransportError:
    return TransportError(
        f"{shown} timed out: no complete answer within {timeout:g} s "
        "(http_timeout bounds the whole request, connect to last byte)"
    )


async def read_body(response: httpx.Response, max_size: int, shown: str) -> bytes:
    """The decoded body, refusing more than ``max_size`` bytes (ProtocolError)."""
    declared: str = response.headers.get("content-length", "")  # pyright: ignore[reportAny]
    if declared.isdigit() and int(declared) > max_size:
        raise ProtocolError(f"{shown}: the answer is {declared} bytes, more than {max_size}")
    chunks: list[bytes] = []
    total = 0
    parts = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with aclosing(parts):
        async for chunk in parts:
            total += len(chunk)
            if total > max_size:
                raise ProtocolError(f"{shown}: the answer is larger than {max_size} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


async def close_response(response: httpx.Response) -> None:
    """Close a streamed response, shielded and bounded (also when the caller is cancelled)."""
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(_CLOSE_TIMEOUT),
        contextlib.suppress(httpx.HTTPError, OSError),
    ):
        await response.aclose()


async def exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    timeout: float,
    max_size: int,
    hint: str = "",
) -> tuple[httpx.Response, bytes]:
    """Send ``request`` and read its whole answer within ``timeout`` seconds.

    Returns the response (its body already consumed and closed) and the body.
    """
    shown = describe(request)
    with anyio.move_on_after(timeout), mapped_errors(shown, hint):
        response = await client.send(request, stream=True)
        try:
            body = await read_body(response, max_size, shown)
        finally:
            await close_response(response)
        return response, body
    raise timed_out(shown, timeout)
