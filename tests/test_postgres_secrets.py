"""Secrets never reach logs or endpoints: a real ``alerts run`` with tokens and a
database password in its environment, at DEBUG level, text and JSON logs, plus the
failure paths that are most tempted to print a URL. With a Discord token set, the
Discord sink tries to log in and fails (a fake token, no network here): its error
path is logged and searched too."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from alerts.model import utcnow
from alerts.store.postgres import open_postgres

from .pg_support import fresh_database
from .support import FeedServer, feed_server, write_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "ALERTS_DISCORD_TOKEN": "discord-tok-5eb1c2d9",
    "ALERTS_MATRIX_PASSWORD": "matrix-pw-77a0f3",
    "ALERTS_MATRIX_TOKEN": "syt_matrix_4c1f0e",
    "ALERTS_API_TOKEN": "api-tok-0d9e8f",
}
DB_PASSWORD = "db-pw-9f3e2a1b"


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{DB_PASSWORD}@{host}"


def _env(config: Path, tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        SECRETS,
        PYTHONPATH=str(REPO / "src"),
        ALERTS_CONFIG_DIR=str(config),
        ALERTS_DATA_DIR=str(tmp_path / "data"),
        ALERTS_DATABASE_URL=db_url,
        ALERTS_LOG_LEVEL="DEBUG",
        **extra,
    )
    return env


def _assert_clean(text: str) -> None:
    for value in [*SECRETS.values(), DB_PASSWORD]:
        assert value not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_real_run_never_logs_secrets(
    log_format: str, tmp_path: Path, server: FeedServer
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b")})
    port = _free_port()
    async with fresh_database() as url:
        env = _env(
            config,
            tmp_path,
            _with_password(url),
            ALERTS_LOG_FORMAT=log_format,
            ALERTS_HTTP_BIND=f"127.0.0.1:{port}",
        )
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
            )
        served = []
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    if "alerts running" in log.read_text():
                        break
                    await asyncio.sleep(0.1)
                for path in ("/healthz", "/readyz", "/metrics"):
                    async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                        # /readyz is 503 here: the Discord sink cannot log in with a fake token
                        assert resp.status in ((200, 503) if path == "/readyz" else (200,)), path
                        served.append(await resp.text())
            store = await open_postgres(url)
            try:
                await store.set_next_due("wire", utcnow())
            finally:
                await store.close()
            for _ in range(100):
                if "baseline of" in log.read_text():
                    break
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
    output = log.read_text()
    assert code == 0, output
    assert "alerts running" in output and "baseline of 2 items" in output  # it did work
    _assert_clean(output)
    for body in served:
        _assert_clean(body)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["db", "status"], id="db-status"),
        pytest.param(["deliveries"], id="deliveries"),
        pytest.param(["run"], id="run"),
    ],
)
async def test_an_unreachable_database_is_reported_without_its_password(
    args: list[str], tmp_path: Path, server: FeedServer
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    url = f"postgresql://alerts:{DB_PASSWORD}@127.0.0.1:{_free_port()}/alerts"
    env = _env(config, tmp_path, url, ALERTS_HTTP_BIND="")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alerts",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "PostgreSQL at postgresql://alerts:***@127.0.0.1" in text
    _assert_clean(text)
