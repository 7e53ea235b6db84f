"""Sending alerts to Discord: as the bot (``DiscordSender``) or through incoming
webhooks (``DiscordWebhookSink``), on the sessions of ``session.py``.

Both render with ``render.py``, attach ``allowed_mentions`` that parses nothing,
and map failures with the session's table (``guarded``): 403/404 park the
destination, 401 (revoked token), 5xx and connection errors are retried, other
4xx reject the delivery, and a rate limit longer than ``max_ratelimit_timeout``
comes back as ``RateLimitedError`` so the dispatcher retries that channel later
while the others keep moving.

Both keep messages alive (``alerts.contracts.EditingSink``): an edit is a ``PATCH``
of the channel message (``/channels/{channel.id}/messages/{message.id}``) or of the
webhook's message (``/webhooks/{id}/{token}/messages/{message.id}``), to the whole
new embed, so sending it twice shows once; the bot replies with a
``message_reference`` and a nonce derived from the delivery's, a webhook (which
cannot reply) posts the note in the same channel or thread. "Unknown Message",
"too many edits of a message older than an hour" and an archived thread raise
``MessageGone``: the update is posted as a new message.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings

from alerts.accounts import AccountKeeper, needs_reconciling
from alerts.errors import ConfigError, DestinationUnavailable
from alerts.model import Delivery, Destination, MessageView, Posted
from alerts.platforms.discord.render import (
    allowed_mentions,
    has_marker,
    render_view_embed,
    thread_name,
)
from alerts.platforms.discord.session import (
    SNOWFLAKE,
    WEBHOOK_URL,
    DiscordSession,
    DiscordSettings,
    WebhookSession,
    guarded,
)

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord.http import Route, handle_message_parameters

if TYPE_CHECKING:
    from alerts.contracts import SinkContext
    from discord.types.message import MessageReference as ReferencePayload

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
RECONCILE_PAGES = 3  # pages of 100 messages looked through for an unrecorded send
REPLY_NONCE_SUFFIX = ".r"  # a delivery's key is at most 23 characters: 25 with this


def channel_problem(target: str) -> str | None:
    """Why ``target`` cannot name a Discord channel, or None when it can (never echoes a
    webhook URL: its token is a secret)."""
    if SNOWFLAKE.fullmatch(target):
        return None
    if WEBHOOK_URL.search(target) or "/webhooks/" in target:
        return (
            "a webhook URL is not a channel id, and it is a secret: use sink "
            '"discord_webhook" with the URL in ALERTS_DISCORD_WEBHOOKS or '
            "ALERTS_DISCORD_WEBHOOK_URL"
        )
    if "://" in target:
        return "a URL is not a channel id (enable Developer Mode, right-click the channel, Copy Channel ID)"
    return (
        f"{target!r} is not a Discord channel id (enable Developer Mode, right-click the "
        "channel, Copy Channel ID)"
    )


def _channel_id(destination: Destination) -> int:
    problem = channel_problem(destination.target)
    if problem is not None:
        raise ConfigError(f"destinations.{destination.id}.target: {problem}")
    return int(destination.target)


def _webhook_named(settings: DiscordSettings, destination: Destination) -> None:
    """The environment names this webhook, and its URL is a Discord webhook URL (the
    URL is never shown: its token is a secret)."""
    urls = settings.webhook_urls()
    if destination.target not in urls:
        known = ", ".join(sorted(urls)) or "none configured"
        raise ConfigError(
            f"destinations.{destination.id}.target: no webhook named {destination.target!r} "
            f"(ALERTS_DISCORD_WEBHOOKS / ALERTS_DISCORD_WEBHOOK_URL; known: {known})"
        )
    if WEBHOOK_URL.search(urls[destination.target]) is None:
        raise ConfigError(
            f"destinations.{destination.id}.target: the URL of webhook "
            f"{destination.target!r} is not a Discord webhook URL (…/webhooks/ID/TOKEN)"
        )


def _options(model: type[M], destination: Destination) -> M:
    try:
        return model.model_validate(dict(destination.options))
    except ValidationError as exc:
        raise ConfigError(f"destinations.{destination.id}.options: {exc}") from None


class DiscordOptions(BaseModel):
    """Options of a ``discord`` destination.

    ``post = "forum_post"`` when the target is a forum channel: each alert opens a
    post titled with the alert title. ``guild_id`` is filled in by the slash
    commands (so leaving a guild drops its subscriptions); ``dm_user`` too, for a
    user's DM with the bot (the target is then the DM channel).
    """

    model_config = ConfigDict(extra="forbid")

    post: Literal["message", "forum_post"] = "message"
    guild_id: str | None = None
    dm_user: str | None = None


class DiscordSender:
    """Sends deliveries as the bot, over one ``DiscordSession``."""

    kind: ClassVar[str] = "discord"
    Options: ClassVar[type[BaseModel]] = DiscordOptions
    Settings: ClassVar[type[BaseSettings] | None] = DiscordSettings
    edit_interval_s: ClassVar[float] = 1.0  # a channel's edits share a 5-per-5-s bucket

    def __init__(self, *, context: SinkContext, settings: DiscordSettings | None = None) -> None:
        self.context = context
        self.settings = settings or DiscordSettings()
        self.session = DiscordSession(self.settings)

    @classmethod
    def configured(cls) -> bool:
        """A bot token is in the environment: start the bot even with no destination
        in config yet (channels subscribe with slash commands)."""
        return DiscordSettings().token is not None

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: a channel id and known options."""
        _channel_id(destination)
        _options(DiscordOptions, destination)

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)

    def account(self) -> str | None:
        """One process at a time sends as the bot (``alerts.accounts``): named by a
        digest of its token, never the token."""
        token = self.settings.token
        if token is None:
            return None
        return "discord:" + hashlib.sha256(token.get_secret_value().encode()).hexdigest()[:16]

    def hand_over(self, keeper: AccountKeeper) -> None:
        """Nothing to hand over: a bot token is the whole session."""

    async def start(self) -> None:
        await self.session.open()

    async def close(self) -> None:
        await self.session.close()

    async def send(self, delivery: Delivery) -> str | None:
        return (
            await self.post(delivery, MessageView(delivery.event, template=delivery.view.template))
        ).remote_id

    async def _already_sent(self, channel_id: int, delivery: Delivery, ref: str) -> str | None:
        """The message carrying ``ref`` in the channel's recent history, when the
        delivery was tried before and Discord may have forgotten its nonce."""
        if delivery.tried_at is None or not needs_reconciling(
            delivery, self.settings.nonce_window_s
        ):
            return None
        http = self.session.client.http
        me = self.session.client.user
        before: int | None = None
        oldest_ms = delivery.tried_at.timestamp() * 1000 - 60_000
        for _ in range(RECONCILE_PAGES):

            async def page(before: int | None = before) -> list[Any]:
                return list(await http.logs_from(channel_id, 100, before=before))

            messages = await guarded(page)
            for message in messages:
                mine = me is None or str(message.get("author", {}).get("id")) == str(me.id)
                if mine and has_marker(message, ref):
                    log.info("delivery %s: already in channel %s", delivery.id, channel_id)
                    return str(message["id"])
            if len(messages) < 100:
                return None
            before = int(messages[-1]["id"])
            if discord.utils.snowflake_time(before).timestamp() * 1000 < oldest_ms:
                return None
        return None

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        """Post ``view`` in the channel (a forum post in a forum channel)."""
        destination = delivery.destination
        try:
            channel_id = _channel_id(destination)
            options = _options(DiscordOptions, destination)
        except ConfigError as exc:
            raise DestinationUnavailable(str(exc)) from None
        ref = delivery.idempotency_key
        embed = render_view_embed(view, ref=ref)
        if options.post == "forum_post":
            thread_id = await self._forum_post(channel_id, delivery, embed)
            return Posted(thread_id, thread_id)  # a forum post's first message has its id
        found = await self._already_sent(channel_id, delivery, ref)
        if found is not None:
            return Posted(found, str(channel_id))
        params = handle_message_parameters(
            embed=embed, allowed_mentions=allowed_mentions(), nonce=delivery.idempotency_key
        )
        http = self.session.client.http

        async def message() -> str:
            return str((await http.send_message(channel_id, params=params))["id"])

        return Posted(await guarded(message), str(channel_id))

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        """``PATCH`` the message to show ``view``."""
        route = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=int(posted.room),
            message_id=int(posted.remote_id),
        )
        payload = {
            "embeds": [render_view_embed(view).to_dict()],
            "allowed_mentions": allowed_mentions().to_dict(),
        }
        http = self.session.client.http

        async def patch() -> None:
            await http.request(route, json=payload)

        await guarded(patch)

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        """Reply to the message (in its channel or forum post) with ``view``."""
        reference: ReferencePayload = {
            "message_id": posted.remote_id,
            "channel_id": posted.room,
            "fail_if_not_exists": False,
        }
        ref = delivery.idempotency_key + REPLY_NONCE_SUFFIX
        found = await self._already_sent(int(posted.room), delivery, ref)
        if found is not None:
            return found
        params = handle_message_parameters(
            embed=render_view_embed(view, ref=ref),
            allowed_mentions=allowed_mentions(),
            mention_author=False,
            nonce=ref,
            message_reference=reference,
        )
        http = self.session.client.http

        async def message() -> str:
            return str((await http.send_message(int(posted.room), params=params))["id"])

        return await guarded(message)

    async def _forum_post(self, channel_id: int, delivery: Delivery, embed: discord.Embed) -> str:
        params = handle_message_parameters(
            embed=embed,
            allowed_mentions=allowed_mentions(),
            channel_payload={"name": thread_name(delivery.event)},
        )
        route = Route("POST", "/channels/{channel_id}/threads", channel_id=channel_id)
        http = self.session.client.http

        async def post() -> str:
            thread = await http.request(route, json=params.payload)
            return str(thread["id"])

        return await guarded(post)


