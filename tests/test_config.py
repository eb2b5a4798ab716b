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
