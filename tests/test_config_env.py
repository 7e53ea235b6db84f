"""Environment settings get the treatment files get: ``NAME: reason`` for every bad
variable, of the service and of every sink, and never the value (it may be a secret)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alerts.config import sink_settings_problems
from alerts.errors import ConfigError
from alerts.platforms.discord.session import DiscordSettings
from alerts.settings import Settings, read_settings
from alerts.sinks import registry

SECRET = "hunter2-secret"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's ALERTS_* variables."""
    for name in list(os.environ):
        if name.startswith("ALERTS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        pytest.param("ALERTS_LOG_LEVEL", "LOUD", "must be one of DEBUG", id="log-level"),
        pytest.param("ALERTS_LOG_FORMAT", "xml", "'text' or 'json'", id="log-format"),
        pytest.param(
            "ALERTS_DATABASE_URL",
            f"mysql://u:{SECRET}@db.example.org/alerts",
            "unsupported scheme 'mysql'",
            id="database-scheme",
        ),
        pytest.param(
            "ALERTS_DATABASE_URL",
            f"{SECRET}@db.example.org",
            "expected sqlite",
            id="database-no-scheme",
        ),
        pytest.param(
            "ALERTS_DATABASE_URL", "sqlite://", "names no database file", id="sqlite-no-file"
        ),
        pytest.param(
            "ALERTS_DATABASE_URL", "SQLITE:///a.db", "unsupported scheme 'SQLITE'", id="scheme-case"
        ),
        pytest.param("ALERTS_HTTP_BIND", "everywhere", "host:port", id="bind-no-port"),
        pytest.param("ALERTS_HTTP_BIND", "0.0.0.0:99999", "port 0-65535", id="bind-port"),
        pytest.param("ALERTS_INSTANCE_NAME", "a\nb", "printable", id="instance-name"),
    ],
)
def test_bad_service_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        read_settings(Settings)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{name}: ")
    assert reason in info.value.problems[0]
    assert SECRET not in str(info.value)


def test_a_data_dir_that_is_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("not a directory")
    monkeypatch.setenv("ALERTS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="ALERTS_DATA_DIR: exists and is not a directory"):
        read_settings(Settings)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/alerts.db",
        "sqlite:////var/lib/alerts.db",
        "sqlite://:memory:",
        "postgresql://u@h/db",
        "postgres://h/db",
    ],
)
def test_database_urls_that_work(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", url)
    assert read_settings(Settings).database_url == url


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_LOG_LEVEL", "debug")
    assert read_settings(Settings).log_level == "DEBUG"


def test_a_command_line_override_is_named_by_its_option() -> None:
    with pytest.raises(ConfigError) as info:
        read_settings(
            Settings,
            {"database_url": f"mysql://u:{SECRET}@h/db"},
            labels={"database_url": "--database-url"},
        )
    assert info.value.problems == [
        "--database-url: unsupported scheme 'mysql': use sqlite:///PATH or postgresql://HOST/DATABASE"
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param(
            "ALERTS_DISCORD_GUILDS", "123,general", "ALERTS_DISCORD_GUILDS[1]: ", id="guilds"
        ),
        pytest.param(
            "ALERTS_DISCORD_WEBHOOKS",
            f"news=https://discord.com/api/webhooks/1/{SECRET}",
            "ALERTS_DISCORD_WEBHOOKS: not valid JSON",
            id="webhooks-not-json",
        ),
        pytest.param(
            "ALERTS_DISCORD_WEBHOOKS",
            f'["{SECRET}"]',
            "ALERTS_DISCORD_WEBHOOKS: ",
            id="webhooks-list",
        ),
        pytest.param(
            "ALERTS_DISCORD_MAX_RATELIMIT_TIMEOUT_S",
            "5",
            "ALERTS_DISCORD_MAX_RATELIMIT_TIMEOUT_S: ",
            id="bound",
        ),
    ],
)
def test_bad_sink_settings_are_named_once(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        read_settings(DiscordSettings)
    assert info.value.problems[0].startswith(expected), info.value.problems
    assert SECRET not in str(info.value)
    # discord and discord_webhook share their settings: reported once, under one kind.
    found = sink_settings_problems(registry())
    assert sum(len(p) for p in found.values()) == len(info.value.problems)
    assert set(found) <= {"discord", "discord_webhook"}


def test_every_sink_settings_class_reads_a_clean_environment() -> None:
    assert sink_settings_problems(registry()) == {}
