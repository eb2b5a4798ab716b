"""Where events are stored and how long they are kept: EventStoreConfig, from code or environment."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eventkit.errors import ConfigError

BACKENDS = ("sqlite", "redis", "memory")
DEFAULT_PATH = "~/.eventkit/events.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def redact_url(url: str) -> str:
    """Hide the password of a URL so it can be printed, logged or put in an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))


@dataclass
class EventStoreConfig:
    """Backend choice and retention; every field has a matching environment variable."""

    backend: str = "sqlite"
    path: str | Path | None = None
    redis_url: str | None = field(default=None, repr=False)
    namespace: str = "eventkit"
    max_events: int | None = 100_000
    trim_interval_hours: float | None = 24
    #: how often an idle consumer looks for work written by other processes
    poll_interval_seconds: float = 0.1
    #: how long SQLite waits for another process's write lock before failing
    busy_timeout_ms: int = 5_000

    def __post_init__(self) -> None:
        self.backend = str(self.backend).strip().lower()
        if self.backend not in BACKENDS:
            raise ConfigError("backend", self.backend, f"use one of {', '.join(BACKENDS)}")
        if self.max_events is not None and (
            not isinstance(self.max_events, int) or self.max_events < 1
        ):
            raise ConfigError("max_events", self.max_events, "use a positive integer or None")
        if self.trim_interval_hours is not None and not _positive_finite(self.trim_interval_hours):
            raise ConfigError(
                "trim_interval_hours", self.trim_interval_hours, "use a positive number or None"
            )
        if not _positive_finite(self.poll_interval_seconds) or self.poll_interval_seconds > 1:
            raise ConfigError(
                "poll_interval_seconds", self.poll_interval_seconds, "use a number in (0, 1]"
            )
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise ConfigError("namespace", self.namespace, "use a non-empty name without spaces")
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(
                    "redis_url",
                    redact_url(self.redis_url),
                    "use a redis://, rediss:// or unix:// URL",
                )

    @property
    def resolved_path(self) -> Path:
        """The SQLite file, with ~ expanded and its folder created."""
        path = Path(self.path if self.path is not None else DEFAULT_PATH).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def resolved_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def safe_redis_url(self) -> str:
        """The Redis URL with its password hidden."""
        return redact_url(self.resolved_redis_url)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["redis_url"] = None if self.redis_url is None else redact_url(self.redis_url)
        inner = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"EventStoreConfig({inner})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> EventStoreConfig:
        """Build a config from EVENT_STORE_* and REDIS_URL variables; ConfigError names a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        backend = env.get("EVENT_STORE_BACKEND", "sqlite").strip().lower() or "sqlite"
        if backend not in BACKENDS:
            raise ConfigError("EVENT_STORE_BACKEND", backend, f"use one of {', '.join(BACKENDS)}")
        values["backend"] = backend
        if env.get("EVENT_STORE_PATH"):
            values["path"] = env["EVENT_STORE_PATH"]
        if env.get("REDIS_URL"):
            url = env["REDIS_URL"]
            if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(
                    "REDIS_URL", redact_url(url), "use a redis://, rediss:// or unix:// URL"
                )
            values["redis_url"] = url
        if env.get("EVENT_STORE_NAMESPACE"):
            values["namespace"] = env["EVENT_STORE_NAMESPACE"]
        if "EVENT_STORE_MAX_EVENTS" in env:
            values["max_events"] = _parse_optional_int(env, "EVENT_STORE_MAX_EVENTS")
        if "EVENT_STORE_TRIM_INTERVAL_HOURS" in env:
            values["trim_interval_hours"] = _parse_optional_float(
                env, "EVENT_STORE_TRIM_INTERVAL_HOURS"
            )
        if "EVENT_STORE_POLL_INTERVAL" in env:
            values["poll_interval_seconds"] = _parse_optional_float(
                env, "EVENT_STORE_POLL_INTERVAL"
            )
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigError as e:
            names = {
                "max_events": "EVENT_STORE_MAX_EVENTS",
                "trim_interval_hours": "EVENT_STORE_TRIM_INTERVAL_HOURS",
                "poll_interval_seconds": "EVENT_STORE_POLL_INTERVAL",
                "namespace": "EVENT_STORE_NAMESPACE",
                "redis_url": "REDIS_URL",
            }
            raise ConfigError(names.get(e.variable, e.variable), e.value, e.hint) from None


def _positive_finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _parse_optional_int(env: Any, name: str) -> int | None:
    raw = env[name].strip().lower()
    if raw in ("", "none", "unbounded"):
        return None
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, env[name], "use a whole number, or 'none' for unbounded") from None


def _parse_optional_float(env: Any, name: str) -> float | None:
    raw = env[name].strip().lower()
    if raw in ("", "none", "off"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(name, env[name], "use a number, or 'none' to turn it off") from None
