"""How the scheduler claims due sources: in batches when busy, yet no due source
waits long for a slot. Real SQLite store; the adapters are the test's own (one that
answers "not modified" at once, one that waits until released)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from alerts.config import SourceSpec
from alerts.errors import StoreUnavailable
from alerts.model import Item, Observation, utcnow
from alerts.route import Router
from alerts.scheduler import Scheduler, Timing, when_text
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


YEAR_S = 365 * 86400.0
SIX_H = 6 * 3600.0


@pytest.mark.parametrize(
    ("interval_s", "failures", "retry_after_s", "low_s", "high_s"),
    [
        pytest.param(3600.0, 0, None, 48.0, 72.0, id="hourly-source-first-retry-in-a-minute"),
        pytest.param(3600.0, 1, None, 96.0, 144.0, id="then-doubling"),
        pytest.param(3600.0, 6, None, 3072.0, 4608.0, id="past-the-interval"),
        pytest.param(3600.0, 12, None, 0.8 * SIX_H, SIX_H, id="capped-at-max-backoff"),
        pytest.param(30.0, 0, None, 24.0, 36.0, id="short-interval-about-itself"),
        pytest.param(30.0, 2, None, 96.0, 144.0, id="short-interval-doubling"),
        pytest.param(3600.0, 0, 900.0, 900.0, 900.0, id="retry-after-is-never-cut-short"),
        pytest.param(3600.0, 3, 30.0, 384.0, 576.0, id="backoff-longer-than-retry-after"),
        pytest.param(3600.0, 0, YEAR_S, SIX_H, SIX_H, id="retry-after-of-a-year-capped"),
        pytest.param(3600.0, 4, YEAR_S, SIX_H, SIX_H, id="capped-retry-after-while-failing"),
    ],
)
def test_a_failing_source_backs_off_with_jitter(
    interval_s: float, failures: int, retry_after_s: float | None, low_s: float, high_s: float
) -> None:
    """Each wait falls in its range (± 20 % jitter, never past max_backoff, never
    before a server's Retry-After up to max_backoff), and where there is a range the
    waits are spread over it, so sources failing together do not retry together."""
    now = utcnow()
    waits = [
        (Timing().next_failure(now, interval_s, failures, retry_after_s) - now).total_seconds()
        for _ in range(400)
    ]
    assert low_s <= min(waits) and max(waits) <= high_s, (min(waits), max(waits))
    if high_s > low_s:  # spread: the waits cover most of the range, not one point
        assert max(waits) - min(waits) > 0.6 * (high_s - low_s), (min(waits), max(waits))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(datetime(2026, 11, 1, 18, 30, tzinfo=UTC), "18:30:00", id="today"),
        pytest.param(
            datetime(2026, 11, 2, 0, 5, tzinfo=UTC), "2026-11-02 00:05:00 UTC", id="tomorrow"
        ),
        pytest.param(
            datetime(2027, 11, 1, 12, 0, tzinfo=UTC), "2027-11-01 12:00:00 UTC", id="next-year"
        ),
    ],
)
def test_the_next_try_shows_the_date_when_it_is_not_today(when: datetime, expected: str) -> None:
    assert when_text(when, datetime(2026, 11, 1, 12, 0, tzinfo=UTC)) == expected


class CrashingDerive(Adapter):
    """Fetches fine; its ``derive`` hook (run inside the detector) has a bug."""

    async def fetch(self, state: SourceState) -> Observation:
        return Observation(items=(Item(key="k", title="t"),))

    def derive(self, **_kw: Any) -> Any:
        raise ZeroDivisionError("a bug")


async def test_a_bug_after_fetching_fails_that_source_with_backoff_not_in_a_loop(
    store: SqliteStore,
) -> None:
    adapters: dict[str, Adapter] = {"buggy": CrashingDerive("buggy", [], None)}
    scheduler, _claims = await scheduler_for(store, adapters, concurrency=2)
    report = await scheduler.poll_now("buggy")
    assert not report.ok and report.error == "internal error: ZeroDivisionError: a bug"
    row = await store.get_source("buggy")
    assert row is not None and row.failures == 1 and row.last_error == report.error
    assert row.next_due > utcnow() + timedelta(seconds=30)  # backed off, not due again at once
    assert scheduler.faults.current() == {}  # a source's bug, not a fault of the service


async def test_unchanged_polls_not_recorded_in_an_outage_are_recorded_after_it(
    store: SqliteStore,
) -> None:
    adapters = {f"s{i}": Adapter(f"s{i}", [], None) for i in range(3)}
    scheduler, _claims = await scheduler_for(store, adapters, concurrency=4)
    real = store.commit_not_modified
    outage = [StoreUnavailable("database or disk is full")]

    async def flaky(polls: Any) -> int:
        if outage:
            raise outage.pop()
        return await real(polls)

    store.commit_not_modified = flaky  # type: ignore[method-assign]
    for sid in adapters:
        assert (await scheduler.poll_now(sid)).not_modified
    # s0's flush failed; it went out with s1's, once the store answered again.
    rows = {r.source_id: r for r in await store.list_sources()}
    assert all(r.last_success_at is not None and r.failures == 0 for r in rows.values())
    assert scheduler.faults.current() == {}
