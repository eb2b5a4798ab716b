"""Redis URLs: whether one can be used, and its secrets hidden.

The one place that knows how to hide the secrets of a Redis URL (`redact_url`, `url_secrets`,
`scrub`), so the config, the stores and the CLI print, log and raise the same redacted form.
Never raises on any input. A leaf module (checks, errors).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_plus, urlsplit

from eventkit.checks import has_lone_surrogate
from eventkit.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: what replaces a secret in every redacted URL or scrubbed message
HIDDEN = "***"

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
