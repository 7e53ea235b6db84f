"""The Store contract for sources added from chat (issue 16), on every backend: a
feed, its room and the room's subscription are stored together or not at all, within
the room's quota; removing it parks the room's pending alerts of it as dead."""

from __future__ import annotations

from pathlib import Path

from alerts.model import DeliveryState, Destination, Subscription
from alerts.records import ChatSource
from alerts.store import PollCommit, RoutedEvent, Store
from alerts.store.sqlite import SqliteStore
from alerts.store.transfer import copy_store

from .test_contract import at, event

ROOM = Destination("matrix:!room:hs", "matrix", "!room:hs")


def feed(n: int, room: Destination = ROOM) -> tuple[ChatSource, Subscription]:
    source = ChatSource(f"chat-{n:012x}", room.id, f"https://example.org/{n}.xml", "@mod:hs", at(n))
    return source, Subscription(destination_id=room.id, source=source.id, created_by="@mod:hs")


async def add(store: Store, n: int, *, quota: int = 5, room: Destination = ROOM) -> bool:
    source, sub = feed(n, room)
    return await store.add_chat_source(source, destination=room, subscription=sub, quota=quota)


async def test_a_feed_is_stored_with_its_room_and_subscription(store: Store) -> None:
    before = await store.subscriptions_version()
    assert await add(store, 1)
    [stored] = await store.list_chat_sources(ROOM.id)
    assert stored == feed(1)[0]
    row = await store.get_destination(ROOM.id)
    assert row is not None and row.destination.sink == "matrix"
    [sub] = await store.list_subscriptions(ROOM.id)
    assert (sub.source, sub.topic, sub.created_by) == (stored.id, None, "@mod:hs")
    assert await store.subscriptions_version() > before


async def test_quota_and_duplicates_write_nothing(store: Store) -> None:
    assert await add(store, 1, quota=2)
    assert not await add(store, 1, quota=2)  # the same URL again
    assert await add(store, 2, quota=2)
    assert not await add(store, 3, quota=2)  # over quota
    assert [s.id for s in await store.list_chat_sources(ROOM.id)] == [
        feed(1)[0].id,
        feed(2)[0].id,
    ]
    assert len(await store.list_subscriptions(ROOM.id)) == 2
    other = Destination("discord:42", "discord", "42")
    assert await add(store, 3, quota=2, room=other)  # the quota is per room
    assert len(await store.list_chat_sources()) == 3


async def test_removal_drops_subscription_and_parks_pending_alerts(store: Store) -> None:
    source, _ = feed(1)
    assert await add(store, 1)
    await store.sync_sources({source.id: at(0)})
    [row] = await store.claim_due_sources(at(10), owner="w", lease_s=60, limit=1)
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(10),
            next_due=at(900),
            events=[RoutedEvent(event("a", source.id), (ROOM.id,))],
        ),
        owner="w",
    )
    removed = await store.remove_chat_source(source.id, reason="feed removed by @mod:hs")
    assert removed == source
    assert await store.list_chat_sources() == []
    assert await store.list_subscriptions(ROOM.id) == []
    [dead] = await store.list_deliveries(state=DeliveryState.DEAD)
    assert dead.last_error == "feed removed by @mod:hs"
    assert await store.list_deliveries(state=DeliveryState.PENDING) == []
    assert await store.remove_chat_source(source.id, reason="again") is None
    assert await store.load_items(source.id) == {}  # nothing of the feed was deleted twice


async def test_migrate_store_copies_chat_sources(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from.db'}"
    store = await SqliteStore.open(url)
    try:
        assert await add(store, 1)
    finally:
        await store.close()
    target = f"sqlite:///{tmp_path / 'to.db'}"
    copied = await copy_store(url, target)
    assert copied["chat_sources"] == 1
    store = await SqliteStore.open(target)
    try:
        assert await store.list_chat_sources() == [feed(1)[0]]
    finally:
        await store.close()
