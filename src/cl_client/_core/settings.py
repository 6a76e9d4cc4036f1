"""Client settings: every URL, topic, path and timing knob, with the real server's defaults.

The library reads no environment variables by itself; ``ClientSettings.from_env()`` exists for
applications (and the tests) that want to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import ClassVar, Self, TypedDict, Unpack
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ParameterError

__all__ = [
    "ClientSettings",
    "MqttEndpoint",
    "SettingsModel",
    "SettingsOverrides",
    "check_http_url",
    "env_values",
    "parse_mqtt_url",
    "redact_mqtt_url",
    "redact_url",
    "settings_error",
    "with_overrides",
]


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where the MQTT broker is: parsed from ``mqtt://host:port`` or ``mqtts://host:port``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The URL, without credentials (safe to log)."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"MqttEndpoint({self.url!r})"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse ``mqtt://[user:pass@]host[:port]`` (default port 1883) or ``mqtts://`` (8883, TLS).

    A bare ``host:port`` or ``host`` is taken as ``mqtt://``. Raises ParameterError (a
    ValueError) for anything else.
    """
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    # Error messages show the URL without its credentials.
    shown = text if parts.password is None else text.replace(f":{parts.password}@", ":***@", 1)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ParameterError(
            f"unsupported MQTT URL scheme {parts.scheme!r} in {shown!r}: use mqtt://host:port "
            "or mqtts://host:port"
        )
    if not parts.hostname:
        raise ParameterError(f"MQTT URL {shown!r} has no host: use mqtt://host:port")
    tls = scheme in ("mqtts", "ssl")
    try:
        port = parts.port
    except ValueError as exc:
        raise ParameterError(f"MQTT URL {shown!r} has an invalid port: {exc}") from None
    return MqttEndpoint(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        tls=tls,
        username=parts.username,
        password=parts.password,
    )


def redact_url(url: object) -> str:
    """``url`` (a string or URL object) with any user name and password replaced by ``***``."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return text
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def check_http_url(value: str, name: str) -> str:
    """``value`` without a trailing slash, or ParameterError (a ValueError) unless it is ``http(s)://host[:port]``."""
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        valid = False
    if not valid:
        raise ParameterError(f"{name} must be http(s)://host:port, got {redact_url(value)!r}")
    return value.rstrip("/")


def redact_mqtt_url(url: str) -> str:
    """The MQTT URL with any credentials replaced by ``***``, for reprs and logs."""
    endpoint = parse_mqtt_url(url)
    if endpoint.username is None and endpoint.password is None:
        return endpoint.url
    scheme, _, rest = endpoint.url.partition("://")
    return f"{scheme}://***@{rest}"


def env_values(
    env_vars: Mapping[str, str], environ: Mapping[str, str] | None, overrides: Mapping[str, object]
) -> dict[str, object]:
    """Field values from the environment variables named in ``env_vars``; ``overrides`` win."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {field: env[var] for field, var in env_vars.items() if env.get(var)}
    values.update(overrides)
    return values


def settings_error(exc: ValidationError, model: type[BaseModel]) -> ParameterError:
    """A pydantic ValidationError of a settings model as one ParameterError naming the fields."""
    known = list(model.model_fields)
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            close = get_close_matches(field, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"unknown setting {field!r}{hint}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{field}: {message}")
    return ParameterError(f"invalid {model.__name__}: {'; '.join(parts)}")


class SettingsModel(BaseModel):
    """A settings model whose validation errors are ParameterErrors naming the field.

    Construct it with keywords (``ClientSettings(http_timeout=5)``) or :meth:`from_values`;
    ``compute_url``/``auth_url`` must be http(s) URLs (trailing slash dropped) and ``mqtt_url``
    an MQTT URL, in every subclass that has them; reprs hide the credentials of every URL.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True
    )

    def __init__(self, **values: object) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise settings_error(exc, type(self)) from None

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> Self:
        """Settings from a mapping of field names to values (ParameterError if invalid)."""
        return cls(**values)

    # The URL fields of the subclasses, checked in one place (the ParameterError names the field).
    @field_validator("compute_url", "auth_url", check_fields=False)
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        return check_http_url(value, "the URL")

    @field_validator("mqtt_url", check_fields=False)
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        # Never show credentials embedded in a URL.
        base: Iterable[tuple[str | None, object]] = super().__repr_args__()
        for name, value in base:
            if isinstance(value, str) and name is not None and name.endswith("_url"):
                shown = redact_mqtt_url(value) if name == "mqtt_url" else redact_url(value)
                yield name, shown
            else:
                yield name, value


