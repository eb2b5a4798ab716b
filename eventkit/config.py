"""Where events are stored and how long they are kept: EventStoreConfig, from code or environment.

Redis URLs are checked and redacted by eventkit.redis_url (re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventkit.checks import MAX_INT64, check_name, check_number
from eventkit.errors import ConfigError
from eventkit.redis_url import check_redis_url, redact_url, scrub, url_secrets

__all__ = ["DEFAULT_PATH", "DEFAULT_REDIS_URL", "EventStoreConfig", "check_redis_url",
           "redact_url", "scrub", "url_secrets"]  # fmt: skip

BACKENDS = ("sqlite", "redis", "memory")
DEFAULT_PATH = "~/.eventkit/events.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: SQLite keeps busy_timeout in a C int
MAX_BUSY_TIMEOUT_MS = 2**31 - 1

# -- the configuration --------------------------------------------------------------------------


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
        if not isinstance(self.backend, str):
            raise ConfigError("backend", self.backend, f"use one of {', '.join(BACKENDS)}")
        self.backend = self.backend.strip().lower()
        if self.backend not in BACKENDS:
            raise ConfigError("backend", self.backend, f"use one of {', '.join(BACKENDS)}")
        if self.path is not None:
            if not isinstance(self.path, str | os.PathLike):
                raise ConfigError("path", self.path, "use a file path (str or Path) or None")
            if "\x00" in os.fspath(self.path):
                raise ConfigError("path", self.path, "a path cannot hold the NUL character")
        if self.max_events is not None:
            _number("max_events", self.max_events, integer=True, minimum=1, maximum=MAX_INT64)
        if self.trim_interval_hours is not None:
            _number("trim_interval_hours", self.trim_interval_hours, above_zero=True)
        check_number(
            "poll_interval_seconds",
            self.poll_interval_seconds,
            minimum=0,
            allow_minimum=False,
            maximum=1,
        )
        check_number(
            "busy_timeout_ms",
            self.busy_timeout_ms,
            integer=True,
            minimum=0,
            maximum=MAX_BUSY_TIMEOUT_MS,
        )
        check_name("namespace", self.namespace)
        if any(c.isspace() for c in self.namespace):
            raise ConfigError("namespace", self.namespace, "use a non-empty name without spaces")
        if self.redis_url is not None:
            check_redis_url("redis_url", self.redis_url)

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
        """Every field, the Redis URL redacted; never raises (fields may have been reassigned)."""
        try:
            shown: list[str] = []
            for f in dataclasses.fields(self):
                value = getattr(self, f.name, None)
                if f.name == "redis_url":
                    text = "None" if value is None else repr(redact_url(value))
                else:
                    text = _safe_repr(value)
                shown.append(f"{f.name}={text}")
            return f"EventStoreConfig({', '.join(shown)})"
        except Exception:  # noqa: BLE001
            return "EventStoreConfig(<unprintable>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> EventStoreConfig:
        """Build a config from EVENT_STORE_* and REDIS_URL variables; ConfigError names a bad one
        (the variable when the value came from the environment, else the field)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # what the environment says, for fields not overridden
        if "backend" not in overrides:
            backend = env.get("EVENT_STORE_BACKEND", "sqlite").strip().lower() or "sqlite"
            if backend not in BACKENDS:
                hint = f"use one of {', '.join(BACKENDS)}"
                raise ConfigError("EVENT_STORE_BACKEND", backend, hint)
            values["backend"] = backend
        if env.get("EVENT_STORE_PATH"):
            values["path"] = env["EVENT_STORE_PATH"]
        if env.get("REDIS_URL") and "redis_url" not in overrides:
            values["redis_url"] = check_redis_url("REDIS_URL", env["REDIS_URL"])
        if env.get("EVENT_STORE_NAMESPACE"):
            values["namespace"] = env["EVENT_STORE_NAMESPACE"]
        for name, (variable, parse) in _ENV_NUMBERS.items():
            if variable in env and name not in overrides:
                values[name] = parse(env, variable)
        from_environment = set(values) - set(overrides)
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigError as e:
            if e.variable in from_environment and e.variable in _ENV_NAMES:
                raise ConfigError(_ENV_NAMES[e.variable], e.value, e.hint) from None
            raise


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__}>"


def _number(
    label: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float = 0,
    above_zero: bool = False,
    maximum: float | None = None,
) -> None:
    """check_number for an optional field: the hint says None is also allowed."""
    try:
        check_number(
            label,
            value,
            integer=integer,
            minimum=minimum,
            allow_minimum=not above_zero,
            maximum=maximum,
        )
    except ConfigError as e:
        raise ConfigError(label, value, f"{e.hint}, or None") from None


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


#: numeric fields read from the environment: field -> (variable, parser)
_ENV_NUMBERS: dict[str, tuple[str, Any]] = {
    "max_events": ("EVENT_STORE_MAX_EVENTS", _parse_optional_int),
    "trim_interval_hours": ("EVENT_STORE_TRIM_INTERVAL_HOURS", _parse_optional_float),
    "poll_interval_seconds": ("EVENT_STORE_POLL_INTERVAL", _parse_optional_float),
    "busy_timeout_ms": ("EVENT_STORE_BUSY_TIMEOUT_MS", _parse_optional_int),
}
#: every field's environment variable, to name it in a ConfigError
_ENV_NAMES = {
    "backend": "EVENT_STORE_BACKEND",
    "path": "EVENT_STORE_PATH",
    "redis_url": "REDIS_URL",
    "namespace": "EVENT_STORE_NAMESPACE",
    **{name: variable for name, (variable, _) in _ENV_NUMBERS.items()},
}
