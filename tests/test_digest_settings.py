"""Digest and quiet-hours settings where people write them: the chat grammar
(``!alerts subscribe … digest=…``), ``[destinations.NAME]`` in TOML and ``alerts
check``; and the router holding what they say to hold."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.chat.commands import CommandContext, CommandError, CommandService, parse
from alerts.config import load_config
from alerts.errors import ConfigError
from alerts.model import Event, EventKind, Subscription
from alerts.records import Hold
from alerts.route import Router
from alerts.schedule import Schedule
from alerts.store.sqlite import SqliteStore

from .support import write_config

REPO = Path(__file__).resolve().parents[1]
NIGHT = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET
PARIS_QUIET = 'quiet = "22:00-07:00"\ntz = "Europe/Paris"\nurgent = ["milestone"]\n'


def test_subscribe_reads_the_settings() -> None:
    command = parse("subscribe news digest=Hourly quiet=22:00-7:00 tz=America/New_York")
    assert command.schedule == Schedule("hourly", "22:00-07:00", "America/New_York", None)
    assert parse("subscribe news").schedule is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subscribe news tz=Paris", "unknown time zone 'Paris'"),
        ("subscribe news digest=daily", "digest must be hourly, daily@HH:MM or off"),
        ("subscribe news quiet=23:00-23:00", "start and end at the same time"),
        ("subscribe news urgent=everything", "urgent: unknown event kind 'everything'"),
        ("subscribe news timezone=UTC", "unknown option(s) timezone"),
    ],
)
def test_a_bad_setting_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(CommandError) as info:
        parse(text)
    assert message in str(info.value)


async def test_list_shows_the_settings_stored(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        service = CommandService(store=store, topics={"news": "News"})
        ctx = CommandContext("matrix", "!room:example.org", "@mod:example.org", may_manage=True)
        done = await service.handle_text("subscribe news digest=daily@08:30 tz=Asia/Tokyo", ctx)
        assert done.text == "Subscribed: news digest=daily@08:30 tz=Asia/Tokyo"
        bad = await service.handle_text("subscribe news tz=Asia/Tokio", ctx)
        assert not bad.ok and "unknown time zone 'Asia/Tokio'" in bad.text
        listed = await service.handle_text("list", ctx)
        assert listed.text == "Subscriptions:\n- news digest=daily@08:30 tz=Asia/Tokyo"
    finally:
        await store.close()


def test_destination_settings_are_read_and_route_holds(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, {"wire": "https://example.org/feed"}, destination=PARIS_QUIET)
    )
    assert config.schedules == {
        "console": Schedule(None, "22:00-07:00", "Europe/Paris", ("milestone",))
    }
    assert config.destinations["console"].options == {}  # not taken for sink options
    router = Router(config.routes)
    router.set_schedules(config.schedules)
    new = Event("wire", EventKind.NEW, "a", "A", topics=("news",))
    held = router.routed(new, now=NIGHT)
    assert held.holds == {"console": Hold(datetime(2026, 3, 29, 5, tzinfo=UTC), "quiet")}
    urgent = Event("wire", EventKind.MILESTONE, "m", "M", topics=("news",))
    assert router.routed(urgent, now=NIGHT).holds == {}
    # a subscription's own setting wins over its room's
    router.set_dynamic([Subscription("console", topic="news", schedule=Schedule(quiet="off"))], 1)
    router.set_static([])
    assert router.routed(new, now=NIGHT).holds == {}


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ('tz = "Europe/Pariss"\n', "destinations.console.tz: unknown time zone"),
        ('quiet = "22-7"\n', "destinations.console.quiet: quiet: '22' is not"),
        ('digest = "daily@9"\n', "destinations.console.digest: digest: '9' is not"),
        ('urgent = ["soon"]\n', "destinations.console.urgent: urgent: unknown"),
    ],
)
def test_bad_destination_settings_are_config_errors(
    tmp_path: Path, keys: str, problem: str
) -> None:
    config = write_config(tmp_path, {"wire": "https://example.org/feed"}, destination=keys)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert any(problem in p and "alerts.toml" in p for p in info.value.problems), info.value


@pytest.mark.slow
def test_alerts_check_names_the_file_and_key_of_a_bad_time_zone(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"wire": "https://example.org/feed"}, destination='tz = "Mars/Base"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env["PYTHONPATH"] = str(REPO / "src")
    result = subprocess.run(
        [sys.executable, "-m", "alerts", "--config", str(config), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "Mars/Base" in ln]
    assert "alerts.toml: destinations.console.tz:" in line
    assert "unknown time zone 'Mars/Base'; use an IANA name" in line