class WebhookOptions(BaseModel):
    """Options of a ``discord_webhook`` destination.

    ``thread_id`` posts into a thread of the webhook's channel; ``forum = true``
    opens a post per alert when the webhook belongs to a forum channel.
    """

    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(default=None, pattern=r"^[1-9][0-9]{5,19}$")
    forum: bool = False


class DiscordWebhookSink:
    """Discord incoming webhook: alerts as embeds, no bot needed.

    Destination: ``sink = "discord_webhook"``, ``target`` = a webhook name from
    ``ALERTS_DISCORD_WEBHOOKS`` (a JSON object name → URL) or ``default`` for
    ``ALERTS_DISCORD_WEBHOOK_URL`` (never the URL itself: it holds a secret token).
    Options: ``thread_id`` to post into a thread, ``forum = true`` for a forum
    channel's webhook (a post per alert).

    Messages are sent with ``wait=true`` and the returned message id is stored.
    Webhooks take no nonce: if the service dies after Discord accepted a message
    and before the outbox recorded it, that one alert is posted again on restart.
    The window is one HTTP round trip plus one store write. Source text is
    escaped as for the bot, and ``allowed_mentions`` parses nothing. An update
    edits the webhook's earlier message; a webhook cannot reply, so the note of
    what changed is posted after it (like an alert, twice at most after a crash).
    """

    kind: ClassVar[str] = "discord_webhook"
    Options: ClassVar[type[BaseModel]] = WebhookOptions
    Settings: ClassVar[type[BaseSettings] | None] = DiscordSettings
    edit_interval_s: ClassVar[float] = 1.0  # a webhook's requests share one bucket

    def __init__(self, *, context: SinkContext, settings: DiscordSettings | None = None) -> None:
        self.context = context
        self.settings = settings or DiscordSettings()
        self.session = WebhookSession(self.settings)

    @classmethod
    def configured(cls) -> bool:
        """Webhook URLs are in the environment."""
        return bool(DiscordSettings().webhook_urls())

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: a webhook name (never a URL) that the
        environment defines, with a webhook URL behind it, and known options."""
        target = destination.target
        if "://" in target or "/webhooks/" in target:
            raise ConfigError(
                f"destinations.{destination.id}.target: a webhook URL holds a secret "
                "token: put it in ALERTS_DISCORD_WEBHOOKS (or ALERTS_DISCORD_WEBHOOK_URL) "
                "and name it here"
            )
        if not target:
            raise ConfigError(
                f"destinations.{destination.id}.target: a webhook name is required "
                '(a key of ALERTS_DISCORD_WEBHOOKS, or "default")'
            )
        _webhook_named(DiscordSettings(), destination)
        _options(WebhookOptions, destination)

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)
        _webhook_named(self.settings, destination)

    async def start(self) -> None:
        await self.session.open()

    async def close(self) -> None:
        await self.session.close()

    async def send(self, delivery: Delivery) -> str | None:
        return (
            await self.post(delivery, MessageView(delivery.event, template=delivery.view.template))
        ).remote_id

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        """Execute the webhook with ``view`` (``wait=true``: Discord returns the
        message). ``Posted.room`` is the thread it went to, or empty for the
        webhook's own channel."""
        options = _options(WebhookOptions, delivery.destination)
        extra: dict[str, Any] = {}
        if options.thread_id:
            extra["thread"] = discord.Object(int(options.thread_id))
        elif options.forum:
            extra["thread_name"] = thread_name(delivery.event)
        embed = render_view_embed(view, ref=delivery.idempotency_key)
        message = await self._execute(delivery, embed, extra)
        in_thread = bool(options.thread_id or options.forum)
        return Posted(str(message.id), str(message.channel.id) if in_thread else "")

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        """``PATCH`` the webhook's message to show ``view``."""
        webhook = self._webhook(delivery.destination)
        extra: dict[str, Any] = {"thread": discord.Object(int(posted.room))} if posted.room else {}

        async def patch() -> None:
            await webhook.edit_message(
                int(posted.remote_id),
                embed=render_view_embed(view),
                allowed_mentions=allowed_mentions(),
                **extra,
            )

        await guarded(patch)

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        """Webhooks cannot reply: post ``view`` after the message, in its channel or
        thread."""
        extra: dict[str, Any] = {"thread": discord.Object(int(posted.room))} if posted.room else {}
        embed = render_view_embed(view, ref=delivery.idempotency_key + REPLY_NONCE_SUFFIX)
        return str((await self._execute(delivery, embed, extra)).id)

    def _webhook(self, destination: Destination) -> discord.Webhook:
        webhook = self.session.webhook(destination.target)
        if webhook is None:
            raise DestinationUnavailable(f"no webhook named {destination.target!r}")
        return webhook

    async def _execute(
        self, delivery: Delivery, embed: discord.Embed, extra: dict[str, Any]
    ) -> discord.WebhookMessage:
        webhook = self._webhook(delivery.destination)

        async def execute() -> discord.WebhookMessage:
            return await webhook.send(
                embed=embed, allowed_mentions=allowed_mentions(), wait=True, **extra
            )

        return await guarded(execute)
