"""End to end: a slash command subscribes a channel, the real dispatcher delivers."""

from __future__ import annotations

from datetime import timedelta

from discord_helpers import make_event, shown
from fake_discord import MANAGE_CHANNELS, FakeDiscord, Fault

from alerts.chat.commands import CommandService
from alerts.dispatch import Dispatcher
from alerts.model import Destination, Event, Subscription, utcnow
from alerts.platforms.discord import DiscordSink
from alerts.route import Router
from alerts.store import PollCommit, RoutedEvent, Store

SOURCE = "usaspending-ice"


async def commit(store: Store, router: Router, event: Event) -> tuple[str, ...]:
    """What the scheduler does after a poll: route, then commit events + deliveries."""
    now = utcnow()
    await store.sync_sources({SOURCE: now})
    await store.set_next_due(SOURCE, now)
    [claimed] = await store.claim_due_sources(now, owner="test", lease_s=60, limit=1)
    router.set_dynamic(await store.list_subscriptions(), await store.subscriptions_version())
    destinations = router.route(event)
    await store.commit_poll(
        PollCommit(
            source_id=claimed.source_id,
            now=now,
            next_due=now + timedelta(minutes=15),
            events=[RoutedEvent(event, destinations)],
        ),
        owner="test",
    )
    return destinations


async def slash(fake: FakeDiscord, channel: int, subcommand: str, **options: str) -> str:
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand=subcommand,
        options=options,
    )
    return str(callback["data"]["content"])


async def test_subscribe_event_message_then_unsubscribe_none(
    fake: FakeDiscord, bot: DiscordSink, store: Store, service: CommandService, channel: int
) -> None:
    router = Router()
    dispatcher = Dispatcher(store=store, sinks={"discord": bot}, owner="test")
    assert (await slash(fake, channel, "subscribe", topic="contracts")).startswith("Subscribed")

    first = make_event(key="award-1", topics=("contracts",), id=None)
    assert await commit(store, router, first) == (f"discord:{channel}",)
    await dispatcher.drain(timeout_s=10)
    [message] = fake.messages_in(channel)
    assert shown(message.embeds[0]["title"]).startswith("Updated: Palantir")
    [row] = await store.list_deliveries()
    assert row.remote_id == str(message.id)

    assert (await slash(fake, channel, "unsubscribe", topic="contracts")).startswith("Unsub")
    second = make_event(key="award-2", topics=("contracts",), id=None)
    assert await commit(store, router, second) == ()
    await dispatcher.drain(timeout_s=10)
    assert len(fake.messages_in(channel)) == 1


async def test_forbidden_channel_is_parked(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int
) -> None:
    router = Router()
    dispatcher = Dispatcher(store=store, sinks={"discord": bot}, owner="test")
    await slash(fake, channel, "subscribe", topic="contracts")
    fake.forbid(channel)
    await commit(store, router, make_event(key="award-3", topics=("contracts",), id=None))
    await dispatcher.drain(timeout_s=10)
    row = await store.get_destination(f"discord:{channel}")
    assert row is not None
    assert row.parked_reason is not None
    assert "Missing Access" in row.parked_reason
    assert fake.messages == []


async def test_long_rate_limit_reschedules_one_channel_others_move(
    fake: FakeDiscord, sink: DiscordSink, store: Store, guild: int
) -> None:
    channels = [fake.add_channel(guild, f"c{i}") for i in range(3)]
    for channel_id in channels:
        await store.upsert_destination(
            Destination(f"discord:{channel_id}", "discord", str(channel_id))
        )
        await store.add_subscription(Subscription(f"discord:{channel_id}", topic="contracts"))
    router = Router()
    for n in range(3):
        event = make_event(key=f"award-{n}", title=f"Award {n}", topics=("contracts",), id=None)
        await commit(store, router, event)
    now = [utcnow()]
    dispatcher = Dispatcher(store=store, sinks={"discord": sink}, owner="t", clock=lambda: now[0])
    fake.faults.append(Fault(429, retry_after_s=45.0))

    await dispatcher.drain(timeout_s=10)
    counts = sorted(len(fake.messages_in(c)) for c in channels)
    assert counts == [0, 3, 3]  # the limited channel waits; the others are done

    now[0] += timedelta(seconds=46)
    await dispatcher.drain(timeout_s=10)
    for channel_id in channels:
        titles = [shown(m.embeds[0]["title"]) for m in fake.messages_in(channel_id)]
        assert titles == ["Updated: Award 0", "Updated: Award 1", "Updated: Award 2"]
