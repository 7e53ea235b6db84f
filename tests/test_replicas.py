"""Three real ``alerts run`` processes share one PostgreSQL database; one is killed
with SIGKILL mid-run. Every event must still reach every destination exactly once,
in order per source, and no source may be polled twice for one due time (the only
second poll allowed is the redo of a poll the dead replica left unfinished, and only
after its lease ran out)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
import time
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import aiohttp.web
import asyncpg
import pytest

from alerts.model import Delivery, Destination, Event, EventKind, utcnow
from alerts.sinks import SinkContext
from alerts.sinks.console import JsonlSink
from alerts.store.postgres import open_postgres

from .pg_support import fresh_database
from .support import FeedServer, read_jsonl, serving, write_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
FEEDS = 12
ROUNDS = 5
KILL_ROUND = 2
LEASE_S = 4.0
DESTINATIONS = ("archive", "console")


class TimedFeedServer(FeedServer):
    """The feed farm, noting when each feed is fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, list[float]] = defaultdict(list)

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.times[request.match_info["name"]].append(time.monotonic())
        return await super().handle(request)


def farm() -> AbstractAsyncContextManager[TimedFeedServer]:
    return serving(TimedFeedServer())


def _config(tmp_path: Path, server: TimedFeedServer, archive: Path) -> Path:
    feeds = {f"f{n:02d}": server.feed(f"f{n:02d}", "b1", "b2", "b3") for n in range(FEEDS)}
    extra = (
        f'\n[destinations.archive]\nsink = "jsonl"\ntarget = "{archive}"\n\n'
        '[[routes]]\ndestination = "archive"\ntopics = ["news"]\n'
    )
    config = write_config(tmp_path, feeds, extra=extra, interval="10m")
    alerts_toml = config / "alerts.toml"
    alerts_toml.write_text(
        alerts_toml.read_text().replace(
            "[service]\n", f'[service]\npoll_lease = "{LEASE_S}s"\ndelivery_lease = "{LEASE_S}s"\n'
        )
    )
    return config


async def _start(n: int, config: Path, db_url: str, tmp_path: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        PYTHONPATH=str(REPO / "src"),
        ALERTS_CONFIG_DIR=str(config),
        ALERTS_DATABASE_URL=db_url,
        ALERTS_DATA_DIR=str(tmp_path / f"data-{n}"),
        ALERTS_HTTP_BIND="",
        ALERTS_INSTANCE_NAME=f"r{n}",
        ALERTS_LOG_LEVEL="INFO",
    )
    with (tmp_path / f"r{n}.log").open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
        )


