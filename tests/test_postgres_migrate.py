"""``alerts db status|migrate`` on both backends, and ``alerts migrate-store`` moving a
live SQLite installation to PostgreSQL without losing state or alerting twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.config import Settings, load_config
from alerts.model import DeliveryState, Subscription, utcnow
from alerts.runtime import Runtime
from alerts.scheduler import Timing
from alerts.store import Store, open_store
from alerts.store.codec import idempotency_key
from alerts.store.migrations import bundled

from .pg_support import fresh_database
from .support import FeedServer, RecordingSink, feed_server, write_config

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[1]


def alerts(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run(
        [sys.executable, "-m", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def aalerts(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(alerts, *args)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_db_status_and_migrate(backend: str, tmp_path: Path, pg_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else pg_url
    shipped = bundled(backend)  # every migration of this version of alerts
    before = await aalerts("--database-url", url, "db", "status")
    assert before.returncode == 0, before.stderr
    assert f"schema version 0; {len(shipped)} pending" in before.stdout
    done = await aalerts("--database-url", url, "db", "migrate")
    assert done.returncode == 0, done.stderr
    names = "".join(f"\n  {m.name}" for m in shipped)
    assert f"applied {len(shipped)} migration(s){names}" in done.stdout
    assert f"schema version {shipped[-1].version}; 0 pending" in done.stdout
    again = await aalerts("--database-url", url, "db", "migrate")
    assert "applied 0 migration(s)" in again.stdout


async def _installation(tmp_path: Path, server: FeedServer) -> tuple[Path, str]:
    """A SQLite installation with history: baseline, alerts sent, dead, pending."""
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b", "c")})
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings = Settings(config_dir=config, database_url=url, data_dir=tmp_path / "data")
    rt = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": RecordingSink()},
        timing=Timing(jitter=0.0, first_spread_s=3600.0),
    )
    try:
        assert (await rt.scheduler.poll_now("wire")).ok  # baseline
        server.add("wire", "d", "e", "f")
        report = await rt.scheduler.poll_now("wire")
        assert len(report.events) == 3
        store = rt.store
        await store.add_subscription(Subscription("console", topic="news", include=("ice",)))
        await store.kv_set("matrix", "device_id", "DEVICE1")
        one, two, _ = await store.claim_deliveries(utcnow(), owner="old", lease_s=600, limit=10)
        await store.mark_sent(one.id, remote_id="msg-1", now=utcnow())
        await store.mark_dead(two.id, error="rejected: 400", now=utcnow())
        # a lease left behind by the old process
        await store.set_next_due("wire", utcnow())
        assert await store.claim_due_sources(utcnow(), owner="old", lease_s=3600, limit=1)
    finally:
        await rt.close()
    return config, url


async def _snapshot(store: Store) -> dict[str, object]:
    deliveries = await store.list_deliveries(limit=1000)
    source = await store.get_source("wire")
    assert source is not None
    return {
        "install_id": store.install_id,
        "deliveries": [
            (d.id, d.state, d.attempts, d.destination_id, d.event, d.remote_id, d.last_error)
            for d in deliveries
        ],
        "times": [(d.created_at, d.sent_at) for d in deliveries],
        "items": await store.load_items("wire"),
        "source": (source.validators, source.cursor, source.detector, source.baselined),
        "subscriptions": await store.list_subscriptions(),
        "version": await store.subscriptions_version(),
        "kv": await store.kv_get("matrix", "device_id"),
        "destinations": await store.list_destinations(),
    }


def _close_times(a: dict[str, object], b: dict[str, object]) -> None:
    for (ca, sa), (cb, sb) in zip(a.pop("times"), b.pop("times"), strict=True):  # type: ignore[call-overload]
        assert abs((ca - cb).total_seconds()) < 1e-3
        assert (sa is None) == (sb is None)
        assert sa is None or abs((sa - sb).total_seconds()) < 1e-3


async def test_migrate_store_moves_everything_and_alerts_nothing_twice(
    tmp_path: Path, server: FeedServer, pg_url: str
) -> None:
    config, sqlite_url = await _installation(tmp_path, server)
    old = await open_store(sqlite_url)
    try:
        before = await _snapshot(old)
    finally:
        await old.close()

    moved = await aalerts("migrate-store", "--from", sqlite_url, "--to", pg_url)
    assert moved.returncode == 0, moved.stderr
    assert "3 deliveries" in moved.stdout and "3 events" in moved.stdout

    new = await open_store(pg_url)
    try:
        after = await _snapshot(new)
        _close_times(before, after)
        assert after == before
        # the old process's lease is gone: the new store can claim the source now
        assert await new.claim_due_sources(
            utcnow() + timedelta(days=1), owner="new", lease_s=60, limit=1
        )
        await new.release_source("wire", owner="new")
        [pending] = await new.claim_deliveries(utcnow(), owner="new", lease_s=60, limit=10)
        assert pending.idempotency_key == idempotency_key(str(before["install_id"]), pending.id)
        await new.release_deliveries([pending.id])
    finally:
        await new.close()

    # Polling on the new store: only the item added since is an alert.
    server.add("wire", "g")
    polled = await aalerts("--config", str(config), "--database-url", pg_url, "poll", "wire")
    assert polled.returncode == 0, polled.stderr
    assert "1 event(s) queued" in polled.stdout
    new = await open_store(pg_url)
    try:
        pending_titles = [
            d.event.title for d in await new.list_deliveries(state=DeliveryState.PENDING)
        ]
        assert sorted(pending_titles) == ["Item f", "Item g"]
    finally:
        await new.close()

    refused = await aalerts("migrate-store", "--from", sqlite_url, "--to", pg_url)
    assert refused.returncode == 1 and "must be a new, empty store" in refused.stderr


async def test_migrate_store_back_to_sqlite(
    tmp_path: Path, server: FeedServer, pg_url: str
) -> None:
    _config, sqlite_url = await _installation(tmp_path, server)
    assert (await aalerts("migrate-store", "--from", sqlite_url, "--to", pg_url)).returncode == 0
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    back = await aalerts("migrate-store", "--from", pg_url, "--to", back_url)
    assert back.returncode == 0, back.stderr
    first, second = await open_store(sqlite_url), await open_store(back_url)
    try:
        a, b = await _snapshot(first), await _snapshot(second)
        _close_times(a, b)
        assert a == b
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        pytest.param(
            "sqlite:///{tmp}/nope.db",
            "sqlite:///{tmp}/t.db",
            "no SQLite database",
            id="missing-source",
        ),
        pytest.param("sqlite:///{tmp}/same.db", "sqlite:///{tmp}/same.db", "same store", id="same"),
    ],
)
def test_migrate_store_refusals(tmp_path: Path, source: str, target: str, message: str) -> None:
    result = alerts(
        "migrate-store", "--from", source.format(tmp=tmp_path), "--to", target.format(tmp=tmp_path)
    )
    assert result.returncode == 1 and message in result.stderr
