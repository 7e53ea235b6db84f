"""How the scheduler claims due sources: in batches when busy, yet no due source
waits long for a slot. Real SQLite store; the adapters are the test's own (one that
answers "not modified" at once, one that waits until released)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from alerts.config import SourceSpec
from alerts.model import Observation, utcnow
from alerts.route import Router
from alerts.scheduler import Scheduler, Timing
from alerts.sources import SourceState
from alerts.store.sqlite import SqliteStore


class Adapter:
    kind: ClassVar[str] = "test"

    class Options(BaseModel):
        pass

    def __init__(
        self, source_id: str, started: list[str], gate: asyncio.Event | None, delay_s: float = 0
    ) -> None:
        self.source_id = source_id
        self.started = started
        self.gate = gate
        self.delay_s = delay_s

    async def fetch(self, state: SourceState) -> Observation:
        self.started.append(self.source_id)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay_s)
        return Observation(not_modified=True)


def spec(source_id: str) -> SourceSpec:
    return SourceSpec(
        id=source_id,
        kind="test",
        url=f"http://127.0.0.1:9/{source_id}",
        interval_s=3600.0,
        topics=("news",),
        options=Adapter.Options(),
        fingerprint=("title",),
        backfill=0,
        max_events=10,
        name="",
        origin="test",
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield store
    await store.close()


async def scheduler_for(
    store: SqliteStore, adapters: dict[str, Adapter], concurrency: int
) -> tuple[Scheduler, list[int]]:
    """A registered scheduler whose store counts claim calls (and rows claimed)."""
    scheduler = Scheduler(
        store=store,
        specs={sid: spec(sid) for sid in adapters},
        adapters=adapters,  # type: ignore[arg-type]
        router=Router(),
        owner="test",
        concurrency=concurrency,
        timing=Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05),
    )
    await scheduler.register()
    claims: list[int] = []
    claim: Callable[..., Awaitable[Any]] = store.claim_due_sources

    async def counted(*args: Any, **kwargs: Any) -> Any:
        rows = await claim(*args, **kwargs)
        if rows:
            claims.append(len(rows))
        return rows

    store.claim_due_sources = counted  # type: ignore[method-assign]
    return scheduler, claims


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (plain data, set by the adapters)
            await asyncio.sleep(0.01)


async def test_a_busy_scheduler_claims_many_sources_at_a_time(store: SqliteStore) -> None:
    started: list[str] = []
    # Polls end one by one (staggered by a millisecond), as they do against real servers.
    adapters = {
        f"s{i:03d}": Adapter(f"s{i:03d}", started, None, delay_s=0.001 * (i % 20))
        for i in range(200)
    }
    scheduler, claims = await scheduler_for(store, adapters, concurrency=20)
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: len(started) == 200)
    finally:
        scheduler.stop()
        await task
    assert sorted(started) == sorted(adapters)  # each polled exactly once
    assert sum(claims) == 200
    # One claim per finished poll would be ~180 claims of one source; a claim waits
    # (up to claim_window_s) for half of the 20 slots to come free.
    assert len(claims) <= 200 // 5, claims
    assert sum(1 for n in claims[1:-1] if n < 5) <= 3, claims  # the last takes what is left


async def test_a_due_source_gets_a_slot_even_while_the_others_are_stuck(
    store: SqliteStore,
) -> None:
    """7 of 8 slots are held by polls of slow servers; the one free slot is less than
    a claim batch, but a source that falls due is still polled within ``idle_s``
    (the claim window is far shorter)."""
    started: list[str] = []
    gate = asyncio.Event()
    adapters = {f"slow{i}": Adapter(f"slow{i}", started, gate) for i in range(7)}
    adapters["late"] = Adapter("late", started, None)
    scheduler, _claims = await scheduler_for(store, adapters, concurrency=8)
    await store.set_next_due("late", utcnow() + timedelta(days=1))
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: len(started) == 7)
        assert "late" not in started
        await store.set_next_due("late", utcnow())
        await until(lambda: "late" in started, timeout_s=5.0)
        assert not gate.is_set()  # the slow polls are still holding their slots
    finally:
        gate.set()
        scheduler.stop()
        await task


@pytest.mark.parametrize(
    ("interval_s", "failures", "retry_after_s", "expected_s"),
    [
        pytest.param(3600.0, 0, None, 60.0, id="hourly-source-first-retry-in-a-minute"),
        pytest.param(3600.0, 1, None, 120.0, id="then-doubling"),
        pytest.param(3600.0, 6, None, 3840.0, id="past-the-interval"),
        pytest.param(3600.0, 12, None, 6 * 3600.0, id="capped-at-max-backoff"),
        pytest.param(30.0, 0, None, 30.0, id="short-interval-no-sooner-than-itself"),
        pytest.param(30.0, 2, None, 120.0, id="short-interval-doubling"),
        pytest.param(3600.0, 0, 900.0, 900.0, id="retry-after-is-never-cut-short"),
        pytest.param(3600.0, 3, 30.0, 480.0, id="backoff-longer-than-retry-after"),
    ],
)
def test_a_failing_source_backs_off(
    interval_s: float, failures: int, retry_after_s: float | None, expected_s: float
) -> None:
    now = utcnow()
    due = Timing().next_failure(now, interval_s, failures, retry_after_s)
    assert (due - now).total_seconds() == pytest.approx(expected_s)
