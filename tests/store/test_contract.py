"""The Store contract: every backend must pass these, unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.errors import LeaseLostError
from alerts.model import DeliveryState, Destination, Event, EventKind, Subscription, Validators
from alerts.store import ItemState, PollCommit, RoutedEvent, Store

from .conftest import StoreFactory

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(key: str, source: str = "s1") -> Event:
    return Event(
        source_id=source, kind=EventKind.NEW, key=key, title=f"title {key}", topics=("news",)
    )


async def seed(store: Store, *dests: str) -> None:
    await store.sync_sources({"s1": at(0), "s2": at(10), "s3": at(1000)})
    for d in dests or ("room-a", "room-b"):
        await store.upsert_destination(Destination(d, "console"))


async def commit_events(
    store: Store, routed: dict[str, list[str]], source: str = "s1"
) -> list[Event]:
    [row] = await store.claim_due_sources(at(2000), owner="w", lease_s=60, limit=1, only=[source])
    return await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(2000),
            next_due=at(9000),
            events=[RoutedEvent(event(k, source), tuple(ds)) for k, ds in routed.items()],
        ),
        owner="w",
    )


# --- sources and leases ------------------------------------------------------------


async def test_claims_only_due_sources_in_due_order(store: Store) -> None:
    await seed(store)
    rows = await store.claim_due_sources(at(20), owner="w1", lease_s=60, limit=10)
    assert [r.source_id for r in rows] == ["s1", "s2"]
    assert all(not r.baselined and r.failures == 0 for r in rows)


async def test_claim_source_leases_one_source_and_leaves_the_active_set_alone(
    store: Store,
) -> None:
    """``alerts poll`` on a live install: one source, whatever its due time; a source
    the store does not know is registered inactive; the active set stays as it was."""
    await seed(store)
    row = await store.claim_source("s3", at(20), owner="poll", lease_s=5000)  # due at 1000
    assert row is not None and row.source_id == "s3"
    assert await store.claim_source("s3", at(30), owner="other", lease_s=60) is None
    assert (
        await store.claim_due_sources(at(2000), owner="w", lease_s=60, limit=10, only=["s3"]) == []
    )
    fresh = await store.claim_source("new", at(20), owner="poll", lease_s=60)
    assert fresh is not None and not fresh.baselined
    assert [r.source_id for r in await store.list_sources()] == ["s1", "s2", "s3"]
    await store.commit_poll(PollCommit(source_id="new", now=at(21), next_due=at(25)), owner="poll")
    claimed = await store.claim_due_sources(at(3000), owner="w", lease_s=60, limit=10)
    assert "new" not in {r.source_id for r in claimed}  # inactive: the service never polls it
    await store.sync_sources({"s1": at(0), "new": at(0)})  # until its config has it
    assert (await store.get_source("new")).baselined  # type: ignore[union-attr]


async def test_a_lease_keeps_other_workers_out_until_it_expires(
    store_factory: StoreFactory,
) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    assert len(await a.claim_due_sources(at(20), owner="w1", lease_s=60, limit=10)) == 2
    assert await b.claim_due_sources(at(30), owner="w2", lease_s=60, limit=10) == []
    taken = await b.claim_due_sources(at(81), owner="w2", lease_s=60, limit=10)
    assert sorted(r.source_id for r in taken) == ["s1", "s2"]


async def test_claim_limit_and_only(store: Store) -> None:
    await seed(store)
    assert len(await store.claim_due_sources(at(20), owner="w", lease_s=60, limit=1)) == 1
    only = await store.claim_due_sources(at(5000), owner="w", lease_s=60, limit=10, only=["s3"])
    assert [r.source_id for r in only] == ["s3"]


async def test_sources_left_out_of_the_config_are_kept_but_never_claimed(store: Store) -> None:
    await seed(store)
    await store.sync_sources({"s2": at(0)})
    rows = await store.claim_due_sources(at(5000), owner="w", lease_s=60, limit=10)
    assert [r.source_id for r in rows] == ["s2"]
    await store.sync_sources({"s1": at(99999), "s2": at(0)})
    assert (await store.get_source("s1")) is not None
    kept = await store.get_source("s1")
    assert kept is not None and kept.next_due == at(0)  # known sources keep their schedule


async def test_commit_poll_writes_everything_and_releases_the_lease(store: Store) -> None:
    await seed(store)
    [row] = await store.claim_due_sources(at(1), owner="w", lease_s=60, limit=1)
    stored = await store.commit_poll(
        PollCommit(
            source_id="s1",
            now=at(2),
            next_due=at(900),
            validators=Validators(etag='"v1"', last_modified="Mon, 01 Jan 2026 00:00:00 GMT"),
            cursor={"page": 3},
            detector={"adapter": {"count": 10}},
            items={"k1": ItemState("fp1", {"title": "one"}), "k2": ItemState("fp2", {})},
            events=[RoutedEvent(event("k1"), ("room-a", "room-b", "room-a"))],
            saw_new=True,
        ),
        owner="w",
    )
    assert len(stored) == 1 and stored[0].id is not None and stored[0].key == "k1"
    src = await store.get_source("s1")
    assert src is not None
    assert src.validators.etag == '"v1"' and src.cursor == {"page": 3}
    assert src.detector == {"adapter": {"count": 10}} and src.baselined
    assert src.next_due == at(900) and src.last_success_at == at(2) and src.last_new_at == at(2)
    assert src.item_count == 2
    assert await store.load_items("s1", ["k1", "nope"]) == {
        "k1": ItemState("fp1", {"title": "one"})
    }
    assert set(await store.load_items("s1")) == {"k1", "k2"}
    stats = await store.outbox_stats()
    assert stats.pending == 2  # duplicate destination ids collapse to one delivery
    # the lease is released: due again later, claimable by anyone
    assert [
        r.source_id
        for r in await store.claim_due_sources(at(901), owner="x", lease_s=60, limit=5, only=["s1"])
    ] == ["s1"]


async def test_item_digests_are_stored_read_in_one_query_and_refreshed(store: Store) -> None:
    """What a poll reads only on demand rests on: each item's digest, written with it,
    read back for a list of keys without snapshots, and refreshed alone."""
    await seed(store)
    await store.claim_due_sources(at(1), owner="w", lease_s=60, limit=1, only=["s1"])
    items = {
        "k1": ItemState("fp1", {"title": "one"}, "d1"),
        "k2": ItemState("fp2", {"title": "two"}),  # read in full: no digest
    }
    await store.commit_poll(
        PollCommit(source_id="s1", now=at(2), next_due=at(10), items=items), owner="w"
    )
    assert await store.load_digests("s1", ["k1", "k2", "nope"]) == {"k1": "d1", "k2": None}
    assert await store.load_digests("s2", ["k1"]) == {}
    assert await store.load_items("s1", ["k1"]) == {"k1": items["k1"]}

    await store.claim_due_sources(at(11), owner="w", lease_s=60, limit=1, only=["s1"])
    await store.commit_poll(
        PollCommit(source_id="s1", now=at(12), next_due=at(20), digests={"k1": "d1b", "k2": "d2"}),
        owner="w",
    )
    assert await store.load_digests("s1", ["k1", "k2"]) == {"k1": "d1b", "k2": "d2"}
    # only the digest moved: fingerprint and snapshot are as written
    assert await store.load_items("s1") == {
        "k1": ItemState("fp1", {"title": "one"}, "d1b"),
        "k2": ItemState("fp2", {"title": "two"}, "d2"),
    }


async def test_commit_after_losing_the_lease_writes_nothing(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    await a.claim_due_sources(at(1), owner="slow", lease_s=10, limit=1)
    await b.claim_due_sources(at(20), owner="fast", lease_s=10, limit=1)
    with pytest.raises(LeaseLostError):
        await a.commit_poll(
            PollCommit(
                source_id="s1",
                now=at(21),
                next_due=at(900),
                items={"k": ItemState("fp", {})},
                events=[RoutedEvent(event("k"), ("room-a",))],
            ),
            owner="slow",
        )
    assert await a.load_items("s1") == {}
    assert (await a.outbox_stats()).pending == 0


async def test_failures_count_up_and_reset_on_success(store: Store) -> None:
    await seed(store)
    for n in range(1, 3):
        await store.claim_due_sources(at(5000), owner="w", lease_s=60, limit=1, only=["s1"])
        await store.commit_poll(
            PollCommit(source_id="s1", now=at(1), next_due=at(0), error=f"boom {n}"), owner="w"
        )
        src = await store.get_source("s1")
        assert src is not None and src.failures == n and src.last_error == f"boom {n}"
        assert not src.baselined
    await store.claim_due_sources(at(5000), owner="w", lease_s=60, limit=1, only=["s1"])
    await store.commit_poll(
        PollCommit(source_id="s1", now=at(3), next_due=at(99), cursor={"a": 1}), owner="w"
    )
    await store.claim_due_sources(at(5000), owner="w", lease_s=60, limit=1, only=["s1"])
    await store.commit_poll(PollCommit(source_id="s1", now=at(4), next_due=at(99)), owner="w")
    src = await store.get_source("s1")
    assert src is not None and src.failures == 0 and src.last_error is None
    assert src.cursor == {"a": 1}  # None keeps the stored cursor


async def test_release_source_gives_it_back(store: Store) -> None:
    await seed(store)
    await store.claim_due_sources(at(1), owner="w", lease_s=600, limit=1)
    await store.release_source("s1", owner="w")
    assert len(await store.claim_due_sources(at(2), owner="x", lease_s=60, limit=1)) == 1


# --- subscriptions -------------------------------------------------------------------


async def test_subscriptions_replace_list_remove_and_bump_the_version(store: Store) -> None:
    await seed(store)
    v0 = await store.subscriptions_version()
    first = await store.add_subscription(Subscription("room-a", topic="news", include=("ice",)))
    again = await store.add_subscription(
        Subscription(
            "room-a", topic="news", kinds=frozenset({EventKind.NEW}), min_amount=5.0, min_change=1e6
        )
    )
    await store.add_subscription(Subscription("room-a", topic="contracts"))
    await store.add_subscription(Subscription("room-b", source="s1"))
    assert first.id is not None and again.id == first.id
    assert await store.subscriptions_version() != v0
    subs = await store.list_subscriptions("room-a")
    assert [(s.topic, s.kinds, s.include, s.min_amount, s.min_change) for s in subs] == [
        ("news", frozenset({EventKind.NEW}), (), 5.0, 1e6),
        ("contracts", frozenset(), (), None, None),
    ]
    assert len(await store.list_subscriptions()) == 3
    assert await store.remove_subscriptions("room-a", topic="news") == 1
    assert await store.remove_subscriptions("room-a", topic="news") == 0
    assert await store.remove_subscriptions("room-a") == 1
    assert [s.source for s in await store.list_subscriptions()] == ["s1"]


async def test_removing_a_destination_drops_subscriptions_and_kills_pending(store: Store) -> None:
    await seed(store)
    await store.add_subscription(Subscription("room-a", topic="news"))
    await commit_events(store, {"k1": ["room-a", "room-b"]})
    assert await store.remove_destination("room-a", reason="bot kicked") == 1
    assert await store.list_subscriptions("room-a") == []
    dead = await store.list_deliveries(state=DeliveryState.DEAD)
    assert [(d.destination_id, d.last_error) for d in dead] == [("room-a", "bot kicked")]
    claimed = await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10)
    assert [d.destination.id for d in claimed] == ["room-b"]


# --- the outbox -----------------------------------------------------------------------


async def test_deliveries_come_in_order_with_event_destination_and_key(store: Store) -> None:
    await seed(store)
    await commit_events(store, {"k1": ["room-a"], "k2": ["room-a", "room-b"]})
    claimed = await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10)
    assert [(d.event.key, d.destination.id) for d in claimed] == [
        ("k1", "room-a"),
        ("k2", "room-a"),
        ("k2", "room-b"),
    ]
    keys = [d.idempotency_key for d in claimed]
    assert len(set(keys)) == 3 and all(len(k) <= 25 for k in keys)
    assert all(k.startswith(store.install_id[:8]) for k in keys)
    assert claimed[0].event.title == "title k1" and claimed[0].attempts == 0


async def test_per_destination_order_holds_across_workers(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    await commit_events(a, {"k1": ["room-a"], "k2": ["room-a"], "k3": ["room-b"]})
    first = await a.claim_deliveries(at(3000), owner="w1", lease_s=60, limit=1)
    assert [(d.event.key, d.destination.id) for d in first] == [("k1", "room-a")]
    second = await b.claim_deliveries(at(3001), owner="w2", lease_s=60, limit=10)
    assert [(d.event.key, d.destination.id) for d in second] == [("k3", "room-b")]
    await a.mark_sent(first[0].id, remote_id="m1", now=at(3002))
    third = await b.claim_deliveries(at(3003), owner="w2", lease_s=60, limit=10)
    assert [d.event.key for d in third] == ["k2"]


async def test_an_expired_delivery_lease_is_taken_over(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    await commit_events(a, {"k1": ["room-a"]})
    [d] = await a.claim_deliveries(at(3000), owner="dies", lease_s=30, limit=10)
    assert await b.claim_deliveries(at(3010), owner="w2", lease_s=30, limit=10) == []
    [again] = await b.claim_deliveries(at(3031), owner="w2", lease_s=30, limit=10)
    assert again.id == d.id and again.idempotency_key == d.idempotency_key


async def test_retry_blocks_the_destination_and_counts_attempts(store: Store) -> None:
    await seed(store)
    await commit_events(store, {"k1": ["room-a"], "k2": ["room-b"]})
    claimed = await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10)
    a = next(d for d in claimed if d.destination.id == "room-a")
    await store.mark_retry(a.id, error="HTTP 502", retry_at=at(3100), count_attempt=True)
    await store.release_deliveries([d.id for d in claimed if d.id != a.id])
    blocked = await store.claim_deliveries(at(3050), owner="w", lease_s=60, limit=10)
    assert [d.destination.id for d in blocked] == ["room-b"]
    await store.mark_sent(blocked[0].id, remote_id=None, now=at(3051))
    [retried] = await store.claim_deliveries(at(3100), owner="w", lease_s=60, limit=10)
    assert retried.id == a.id and retried.attempts == 1
    await store.mark_retry(a.id, error="429", retry_at=at(3200), count_attempt=False)
    [again] = await store.claim_deliveries(at(3200), owner="w", lease_s=60, limit=10)
    assert again.attempts == 1


async def test_sent_dead_requeue_and_stats(store: Store) -> None:
    await seed(store)
    await commit_events(store, {"k1": ["room-a"], "k2": ["room-b"]})
    one, two = await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10)
    await store.mark_sent(one.id, remote_id="$event", now=at(3001))
    await store.mark_dead(two.id, error="rejected: 400", now=at(3001))
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead, stats.oldest_pending_at) == (0, 1, None)
    [sent] = await store.list_deliveries(state=DeliveryState.SENT)
    assert sent.remote_id == "$event" and sent.sent_at == at(3001)
    assert await store.claim_deliveries(at(4000), owner="w", lease_s=60, limit=10) == []
    assert await store.requeue_dead() == 1
    [back] = await store.claim_deliveries(at(4000), owner="w", lease_s=60, limit=10)
    assert back.id == two.id and back.attempts == 0


async def test_parked_destinations_wait_until_unparked(store: Store) -> None:
    await seed(store)
    await commit_events(store, {"k1": ["room-a"]})
    await store.park_destination("room-a", reason="403 Missing Access", now=at(2500))
    assert await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10) == []
    row = await store.get_destination("room-a")
    assert row is not None and row.parked_reason == "403 Missing Access"
    assert (await store.outbox_stats()).parked_destinations == 1
    assert await store.unpark_destination("room-a")
    assert not await store.unpark_destination("room-a")
    assert len(await store.claim_deliveries(at(3000), owner="w", lease_s=60, limit=10)) == 1


# --- kv, leadership, durability -----------------------------------------------------------


async def test_kv(store: Store) -> None:
    assert await store.kv_get("matrix", "device_id") is None
    await store.kv_set("matrix", "device_id", "ABC")
    await store.kv_set("matrix", "device_id", "DEF")
    assert await store.kv_get("matrix", "device_id") == "DEF"
    assert await store.kv_get("discord", "device_id") is None


async def test_one_leader_at_a_time(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    assert await a.try_lead("chat", owner="r1", lease_s=30, now=at(0))
    assert not await b.try_lead("chat", owner="r2", lease_s=30, now=at(10))
    assert await a.try_lead("chat", owner="r1", lease_s=30, now=at(20))  # renew
    assert not await b.try_lead("chat", owner="r2", lease_s=30, now=at(45))
    assert await b.try_lead("chat", owner="r2", lease_s=30, now=at(51))  # r1 went silent
    await b.resign("chat", owner="r2")
    assert await a.try_lead("chat", owner="r1", lease_s=30, now=at(52))


async def test_state_and_install_id_survive_reopening(store_factory: StoreFactory) -> None:
    first = await store_factory()
    await seed(first)
    await commit_events(first, {"k1": ["room-a"]})
    second = await store_factory()
    assert second.install_id == first.install_id
    assert (await second.outbox_stats()).pending == 1


async def test_claims_of_a_dead_worker_can_be_released(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    await commit_events(a, {"k1": ["room-a"]})
    await a.claim_due_sources(at(5000), owner="host:1:dead", lease_s=600, limit=10)
    await a.claim_deliveries(at(5000), owner="host:1:dead", lease_s=600, limit=10)
    await a.try_lead("chat", owner="host:1:dead", lease_s=600, now=at(5000))
    await b.claim_due_sources(at(5000), owner="host:2:alive", lease_s=600, limit=10)
    assert await b.lease_owners() >= {"host:1:dead"}
    assert await b.release_owner("host:1:dead") >= 3
    assert "host:1:dead" not in await b.lease_owners()
    assert len(await b.claim_deliveries(at(5001), owner="host:2:alive", lease_s=60, limit=10)) == 1
    assert await b.try_lead("chat", owner="host:2:alive", lease_s=60, now=at(5001))


async def test_unchanged_polls_are_recorded_in_one_batch(store_factory: StoreFactory) -> None:
    from alerts.store import NotModified

    a, b = await store_factory(), await store_factory()
    await seed(a)
    await a.claim_due_sources(at(20), owner="w1", lease_s=10, limit=2)  # s1, s2
    await b.claim_due_sources(at(31), owner="w2", lease_s=10, limit=1, only=["s2"])  # w1 lost s2
    recorded = await a.commit_not_modified(
        [
            NotModified("s1", "w1", at(32), at(600), Validators(etag='"e1"')),
            NotModified("s2", "w1", at(32), at(600), Validators(etag='"stale"')),
        ]
    )
    assert recorded == 1
    s1, s2 = await a.get_source("s1"), await a.get_source("s2")
    assert s1 is not None
    assert s2 is not None
    assert (s1.validators.etag, s1.next_due, s1.last_success_at) == ('"e1"', at(600), at(32))
    assert s2.validators.etag is None  # the lost lease was not written
    assert [
        r.source_id
        for r in await b.claim_due_sources(at(601), owner="w3", lease_s=10, limit=5, only=["s1"])
    ] == ["s1"]


# --- chat accounts: one owner at a time, the session handed over --------------------


async def test_one_owner_of_an_account_at_a_time(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    first = await a.try_account("matrix:@bot:x", owner="r1", lease_s=30, now=at(0))
    assert first is not None and (first.owner, first.device_id, first.keys) == ("r1", None, None)
    assert await b.try_account("matrix:@bot:x", owner="r2", lease_s=30, now=at(10)) is None
    assert await b.try_account("discord:abc", owner="r2", lease_s=30, now=at(10)) is not None
    assert await a.save_account("matrix:@bot:x", owner="r1", now=at(11), device_id="DEV")
    assert await a.save_account("matrix:@bot:x", owner="r1", now=at(12), keys="k1")
    assert not await b.save_account("matrix:@bot:x", owner="r2", now=at(13), keys="evil")
    renewed = await a.try_account("matrix:@bot:x", owner="r1", lease_s=30, now=at(20))
    assert renewed is not None and renewed.until == at(50)
    assert await b.try_account("matrix:@bot:x", owner="r2", lease_s=30, now=at(45)) is None
    # r1 went silent: r2 takes over the same device and keys once the lease ran out
    taken = await b.try_account("matrix:@bot:x", owner="r2", lease_s=30, now=at(51))
    assert taken is not None and (taken.owner, taken.device_id, taken.keys) == ("r2", "DEV", "k1")
    assert not await a.save_account("matrix:@bot:x", owner="r1", now=at(52), keys="stale")
    await b.release_account("matrix:@bot:x", owner="r2")
    back = await a.try_account("matrix:@bot:x", owner="r1", lease_s=30, now=at(53))
    assert back is not None and back.keys == "k1"


async def test_a_dead_owner_s_account_is_released(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    assert await a.try_account("matrix:@bot:x", owner="host:1:dead", lease_s=600, now=at(0))
    assert "host:1:dead" in await b.lease_owners()
    assert await b.release_owner("host:1:dead") >= 1
    assert await b.try_account("matrix:@bot:x", owner="host:2:alive", lease_s=60, now=at(1))


async def test_claims_only_for_the_sinks_given_and_remember_the_first_try(store: Store) -> None:
    await seed(store)
    await store.upsert_destination(Destination("matrix-room", "matrix", "!r:x"))
    await commit_events(store, {"k1": ["matrix-room", "room-a"], "k2": ["matrix-room"]})
    claimed = await store.claim_deliveries(
        at(5000), owner="w", lease_s=10, limit=10, sinks=["console"]
    )
    assert [(d.destination.id, d.tried_at) for d in claimed] == [("room-a", None)]
    assert await store.claim_deliveries(at(5001), owner="w", lease_s=10, limit=10, sinks=[]) == []
    first = await store.claim_deliveries(
        at(5002), owner="w", lease_s=10, limit=10, sinks=["matrix"]
    )
    assert [d.tried_at for d in first] == [None, None]  # a first claim: nothing to look for
    await store.release_deliveries([d.id for d in first])
    again = await store.claim_deliveries(at(5003), owner="x", lease_s=10, limit=10)
    assert [d.tried_at for d in again] == [at(5002), at(5002)]