async def _until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(240)
async def test_three_replicas_one_killed_deliver_everything_once(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    archive = tmp_path / "archive.jsonl"

    def logs() -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("r*.log")))

    async with fresh_database() as db_url, farm() as server:
        config = _config(tmp_path, server, archive)
        db = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        store = await open_postgres(db_url)  # register the sources, due only when forced
        await store.sync_sources({f"f{n:02d}": utcnow() + timedelta(hours=1) for n in range(FEEDS)})
        await store.close()
        procs = [await _start(n, config, db_url, tmp_path) for n in range(3)]
        forced: list[float] = []
        expected: dict[str, int] = {f"f{n:02d}": 0 for n in range(FEEDS)}
        orphans: set[str] = set()

        async def force_all() -> None:
            forced.append(time.monotonic())
            await db.execute("UPDATE sources SET next_due = now()")
            for name in expected:
                expected[name] += 1

        async def round_done() -> bool:
            if any(len(server.times[n]) < want for n, want in expected.items()):
                return False
            busy = await db.fetchval(
                "SELECT count(*) FROM sources WHERE next_due <= now() OR lease_owner IS NOT NULL"
            )
            return busy == 0

        try:
            for n in range(3):
                log = tmp_path / f"r{n}.log"
                await _until(
                    lambda log=log: log.exists() and "alerts running" in log.read_text(),
                    40,
                    f"replica r{n} to start\n{logs()}",
                )
            await force_all()  # baselines
            await _until(round_done, 40, f"the baseline\n{logs()}")
            victim = rng.randrange(3)
            for round_no in range(ROUNDS):
                for name in expected:
                    server.add(name, f"{round_no}a", f"{round_no}b")
                await force_all()
                if round_no == KILL_ROUND:  # once the victim holds work, mid-poll or mid-send
                    owner = f"r{victim}:%"
                    with contextlib.suppress(AssertionError):
                        await _until(
                            lambda owner=owner: db.fetchval(
                                "SELECT EXISTS (SELECT 1 FROM sources WHERE lease_owner LIKE $1)"
                                " OR EXISTS (SELECT 1 FROM deliveries WHERE lease_owner LIKE $1)",
                                owner,
                            ),
                            3,
                            "the victim to claim work",
                        )
                    await asyncio.sleep(rng.uniform(0.0, 0.05))
                    procs[victim].send_signal(signal.SIGKILL)
                    await procs[victim].wait()
                    orphans = {
                        r[0]
                        for r in await db.fetch(
                            "SELECT id FROM sources WHERE lease_owner LIKE $1", f"r{victim}:%"
                        )
                    }
                await _until(round_done, 40, f"round {round_no}\n{logs()}")
            for name in orphans:  # the dead replica's unfinished poll may be redone once
                redone = len(server.times[name]) - expected[name]
                assert redone in (0, 1), f"{name} fetched {redone} extra times"
                expected[name] += redone
            await _until(
                lambda: db.fetchval("SELECT count(*) = 0 FROM deliveries WHERE state = 'pending'"),
                60,
                f"the outbox to drain\n{logs()}",
            )
            events = await db.fetch("SELECT id, source_id, key FROM events ORDER BY id")
            deliveries = await db.fetch(
                "SELECT id, event_id, destination_id, state FROM deliveries ORDER BY id"
            )
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            codes = []
            for proc in procs:
                try:
                    codes.append(await asyncio.wait_for(proc.wait(), 30))
                except TimeoutError:
                    proc.kill()
                    codes.append(await proc.wait())
            await db.close()

    assert sorted(codes) == sorted([0, 0, -signal.SIGKILL]), logs()
    # every new item is one event; every event reached each destination exactly once
    assert len(events) == FEEDS * ROUNDS * 2
    assert len({(e["source_id"], e["key"]) for e in events}) == len(events)
    assert {d["state"] for d in deliveries} == {"sent"}
    assert len(deliveries) == len(events) * len(DESTINATIONS)
    pairs = {(d["event_id"], d["destination_id"]) for d in deliveries}
    assert pairs == {(e["id"], dest) for e in events for dest in DESTINATIONS}
    lines = read_jsonl(archive)
    assert len({ln["key"] for ln in lines}) == len(lines) == len(events), "duplicate lines"
    by_source: dict[str, list[int]] = defaultdict(list)
    for ln in lines:
        by_source[ln["event"]["source_id"]].append(int(ln["delivery_id"]))  # type: ignore[index, call-overload]
    assert all(ids == sorted(ids) for ids in by_source.values()), "order broken within a source"
    # no source polled twice for one due time; a redo only after the dead lease ran out
    for name, times in server.times.items():
        assert len(times) == expected[name], (name, times, forced, orphans)
        assert times[0] >= forced[0]
        for earlier, later in itertools.pairwise(times):
            forced_between = any(earlier < f <= later for f in forced)
            assert forced_between or (name in orphans and later - earlier >= LEASE_S - 0.5), (
                f"{name} polled twice within its interval: {later - earlier:.2f}s apart"
            )


async def test_jsonl_replicas_sharing_a_file_never_write_a_key_twice(tmp_path: Path) -> None:
    contexts = [
        SinkContext(settings=None, store=None, data_dir=str(tmp_path))  # type: ignore[arg-type]
        for _ in range(2)
    ]
    first, second = (JsonlSink(context=c) for c in contexts)
    dest = Destination("archive", "jsonl", "shared.jsonl")

    def delivery(n: int) -> Delivery:
        event = Event("s", EventKind.NEW, f"k{n}", f"t{n}")
        return Delivery(id=n, event=event, destination=dest, attempts=0, idempotency_key=f"key-{n}")

    await first.send(delivery(1))
    await second.send(delivery(2))  # second has now read the file
    await first.send(delivery(3))  # appended after second's last look
    await second.send(delivery(3))  # a retry of what the first replica already wrote
    await first.send(delivery(2))
    keys = [ln["key"] for ln in read_jsonl(tmp_path / "shared.jsonl")]
    assert keys == ["key-1", "key-2", "key-3"]


async def test_jsonl_sink_knows_its_own_lines_and_ends_a_torn_one(tmp_path: Path) -> None:
    """A sink that skips reading back what it just wrote still refuses a retry of it,
    and a line torn by another writer's crash is ended before the next one."""
    sink = JsonlSink(context=SinkContext(settings=None, store=None, data_dir=str(tmp_path)))  # type: ignore[arg-type]
    dest = Destination("archive", "jsonl", "own.jsonl")

    def delivery(n: int) -> Delivery:
        event = Event("s", EventKind.NEW, f"k{n}", f"t{n}")
        return Delivery(id=n, event=event, destination=dest, attempts=0, idempotency_key=f"key-{n}")

    await sink.send(delivery(1))
    await sink.send(delivery(1))  # a retry: already written by this very sink
    with open(tmp_path / "own.jsonl", "ab") as fh:
        fh.write(b'{"key": "torn')  # another writer killed mid-line
    await sink.send(delivery(2))
    await sink.send(delivery(2))
    await sink.send(delivery(1))
    keys = [ln["key"] for ln in read_jsonl(tmp_path / "own.jsonl")]
    assert keys == ["key-1", "key-2"]
    assert (tmp_path / "own.jsonl").read_bytes().count(b"\n") == 3  # torn fragment ended
