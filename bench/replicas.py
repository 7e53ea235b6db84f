"""Polls per second with 1, 2 and 3 replicas of ``alerts run`` sharing PostgreSQL.

Each replica is a real process. The farm (one aiohttp server in this process) serves
``--sources`` feeds. A pass forces every source due at once and times until all are
polled and committed; the first pass is the baseline (not measured), the second
polls feeds that each gained one item (fetch, parse, detect, commit an event).

Two workloads:

* ``latency``: every response takes ``--delay-ms`` and each replica polls at most
  ``--concurrency`` sources at once — slow remote servers, the usual case.
* ``cpu``: instant responses and a high concurrency limit — what the machine's cores
  can do; replicas, the farm and PostgreSQL then compete for the same CPUs.

Run: ``python -m bench.replicas`` (PostgreSQL on 127.0.0.1:5432 with trust auth).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
from aiohttp import web
from tests.support import FeedServer, serving

from alerts.model import utcnow
from alerts.store.postgres import open_postgres
from bench.pg import scratch_database

REPO = Path(__file__).resolve().parents[1]


class SlowFarm(FeedServer):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await super().handle(request)


@asynccontextmanager
async def farm(delay_s: float, sources: int) -> AsyncIterator[SlowFarm]:
    server = SlowFarm(delay_s)
    for n in range(sources):
        server.feed(f"f{n:04d}", "b1", "b2", "b3")
    async with serving(server, backlog=1024):
        yield server


def write_config(root: Path, server: SlowFarm, concurrency: int) -> Path:
    config = root / "config"
    config.mkdir()
    (config / "alerts.toml").write_text(
        '[service]\ncontact = "bench@example.org"\njitter = 0.0\n'
        f"poll_concurrency = {concurrency}\n\n[http]\nper_host = 1000\n"
        "allow_private_network = true  # the farm is on loopback\n\n"
        '[topics.news]\ndescription = "News"\n\n'
        + "".join(
            f'[[sources]]\nid = "{name}"\nkind = "feed"\nurl = "{server.url(name)}"\n'
            'interval = "1h"\ntopics = ["news"]\n\n'
            for name in server.feeds
        )
    )
    return config


async def one_pass(db: asyncpg.Pool, sources: int) -> float:
    started = time.perf_counter()
    await db.execute("UPDATE sources SET next_due = now()")
    while True:
        left = await db.fetchval(
            "SELECT count(*) FROM sources WHERE next_due <= now() OR lease_owner IS NOT NULL"
        )
        if left == 0:
            return sources / (time.perf_counter() - started)
        await asyncio.sleep(0.01)


async def measure(replicas: int, *, sources: int, delay_s: float, concurrency: int) -> float:
    async with scratch_database() as url, farm(delay_s, sources) as server:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            config = write_config(root, server, concurrency)
            store = await open_postgres(url)
            await store.sync_sources({n: utcnow() + timedelta(hours=1) for n in server.feeds})
            await store.close()
            env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
            env.update(
                PYTHONPATH=str(REPO / "src"),
                ALERTS_CONFIG_DIR=str(config),
                ALERTS_DATABASE_URL=url,
                ALERTS_DATA_DIR=str(root / "data"),
                ALERTS_HTTP_BIND="",
                ALERTS_LOG_LEVEL="INFO",
            )
            logs = [root / f"r{n}.log" for n in range(replicas)]
            procs = []
            for log in logs:
                with log.open("wb") as out:
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
                        )
                    )
            db = await asyncpg.create_pool(url, min_size=1, max_size=1)
            try:
                for _ in range(600):
                    if all("alerts running" in log.read_text() for log in logs):
                        break
                    await asyncio.sleep(0.1)
                await one_pass(db, sources)  # baseline
                for name in server.feeds:
                    server.add(name, "new")
                return await one_pass(db, sources)
            finally:
                await db.close()
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    await proc.wait()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sources", type=int, default=600)
    parser.add_argument("--delay-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    workloads = {
        "latency": dict(delay_s=args.delay_ms / 1000, concurrency=args.concurrency),
        "cpu": dict(delay_s=0.0, concurrency=100),
    }
    print(f"{os.cpu_count()} CPUs; {args.sources} sources; PostgreSQL on 127.0.0.1")
    for workload, params in workloads.items():
        rates = {}
        for replicas in (1, 2, 3):
            rates[replicas] = await measure(replicas, sources=args.sources, **params)  # type: ignore[arg-type]
        summary = ", ".join(
            f"{n} replica{'s' if n > 1 else ''}: {rate:.0f} polls/s ({rate / rates[1]:.2f}x)"
            for n, rate in rates.items()
        )
        print(f"{workload:8s} {params}: {summary}")


if __name__ == "__main__":
    asyncio.run(main())
