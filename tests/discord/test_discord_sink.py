"""The Discord sinks: the real discord.py against the fake Discord."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from discord_helpers import make_delivery, make_event, shown
from fake_discord import FORUM, PUBLIC_THREAD, FakeDiscord, Fault, Limits

from alerts.errors import (
    ConfigError,
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
)
from alerts.model import Destination
from alerts.platforms.discord import (
    DiscordSettings,
    DiscordSink,
    DiscordWebhookSink,
    GlobalLimiter,
)
from alerts.sinks import SinkContext, registry

CONTEXT = SinkContext(settings=None, store=None, data_dir=".")  # type: ignore[arg-type]


async def test_send_posts_embed_with_nonce(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    remote_id = await sink.send(make_delivery(channel))
    [message] = fake.messages_in(channel)
    assert remote_id == str(message.id)
    assert message.nonce == "alerts-1-abc"
    assert message.payload["enforce_nonce"] is True
    assert message.payload["allowed_mentions"]["parse"] == []
    assert "content" not in message.payload
    [embed] = message.embeds
    assert shown(embed["title"]).startswith("Updated: Palantir Technologies")
    fields = {shown(f["name"]): shown(f["value"]) for f in embed["fields"]}
    assert fields["Amount"] == "$95,900,000 → $125,900,000 (+$30,000,000)"
    assert fields["Recipient"] == "Palantir Technologies Inc."


async def test_same_delivery_twice_is_one_message(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    first = await sink.send(make_delivery(channel, delivery_id=7))
    second = await sink.send(make_delivery(channel, delivery_id=7))
    third = await sink.send(make_delivery(channel, delivery_id=8))
    assert first == second != third
    assert len(fake.messages_in(channel)) == 2


async def test_mention_injection_is_inert(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    event = make_event(
        title="@everyone <@&123456789012345678> wake up",
        summary="<@123456789012345678> @here",
        fields={"recipient": "@everyone"},
        changes={},
    )
    await sink.send(make_delivery(channel, event=event))
    [message] = fake.messages_in(channel)
    assert message.payload["allowed_mentions"] == {"parse": []}
    [embed] = message.embeds
    text = " ".join([embed["title"], embed["description"], *(f["value"] for f in embed["fields"])])
    for raw in ("@everyone", "@here", "<@&123456789012345678>", "<@123456789012345678>"):
        assert raw not in text


async def test_long_text_fits_discord(fake: FakeDiscord, sink: DiscordSink, channel: int) -> None:
    event = make_event(
        title="x" * 400,
        summary="many words " * 1000,
        fields={f"f{i}": "v" * 2000 for i in range(30)},
    )
    await sink.send(make_delivery(channel, event=event))
    [message] = fake.messages_in(channel)
    [embed] = message.embeds
    assert len(embed["title"]) <= 256
    assert len(embed["fields"]) <= 25
    assert embed["description"].endswith("…")


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        pytest.param("forbidden", DestinationUnavailable, id="403-missing-access"),
        pytest.param("unknown", DestinationUnavailable, id="404-unknown-channel"),
        pytest.param("forum-as-text", RejectedError, id="400-message-into-forum"),
        pytest.param("503", PlatformUnavailable, id="503-discord-down-waits"),
        pytest.param("401", PlatformUnavailable, id="401-token-revoked-waits"),
        pytest.param("long-429", RateLimitedError, id="429-longer-than-max-wait"),
        pytest.param("cloudflare", RateLimitedError, id="429-cloudflare-ban"),
    ],
)
async def test_failures_map_to_error_tree(
    fake: FakeDiscord, sink: DiscordSink, guild: int, channel: int, setup: str, error: type
) -> None:
    target: int | str = channel
    if setup == "forbidden":
        fake.forbid(channel)
    elif setup == "unknown":
        target = "123456789012345678"
    elif setup == "forum-as-text":
        target = fake.add_channel(guild, "forum", type=FORUM)
    elif setup == "503":
        fake.faults.append(Fault(503))
    elif setup == "401":
        fake.token = "revoked"
    elif setup == "long-429":
        fake.faults.append(Fault(429, retry_after_s=120.0))
    elif setup == "cloudflare":
        fake.faults.append(Fault(429, scope="cloudflare"))
    with pytest.raises(error) as caught:
        await sink.send(make_delivery(target))
    if setup == "long-429":
        assert isinstance(caught.value, RateLimitedError)
        assert caught.value.retry_after_s == pytest.approx(120.0)
    assert fake.messages == []


async def test_rate_limited_channel_does_not_stop_others(
    fake: FakeDiscord, sink: DiscordSink, guild: int, channel: int
) -> None:
    other = fake.add_channel(guild, "other")
    fake.faults.append(Fault(429, retry_after_s=90.0))
    with pytest.raises(RateLimitedError):
        await sink.send(make_delivery(channel))
    assert await sink.send(make_delivery(other, delivery_id=2))
    assert len(fake.messages_in(other)) == 1


async def test_connection_failure_waits_for_discord(sink: DiscordSink, fake: FakeDiscord) -> None:
    await fake.close()
    with pytest.raises(PlatformUnavailable):
        await sink.send(make_delivery("123456789012345678"))


async def test_429_storm_delivers_everything_in_order(
    fake: FakeDiscord, guild: int, tmp_path: object
) -> None:
    fake.set_limits(Limits(global_per_s=8, messages_per_channel=2, messages_window_s=0.4))
    settings = DiscordSettings(token=fake.token, global_rate_per_s=1000)
    bot = DiscordSink(context=CONTEXT, settings=settings)
    await bot.start()
    channels = [fake.add_channel(guild, f"c{i}") for i in range(3)]
    for scope in ("user", "global", "user", "global"):
        fake.faults.append(Fault(429, scope=scope, retry_after_s=0.1))

    async def feed(channel_id: int, base: int) -> None:
        for n in range(6):
            await bot.send(make_delivery(channel_id, delivery_id=base + n))

    try:
        await asyncio.gather(*(feed(c, 100 * (i + 1)) for i, c in enumerate(channels)))
    finally:
        await bot.close()
    for i, channel_id in enumerate(channels):
        nonces = [m.nonce for m in fake.messages_in(channel_id)]
        assert nonces == [f"alerts-{100 * (i + 1) + n:x}-abc" for n in range(6)]
    scopes = {h.scope for h in fake.hits if h.status == 429}
    assert {"user", "global"} <= scopes


async def test_global_limiter_keeps_under_the_limit(
    fake: FakeDiscord, guild: int, sink: DiscordSink
) -> None:
    fake.set_limits(Limits(global_per_s=50))
    channels = [fake.add_channel(guild, f"c{i}") for i in range(60)]
    await asyncio.gather(
        *(sink.send(make_delivery(c, delivery_id=i)) for i, c in enumerate(channels))
    )
    assert len(fake.messages) == 60
    assert [h for h in fake.hits if h.status == 429] == []


async def test_thread_target_works_like_a_channel(
    fake: FakeDiscord, sink: DiscordSink, guild: int, channel: int
) -> None:
    thread = fake.add_channel(guild, "discussion", type=PUBLIC_THREAD, parent_id=channel)
    await sink.send(make_delivery(thread))
    assert len(fake.messages_in(thread)) == 1


async def test_forum_post_per_alert(fake: FakeDiscord, sink: DiscordSink, guild: int) -> None:
    forum = fake.add_channel(guild, "alerts-forum", type=FORUM)
    event = make_event(title="Palantir gets **$30M** " + "more " * 40)
    remote = await sink.send(make_delivery(forum, event=event, options={"post": "forum_post"}))
    thread = fake.channels[int(remote or 0)]
    assert thread.parent_id == forum
    assert thread.type == PUBLIC_THREAD
    assert thread.name.startswith("Updated: Palantir gets **$30M** more")
    assert len(thread.name) <= 100
    [message] = fake.messages_in(thread.id)
    assert message.embeds[0]["title"].startswith("Updated\\: Palantir gets \\*\\*")


@pytest.fixture
async def webhook_sink(
    fake: FakeDiscord, channel: int
) -> AsyncIterator[tuple[DiscordWebhookSink, str]]:
    url = fake.add_webhook(channel)
    settings = DiscordSettings(webhooks={"news": url})
    sink = DiscordWebhookSink(context=CONTEXT, settings=settings)
    await sink.start()
    try:
        yield sink, url
    finally:
        await sink.close()


async def test_webhook_waits_and_returns_message_id(
    fake: FakeDiscord, webhook_sink: tuple[DiscordWebhookSink, str], channel: int
) -> None:
    sink, _ = webhook_sink
    remote = await sink.send(make_delivery("news", sink="discord_webhook"))
    [message] = fake.messages_in(channel)
    assert remote == str(message.id)
    assert message.webhook_id is not None
    assert message.payload["allowed_mentions"] == {"parse": []}
    [hit] = [h for h in fake.hits if h.path.startswith("/webhooks/")]
    assert hit.status == 200


async def test_webhook_into_thread(
    fake: FakeDiscord, webhook_sink: tuple[DiscordWebhookSink, str], guild: int, channel: int
) -> None:
    sink, _ = webhook_sink
    thread = fake.add_channel(guild, "t", type=PUBLIC_THREAD, parent_id=channel)
    options = {"thread_id": str(thread)}
    await sink.send(make_delivery("news", sink="discord_webhook", options=options))
    assert len(fake.messages_in(thread)) == 1


async def test_webhook_deleted_is_unavailable(
    fake: FakeDiscord, webhook_sink: tuple[DiscordWebhookSink, str]
) -> None:
    sink, _ = webhook_sink
    fake.webhooks.clear()
    with pytest.raises(DestinationUnavailable):
        await sink.send(make_delivery("news", sink="discord_webhook"))


@pytest.mark.parametrize(
    ("factory", "destination"),
    [
        pytest.param(DiscordSink, Destination("d", "discord", "general"), id="bot-non-numeric"),
        pytest.param(
            DiscordSink,
            Destination("d", "discord", "123456789012345678", {"colour": "red"}),
            id="bot-unknown-option",
        ),
        pytest.param(
            DiscordWebhookSink,
            Destination("d", "discord_webhook", "missing"),
            id="webhook-unknown-name",
        ),
    ],
)
def test_validate_destination_rejects(factory: type, destination: Destination) -> None:
    sink = factory(context=CONTEXT, settings=DiscordSettings())
    with pytest.raises(ConfigError):
        sink.validate_destination(destination)


@pytest.mark.parametrize(
    ("factory", "destination"),
    [
        pytest.param(DiscordSink, Destination("d", "discord", "#general"), id="bot-channel-name"),
        pytest.param(
            DiscordWebhookSink,
            Destination("d", "discord_webhook", "news", {"thread_id": "abc"}),
            id="webhook-bad-thread-id",
        ),
    ],
)
def test_check_destination_without_settings(factory: type, destination: Destination) -> None:
    with pytest.raises(ConfigError, match=r"destinations\.d"):
        factory.check_destination(destination)


async def test_webhook_forum_post(fake: FakeDiscord, guild: int) -> None:
    forum = fake.add_channel(guild, "forum", type=FORUM)
    settings = DiscordSettings(webhook_url=fake.add_webhook(forum))
    sink = DiscordWebhookSink(context=CONTEXT, settings=settings)
    await sink.start()
    try:
        options = {"forum": True}
        event = make_event(title="Palantir: new award")
        remote = await sink.send(
            make_delivery("default", sink="discord_webhook", event=event, options=options)
        )
    finally:
        await sink.close()
    [message] = fake.messages
    assert remote == str(message.id)
    thread = fake.channels[message.channel_id]
    assert (thread.parent_id, thread.name) == (forum, "Updated: Palantir: new award")


async def test_start_without_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ALERTS_DISCORD_TOKEN"):
        await DiscordSink(context=CONTEXT, settings=DiscordSettings()).start()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_DISCORD_TOKEN", "secret")
    monkeypatch.setenv("ALERTS_DISCORD_GUILDS", "111111111111111111, 222222222222222222")
    monkeypatch.setenv(
        "ALERTS_DISCORD_WEBHOOKS", '{"news": "https://discord.com/api/webhooks/1/x"}'
    )
    settings = DiscordSettings()
    assert settings.guilds == [111111111111111111, 222222222222222222]
    assert settings.token is not None
    assert settings.token.get_secret_value() == "secret"
    assert "secret" not in repr(settings)
    assert list(settings.webhook_urls()) == ["news"]


def test_configured_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not DiscordSink.configured()
    assert not DiscordWebhookSink.configured()
    monkeypatch.setenv("ALERTS_DISCORD_TOKEN", "secret")
    monkeypatch.setenv("ALERTS_DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/1/x")
    assert DiscordSink.configured()
    assert DiscordWebhookSink.configured()


def test_registry_has_both_discord_kinds() -> None:
    found = registry()
    assert found["discord"] is DiscordSink
    assert found["discord_webhook"] is DiscordWebhookSink
    for factory in (DiscordSink, DiscordWebhookSink):
        assert factory.__doc__
        assert factory.Options.model_config.get("extra") == "forbid"


async def test_webhook_into_forum_without_forum_option_is_rejected(
    fake: FakeDiscord, guild: int
) -> None:
    forum = fake.add_channel(guild, "forum", type=FORUM)
    sink = DiscordWebhookSink(
        context=CONTEXT, settings=DiscordSettings(webhook_url=fake.add_webhook(forum))
    )
    await sink.start()
    try:
        with pytest.raises(RejectedError, match="thread_name"):
            await sink.send(make_delivery("default", sink="discord_webhook"))
    finally:
        await sink.close()


async def test_global_limiter_window_counts_from_the_response() -> None:
    limiter = GlobalLimiter(10)
    loop = asyncio.get_running_loop()
    released: list[float] = []
    granted: list[float] = []
    for _ in range(12):
        slot = await limiter.acquire()
        granted.append(loop.time())
        limiter.release(slot)
        released.append(slot.at)
    spacing = [b - a for a, b in itertools.pairwise(granted)]
    assert min(spacing[:9]) >= limiter.spacing_s * 0.99
    assert granted[10] >= released[0] + limiter.span_s
    assert granted[11] >= released[1] + limiter.span_s
