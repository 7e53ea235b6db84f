"""The Matrix sink against a real Synapse: content, idempotency, rate limits, E2E."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import nio
import pytest

from alerts.errors import DestinationUnavailable, RateLimitedError
from alerts.model import Delivery, Destination, Event, EventKind
from alerts.platforms.matrix import MatrixSink

from ..hostile.checks import matrix_problems
from .helpers import Peer
from .synapse_server import Account, SynapseServer

pytestmark = pytest.mark.synapse

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def award_event(**overrides: object) -> Event:
    values: dict[str, object] = {
        "source_id": "usaspending",
        "kind": EventKind.UPDATED,
        "key": "CONT_AWD_70CDCR22C00000001",
        "title": "ICE contract modification",
        "url": "https://www.usaspending.gov/award/CONT_AWD_70CDCR22C00000001",
        "summary": "ImmigrationOS",
        "topics": ("contracts",),
        "fields": {"recipient": "Palantir USG Inc.", "amount": 30_000_000},
        "changes": {"amount": (17_500_000, 30_000_000)},
        "occurred_at": WHEN,
        "id": 7,
    }
    values.update(overrides)
    return Event(**values)  # type: ignore[arg-type]


def delivery_to(
    room_id: str, event: Event | None = None, *, key: str = "k1", id: int = 1
) -> Delivery:
    return Delivery(
        id=id,
        event=event or award_event(),
        destination=Destination(Destination.chat_id("matrix", room_id), "matrix", room_id),
        attempts=0,
        idempotency_key=key,
    )


async def joined_room(
    reader: Peer, sink: MatrixSink, *, encrypted: bool = False, bot_power: int | None = None
) -> str:
    bot = sink.session.client.user_id
    power = {bot: bot_power} if bot_power is not None else None
    room_id = await reader.create_room(encrypted=encrypted, invite=[bot], power=power)
    resp = await sink.session.client.join(room_id)
    assert isinstance(resp, nio.JoinResponse), resp
    assert await sink.session.wait_for_sync(10)
    return room_id


def by_id(event_id: str) -> Callable[[object], bool]:
    return lambda e: getattr(e, "event_id", None) == event_id


async def test_alert_arrives_with_body_and_html(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)

    event_id = await sink.send(delivery_to(room_id))

    seen = await alice.wait_for(room_id, by_id(event_id))
    content = seen.source["content"]
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {}
    assert content["format"] == "org.matrix.custom.html"
    assert content["body"].splitlines()[:3] == [
        "Updated: ICE contract modification",
        "https://www.usaspending.gov/award/CONT_AWD_70CDCR22C00000001",
        "usaspending · updated",
    ]
    assert "Recipient: Palantir USG Inc." in content["body"]
    assert "Amount: $17,500,000 → $30,000,000 (+$12,500,000)" in content["body"]
    assert "2026-03-01 12:30 UTC" in content["body"]
    assert (
        '<a href="https://www.usaspending.gov/award/CONT_AWD_70CDCR22C00000001">'
        "Updated: ICE contract modification</a>" in content["formatted_body"]
    )
    assert (
        "<li><strong>Amount:</strong> $17,500,000 → $30,000,000 (+$12,500,000)</li>"
        in content["formatted_body"]
    )


async def test_petition_delta_shows_count_and_delta(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)
    event = award_event(
        source_id="iceout-letter", kind=EventKind.DELTA, title="ICEout.tech letter",
        fields={"count": 1520, "delta": 120}, changes={},
    )  # fmt: skip

    event_id = await sink.send(delivery_to(room_id, event))

    body = (await alice.wait_for(room_id, by_id(event_id))).source["content"]["body"]
    assert "Count: 1,520" in body
    assert "Change: +120" in body


async def test_hostile_source_is_inert(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    # The bot may notify the room (power 100), so only the content keeps it quiet.
    room_id = await joined_room(alice, sink, bot_power=100)
    hostile = award_event(
        title=f"@room look at {alice.user_id}",
        summary=(
            f'<script>alert(1)</script><img src="mxc://evil/x"> @room '
            f'<a href="https://matrix.to/#/{alice.user_id}">{alice.user_id}</a>'
            '<a href="javascript:alert(1)">click</a><font color="red">red</font>'
        ),
        fields={"recipient": f"@room {alice.user_id}"},
    )

    event_id = await sink.send(delivery_to(room_id, hostile))

    content = (await alice.wait_for(room_id, by_id(event_id))).source["content"]
    assert matrix_problems(content, link=hostile.url) == []
    for tag in ("<script", "<img", "<font", '<a href="javascript'):
        assert tag not in content["formatted_body"]  # shown as text: &lt;script…
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content["formatted_body"]
    assert alice.highlights() == []


async def test_same_delivery_twice_is_one_event_even_after_sink_restart(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)
    delivery = delivery_to(room_id, key="dup-1")

    first = await sink.send(delivery)
    second = await sink.send(delivery)
    device = sink.session.client.device_id
    await sink.close()
    restarted = await make_sink()
    third = await restarted.send(delivery)

    assert restarted.session.client.device_id == device
    assert first == second == third
    other = await restarted.send(delivery_to(room_id, key="dup-2"))
    await alice.wait_for(room_id, by_id(other))
    assert [e.event_id for e in alice.messages(room_id, sink_user(restarted))] == [first, other]


def sink_user(sink: MatrixSink) -> str:
    return str(sink.session.client.user_id)


async def test_rate_limited_then_delivered_later_nothing_lost(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    synapse: SynapseServer,
    bot_account: Account,
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)
    synapse.override_ratelimit(bot_account.user_id, per_second=1, burst_count=1)
    deliveries = [delivery_to(room_id, key=f"rl-{n}", id=n) for n in range(3)]

    sent: list[str] = []
    waits: list[float] = []
    for delivery in deliveries:
        while True:
            try:
                sent.append(await sink.send(delivery) or "")
                break
            except RateLimitedError as exc:
                waits.append(exc.retry_after_s)
                await asyncio.sleep(exc.retry_after_s)

    assert waits
    assert all(0 < wait <= 5 for wait in waits)
    await alice.wait_for(room_id, by_id(sent[-1]))
    assert [e.event_id for e in alice.messages(room_id, bot_account.user_id)] == sent
    assert len(set(sent)) == 3


async def test_room_the_bot_is_not_in_is_unavailable(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await alice.create_room()

    with pytest.raises(DestinationUnavailable):
        await sink.send(delivery_to(room_id))


async def test_a_room_alias_is_resolved_and_a_missing_one_is_unavailable(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    bot = sink.session.client.user_id
    server = bot.split(":", 1)[1]
    created = await alice.client.room_create(alias="campaign-alerts", invite=[bot])
    assert isinstance(created, nio.RoomCreateResponse), created
    joined = await sink.session.client.join(created.room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    assert await sink.session.wait_for_sync(10)

    alias = f"#campaign-alerts:{server}"
    delivery = delivery_to(created.room_id)
    by_alias = Delivery(
        id=2,
        event=delivery.event,
        destination=Destination("campaign", "matrix", alias),
        attempts=0,
        idempotency_key="alias-1",
    )
    event_id = await sink.send(by_alias)
    await alice.wait_for(created.room_id, by_id(event_id))

    missing = Delivery(
        id=3,
        event=delivery.event,
        destination=Destination("gone", "matrix", f"#no-such-room:{server}"),
        attempts=0,
        idempotency_key="alias-2",
    )
    with pytest.raises(DestinationUnavailable, match="does not resolve"):
        await sink.send(missing)


async def test_encrypted_room_is_decrypted_by_the_reader(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice", e2e=True)
    room_id = await joined_room(alice, sink, encrypted=True)

    event_id = await sink.send(delivery_to(room_id))

    seen = await alice.wait_for(room_id, by_id(event_id))
    assert isinstance(seen, nio.RoomMessageNotice), seen
    assert seen.body.startswith("Updated: ICE contract modification")
    assert "Amount: $17,500,000 → $30,000,000 (+$12,500,000)" in seen.body
