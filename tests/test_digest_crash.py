"""kill -9 while alerts are held for a digest, and while the digest is being made and
sent: nothing held is lost and the digest is written once.

A real ``alerts run`` polls a real feed server for a JSON-lines destination with
``digest = "daily@HH:MM"`` (the minute that just passed, so the next digest is a day
away). Items arrive over several SIGKILLs; every alert must then be held. The test
moves the held alerts' time to now (the day passing), and SIGKILLs the process again
at random moments while it makes and sends the digest. At the end the file has one
digest counting every item.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .support import feed_server, read_jsonl, write_config
from .test_crash import _env, _force_poll, _start, _wait_for

pytestmark = pytest.mark.slow


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return -1
    finally:
        conn.close()


def _day_passes(db: Path) -> None:
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute(
            "UPDATE deliveries SET hold_until = ? WHERE state = 'held'", (time.time() - 1,)
        )
    finally:
        conn.close()


@pytest.mark.timeout(240)
async def test_sigkill_while_held_and_while_digesting_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    archive = tmp_path / "data" / "alerts.jsonl"
    db = tmp_path / "alerts.db"
    past_minute = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    async with feed_server() as server:
        url = server.feed("wire", *[f"base{i}" for i in range(3)])
        extra = (
            f'\n[destinations.archive]\nsink = "jsonl"\ntarget = "alerts.jsonl"\n'
            f'digest = "daily@{past_minute}"\n\n'
            '[[routes]]\ndestination = "archive"\ntopics = ["news"]\n'
        )
        config = write_config(tmp_path, {"wire": url}, extra=extra)
        env = _env(tmp_path, config)
        db_url, log = env["ALERTS_DATABASE_URL"], tmp_path / "alerts.log"
        expected: list[str] = []
        proc = await _start(env, log)
        try:
            assert await _wait_for(lambda: db.exists(), 20)
            await asyncio.sleep(1.0)
            await _force_poll(db_url, "wire")
            assert await _wait_for(lambda: server.hits["wire"] >= 1, 20), log.read_text()
            await asyncio.sleep(0.5)
            for round_no in range(4):  # items arrive; the process dies at random moments
                new = [f"r{round_no}-{i}" for i in range(5)]
                server.add("wire", *new)
                expected += new
                await _force_poll(db_url, "wire")
                await asyncio.sleep(rng.uniform(0.0, 0.8))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                proc = await _start(env, log)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            await _force_poll(db_url, "wire")
            held_sql = "SELECT count(*) FROM deliveries WHERE state = 'held'"
            all_held = await _wait_for(lambda: _count(db, held_sql) == len(expected), 60)
            assert all_held, f"{_count(db, held_sql)} held\n{log.read_text()[-3000:]}"
            assert read_jsonl(archive) == []  # nothing sent before the digest time

            _day_passes(db)
            for _ in range(3):  # a restart makes the digest at once: die while it does
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                proc = await _start(env, log)
                await asyncio.sleep(rng.uniform(0.0, 1.5))
            assert await _wait_for(lambda: read_jsonl(archive) != [], 60), log.read_text()[-3000:]
            await asyncio.sleep(1.0)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    [digest] = read_jsonl(archive)  # one digest, written once
    event = digest["event"]
    assert event["kind"] == "summary"
    assert event["title"] == f"Daily digest: {len(expected)} alerts"
    assert event["fields"]["count"] == len(expected)
    [group] = event["fields"]["digest"]
    assert group["count"] == len(expected)
    assert _count(db, "SELECT count(*) FROM deliveries WHERE state = 'held'") == 0
    digested = "SELECT count(*) FROM deliveries WHERE state = 'digested'"
    assert _count(db, digested) == len(expected)
    assert _count(db, "SELECT count(DISTINCT digest_id) FROM deliveries") == 1
