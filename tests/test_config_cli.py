"""The command line's habits: global options before or after the command and in
every ``--help``; ``adapters`` readable and quiet when piped into ``head``; ``check``
counts ``[[routes]]`` tables; ``sources`` shows a whole last error, reason first; a
config ``check`` accepts, ``run`` runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.cli import COMMANDS

from .support import feed_server, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(extra)
    return env


def alerts(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alerts", *args],
        cwd=cwd,
        env=environ(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--config", "{dir}", "check"), id="before"),
        pytest.param(("check", "--config", "{dir}"), id="after"),
        pytest.param(("--config", "elsewhere", "check", "--config", "{dir}"), id="after-wins"),
    ],
)
def test_global_options_work_before_and_after_the_command(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = write_config(tmp_path, {"a": "https://example.org/feed"}, interval="5s")
    result = alerts(*(a.format(dir=config) for a in args))
    assert result.returncode == 2, result.stderr
    assert "feeds.toml: sources[0].interval: must be at least 30 s" in result.stderr


def test_a_global_option_after_the_command_keeps_the_one_before(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"a": "https://example.org/feed"})
    result = alerts("--config", str(config), "check", "--log-level", "debug")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_lists_the_global_options(command: str) -> None:
    result = alerts(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--config", "--database-url", "--log-format", "--log-level"):
        assert option in result.stdout, f"alerts {command} --help: {option} missing"


def test_a_bad_global_option_value_is_named_by_the_option() -> None:
    result = alerts("check", "--database-url", "mysql://u:hunter2@h/db")
    assert result.returncode == 2
    assert "--database-url: unsupported scheme 'mysql'" in result.stderr
    assert "hunter2" not in result.stderr


def test_adapters_says_required_and_shows_defaults() -> None:
    result = alerts("adapters")
    assert result.returncode == 0, result.stderr
    assert "PydanticUndefined" not in result.stdout
    assert "actor (required)" in result.stdout
    assert "milestones (default [])" in result.stdout
    assert "ALERTS_DISCORD_TOKEN (optional)" in result.stdout


@pytest.mark.parametrize("command", ["adapters", "check"])
def test_output_piped_into_head_ends_quietly(command: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "alerts", command],
        cwd=REPO,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line is written
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


def test_check_counts_route_tables() -> None:
    result = alerts("check")
    assert result.returncode == 0, result.stderr
    assert ", 1 routes " in result.stdout  # config/alerts.toml: one [[routes]] with four topics


async def test_sources_shows_the_whole_error_reason_first(tmp_path: Path) -> None:
    async with feed_server() as server:
        long_name = "a-feed-whose-address-is-long-enough-to-push-the-reason-out-of-sight" * 2
        config = write_config(tmp_path, {"gone": server.url(long_name)})
        env = {
            "ALERTS_CONFIG_DIR": str(config),
            "ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
            "ALERTS_DATA_DIR": str(tmp_path / "data"),
        }
        poll = await asyncio.to_thread(alerts, "poll", "gone", **env)
        assert poll.returncode == 1
        table = await asyncio.to_thread(alerts, "sources", **env)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("gone"))
    assert f"HTTP 404 Not Found from {server.url(long_name)}" in row


async def test_a_config_check_accepts_is_run(tmp_path: Path) -> None:
    """A BOM and CRLF line ends: ``check`` accepts them, and ``run`` starts on them."""
    config = write_config(tmp_path, {"a": "https://example.org/feed"})
    main = config / "alerts.toml"
    main.write_bytes(b"\xef\xbb\xbf" + main.read_text().replace("\n", "\r\n").encode())
    check = await asyncio.to_thread(alerts, "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    env = environ(
        ALERTS_CONFIG_DIR=str(config),
        ALERTS_DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        ALERTS_DATA_DIR=str(tmp_path / "data"),
        ALERTS_HTTP_BIND="",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
        )
    try:
        assert await _logged(log, "alerts running"), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _logged(path: Path, text: str, timeout_s: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if text in path.read_text():
            return True
        await asyncio.sleep(0.1)
    return False
