"""Typed models of what the auth service sends (docs/auth.md#the-auth-service and #jwt).

Reprs never show a token: ``Token`` prints its user id and expiry only. Validation errors
of these models never quote their input (``hide_input_in_errors``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .._core.errors import ProtocolError
from ._jwt import decode_claims

__all__ = ["PublicKey", "Token", "TokenClaims", "User"]

_CONFIG = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)


class TokenClaims(BaseModel):
    """The claims of a CL Server access token, read without verifying the signature.

    ``id`` is the user id as a string; ``exp`` is a NumericDate (seconds), absent on some
    hand-made tokens (which compute accepts).
    """

    model_config: ClassVar[ConfigDict] = _CONFIG

    id: str | None = None
    permissions: list[str] = Field(default_factory=list[str])
    is_admin: bool = False
    exp: float | None = None

    @property
    def expires_at(self) -> datetime | None:
        """``exp`` as an aware UTC datetime, or None if the token has no ``exp``."""
        return None if self.exp is None else datetime.fromtimestamp(self.exp, UTC)


class Token(BaseModel):
    """``POST /auth/token`` and ``/auth/token/refresh``: an access token.

    ``str(token)`` and ``repr(token)`` never contain the token itself; use ``access_token``.
    """

    model_config: ClassVar[ConfigDict] = _CONFIG

    access_token: str = Field(repr=False)
    token_type: str = "bearer"

    _claims: TokenClaims | None = PrivateAttr(default=None)
    _received_at: float = PrivateAttr(default_factory=time.time)

    def model_post_init(self, context: object, /) -> None:
        try:
            self._claims = TokenClaims.model_validate(decode_claims(self.access_token))
        except (ProtocolError, ValueError):
            self._claims = None

    @property
    def claims(self) -> TokenClaims:
        """The token's claims (empty if the token cannot be decoded)."""
        return self._claims if self._claims is not None else TokenClaims()

    @property
    def user_id(self) -> str | None:
        return self.claims.id

    @property
    def expires_at(self) -> datetime | None:
        """When the token expires (UTC), or None if it carries no ``exp``."""
        return self.claims.expires_at

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until expiry (negative once expired), or None without ``exp``."""
        exp = self.claims.exp
        if exp is None:
            return None
        return exp - (time.time() if now is None else now)

    def is_expired(self, now: float | None = None) -> bool:
        """True once ``exp`` has passed (by this machine's clock)."""
        remaining = self.expires_in(now)
        return remaining is not None and remaining <= 0

    def needs_refresh(self, margin: float, now: float | None = None) -> bool:
        """True when less than ``margin`` seconds remain.

        For tokens whose whole lifetime is shorter than twice the margin, half the lifetime
        (as seen when the token arrived) is used instead, so a short-lived token is refreshed
        once per half-life rather than on every request.
        """
        remaining = self.expires_in(now)
        if remaining is None:
            return False
        exp = self.claims.exp
        lifetime = (exp - self._received_at) if exp is not None else margin * 2
        return remaining < min(margin, max(lifetime, 0.0) / 2)

    def __eq__(self, other: object) -> bool:
        """Tokens are equal when their token strings and types are (not their arrival times)."""
        if not isinstance(other, Token):
            return NotImplemented
        return (self.access_token, self.token_type) == (other.access_token, other.token_type)

    def __hash__(self) -> int:
        return hash((self.access_token, self.token_type))

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        yield "token_type", self.token_type
        yield "user_id", self.user_id
        yield "expires_at", None if self.expires_at is None else self.expires_at.isoformat()


class PublicKey(BaseModel):
    """``GET /auth/public-key``: the PEM that verifies tokens, and its algorithm."""

    model_config: ClassVar[ConfigDict] = _CONFIG

    public_key: str
    algorithm: str = "ES256"


class User(BaseModel):
    """``UserResponse``: a user of the auth service. ``created_at`` is naive (server time)."""

    model_config: ClassVar[ConfigDict] = _CONFIG

    id: int
    username: str
    is_admin: bool = False
    is_active: bool = True
    permissions: list[str] = Field(default_factory=list[str])
    created_at: datetime | None = None

    def has_permission(self, permission: str) -> bool:
        """Whether compute would let this user through a check for ``permission``.

        Admins pass every check; otherwise membership is literal (``"*"`` grants nothing).
        """
        return self.is_admin or permission in self.permissions
