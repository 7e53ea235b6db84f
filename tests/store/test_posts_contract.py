"""The Store contract for messages kept alive in rooms (issue 15), on every backend:
the view routed with each delivery, and the posts that later events edit."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from alerts.model import DeliveryState, Subscription, UpdateStyle, View
from alerts.records import Post, PostKind
from alerts.store import PollCommit, RoutedEvent, Store
from alerts.store.sqlite import SqliteStore
from alerts.store.transfer import copy_store

from .test_contract import at, event, seed


async def deliver_one(store: Store, key: str, source: str = "s1", dest: str = "room-a") -> int:
    """Commit one event for ``dest`` and claim its delivery; returns the delivery id."""
    [row] = await store.claim_due_sources(at(2000), owner="w", lease_s=60, limit=1, only=[source])
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(2000),
            next_due=at(0),  # due again: the next call polls it again
            events=[RoutedEvent(event(key, source), (dest,))],
        ),
        owner="w",
    )
    [delivery] = await store.claim_deliveries(at(2001), owner="d", lease_s=60, limit=10)
    return delivery.id


def story(delivery_id: int, *, source: str = "s1", key: str = "a", room: str = "room-a") -> Post:
    return Post(
        destination_id=room,
        kind=PostKind.ITEM,
        source_id=source,
        item_key=key,
        remote_id=f"msg-{delivery_id}",
        room="channel-1",
        target="",
        delivery_id=delivery_id,
        detected_at=at(2000),
        state={"event": {"title": key}, "also": []},
    )


async def test_each_delivery_carries_the_view_it_was_routed_with(store: Store) -> None:
    await seed(store)
    [row] = await store.claim_due_sources(at(2000), owner="w", lease_s=60, limit=1, only=["s1"])
    reply = View(UpdateStyle.REPLY, 0.0)
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(2000),
            next_due=at(9000),
            events=[RoutedEvent(event("a"), ("room-a", "room-b"), {"room-a": reply})],
        ),
        owner="w",
    )
    claimed = await store.claim_deliveries(at(2001), owner="d", lease_s=60, limit=10)
    views = {d.destination.id: d.view for d in claimed}
    assert views == {"room-a": reply, "room-b": View()}  # a room not named: the default


async def test_a_subscription_keeps_its_updates_choice(store: Store) -> None:
    await seed(store)
    await store.add_subscription(
        Subscription(destination_id="room-a", topic="news", updates=UpdateStyle.NEW)
    )
    await store.add_subscription(Subscription(destination_id="room-b", topic="news"))
    subs = {s.destination_id: s.updates for s in await store.list_subscriptions()}
    assert subs == {"room-a": UpdateStyle.NEW, "room-b": None}


async def test_a_post_is_recorded_with_its_delivery_and_found_by_item(store: Store) -> None:
    await seed(store)
    delivery_id = await deliver_one(store, "a")
    post_id = await store.record_post(
        delivery_id, story(delivery_id), now=at(2002), items=[("s1", "a")]
    )
    [row] = await store.list_deliveries(state=DeliveryState.SENT)
    assert (row.id, row.remote_id) == (delivery_id, f"msg-{delivery_id}")
    found = await store.find_post("room-a", "s1", "a")
    assert found is not None and found.id == post_id
    assert (found.remote_id, found.room, found.state) == (
        f"msg-{delivery_id}",
        "channel-1",
        {"event": {"title": "a"}, "also": []},
    )
    assert await store.find_post("room-b", "s1", "a") is None  # another room: none
    assert await store.find_post("room-a", "s2", "a") is None  # another source's key: none


async def test_recording_the_same_delivery_twice_makes_one_post(store: Store) -> None:
    """A write retried after the store dropped the connection (the first may have
    committed) finds its post again instead of making a second one."""
    await seed(store)
    delivery_id = await deliver_one(store, "a")
    first = await store.record_post(
        delivery_id, story(delivery_id), now=at(2002), items=[("s1", "a")]
    )
    again = await store.record_post(
        delivery_id, story(delivery_id), now=at(2003), items=[("s1", "a")]
    )
    assert first == again
    assert len(await store.recent_posts("room-a", since=at(0))) == 1


async def test_a_merged_report_and_an_edit_point_at_the_same_post(store: Store) -> None:
    await seed(store)
    first = await deliver_one(store, "a")
    post_id = await store.record_post(first, story(first), now=at(2002), items=[("s1", "a")])
    second = await deliver_one(store, "b", source="s2")
    post = await store.find_post("room-a", "s1", "a")
    assert post is not None
    merged = dataclasses.replace(
        post, state={"also": [{"source": "s2"}]}, edits=1, edited_at=at(2003)
    )
    assert await store.record_post(second, merged, now=at(2003), items=[("s2", "b")]) == post_id
    via_other = await store.find_post("room-a", "s2", "b")
    assert via_other is not None and via_other.id == post_id
    assert (via_other.edits, via_other.state, via_other.edited_at) == (
        1,
        {"also": [{"source": "s2"}]},
        at(2003),
    )
    sent = {d.id: d.remote_id for d in await store.list_deliveries(state=DeliveryState.SENT)}
    assert sent == {first: f"msg-{first}", second: f"msg-{first}"}  # both show that message


async def test_a_live_counter_until_a_milestone_closes_it(store: Store) -> None:
    await seed(store)
    first = await deliver_one(store, "delta-1")
    counter = dataclasses.replace(story(first), kind=PostKind.COUNTER, item_key="")
    counter_id = await store.record_post(first, counter, now=at(2002))
    live = await store.live_counter("room-a", "s1")
    assert live is not None and live.id == counter_id and not live.closed
    assert await store.live_counter("room-a", "s2") is None
    assert await store.recent_posts("room-a", since=at(0)) == []  # counters are no stories
    milestone = await deliver_one(store, "milestone-1000")
    await store.record_post(
        milestone, story(milestone, key="milestone-1000"), now=at(2003), close_counter=True
    )
    assert await store.live_counter("room-a", "s1") is None


async def test_recent_posts_are_the_rooms_stories_within_the_window(store: Store) -> None:
    await seed(store)
    ids = []
    for n, key in enumerate(("a", "b", "c")):
        delivery_id = await deliver_one(store, key)
        detected = at(2000) + timedelta(hours=24 * n)
        post = dataclasses.replace(story(delivery_id, key=key), detected_at=detected)
        ids.append(await store.record_post(delivery_id, post, now=detected))
    recent = await store.recent_posts("room-a", since=at(2000) + timedelta(hours=24))
    assert [p.id for p in recent] == [ids[2], ids[1]]  # newest first, the oldest left out
    assert await store.recent_posts("room-b", since=at(0)) == []


async def test_migrate_store_keeps_the_rooms_posts(tmp_path: Path) -> None:
    """Edits go on after ``alerts migrate-store``: posts and their items are copied
    (SQLite to SQLite here; the copy is the same SQL for every pair of backends)."""
    source_url = f"sqlite:///{tmp_path / 'old.db'}"
    store = await SqliteStore.open(source_url)
    try:
        await seed(store)
        delivery_id = await deliver_one(store, "a")
        post = story(delivery_id)
        post_id = await store.record_post(delivery_id, post, now=at(2002), items=[("s1", "a")])
    finally:
        await store.close()
    target_url = f"sqlite:///{tmp_path / 'moved.db'}"
    copied = await copy_store(source_url, target_url)
    assert (copied["posts"], copied["post_items"]) == (1, 1)
    moved = await SqliteStore.open(target_url)
    try:
        found = await moved.find_post("room-a", "s1", "a")
        assert found is not None and (found.id, found.remote_id) == (post_id, post.remote_id)
    finally:
        await moved.close()
