"""How the local compute service checks requests (PROTOCOL.md §2.8).

Interface used by the compute app: ``ComputeAuthorizer.check(authorization_header, guest_mode=,
admin=)`` returns the caller's user id (the JWT ``id`` claim) or None, or raises
``fastapi.HTTPException`` with the real server's status and detail.
"""

from __future__ import annotations

from fastapi import HTTPException

__all__ = ["ComputeAuthorizer"]


class ComputeAuthorizer:
    """Verifies bearer tokens with the auth service's public key, as compute does."""

    def __init__(self, public_key_pem: str | None = None) -> None:
        self.public_key_pem = public_key_pem

    def check(self, authorization: str | None, *, guest_mode: bool, admin: bool) -> str | None:
        if guest_mode:
            return None
        # Full verification (ES256, claims, permissions) is built by the auth work.
        raise HTTPException(status_code=401, detail="Authentication required")
