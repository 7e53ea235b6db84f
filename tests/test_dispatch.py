"""The dispatcher's outcomes, one per kind of sink failure, on the real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.dispatch import Dispatcher, RetryPolicy
from alerts.errors import (
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
)
from alerts.model import DeliveryState, Destination, Event, EventKind, utcnow
from alerts.store import PollCommit, RoutedEvent
from alerts.store.sqlite import SqliteStore

from .support import RecordingSink


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(f"sqlite:///{tmp_path / 'd.db'}")
    await s.sync_sources({"src": utcnow()})
    for room in ("a", "b"):
        await s.upsert_destination(Destination(room, "console"))
    yield s
    await s.close()


async def enqueue(store: SqliteStore, *routes: tuple[str, tuple[str, ...]]) -> None:
    [row] = await store.claim_due_sources(utcnow(), owner="t", lease_s=60, limit=1, only=["src"])
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=utcnow(),
            next_due=utcnow() - timedelta(seconds=1),
            events=[
                RoutedEvent(Event(source_id="src", kind=EventKind.NEW, key=k, title=k), dests)
                for k, dests in routes
            ],
        ),
        owner="t",
    )


def dispatcher(store: SqliteStore, sink: RecordingSink, **kw: object) -> Dispatcher:
    return Dispatcher(store=store, sinks={"console": sink}, owner="t", **kw)  # type: ignore[arg-type]


async def test_rate_limited_room_waits_while_others_move(store: SqliteStore) -> None:
    sink = RecordingSink()
    sink.fail["a"] = [RateLimitedError("429", retry_after_s=0.3)]
    await enqueue(store, ("e1", ("a", "b")), ("e2", ("a", "b")))
    d = dispatcher(store, sink)
    await d.drain()
    assert sink.titles("b") == ["e1", "e2"]
    assert sink.titles("a") == []
    row = await store.get_destination("a")
    assert row is not None
    assert row.blocked_until is not None
    await _wait_until(row.blocked_until)
    await d.drain()
    assert sink.titles("a") == ["e1", "e2"]  # in order, nothing lost
    pending = await store.list_deliveries(state=DeliveryState.SENT)
    assert {p.attempts for p in pending} == {1}  # a rate limit is not a failed attempt


async def test_retryable_errors_back_off_then_die_after_max_attempts(store: SqliteStore) -> None:
    sink = RecordingSink()
    sink.fail["a"] = [RetryableSendError("502 Bad Gateway")] * 3
    await enqueue(store, ("e1", ("a",)))
    d = dispatcher(store, sink, policy=RetryPolicy(max_attempts=3, base_s=0.05, cap_s=0.1))
    for _ in range(3):
        await d.drain()
        row = await store.get_destination("a")
        assert row is not None
        if row.blocked_until:
            await _wait_until(row.blocked_until)
    [dead] = await store.list_deliveries(state=DeliveryState.DEAD)
    assert dead.attempts == 3
    assert "502" in (dead.last_error or "")
    assert sink.sent == []
    assert await store.requeue_dead() == 1
    await d.drain()
    assert sink.titles("a") == ["e1"]


async def test_an_outage_of_the_platform_is_waited_out_and_not_counted(
    store: SqliteStore,
) -> None:
    """Five failed tries with max_attempts=3: a platform outage never kills a delivery."""
    sink = RecordingSink()
    sink.fail["a"] = [PlatformUnavailable("cannot reach the homeserver")] * 5
    await enqueue(store, ("e1", ("a", "b")), ("e2", ("a",)))
    policy = RetryPolicy(max_attempts=3, base_s=0.05, outage_cap_s=0.1)
    d = dispatcher(store, sink, policy=policy)
    for _ in range(5):
        await d.drain()
        row = await store.get_destination("a")
        assert row is not None
        assert row.blocked_until is not None  # waits; the other room is not held up
        assert (row.blocked_until - utcnow()).total_seconds() <= 0.1 * 1.2
        await _wait_until(row.blocked_until)
    await d.drain()
    assert sink.titles("a") == ["e1", "e2"]  # in order, nothing lost
    assert sink.titles("b") == ["e1"]
    assert await store.list_deliveries(state=DeliveryState.DEAD) == []
    sent = await store.list_deliveries(state=DeliveryState.SENT)
    assert {s.attempts for s in sent} == {1}  # the outage was not counted


async def test_unavailable_destination_is_parked_and_keeps_its_deliveries(
    store: SqliteStore,
) -> None:
    sink = RecordingSink()
    sink.fail["a"] = [DestinationUnavailable("403 Missing Access")]
    await enqueue(store, ("e1", ("a", "b")), ("e2", ("a",)))
    d = dispatcher(store, sink)
    await d.drain()
    row = await store.get_destination("a")
    assert row is not None
    assert row.parked_reason == "403 Missing Access"
    assert (await store.outbox_stats()).pending == 2
    assert sink.titles("b") == ["e1"]
    await store.unpark_destination("a")
    await d.drain()
    assert sink.titles("a") == ["e1", "e2"]


async def test_rejected_delivery_is_dead_and_the_next_one_goes(store: SqliteStore) -> None:
    sink = RecordingSink()
    sink.fail["a"] = [RejectedError("400 Invalid Form Body")]
    await enqueue(store, ("e1", ("a",)), ("e2", ("a",)))
    await dispatcher(store, sink).drain()
    assert sink.titles("a") == ["e2"]
    [dead] = await store.list_deliveries(state=DeliveryState.DEAD)
    assert dead.event.title == "e1"


async def test_a_sink_that_crashes_is_retried_not_fatal(store: SqliteStore) -> None:
    sink = RecordingSink()
    sink.fail["a"] = [ValueError("bug in a plugin")]
    await enqueue(store, ("e1", ("a",)))
    d = dispatcher(store, sink, policy=RetryPolicy(base_s=0.05))
    await d.drain()
    row = await store.get_destination("a")
    assert row is not None
    assert row.blocked_until is not None
    await _wait_until(row.blocked_until)
    await d.drain()
    assert sink.titles("a") == ["e1"]


async def test_a_destination_whose_sink_is_missing_is_left_to_a_replica_with_it(
    store: SqliteStore,
) -> None:
    """A replica without Matrix credentials never claims a Matrix delivery: it neither
    holds nor blocks the room; a replica that can send takes it at once."""
    await store.upsert_destination(Destination("m", "matrix", "!room:example.org"))
    await enqueue(store, ("e1", ("m",)), ("e2", ("a",)))
    sink = RecordingSink()
    await dispatcher(store, sink).drain()
    assert sink.titles("a") == ["e2"]
    [pending] = await store.list_deliveries(state=DeliveryState.PENDING)
    assert (pending.attempts, pending.last_error) == (0, None)
    row = await store.get_destination("m")
    assert row is not None and row.blocked_until is None
    matrix = RecordingSink()
    await Dispatcher(store=store, sinks={"matrix": matrix}, owner="u").drain()  # type: ignore[dict-item]
    assert matrix.titles("m") == ["e1"]


async def test_a_sink_whose_account_is_not_owned_claims_nothing(store: SqliteStore) -> None:
    await enqueue(store, ("e1", ("a",)))
    sink = RecordingSink()
    d = dispatcher(store, sink)
    d.may_send = lambda kind: kind != "console"  # its account's lease is elsewhere
    await d.drain()
    assert sink.titles("a") == []
    d.may_send = lambda kind: True
    await d.drain()
    assert sink.titles("a") == ["e1"]


async def _wait_until(when: object) -> None:
    import asyncio
    from datetime import datetime

    assert isinstance(when, datetime)
    await asyncio.sleep(max(0.0, (when - utcnow()).total_seconds()) + 0.01)
