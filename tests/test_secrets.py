"""No secret of a Redis URL shows anywhere (SPEC §2, §7 "Secrets"): not in a config's or a store's
repr/str, not in a log record, not in stats, not in any error — whatever form the URL takes, well
formed or not. One redaction (`eventkit.config.redact_url`) and one scrubber (`url_secrets`, `scrub`)
serve every module; they never raise."""

from __future__ import annotations

import json
import logging
import random
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, unquote_plus

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.config import redact_url, scrub, url_secrets
from eventkit.errors import ConfigError, EventKitError, StoreUnavailableError
from eventkit.stores.redis import RedisEventStore
from tests.helpers import Recorder, discovered
from tests.redis_server import RedisServer, free_port


@dataclass(frozen=True)
class Case:
    """A URL template ({port}, {sock} filled in per test) and every string that must never show:
    the password as written, decoded, and each distinctive piece of it."""

    url: str
    secrets: tuple[str, ...]

    def at(self, port: int = 6379, sock: str = "/tmp/redis.sock") -> str:
        return self.url.format(port=port, sock=sock)

    def __str__(self) -> str:  # the test id
        return self.url


#: URLs the config accepts: every form the password can take in a usable URL
VALID = [
    Case("redis://user:Ax1Secret@127.0.0.1:{port}/0", ("Ax1Secret", "Ax1")),
    Case("redis://:Bx2Secret@127.0.0.1:{port}/0", ("Bx2Secret", "Bx2")),
    Case("redis://127.0.0.1:{port}/0?password=Cx3Secret", ("Cx3Secret", "Cx3")),
    Case(
        "redis://127.0.0.1:{port}/0?db=0&password=Dx4Secret&client_name=app",
        ("Dx4Secret", "Dx4"),
    ),
    Case(
        "redis://127.0.0.1:{port}/0?password=Ex5%2FSe%40cr%3Fet",
        ("Ex5%2FSe%40cr%3Fet", "Ex5/Se@cr?et", "Ex5", "cr%3Fet"),
    ),
    Case(
        "rediss://u:Fx6%40Secret@127.0.0.1:{port}/0?ssl_ca_certs=/nonexistent/ca.pem",
        ("Fx6%40Secret", "Fx6@Secret", "Fx6"),
    ),
    Case("unix://:Gx7Secret@{sock}?db=0", ("Gx7Secret", "Gx7")),
    Case("redis://:Hx8%3FSe%2Fc%23ret@127.0.0.1:{port}/0", ("Hx8?Se/c#ret", "Hx8", "c%23ret")),
    Case("redis://default:Ix9%25Secret@127.0.0.1:{port}/0", ("Ix9%25Secret", "Ix9%Secret", "Ix9")),
]

#: URLs that cannot be parsed unambiguously: refused with a ConfigError that never quotes them
MALFORMED = [
    Case("redis://:Ja1?Jb2@127.0.0.1:{port}/0", ("Ja1?Jb2", "Ja1", "Jb2")),  # '?' ends netloc
    Case("redis://:Ka1/Kb2@127.0.0.1:{port}/0", ("Ka1/Kb2", "Ka1", "Kb2")),  # '/' ends netloc
    Case("redis://:La1@Lb2@127.0.0.1:{port}/0", ("La1@Lb2", "La1", "Lb2")),  # two '@'
    Case("redis://:Ma1#Mb2@127.0.0.1:{port}/0", ("Ma1#Mb2", "Ma1", "Mb2")),  # '#' ends netloc
    Case(
        "rediss://u:Na1@Nb2@127.0.0.1:{port}/0?ssl_ca_certs=/x",
        ("Na1@Nb2", "Na1", "Nb2"),
    ),
    Case("unix://:Oa1?Ob2@{sock}?db=0", ("Oa1?Ob2", "Oa1", "Ob2")),
    Case("redis://127.0.0.1:{port}/0?password=Pa1@Pb2", ("Pa1@Pb2", "Pa1", "Pb2")),  # '@' in query
    Case("redis://:Qa1Secret@127.0.0.1:notaport/0", ("Qa1Secret", "Qa1")),  # port not a number
    Case("redis://127.0.0.1:{port}/0?db=0&PassWord=Va1Secret", ("Va1Secret", "Va1")),  # not lower
    Case("redis://:Wa1Secret@127.0.0.1:{port}/0?password=Wb2Secret", ("Wa1Secret", "Wb2Secret")),
    Case("redis://:Ra1 Rb2@127.0.0.1:{port}/0", ("Ra1 Rb2", "Ra1", "Rb2")),  # whitespace
    Case("http://:Sa1Secret@127.0.0.1:{port}/0", ("Sa1Secret", "Sa1")),  # bad scheme
    Case("redis:Ta1Secret@127.0.0.1:{port}", ("Ta1Secret", "Ta1")),  # no '//'
    Case("redis://:Ua1Secret@127.0.0.1:{port}/Ub2", ("Ua1Secret", "Ua1")),  # path not a db
]

