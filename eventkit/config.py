"""Where events are stored and how long they are kept: EventStoreConfig, from code or environment.

Also the one place that knows how to hide the secrets of a Redis URL (`redact_url`, `url_secrets`,
`scrub`), so the config, the stores and the CLI print, log and raise the same redacted form.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_plus, urlsplit

from eventkit.checks import MAX_INT64, check_name, check_number, has_lone_surrogate
from eventkit.errors import ConfigError

BACKENDS = ("sqlite", "redis", "memory")
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PATH = "~/.eventkit/events.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: what replaces a secret in every redacted URL or scrubbed message
HIDDEN = "***"
#: SQLite keeps busy_timeout in a C int
MAX_BUSY_TIMEOUT_MS = 2**31 - 1

# -- secrets of a URL ---------------------------------------------------------------------------
#
# The rule: everything between "://" and the LAST "@" of the URL is user-info (whatever urlsplit
# thinks: a password may hold "/", "?", "#" or "@" unencoded), and the value of any query parameter
# whose name looks like a secret is hidden. A user name is kept only when it is plainly one.

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
#: a user name that cannot be mistaken for part of a password (RFC 3986 user-info characters)
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]*\Z")
#: a parameter `name=` (or `name%3D`) after ?, &, ; or #
_PARAM = re.compile(r"(?<=[?&;#])([^=?&;#]*?)(=|%3[dD])")
#: where a hidden value ends: the next `&name=` (parse_qs splits on & only)
_NEXT_PARAM = re.compile(r"&[A-Za-z_][A-Za-z0-9_.-]*=")
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|auth", re.IGNORECASE)
#: characters urlsplit silently drops from a URL (so the password the driver sees lacks them)
_DROPPED = str.maketrans("", "", "\t\r\n")


def _as_text(url: object) -> str | None:
    if isinstance(url, str):
        return url
    if isinstance(url, bytes | bytearray):
        return bytes(url).decode("latin-1")
    return None


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(unquote_plus(name.translate(_DROPPED))))


def _param_spans(text: str) -> list[tuple[int, int]]:
    """Where the values of secret-looking parameters (`password=`, `ssl_password=`...) lie."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (match := _PARAM.search(text, pos)) is not None:
        pos = match.end()
        if _is_secret_name(match.group(1)):
            following = _NEXT_PARAM.search(text, pos)
            end = following.start() if following is not None else len(text)
            spans.append((pos, end))
            pos = end
    return spans


def _hide_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in spans:
        out += [text[pos:start], HIDDEN]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _split_secrets(url: str) -> tuple[str, list[str]]:
    """(the URL with its secrets hidden, the secrets as written in it)."""
    shown, rest = "", url
    head, sep, tail = url.partition("://")
    if sep and _SCHEME.match(head):
        shown, rest = head + sep, tail
    spans = _param_spans(rest)
    secrets = [rest[start:end] for start, end in spans]
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        user, colon, password = userinfo.partition(":")
        if colon and password and _PLAIN_USER.match(user):
            shown += f"{user}:{HIDDEN}@"
            secrets.append(password)
        else:  # no ':' (a bare token?), an empty password, or a user name holding odd characters
            shown += f"{HIDDEN}@"
            secrets += [userinfo, user, password] if userinfo.strip(":") else []
        cut = at + 1
        # a secret parameter's value holding the '@' (`?password=a@b`) stays hidden past it
        spill = max((end for start, end in spans if start <= at < end), default=cut)
        if spill > cut:
            shown += HIDDEN
            cut = spill
        rest = rest[cut:]
        spans = [(start - cut, end - cut) for start, end in spans if start >= cut]
    return shown + _hide_spans(rest, spans), secrets