class ClientSettings(SettingsModel):
    """Everything ComputeClient needs to know about the server it talks to.

    Defaults are those of the real CL Server (``docs/protocol.md``, "At a glance" and
    "Defaults and configuration"). Invalid values raise ParameterError naming the field.
    """

    ENV_VARS: ClassVar[Mapping[str, str]] = {
        "compute_url": "COMPUTE_URL",
        "mqtt_url": "MQTT_URL",
        "job_events_topic": "MQTT_TOPIC",
        "worker_topic_prefix": "CAPABILITY_TOPIC_PREFIX",
    }

    compute_url: str = "http://localhost:8002"
    mqtt_url: str = "mqtt://localhost:1883"

    mqtt_enabled: bool = Field(
        default=True,
        description="Follow jobs and workers over MQTT. False: HTTP polling only (the fallback).",
    )

    # MQTT topics
    job_events_topic: str = "inference/events"
    job_status_topic: str | None = Field(
        default=None,
        description="Per-job topic pattern carrying a whole JobResponse (older servers), "
        "for example 'inference/job_status/{job_id}'. None: not subscribed.",
    )
    worker_topic_prefix: str = "inference/workers"

    # HTTP endpoint paths
    root_path: str = "/"
    capabilities_path: str = "/capabilities"
    submit_path: str = "/jobs/{task_type}"
    job_path: str = "/jobs/{job_id}"
    job_file_path: str = "/jobs/{job_id}/files/{file_path}"
    admin_config_paths: tuple[str, ...] = ("/admin/config", "/admin/pref")
    admin_storage_path: str = "/admin/jobs/storage/size"
    admin_cleanup_path: str = "/admin/jobs/cleanup"

    # timing (seconds)
    http_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    mqtt_keepalive: int = Field(default=60, ge=5)
    reconnect_initial_delay: float = Field(default=0.2, gt=0)
    reconnect_max_delay: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=0.5, gt=0)
    poll_backoff: float = Field(default=1.5, ge=1.0)
    poll_max_interval: float = Field(default=10.0, gt=0)
    reconcile_interval: float = Field(
        default=5.0,
        gt=0,
        description="A watched processing job with no news is checked over HTTP this long after "
        "its last state change, then at this period (the real server publishes no MQTT event "
        "when a job fails); a queued job first after this long, then backing off.",
    )
    reconcile_max_interval: float = Field(
        default=60.0,
        gt=0,
        description="The longest a watched queued job goes unchecked while the MQTT feed is up.",
    )
    reconcile_rate: float = Field(
        default=20.0,
        gt=0,
        description="At most this many reconciliation requests per second, however many jobs "
        "are watched (polling without MQTT included).",
    )
    reconcile_concurrency: int = Field(
        default=8, ge=1, description="At most this many reconciliation requests in flight."
    )
    worker_ttl: float = Field(
        default=90.0,
        gt=0,
        description="A worker with no capability message for this long is considered gone.",
    )
    max_response_size: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest HTTP answer kept in memory (JSON bodies, read_job_file), in bytes. "
        "Downloads stream to disk and are not limited.",
    )
    job_cache_size: int = Field(default=10_000, ge=1)
    callback_queue_size: int = Field(default=1_000, ge=1)

    @property
    def mqtt(self) -> MqttEndpoint:
        """The parsed MQTT URL."""
        return parse_mqtt_url(self.mqtt_url)

    def worker_topic(self, worker_id: str = "+") -> str:
        """The capability topic of one worker, or the wildcard for all of them."""
        return f"{self.worker_topic_prefix.rstrip('/')}/{worker_id}"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Unpack[SettingsOverrides]
    ) -> ClientSettings:
        """Settings from COMPUTE_URL, MQTT_URL, MQTT_TOPIC and CAPABILITY_TOPIC_PREFIX.

        Keyword arguments win over the environment; unset variables keep the defaults.
        A bad value or an unknown keyword raises ParameterError.
        """
        return cls.from_values(env_values(cls.ENV_VARS, environ, overrides))


class SettingsOverrides(TypedDict, total=False):
    """:class:`ClientSettings` fields as keywords: ``ComputeClient(compute_url=..., ...)``.

    Every key is a ClientSettings field, with its type; see ClientSettings for what each means.
    """

    compute_url: str
    mqtt_url: str
    mqtt_enabled: bool
    job_events_topic: str
    job_status_topic: str | None
    worker_topic_prefix: str
    root_path: str
    capabilities_path: str
    submit_path: str
    job_path: str
    job_file_path: str
    admin_config_paths: tuple[str, ...]
    admin_storage_path: str
    admin_cleanup_path: str
    http_timeout: float
    connect_timeout: float
    mqtt_keepalive: int
    reconnect_initial_delay: float
    reconnect_max_delay: float
    poll_interval: float
    poll_backoff: float
    poll_max_interval: float
    reconcile_interval: float
    reconcile_max_interval: float
    reconcile_rate: float
    reconcile_concurrency: int
    worker_ttl: float
    max_response_size: int
    job_cache_size: int
    callback_queue_size: int


def with_overrides(
    settings: ClientSettings | None, overrides: Mapping[str, object]
) -> ClientSettings:
    """``settings`` (default: the defaults) with keyword ``overrides`` of its fields applied.

    A bad value or an unknown field raises ParameterError naming it.
    """
    if settings is not None and not overrides:
        return settings
    values = {**settings.model_dump(), **overrides} if settings is not None else dict(overrides)
    return ClientSettings.from_values(values)
