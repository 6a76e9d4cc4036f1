"""Reading a JWT's claims without verifying it (the client never holds the key).

The client only needs ``exp`` (to refresh in time) and, for display, ``id``, ``permissions`` and
``is_admin``. The signature is the servers' business: compute verifies it with the public key.
Errors never quote the token.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import cast

from pydantic import JsonValue

from .._core.errors import ProtocolError

__all__ = ["decode_claims"]


def decode_claims(token: str) -> dict[str, JsonValue]:
    """The payload of a compact JWT (``header.payload.signature``), not verified.

    Raises ProtocolError if ``token`` is not a JWT with a JSON-object payload.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ProtocolError(
            f"the access token is not a JWT: expected 3 dot-separated segments, got {len(parts)}"
        )
    segment = parts[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payload = cast(object, json.loads(raw))
    except (binascii.Error, ValueError):
        raise ProtocolError("the access token's payload is not base64url-encoded JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("the access token's payload is not a JSON object")
    return cast(dict[str, JsonValue], payload)