def _parsed_secrets(url: str) -> list[str]:
    """The secrets as a driver using urlsplit/parse_qs would read them (it may disagree with us)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            found.append(parts.password)
        elif parts.username is not None:
            found.append(parts.username)
        for query in (parts.query, parts.fragment):
            found += [v for k, v in parse_qsl(query, keep_blank_values=True) if _is_secret_name(k)]
    except Exception:  # noqa: BLE001 - whatever urlsplit refuses, our own reading still counts
        pass
    return found


def _misparsed_pieces(url: str) -> list[str]:
    """When urlsplit cuts the user-info short (a password holding '/', '?', '#' or '@'), the pieces
    of the password it puts in the port, path or query instead, as a driver may quote them."""
    try:
        netloc = urlsplit(url).netloc
    except Exception:  # noqa: BLE001
        netloc = ""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0 or "@" in netloc:
        return []
    password = rest[:at].partition(":")[2] or rest[:at]
    return [piece for piece in re.split(r"[/?#@]", password) if len(piece) >= 2]


def _forms(secret: str) -> set[str]:
    """A secret as written, percent-decoded (once, twice, '+' as space) and as urlsplit keeps it."""
    forms = {secret, secret.translate(_DROPPED)}
    for form in list(forms):
        once = unquote(form)
        forms |= {once, unquote(once), unquote_plus(form), unquote(unquote_plus(form))}
    return forms


def redact_url(url: str) -> str:
    """The URL with every secret hidden (user-info, `password=` and the like), safe to print,
    log or put in an error. Never raises, whatever `url` is."""
    return _redacted(url)


def _redacted(url: object) -> str:
    try:
        text = _as_text(url)
        if text is None:
            return "None" if url is None else f"<{type(url).__name__}>"
        return _split_secrets(text)[0]
    except Exception:  # noqa: BLE001 - a redaction must never be the thing that fails
        return "<unprintable url>"


def url_secrets(url: str) -> list[str]:
    """Every secret string of the URL (as written and percent-decoded), longest first, none empty:
    what `scrub` removes from a driver's error message. Never raises."""
    try:
        text = _as_text(url)
        if text is None:
            return []
        candidates = _split_secrets(text)[1] + _parsed_secrets(text) + _misparsed_pieces(text)
        found = {form for secret in candidates for form in _forms(secret) if form}
        return sorted(found, key=lambda s: (-len(s), s))
    except Exception:  # noqa: BLE001
        return []


def scrub(text: str, url: str) -> str:
    """`text` (e.g. a driver's error message) with every secret of `url` replaced by ***.
    Never raises; if the text cannot be read or scrubbed, says so rather than return it."""
    try:
        message = text if isinstance(text, str) else str(text)
    except Exception:  # noqa: BLE001
        return "<unprintable message>"
    secrets = url_secrets(url)
    if not secrets:
        return message
    try:
        return _hide_spans(message, _occurrences(message, secrets))
    except Exception:  # noqa: BLE001
        return "<message hidden: it may hold a secret>"


def _occurrences(text: str, secrets: list[str]) -> list[tuple[int, int]]:
    """Every place any secret occurs, overlapping ones merged (so `a@b` and `x/a` in `x/a@b`
    hide the whole `x/a@b`, where replacing one after the other would leave a piece)."""
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = text.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _redis_url_problem(url: str) -> str | None:
    """Why `url` cannot be used as a Redis URL (never quoting it), or None."""
    if has_lone_surrogate(url) or any(c.isspace() or c < " " or c == "\x7f" for c in url):
        return (
            "it holds whitespace, a control character or a lone surrogate: "
            "percent-encode it (a space is %20)"
        )
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        return "use a redis://, rediss:// or unix:// URL"
    encode = "percent-encode '@', '/', '?' and '#' in a user name or password (%40, %2F, %3F, %23)"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[': its message may quote the URL, so not kept
        parts = None
    if parts is None:
        return f"it cannot be parsed as a URL: check the host, and {encode}"
    if url.count("@") > 1 or ("@" in url and "@" not in parts.netloc):
        return f"'@' must come once, right before the host: {encode}"
    if "#" in url:
        return f"a Redis URL has no '#fragment': {encode}"
    port_ok = True
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        port_ok = False
    if not port_ok:
        return f"the port must be a number from 0 to 65535 (or else {encode})"
    return _redis_parts_problem(parts, encode)


def _redis_parts_problem(parts: SplitResult, encode: str) -> str | None:
    """What is wrong with the password parameters or the path of a parsed Redis URL, or None."""
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    passwords = [name for name in names if name.lower() == "password"]
    if any(name != "password" for name in passwords):
        return "write the query parameter as 'password=' (lower case), the driver knows no other"
    if len(passwords) + (parts.password is not None) > 1:
        return "give the password once: in the user-info (redis://:PASSWORD@host) or as ?password="
    if parts.scheme == "unix":
        if not parts.path:
            return "give the socket's path: unix:///path/to/redis.sock"
    elif re.fullmatch(r"/?([0-9]+)?", parts.path) is None:
        return f"the path must be the database number (e.g. /0), nothing else (or else {encode})"
    return None


def check_redis_url(label: str, url: object) -> str:
    """A usable Redis URL, else ConfigError naming `label`, holding only the redacted URL."""
    if not isinstance(url, str):
        raise ConfigError(label, _redacted(url), "use a redis://, rediss:// or unix:// URL string")
    problem = _redis_url_problem(url)
    if problem is not None:
        raise ConfigError(label, redact_url(url), problem)
    return url


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
