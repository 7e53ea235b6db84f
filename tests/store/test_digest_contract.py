"""Held deliveries and digests (``Store.release_held``): every backend, unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from alerts.digest import DIGEST_SOURCE, digest_event
from alerts.model import Delivery, DeliveryState, Event, EventKind, Subscription
from alerts.records import Hold
from alerts.schedule import Schedule
from alerts.store import PollCommit, RoutedEvent, Store

from .conftest import StoreFactory
from .test_contract import at, event, seed


async def commit_held(store: Store, keys: Sequence[str], *, hold_s: float = 3600) -> None:
    """Events routed to room-a held until ``at(hold_s)`` and to room-b sent at once."""
    [row] = await store.claim_due_sources(at(5), owner="w", lease_s=60, limit=1, only=["s1"])
    hold = Hold(at(hold_s), "daily@09:00")
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(10),
            next_due=at(9000),
            events=[
                RoutedEvent(event(k), ("room-a", "room-b"), holds={"room-a": hold}) for k in keys
            ],
        ),
        owner="w",
    )


async def claim_room_a(store: Store, seconds: float) -> list[Delivery]:
    claimed = await store.claim_deliveries(at(seconds), owner="w2", lease_s=60, limit=50)
    return [d for d in claimed if d.destination.id == "room-a"]


async def test_held_deliveries_are_not_claimed_and_become_one_digest(store: Store) -> None:
    await seed(store)
    await commit_held(store, ["a", "b", "c"])
    claimed = await store.claim_deliveries(at(20), owner="w", lease_s=60, limit=10)
    assert {d.destination.id for d in claimed} == {"room-b"}  # room-a's wait
    held = await store.list_deliveries(state=DeliveryState.HELD)
    assert sorted(r.event.key for r in held) == ["a", "b", "c"]
    assert {r.destination_id for r in held} == {"room-a"}
    stats = await store.outbox_stats()
    assert (stats.pending, stats.held) == (3, 3)  # room-b's pending, room-a's held

    assert await store.release_held(at(3599), digest=partial(digest_event, now=at(3599))) == []
    made = await store.release_held(at(3600), digest=partial(digest_event, now=at(3600)))
    assert len(made) == 1
    assert await store.release_held(at(3601), digest=partial(digest_event, now=at(3601))) == []

    [digest] = await claim_room_a(store, 3600)
    assert digest.id == made[0] and digest.destination.id == "room-a"
    assert digest.event.kind is EventKind.SUMMARY and digest.event.source_id == DIGEST_SOURCE
    assert digest.event.title == "Daily digest: 3 alerts"
    [group] = digest.event.fields["digest"]
    assert (group["topic"], group["source"], group["count"]) == ("news", "s1", 3)
    assert [i["title"] for i in group["items"]] == ["title a", "title b", "title c"]
    assert await store.list_deliveries(state=DeliveryState.HELD) == []
    digested = await store.list_deliveries(state=DeliveryState.DIGESTED)
    assert sorted(r.event.key for r in digested) == ["a", "b", "c"]


async def test_what_is_held_survives_closing_the_store(store_factory: StoreFactory) -> None:
    first = await store_factory()
    await seed(first)
    await commit_held(first, ["a", "b"])
    await first.close()
    again = await store_factory()
    assert await again.release_held(at(100), digest=partial(digest_event, now=at(100))) == []
    [made] = await again.release_held(at(4000), digest=partial(digest_event, now=at(4000)))
    [digest] = await claim_room_a(again, 4000)
    assert digest.id == made and digest.event.fields["count"] == 2


async def test_two_workers_releasing_at_once_make_one_digest(
    store_factory: StoreFactory,
) -> None:
    a, b = await store_factory(), await store_factory()
    await seed(a)
    await commit_held(a, [f"k{i}" for i in range(20)])
    results = await asyncio.gather(
        *(
            s.release_held(at(3600), digest=partial(digest_event, now=at(3600)))
            for s in (a, b, a, b)
        )
    )
    made = [i for r in results for i in r]
    assert len(made) == 1
    digests = await claim_room_a(a, 3600)
    assert [d.event.fields["count"] for d in digests] == [20]


async def test_a_digest_keeps_its_rooms_order(store: Store) -> None:
    """Deliveries routed after the digest was made wait behind it (it is older)."""
    await seed(store)
    await commit_held(store, ["a"], hold_s=0)
    [made] = await store.release_held(at(20), digest=partial(digest_event, now=at(20)))
    [row] = await store.claim_due_sources(at(9000), owner="w", lease_s=60, limit=1, only=["s1"])
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(9001),
            next_due=at(19000),
            events=[RoutedEvent(event("later"), ("room-a",))],
        ),
        owner="w",
    )
    claimed = await store.claim_deliveries(at(9002), owner="w", lease_s=60, limit=10)
    room_a = [d for d in claimed if d.destination.id == "room-a"]
    assert [d.id for d in room_a][:1] == [made]
    assert [d.event.key for d in room_a][1:] == ["later"]


def test_digest_event_groups_by_topic_and_source() -> None:
    held = [
        (Event("s1", EventKind.NEW, f"n{i}", f"news {i}", topics=("news",)), "hourly")
        for i in range(7)
    ] + [
        (Event("s2", EventKind.MILESTONE, "m", "50k", topics=("petition",)), "hourly"),
        (Event("s1", EventKind.UPDATED, "u", "changed", topics=()), "hourly"),
    ]
    made = digest_event("room", held, now=at(0))
    assert made.title == "Hourly digest: 9 alerts"
    groups = made.fields["digest"]
    assert [(g["topic"], g["source"], g["count"]) for g in groups] == [
        ("", "s1", 1),
        ("news", "s1", 7),
        ("petition", "s2", 1),
    ]
    assert len(groups[1]["items"]) == 5  # the first five titles; the count says 7
    assert made.topics == ("news", "petition")


async def test_a_subscriptions_settings_are_stored_and_replaced(store: Store) -> None:
    await seed(store)
    schedule = Schedule("daily@09:00", "22:00-07:00", "Europe/Paris", ("milestone",))
    added = await store.add_subscription(Subscription("room-a", topic="news", schedule=schedule))
    assert added.schedule == schedule
    await store.add_subscription(
        Subscription("room-a", topic="news", schedule=Schedule(digest="off"))
    )
    [stored] = await store.list_subscriptions("room-a")
    assert stored.schedule == Schedule(digest="off")
    await store.add_subscription(Subscription("room-a", topic="news"))
    [plain] = await store.list_subscriptions("room-a")
    assert plain.schedule is None


async def test_a_room_the_bot_left_gets_no_digest(store: Store) -> None:
    await seed(store)
    await commit_held(store, ["a", "b"])
    await store.remove_destination("room-a", reason="bot kicked")
    assert await store.release_held(at(4000), digest=partial(digest_event, now=at(4000))) == []
    dead = await store.list_deliveries(state=DeliveryState.DEAD)
    assert sorted((r.event.key, r.last_error) for r in dead) == [
        ("a", "bot kicked"),
        ("b", "bot kicked"),
    ]
