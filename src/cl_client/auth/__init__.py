"""Authentication: providers, the auth-service client and a session manager."""

from .._public import set_public_module as _set_public_module
from ._client import AuthClient
from ._jwt import decode_claims
from ._models import PublicKey, Token, TokenClaims, User
from ._providers import AuthProvider, JWTAuthProvider, NoAuthProvider, TokenSource
from ._session import SessionManager
from ._settings import SessionSettings

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

_set_public_module(globals(), __all__, __name__)
