"""Authentication: providers, the auth-service client and a session manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._public import load_lazy as _load_lazy

if TYPE_CHECKING:
    from ._client import AuthClient
    from ._jwt import decode_claims
    from ._models import PublicKey, Token, TokenClaims, User
    from ._providers import AuthProvider, JWTAuthProvider, NoAuthProvider, TokenSource
    from ._session import SessionManager
    from ._settings import SessionSettings

# public name -> the module that defines it, imported on first use (PEP 562): building a
# ComputeClient does not load every plugin, result model and the auth service's client
_LAZY: dict[str, str] = {
    "AuthClient": "._client",
    "AuthProvider": "._providers",
    "JWTAuthProvider": "._providers",
    "NoAuthProvider": "._providers",
    "PublicKey": "._models",
    "SessionManager": "._session",
    "SessionSettings": "._settings",
    "Token": "._models",
    "TokenClaims": "._models",
    "TokenSource": "._providers",
    "User": "._models",
    "decode_claims": "._jwt",
}


def __getattr__(name: str) -> object:
    return _load_lazy(globals(), __name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AuthClient",
    "AuthProvider",
    "JWTAuthProvider",
    "NoAuthProvider",
    "PublicKey",
    "SessionManager",
    "SessionSettings",
    "Token",
    "TokenClaims",
    "TokenSource",
    "User",
    "decode_claims",
]
