"""Authentication: providers, the auth-service client and a session manager."""

from ._providers import AuthProvider, NoAuthProvider

__all__ = ["AuthProvider", "NoAuthProvider"]
