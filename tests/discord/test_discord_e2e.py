"""End to end: a slash command subscribes a channel, the real dispatcher delivers."""

from __future__ import annotations

from datetime import timedelta

from discord_helpers import make_event
from fake_discord import MANAGE_CHANNELS, FakeDiscord

from alerts.chat.commands import CommandService
from alerts.dispatch import Dispatcher
from alerts.model import Event, utcnow
from alerts.route import Router
from alerts.sinks.discord import DiscordSink
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
    assert message.embeds[0]["title"].startswith("Updated: Palantir")
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