ALL = VALID + MALFORMED


def _texts_of_error(error: BaseException) -> list[str]:
    """Everything an error shows: str, repr, args, fields, the printed traceback, and its chain."""
    texts = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    texts += [repr(getattr(error, name, "")) for name in ("value", "variable", "hint")]
    seen: BaseException | None = error.__cause__ or error.__context__
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return texts


def _assert_hidden(texts: list[str], secrets: tuple[str, ...]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{secret!r} shows in {text!r}"


# -- the redaction itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://user:pw@h", "redis://user:***@h"),
        ("redis://:pw@h", "redis://:***@h"),
        ("rediss://:pw@h/1", "rediss://:***@h/1"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://:ab?cd@h/0", "redis://:***@h/0"),
        ("redis://:ab/cd@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        ("rediss://u:p%40ss@h:6380/0?ssl_ca_certs=/x", "rediss://u:***@h:6380/0?ssl_ca_certs=/x"),
        ("unix://:pw@/tmp/redis.sock?db=0", "unix://:***@/tmp/redis.sock?db=0"),
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&PASSWORD=a%26b&db=2", "redis://h/0?db=1&PASSWORD=***&db=2"),
        ("redis://h/0?pa%73sword=x", "redis://h/0?pa%73sword=***"),  # an encoded name too
        ("redis://h/0?ssl_password=x", "redis://h/0?ssl_password=***"),
        ("redis://h/0?password=a&b", "redis://h/0?password=***"),  # '&' not before a name=
        ("redis://token@h/0", "redis://***@h/0"),  # a bare user-info may be a token
        ("redis://u@x:pw@h/0", "redis://***@h/0"),  # which part is the user? neither shown
        ("", ""),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_every_form_of_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize("case", ALL, ids=str)
def test_redact_url_and_url_secrets_cover_every_case(case: Case) -> None:
    url = case.at()
    _assert_hidden([redact_url(url)], case.secrets)
    found = url_secrets(url)
    assert found == sorted(found, key=len, reverse=True) and "" not in found
    # a driver quoting the URL or the password (as written in the case) is scrubbed
    _assert_hidden([scrub(url, url), scrub(f"AUTH {case.secrets[0]} failed", url)], case.secrets)


def test_url_secrets_has_raw_and_decoded_forms_longest_first() -> None:
    assert url_secrets("redis://u:p%40ss@h/0") == ["p%40ss", "p@ss"]
    found = url_secrets("redis://h/0?password=a%2Bb+c")  # as written, and as parse_qs reads it
    assert found[0] == "a%2Bb+c" and "a+b c" in found
    assert url_secrets("redis://h:6379/0") == []
    assert url_secrets("redis://:@h/0") == []


def test_scrub_replaces_in_one_pass() -> None:
    url = "redis://:pw@h/0?password=pwpw"
    assert scrub("auth pwpw failed for pw", url) == "auth *** failed for ***"
    assert scrub("nothing secret", "redis://h/0") == "nothing secret"
    # the start of a password urlsplit mistook for a port is scrubbed too (redis-py quotes it)
    assert "Kx1" not in scrub(
        "Port could not be cast to integer value as 'Kx1'", "redis://:Kx1/Kx2@h"
    )


_ALPHABET = (
    "abcXYZ019:/?#@&=%+;[]. -_~!$'()*,\t\n\r\x00\x7f\u00e9\u4e2d\U0001f600\ud800\udfff"
    "%40%2F%3F%23%25%2B%3D"
)


@pytest.mark.parametrize("seed", range(4))
def test_redaction_never_raises_on_random_input(seed: int) -> None:
    rng = random.Random(seed)
    prefixes = ["", "redis://", "rediss://", "unix://", "redis:", "://", "http://", "REDIS://"]
    for _ in range(150):
        text = rng.choice(prefixes) + "".join(
            rng.choice(_ALPHABET) for _ in range(rng.randrange(40))
        )
        shown = redact_url(text)
        secrets = url_secrets(text)
        scrubbed = scrub(text, text)
        assert isinstance(shown, str) and isinstance(scrubbed, str)
        assert all(isinstance(s, str) and s for s in secrets)
        for secret in secrets:
            assert secret not in scrubbed
    for odd in (None, 42, b"redis://:pw@h", object(), ["redis://:pw@h"]):
        assert isinstance(redact_url(odd), str)  # type: ignore[arg-type]
        assert isinstance(url_secrets(odd), list)  # type: ignore[arg-type]
        assert isinstance(scrub(odd, odd), str)  # type: ignore[arg-type]
    assert "pw" not in redact_url(b"redis://:pw@h")  # type: ignore[arg-type]

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert scrub(Unprintable(), "redis://:pw@h") == "<unprintable message>"  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_random_passwords_never_survive_redaction(seed: int) -> None:
    """A password of any characters (unencoded, so often malformed) never shows once redacted,
    and a message quoting it, raw or decoded, is scrubbed."""
    rng = random.Random(1000 + seed)
    special = "abcXYZ019:/?#@=%+;. -_~"
    for _ in range(100):
        password = "ZZ" + "".join(rng.choice(special) for _ in range(rng.randrange(1, 16)))
        in_query = password.replace("&", "")
        for url, written in (
            (f"redis://:{password}@127.0.0.1:6379/0", password),
            (f"redis://someone:{password}@127.0.0.1:6379/0", password),
            (f"rediss://u:{password}@127.0.0.1:6380/0?ssl_ca_certs=/x", password),
            (f"unix://:{password}@/tmp/redis.sock?db=0", password),
            (f"redis://127.0.0.1:6379/0?password={in_query}", in_query),
            (f"redis://:{quote(password, safe='')}@h/0", quote(password, safe="")),
        ):
            assert written not in redact_url(url), url
            assert "ZZ" not in redact_url(url), url
            message = f"AUTH {written} / {unquote(written)} / {unquote_plus(written)} failed"
            assert "ZZ" not in scrub(message, url), (url, scrub(message, url))
            try:
                config = EventStoreConfig(backend="redis", redis_url=url)
            except ConfigError as e:
                _assert_hidden(_texts_of_error(e), (written, "ZZ"))
            else:
                _assert_hidden([repr(config), str(config), config.safe_redis_url], (written, "ZZ"))


# -- the config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=str)
def test_config_repr_and_str_hide_the_password(case: Case) -> None:
    config = EventStoreConfig(backend="redis", redis_url=case.at())
    assert config.redis_url == case.at()  # the real URL is kept for the driver
    _assert_hidden([repr(config), str(config), config.safe_redis_url], case.secrets)
    assert "***" in repr(config)
    from_env = EventStoreConfig.from_env({"EVENT_STORE_BACKEND": "redis", "REDIS_URL": case.at()})
    _assert_hidden([repr(from_env), str(from_env)], case.secrets)


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_url_is_a_config_error_that_never_echoes_it(case: Case) -> None:
    url = case.at()
    with pytest.raises(ConfigError) as info:
        EventStoreConfig(backend="redis", redis_url=url)
    assert info.value.variable == "redis_url" and info.value.value == redact_url(url)
    _assert_hidden(_texts_of_error(info.value), case.secrets)
    with pytest.raises(ConfigError) as from_env:
        EventStoreConfig.from_env({"EVENT_STORE_BACKEND": "redis", "REDIS_URL": url})
    assert from_env.value.variable == "REDIS_URL"
    _assert_hidden(_texts_of_error(from_env.value), case.secrets)


def test_repr_never_raises_even_after_fields_are_reassigned() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    config = EventStoreConfig(backend="redis", redis_url="redis://:pw@h/0")
    config.redis_url = "redis://:Zz9?Yy8@h/0"  # malformed, set after validation
    config.namespace = Unprintable()  # type: ignore[assignment]
    for text in (repr(config), str(config)):
        assert "Zz9" not in text and "Yy8" not in text and "<Unprintable>" in text


# -- the store -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL, ids=str)
def test_store_repr_hides_the_password(case: Case) -> None:
    try:
        store = RedisEventStore(case.at(), namespace="secrets")
    except ConfigError as e:  # a store may refuse a malformed URL up front: cleanly
        _assert_hidden(_texts_of_error(e), case.secrets)
        return
    _assert_hidden([repr(store), str(store)], case.secrets)


def _closed_port_url(case: Case, tmp_path: Path) -> str:
    return case.at(port=free_port(), sock=str(tmp_path / "no-such-redis.sock"))


@pytest.mark.parametrize("case", VALID, ids=str)
async def test_unreachable_store_error_hides_the_password(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = RedisEventStore(_closed_port_url(case, tmp_path), namespace="secrets")
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    _assert_hidden([*_texts_of_error(info.value), caplog.text], case.secrets)
    assert "***" in str(info.value) or not url_secrets(case.at())


@pytest.mark.parametrize("case", MALFORMED, ids=str)
async def test_opening_a_store_on_a_malformed_url_is_a_clean_typed_error(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a raw ValueError quoting the start of the password (urlsplit's port error)."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EventKitError) as info:
        store = RedisEventStore(_closed_port_url(case, tmp_path), namespace="secrets")
        await store.open()
    _assert_hidden([*_texts_of_error(info.value), caplog.text], case.secrets)


# -- a real password-protected server ------------------------------------------------------------

#: every character that needs encoding in a URL, between a distinctive start and end
PASSWORD = "Zq9@/?#:%&=+ Wv7"
PASSWORD_SECRETS = (PASSWORD, quote(PASSWORD, safe=""), "Zq9", "Wv7")


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


def _protected_urls(server: RedisServer) -> list[str]:
    pw, hostport = quote(PASSWORD, safe=""), f"127.0.0.1:{server.port}"
    return [
        server.url,  # redis://:<encoded>@127.0.0.1:port/0
        f"redis://default:{pw}@{hostport}/0",
        f"redis://{hostport}/0?password={pw}",
        f"redis://{hostport}/0?db=0&password={pw}&client_name=eventkit-secrets",
    ]


@pytest.mark.parametrize("form", range(4))
async def test_opening_a_store_logs_no_password(
    protected: RedisServer, form: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="eventkit")
    url = _protected_urls(protected)[form]
    store = RedisEventStore(url, namespace=f"secrets-{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        await store.ensure_group("g", ["*"])
        stats = await store.stats()
        shown = [repr(store), str(store), json.dumps(stats, default=str)]
    finally:
        await store.close()
    assert any(r.name.startswith("eventkit") for r in caplog.records)  # the open was logged
    shown += [caplog.text] + [r.getMessage() for r in caplog.records]
    shown += [repr(r.args) for r in caplog.records]
    _assert_hidden(shown, PASSWORD_SECRETS)


@pytest.mark.parametrize("form", range(4))
async def test_bus_on_a_protected_server_shows_no_password(
    protected: RedisServer, form: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = EventStoreConfig(
        backend="redis",
        redis_url=_protected_urls(protected)[form],
        namespace=f"secrets-{uuid.uuid4().hex[:8]}",
        trim_interval_hours=None,
        poll_interval_seconds=0.05,
    )
    async with EventBus(config) as bus:
        rec = Recorder()
        await bus.subscribe_persistent(["*"], "g", "w", rec)
        await bus.publish_many([discovered(i) for i in range(3)])
        assert await bus.wait_idle(timeout=10)
        stats = await bus.get_stats()
        shown = [repr(bus.store), str(bus.store), repr(config), str(config)]
        shown.append(json.dumps(stats, default=str))
    shown += [caplog.text] + [r.getMessage() for r in caplog.records]
    _assert_hidden(shown, PASSWORD_SECRETS)


async def test_wrong_password_error_shows_neither_password(
    protected: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Yx8@/?#:%&=+ Wrong"
    for url in (
        f"redis://:{quote(wrong, safe='')}@127.0.0.1:{protected.port}/0",
        f"redis://127.0.0.1:{protected.port}/0?password={quote(wrong, safe='')}",
    ):
        store = RedisEventStore(url, namespace="secrets")
        with pytest.raises(StoreUnavailableError) as info:
            await store.open()
        texts = [*_texts_of_error(info.value), caplog.text]
        _assert_hidden(texts, (wrong, quote(wrong, safe=""), "Yx8", "Wrong", *PASSWORD_SECRETS))
