"""kill -9 at any moment, then a restart, loses no alert and shows none twice.

A real ``alerts run`` process polls a real feed server and writes alerts to a
JSON-lines destination; the test keeps adding items, forces polls, and SIGKILLs
the process at random moments (mid-poll, mid-commit, mid-send), restarting it each
time. At the end every item added after the baseline is in the file exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from alerts.model import utcnow
from alerts.store.sqlite import SqliteStore

from .support import feed_server, read_jsonl, write_config

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_CONFIG_DIR=str(config),
        ALERTS_DATABASE_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
        ALERTS_DATA_DIR=str(tmp_path / "data"),
        ALERTS_HTTP_BIND="",
        ALERTS_LOG_LEVEL="WARNING",
    )
    return env


async def _start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
        )


async def _force_poll(db_url: str, source: str) -> None:
    store = await SqliteStore.open(db_url)
    try:
        await store.set_next_due(source, utcnow())
    finally:
        await store.close()


async def _wait_for(predicate: object, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.timeout(240)
async def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261129)
    archive = tmp_path / "data" / "alerts.jsonl"
    async with feed_server() as server:
        url = server.feed("wire", *[f"base{i}" for i in range(5)])
        extra = (
            '\n[destinations.archive]\nsink = "jsonl"\ntarget = "alerts.jsonl"\n\n'
            '[[routes]]\ndestination = "archive"\ntopics = ["news"]\n'
        )
        config = write_config(tmp_path, {"wire": url}, extra=extra)
        feeds = config / "sources.d" / "feeds.toml"
        feeds.write_text(feeds.read_text() + "max_events = 1000\n")
        env = _env(tmp_path, config)
        db_url = env["ALERTS_DATABASE_URL"]
        log = tmp_path / "alerts.log"
        expected: list[str] = []
        proc = await _start(env, log)
        try:
            # Baseline first, so that only later items are alerts.
            assert await _wait_for(lambda: (tmp_path / "alerts.db").exists(), 20)
            await asyncio.sleep(1.0)
            await _force_poll(db_url, "wire")
            assert await _wait_for(lambda: server.hits["wire"] >= 1, 20), log.read_text()
            await asyncio.sleep(0.5)
            for round_no in range(8):
                new = [f"r{round_no}-{i}" for i in range(15)]
                server.add("wire", *new)
                expected += new
                await _force_poll(db_url, "wire")
                await asyncio.sleep(rng.uniform(0.0, 0.8))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                proc = await _start(env, log)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            await _force_poll(db_url, "wire")
            delivered = lambda: {ln["event"]["title"] for ln in read_jsonl(archive)}  # noqa: E731
            ok = await _wait_for(lambda: {f"Item {k}" for k in expected} <= delivered(), 60)
            assert ok, (
                f"missing: {sorted({f'Item {k}' for k in expected} - delivered())}\n{log.read_text()[-3000:]}"
            )
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    lines = read_jsonl(archive)
    titles = [ln["event"]["title"] for ln in lines]  # type: ignore[index]
    assert sorted(titles) == sorted(f"Item {k}" for k in expected)  # each exactly once
    assert len({ln["key"] for ln in lines}) == len(lines)
