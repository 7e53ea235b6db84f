"""The ``alerts`` command: exit codes (0 ok, 2 config/usage, 1 runtime) and output."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .support import FeedServer, feed_server, write_config

REPO = Path(__file__).resolve().parents[1]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    return subprocess.run(
        [sys.executable, "-m", "alerts", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def arun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, env=env)


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


def test_check_passes_on_the_shipped_config() -> None:
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK:")


def test_check_fails_with_exit_2_and_names_the_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"x": "http://127.0.0.1:9/feed"}, interval="5s")
    result = run("--config", str(config), "check")
    assert result.returncode == 2
    assert "feeds.toml: sources[0].interval: must be at least 30 s" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


@pytest.mark.parametrize(
    "command", ["run", "check", "poll", "sources", "deliveries", "destinations", "adapters"]
)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: alerts" in result.stdout


def test_bad_environment_is_a_config_error() -> None:
    result = run("check", env={"ALERTS_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert "ALERTS_LOG_FORMAT" in result.stderr


def test_adapters_prints_documentation() -> None:
    result = run("adapters")
    assert result.returncode == 0
    assert "## feed" in result.stdout
    assert "## console" in result.stdout


async def test_poll_dry_run_then_real_poll_then_tables(server: FeedServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b")})
    env = {
        "ALERTS_CONFIG_DIR": str(config),
        "ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ALERTS_DATA_DIR": str(tmp_path / "data"),
    }
    dry = await arun("poll", "wire", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "2 items" in dry.stdout
    assert "baseline" in dry.stdout
    real = await arun("poll", "wire", env=env)
    assert real.returncode == 0, real.stderr
    assert "baseline recorded" in real.stdout
    server.add("wire", "c")
    dry = await arun("poll", "wire", "--dry-run", env=env)
    assert "1 event(s) would be raised" in dry.stdout
    assert "Item c" in dry.stdout
    again = await arun("poll", "wire", "--dry-run", env=env)
    assert "Item c" in again.stdout  # a dry run changed nothing
    real = await arun("poll", "wire", env=env)
    assert "1 event(s) queued" in real.stdout
    sources = await arun("sources", env=env)
    assert sources.returncode == 0
    assert "wire" in sources.stdout
    assert "LAST SUCCESS" in sources.stdout
    deliveries = await arun("deliveries", env=env)
    assert deliveries.returncode == 0
    assert "pending 1" in deliveries.stdout
    assert "Item c" in deliveries.stdout


async def test_poll_of_a_failing_source_exits_1(server: FeedServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"gone": server.url("gone")})
    env = {
        "ALERTS_CONFIG_DIR": str(config),
        "ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ALERTS_DATA_DIR": str(tmp_path / "data"),
    }
    result = await arun("poll", "gone", env=env)
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
    unknown = await arun("poll", "nope", env=env)
    assert unknown.returncode == 2
    assert "unknown source 'nope'" in unknown.stderr
