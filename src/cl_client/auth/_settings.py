"""Session settings: where the auth, compute and MQTT services are, and the refresh policy.

The library reads no environment variables by itself; ``SessionSettings.from_env()`` exists for
applications (and the tests) that want to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Unpack

from pydantic import Field

from .._core.settings import (
    ClientSettings,
    SettingsModel,
    SettingsOverrides,
    env_values,
    with_overrides,
)

__all__ = ["SessionSettings"]


class SessionSettings(SettingsModel):
    """Everything a SessionManager (and the AuthClient it owns) needs.

    Defaults are the real CL Server's (``docs/auth.md``). Invalid values raise ParameterError
    naming the field; reprs hide URL credentials.
    """

    ENV_VARS: ClassVar[Mapping[str, str]] = {
        "auth_url": "AUTH_URL",
        "compute_url": "COMPUTE_URL",
        "mqtt_url": "MQTT_URL",
    }

    auth_url: str = "http://localhost:8000"
    compute_url: str = "http://localhost:8002"
    mqtt_url: str = "mqtt://localhost:1883"

    refresh_margin: float = Field(
        default=60.0,
        ge=0,
        description="Refresh the token when fewer seconds than this remain before it expires "
        "(for very short-lived tokens: half their lifetime, if that is less).",
    )
    http_timeout: float = Field(default=30.0, gt=0)

    # auth service endpoint paths (the trailing slash on /users/ matters: without it, a 307)
    token_path: str = "/auth/token"
    refresh_path: str = "/auth/token/refresh"
    public_key_path: str = "/auth/public-key"
    current_user_path: str = "/users/me"
    users_path: str = "/users/"
    user_path: str = "/users/{user_id}"

    def compute_settings(self, **overrides: Unpack[SettingsOverrides]) -> ClientSettings:
        """ClientSettings for the compute service of this session (keywords win; ParameterError
        for a bad one)."""
        values: dict[str, object] = {"compute_url": self.compute_url, "mqtt_url": self.mqtt_url}
        values.update(overrides)
        return with_overrides(None, values)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> SessionSettings:
        """Settings from AUTH_URL, COMPUTE_URL and MQTT_URL.

        Keyword arguments win over the environment; unset variables keep the defaults.
        """
        return cls.from_values(env_values(cls.ENV_VARS, environ, overrides))
