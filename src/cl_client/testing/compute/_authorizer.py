"""How the local compute service checks requests (docs/auth.md#how-compute-checks-a-token).

Interface used by the compute app: ``ComputeAuthorizer.check(authorization_header, guest_mode=,
admin=)`` returns the caller's user id (the JWT ``id`` claim) or None, or raises
``fastapi.HTTPException`` with the real server's status and detail:

=====================================================  =====  =====================================
situation (guest mode off)                             code   detail
=====================================================  =====  =====================================
no token, or not ``Bearer``                            401    Authentication required
``exp`` in the past                                    401    JWT token has expired
bad signature, wrong algorithm, malformed token        401    Could not validate credentials
payload fails the strict model (``id`` not a string)   401    JWT payload is invalid
not admin and ``ai_inference_support`` missing         403    Insufficient permissions. Required:
                                                              ai_inference_support
admin route and not admin                              403    Insufficient permissions. Admin
                                                              access required
no public key configured                               500    Public key not found ...
=====================================================  =====  =====================================

In guest mode the token is ignored completely (even garbage passes). A token without ``exp`` is
accepted; ``is_admin`` bypasses the permission check; ``"*"`` does not grant
``ai_inference_support`` (the check is literal membership), exactly as the real server does.
"""

from __future__ import annotations

from typing import cast

import jwt
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["INFERENCE_PERMISSION", "ComputeAuthorizer"]

INFERENCE_PERMISSION = "ai_inference_support"


class _UserPayload(BaseModel):
    """The real compute's ``UserPayload``: strict types, extra claims ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: str
    is_admin: bool = False
    permissions: list[str] = Field(default_factory=list[str])


def _bearer_token(authorization: str | None) -> str | None:
    """The token of a Bearer header (FastAPI's OAuth2PasswordBearer rules), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" else None


class ComputeAuthorizer:
    """Verifies bearer tokens with the auth service's public key, as compute does."""

    def __init__(self, public_key_pem: str | None = None) -> None:
        self.public_key_pem = public_key_pem

    def check(self, authorization: str | None, *, guest_mode: bool, admin: bool) -> str | None:
        """Authorize one request; return the caller's user id, or None in guest mode."""
        if guest_mode:
            return None
        token = _bearer_token(authorization)
        if token is None:
            raise HTTPException(status_code=401, detail="Authentication required")
        user = self._verify(token)
        if admin:
            if not user.is_admin:
                raise HTTPException(
                    status_code=403, detail="Insufficient permissions. Admin access required"
                )
        elif not user.is_admin and INFERENCE_PERMISSION not in user.permissions:
            raise HTTPException(
                status_code=403,
                detail=f"Insufficient permissions. Required: {INFERENCE_PERMISSION}",
            )
        return user.id

    def _verify(self, token: str) -> _UserPayload:
        if not self.public_key_pem:
            raise HTTPException(
                status_code=500,
                detail="Public key not found. Is the authentication service running?",
            )
        try:
            claims = cast(object, jwt.decode(token, self.public_key_pem, algorithms=["ES256"]))
        except jwt.ExpiredSignatureError:
            raise HTTPException(status_code=401, detail="JWT token has expired") from None
        except jwt.InvalidTokenError:
            raise HTTPException(status_code=401, detail="Could not validate credentials") from None
        try:
            return _UserPayload.model_validate(claims)
        except ValidationError:
            raise HTTPException(status_code=401, detail="JWT payload is invalid") from None

    def __repr__(self) -> str:
        configured = "configured" if self.public_key_pem else "none"
        return f"ComputeAuthorizer(public_key={configured})"
