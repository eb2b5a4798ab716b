"""Configuration from code and environment; errors name the variable; passwords never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from eventkit import EventStoreConfig
from eventkit.config import redact_url
from eventkit.errors import ConfigError


def test_from_env_defaults() -> None:
    config = EventStoreConfig.from_env({})
    assert config.backend == "sqlite" and config.max_events == 100_000
    assert config.resolved_redis_url == "redis://localhost:6379/0"
    assert config.namespace == "eventkit" and config.trim_interval_hours == 24


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    config = EventStoreConfig.from_env({
        "EVENT_STORE_BACKEND": "Redis", "REDIS_URL": "rediss://u:pw@cache:6380/2",
        "EVENT_STORE_PATH": str(tmp_path / "x.db"), "EVENT_STORE_MAX_EVENTS": "none",
        "EVENT_STORE_TRIM_INTERVAL_HOURS": "6", "EVENT_STORE_NAMESPACE": "app1",
    })  # fmt: skip
    assert config.backend == "redis" and config.redis_url == "rediss://u:pw@cache:6380/2"
    assert config.max_events is None and config.trim_interval_hours == 6.0
    assert config.namespace == "app1"


def test_unknown_backend_names_the_variable_and_the_choices() -> None:
    with pytest.raises(
        ConfigError, match="EVENT_STORE_BACKEND='mysql'.*sqlite, redis, memory"
    ) as info:
        EventStoreConfig.from_env({"EVENT_STORE_BACKEND": "mysql"})
    assert info.value.variable == "EVENT_STORE_BACKEND"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENT_STORE_MAX_EVENTS", "lots"),
        ("EVENT_STORE_MAX_EVENTS", "-5"),
        ("EVENT_STORE_TRIM_INTERVAL_HOURS", "soon"),
        ("EVENT_STORE_TRIM_INTERVAL_HOURS", "-1"),
        ("REDIS_URL", "http://user:hunter2@host"),
    ],
)
def test_unusable_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig.from_env({variable: value})
    assert info.value.variable == variable
    assert "hunter2" not in str(info.value)


def test_path_expands_home_and_creates_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = EventStoreConfig.from_env({"EVENT_STORE_PATH": "~/deep/er/events.db"})
    assert config.resolved_path == tmp_path / "deep/er/events.db"
    assert (tmp_path / "deep/er").is_dir()
    assert EventStoreConfig.from_env({}).resolved_path == tmp_path / ".eventkit/events.db"


def test_password_never_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    config = EventStoreConfig(backend="redis", redis_url="redis://admin:s3cret-pw@host:6379/0")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("eventkit").info("config %s %r", config, config)
    for text in (repr(config), str(config), caplog.text, config.safe_redis_url):
        assert "s3cret-pw" not in text
    assert "admin:***@host:6379" in repr(config)
    assert redact_url("rediss://:pw@h/1") == "rediss://:***@h/1"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


# -- refused at the door (SPEC §7): numbers, names, URLs ------------------------------------------

NUMBER_FIELDS = ["max_events", "trim_interval_hours", "poll_interval_seconds", "busy_timeout_ms"]


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), True, False, "5", -1, 0, None]
)
def test_numbers_refuse_nan_infinite_bool_and_wrong_values(field: str, value: object) -> None:
    optional = field in ("max_events", "trim_interval_hours")
    if value is None and optional:
        assert getattr(EventStoreConfig(**{field: value}), field) is None  # None: off/unbounded
        return
    if value == 0 and field == "busy_timeout_ms" and not isinstance(value, bool):
        assert EventStoreConfig(busy_timeout_ms=0).busy_timeout_ms == 0  # fail at once: allowed
        return
    with pytest.raises(ConfigError) as info:
        EventStoreConfig(**{field: value})
    assert info.value.variable == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_events", 1.5),
        ("max_events", 2**63),
        ("busy_timeout_ms", 1.0),
        ("busy_timeout_ms", 2**31),
        ("poll_interval_seconds", 1.5),
    ],
)
def test_numbers_refuse_fractions_and_out_of_range(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        EventStoreConfig(**{field: value})


def test_valid_numbers_are_kept() -> None:
    config = EventStoreConfig(
        max_events=1, trim_interval_hours=0.001, poll_interval_seconds=1, busy_timeout_ms=0
    )
    assert (config.max_events, config.trim_interval_hours) == (1, 0.001)
    assert (config.poll_interval_seconds, config.busy_timeout_ms) == (1, 0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENT_STORE_MAX_EVENTS", "nan"),
        ("EVENT_STORE_MAX_EVENTS", "true"),
        ("EVENT_STORE_MAX_EVENTS", "0"),
        ("EVENT_STORE_MAX_EVENTS", "9" * 5000),
        ("EVENT_STORE_TRIM_INTERVAL_HOURS", "nan"),
        ("EVENT_STORE_TRIM_INTERVAL_HOURS", "inf"),
        ("EVENT_STORE_TRIM_INTERVAL_HOURS", "1e400"),
        ("EVENT_STORE_POLL_INTERVAL", "nan"),
        ("EVENT_STORE_POLL_INTERVAL", "-inf"),
        ("EVENT_STORE_POLL_INTERVAL", "none"),
        ("EVENT_STORE_BUSY_TIMEOUT_MS", "nan"),
        ("EVENT_STORE_BUSY_TIMEOUT_MS", "-1"),
        ("EVENT_STORE_BUSY_TIMEOUT_MS", "1.5"),
        ("EVENT_STORE_NAMESPACE", "a\x00b"),
        ("EVENT_STORE_NAMESPACE", "two words"),
    ],
)
def test_env_numbers_and_names_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig.from_env({variable: value})
    assert info.value.variable == variable


def test_env_busy_timeout_is_read() -> None:
    assert EventStoreConfig.from_env({"EVENT_STORE_BUSY_TIMEOUT_MS": "250"}).busy_timeout_ms == 250


def test_an_override_is_named_as_the_field_not_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig.from_env({"EVENT_STORE_MAX_EVENTS": "5"}, max_events=float("nan"))
    assert info.value.variable == "max_events"


@pytest.mark.parametrize("namespace", ["", "   ", "a\x00b", "a b", "bad\ud800", 7, None])
def test_namespace_must_be_a_plain_name(namespace: object) -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig(namespace=namespace)  # type: ignore[arg-type]
    assert info.value.variable == "namespace"


@pytest.mark.parametrize("backend", ["mysql", "", 3, None])
def test_backend_must_be_a_known_name(backend: object) -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig(backend=backend)  # type: ignore[arg-type]
    assert info.value.variable == "backend"


def test_path_with_nul_or_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="path"):
        EventStoreConfig(path="/tmp/a\x00b.db")
    with pytest.raises(ConfigError, match="path"):
        EventStoreConfig(path=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "redis://:ab?cd@h/0",
        "redis://:ab/cd@h:6379/0",
        "redis://:p@ss@h/0",
        "redis://:ab#cd@h/0",
        "redis://h:6379/0?password=ab@cd",
        "redis://:abcd@h:port/0",
        "redis://h:99999/0",
        "redis://h/notadb",
        "mysql://:abcd@h/0",
        "redis:h:6379",
        "redis://:ab cd@h/0",
        "redis://:abcd@h/0\n",
        "unix://:abcd@",
        "redis://h/0?PASSWORD=abcd",
        "redis://:abcd@h/0?password=abcd",
        "redis://[::1:abcd@h/0",
    ],
)
def test_ambiguous_redis_url_is_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        EventStoreConfig(backend="redis", redis_url=url)
    error = info.value
    assert error.variable == "redis_url" and error.value == redact_url(url)
    assert error.__context__ is None and error.__cause__ is None  # no urlsplit error kept
    for text in (str(error), repr(error), repr(error.args), repr(error.value)):
        for secret in ("abcd", "ab?cd", "ab/cd", "p@ss", "ab#cd", "ab@cd", "ab cd"):
            assert secret not in text


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://",
        "redis://h",
        "redis://h/",
        "REDIS://h:6379/15",
        "redis://[::1]:6379/0",
        "redis://user:p%40ss%2F%3F%23@h:6379/0",
        "redis://h:6379/0?password=p%40ss",
        "rediss://u:pw@h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required",
        "unix:///tmp/redis.sock?db=2",
        "unix://:pw@/tmp/redis.sock",
    ],
)
def test_well_formed_redis_urls_are_accepted(url: str) -> None:
    assert EventStoreConfig(backend="redis", redis_url=url).redis_url == url


def test_redis_url_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        EventStoreConfig(redis_url=b"redis://:pw@h/0")  # type: ignore[arg-type]


def test_an_override_wins_over_a_bad_environment_value() -> None:
    env = {"EVENT_STORE_BACKEND": "mysql", "REDIS_URL": "redis://:ab?cd@h/0",
           "EVENT_STORE_MAX_EVENTS": "nan"}  # fmt: skip
    config = EventStoreConfig.from_env(
        env, backend="memory", redis_url="redis://h:6379/0", max_events=None
    )
    assert (config.backend, config.redis_url, config.max_events) == (
        "memory", "redis://h:6379/0", None,
    )  # fmt: skip
