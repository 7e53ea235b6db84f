"""Secrets stay secret end to end: a source URL with credentials and a token that
fails, a Discord webhook URL given as a destination target, a database URL with a
password. Each is checked where an operator would see it: the WARNING log, the
``alerts`` commands' output, the stored ``last_error``, the metrics."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from alerts import metrics
from alerts.model import utcnow
from alerts.store import PollCommit, open_store

from .support import FeedServer, feed_server, runtime_on, write_config
from .test_cli import run

PASSWORD, TOKEN = "hunter2-pw", "tok-8f14e45fceea167a"
WEBHOOK_TOKEN = "Wh-SuperSecret_token.abc"
WEBHOOK = f"https://discord.com/api/webhooks/123456789012345678/{WEBHOOK_TOKEN}"
SECRETS = (PASSWORD, TOKEN, WEBHOOK_TOKEN)


def alerts(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"ALERTS_HTTP_BIND": "", **env})


async def aalerts(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(alerts, *args, env=env)


def assert_clean(*texts: str | None) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in (text or ""), f"{secret!r} leaked in:\n{text}"


@pytest.fixture
async def failing() -> AsyncIterator[tuple[FeedServer, str]]:
    """A feed behind credentials and a token that answers 500."""
    async with feed_server() as server:
        server.feed("wire", "a")
        server.feeds["wire"].status = 500
        url = server.url("wire").replace("http://", f"http://reader:{PASSWORD}@")
        yield server, f"{url}?token={TOKEN}&format=rss"


def _env(tmp_path: Path, config: Path) -> dict[str, str]:
    return {
        "ALERTS_CONFIG_DIR": str(config),
        "ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
        "ALERTS_DATA_DIR": str(tmp_path / "data"),
    }


async def test_a_failing_source_url_keeps_its_secrets_everywhere(
    failing: tuple[FeedServer, str], tmp_path: Path
) -> None:
    server, url = failing
    shown = url.replace(PASSWORD, "***").replace(TOKEN, "***")
    env = _env(tmp_path, write_config(tmp_path, {"wire": url}))

    poll = await aalerts("poll", "wire", env=env)
    assert poll.returncode == 1
    assert f"wire: failed: HTTP 500 Internal Server Error from {shown}" in poll.stderr
    assert "WARNING alerts.scheduler: source wire failing (1 in a row)" in poll.stderr
    assert f"from {shown}" in poll.stderr.split("WARNING", 1)[1]  # the log line itself
    dry = await aalerts("--log-format", "json", "poll", "wire", "--dry-run", env=env)
    assert dry.returncode == 1
    assert f"alerts: HTTP 500 Internal Server Error from {shown}" in dry.stderr
    sources = await aalerts("sources", env=env)
    assert sources.returncode == 0
    assert "HTTP 500 Internal Server Error from http://reader:***@127.0.0.1" in sources.stdout
    assert_clean(poll.stdout, poll.stderr, dry.stdout, dry.stderr, sources.stdout)

    store = await open_store(env["ALERTS_DATABASE_URL"])
    try:
        row = await store.get_source("wire")
    finally:
        await store.close()
    assert row is not None
    assert row.last_error == f"HTTP 500 Internal Server Error from {shown}"
    assert server.hits["wire"] == 2  # the secrets were sent to the server, only there


async def test_the_warning_record_and_the_metrics_are_clean_at_the_source(
    failing: tuple[FeedServer, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = failing
    async with runtime_on(tmp_path, write_config(tmp_path, {"wire": url})) as runtime:
        with caplog.at_level(logging.WARNING, logger="alerts.scheduler"):
            report = await runtime.scheduler.poll_now("wire")
    assert not report.ok and "HTTP 500" in (report.error or "")
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "reader:***@" in record.getMessage()  # no logging filter in caplog's way
    assert_clean(record.getMessage(), report.error, generate_latest(metrics.REGISTRY).decode())


async def test_a_secret_stored_before_redaction_is_not_shown(tmp_path: Path) -> None:
    """Rows written by an older version keep what they kept; the CLI masks it."""
    config = write_config(tmp_path, {"wire": "https://feeds.example/rss"})
    env = _env(tmp_path, config)
    store = await open_store(env["ALERTS_DATABASE_URL"])
    try:
        await store.sync_sources({"wire": utcnow()})
        await store.claim_due_sources(utcnow(), owner="old-version", lease_s=60, limit=1)
        await store.commit_poll(
            PollCommit(
                source_id="wire",
                now=utcnow(),
                next_due=utcnow(),
                error=f"HTTP 500 from https://u:{PASSWORD}@feeds.example/?token={TOKEN}",
            ),
            owner="old-version",
        )
    finally:
        await store.close()
    sources = await aalerts("sources", env=env)
    assert sources.returncode == 0
    assert "HTTP 500 from https://u:***@feeds.example/?token=***" in sources.stdout
    assert_clean(sources.stdout)


def _destinations(tmp_path: Path, sink: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "alerts.toml").write_text(
        '[topics.news]\ndescription = "News"\n\n'
        f'[destinations.alerts-channel]\nsink = "{sink}"\ntarget = "{WEBHOOK}"\n'
    )
    return config


@pytest.mark.parametrize(
    ("sink", "command", "problem"),
    [
        pytest.param("discord", "check", "a webhook URL is not a channel id", id="discord-check"),
        pytest.param("discord", "run", "a webhook URL is not a channel id", id="discord-run"),
        pytest.param(
            "discord_webhook", "check", "destinations.alerts-channel.target", id="webhook-check"
        ),
        pytest.param(
            "discord_webhook", "run", "destinations.alerts-channel.target", id="webhook-run"
        ),
    ],
)
def test_a_webhook_url_as_target_is_not_echoed_at_start_up(
    tmp_path: Path, sink: str, command: str, problem: str
) -> None:
    env = _env(tmp_path, _destinations(tmp_path, sink))
    result = alerts(command, env=env)
    assert result.returncode == 2, result.stderr
    assert "destinations.alerts-channel.target: " in result.stderr
    assert problem in result.stderr
    assert_clean(result.stdout, result.stderr)
    if command == "run":  # whatever start-up stored before refusing it is shown masked
        listed = alerts("destinations", env=env)
        assert listed.returncode == 0
        assert_clean(listed.stdout, listed.stderr)


@pytest.mark.parametrize("command", ["run", "sources"])
def test_a_database_url_password_is_not_echoed(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, {})
    url = f"mysql://alerts:{PASSWORD}@db.example/alerts"
    result = alerts("--database-url", url, command, env=_env(tmp_path, config))
    assert result.returncode == 2
    assert "--database-url: unsupported scheme 'mysql'" in result.stderr
    assert_clean(result.stdout, result.stderr)
