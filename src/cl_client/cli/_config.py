"""The CLI's configuration directory: named profiles (``config.toml``) and the saved login.

The directory is ``CL_CLIENT_CONFIG_DIR`` if set, else the platform's user configuration
directory for ``cl-client`` (``platformdirs``: ``~/.config/cl-client`` on Linux). It holds:

* ``config.toml``: server URLs per named profile::

      [profiles.default]          # used when no --profile / CL_PROFILE is given
      compute_url = "http://gpu-box:8002"
      auth_url = "http://gpu-box:8000"
      mqtt_url = "mqtt://gpu-box:1883"

      [profiles.lab]
      compute_url = "http://lab:8002"

  A profile may also hold ``username`` and ``backend``; a password is never read from it.
* ``sessions/PROFILE.json``: what ``cl-client login`` saved: the access *token* (never the
  password), the username and the servers it belongs to. Mode 0600, written atomically (a
  temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from ._command import CliError, ExitCode

__all__ = [
    "CONFIG_DIR_ENV",
    "DEFAULT_PROFILE",
    "PROFILE_SETTINGS",
    "StoredSession",
    "config_dir",
    "delete_session",
    "load_profile",
    "load_session",
    "save_session",
]

CONFIG_DIR_ENV: Final = "CL_CLIENT_CONFIG_DIR"
DEFAULT_PROFILE: Final = "default"
PROFILE_SETTINGS: Final = ("compute_url", "mqtt_url", "auth_url", "username", "backend")
"""What a profile may set (no password: secrets do not belong in a config file)."""


def config_dir() -> Path:
    """``CL_CLIENT_CONFIG_DIR``, or the platform's user config directory of cl-client."""
    given = os.environ.get(CONFIG_DIR_ENV)
    if given:
        return Path(given)
    import platformdirs

    return Path(platformdirs.user_config_dir("cl-client", appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def load_profile(name: str | None) -> tuple[str, dict[str, str]]:
    """The profile ``name`` (None: ``default``, if the file has one) as ``(layer name,
    values)``. A profile asked for by name that does not exist is a usage error."""
    path = config_file()
    wanted = name or DEFAULT_PROFILE
    profiles: dict[str, object] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"{path} is not valid TOML: {exc}", ExitCode.USAGE) from None
        found = cast(object, data.get("profiles", {}))
        if not isinstance(found, dict):
            raise CliError(f"{path}: 'profiles' must be a table", ExitCode.USAGE)
        profiles = cast(dict[str, object], found)
    table = profiles.get(wanted)
    if table is None:
        if name is not None and name != DEFAULT_PROFILE:
            known = ", ".join(sorted(profiles)) or "none"
            raise CliError(f"no profile {name!r} in {path} (profiles: {known})", ExitCode.USAGE)
        return f"profile {wanted}", {}
    if not isinstance(table, dict):
        raise CliError(f"{path}: [profiles.{wanted}] must be a table", ExitCode.USAGE)
    values: dict[str, str] = {}
    for key, value in cast(dict[str, object], table).items():
        if key not in PROFILE_SETTINGS:
            allowed = ", ".join(PROFILE_SETTINGS)
            raise CliError(
                f"{path}: [profiles.{wanted}] has {key!r}; a profile may set {allowed}",
                ExitCode.USAGE,
            )
        if not isinstance(value, str):
            raise CliError(f"{path}: [profiles.{wanted}] {key} must be a string", ExitCode.USAGE)
        values[key] = value.rstrip("/") if key.endswith("_url") else value
    return f"profile {wanted}", values


# ------------------------------------------------------------------------------ saved logins


@dataclass(frozen=True)
class StoredSession:
    """A saved login: the token and where it belongs (never a password)."""

    access_token: str
    username: str
    auth_url: str
    compute_url: str
    mqtt_url: str

    def __repr__(self) -> str:
        return (
            f"StoredSession(username={self.username!r}, auth_url={self.auth_url!r}, "
            "access_token=<hidden>)"
        )

    def to_json(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "username": self.username,
            "auth_url": self.auth_url,
            "compute_url": self.compute_url,
            "mqtt_url": self.mqtt_url,
        }


def session_file(profile: str | None) -> Path:
    return config_dir() / "sessions" / f"{profile or DEFAULT_PROFILE}.json"


def load_session(profile: str | None) -> StoredSession | None:
    """The login saved for ``profile``, or None (none saved, or an unreadable file)."""
    path = session_file(profile)
    try:
        data = cast(object, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    fields = cast(Mapping[str, object], data)
    values = {k: fields.get(k) for k in StoredSession.__dataclass_fields__}
    if not all(isinstance(v, str) for v in values.values()):
        return None
    return StoredSession(**cast(dict[str, str], values))


def save_session(profile: str | None, session: StoredSession) -> Path:
    """Write the login atomically, readable by the user only (0600)."""
    path = session_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(session.to_json(), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def delete_session(profile: str | None) -> bool:
    """Forget the saved login; True if there was one."""
    path = session_file(profile)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
