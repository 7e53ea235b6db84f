"""Discord sinks: a bot (``discord``) and incoming webhooks (``discord_webhook``).

Both send over discord.py and render with ``alerts.render.discord``. Failures map
onto the error tree with one table (``ERRORS``): 403/404 park the destination,
401 (revoked token) and 5xx and connection errors are retried, other 4xx reject the
delivery, and a rate limit longer than ``max_ratelimit_timeout`` comes back as
``RateLimitedError`` so the dispatcher retries that channel later while the others
keep moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.errors import (
    ConfigError,
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
    SendError,
)
from alerts.model import Delivery, Destination
from alerts.render.discord import allowed_mentions, render_embed, thread_name

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from discord.http import Route, handle_message_parameters

    import discord

if TYPE_CHECKING:
    from alerts.chat.commands import CommandService
    from alerts.sinks import SinkContext

log = logging.getLogger(__name__)

_SNOWFLAKE = re.compile(r"^[1-9][0-9]{5,19}$")
_WEBHOOK_URL = re.compile(r"/webhooks/(?P<id>[0-9]{5,20})/(?P<token>[A-Za-z0-9._-]+)/?$")


class DiscordSettings(BaseSettings):
    """Deployment settings from the environment (``ALERTS_DISCORD_*``)."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_DISCORD_", extra="ignore")

    token: SecretStr | None = None
    webhook_url: SecretStr | None = None
    webhooks: dict[str, SecretStr] = Field(default_factory=dict)
    guilds: Annotated[list[int], NoDecode] = Field(default_factory=list)
    global_commands: bool = False
    max_ratelimit_timeout_s: float = Field(default=30.0, ge=30.0)
    global_rate_per_s: float = Field(default=50.0, gt=0)
    guild_ready_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("guilds", mode="before")
    @classmethod
    def _split_guilds(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
        return value

    def webhook_urls(self) -> dict[str, str]:
        """Webhook name → URL; ``ALERTS_DISCORD_WEBHOOK_URL`` is named ``default``."""
        urls = {name: url.get_secret_value() for name, url in self.webhooks.items()}
        if self.webhook_url is not None:
            urls.setdefault("default", self.webhook_url.get_secret_value())
        return urls


STALE_SLOT_S = 120.0  # a request that never reported back stops holding its slot


@dataclass(slots=True)
class _Slot:
    at: float
    done: bool = False


class GlobalLimiter:
    """At most ``rate_per_s`` bot requests per sliding second, never faster than
    twice that rate even in a burst.

    discord.py only reacts to the global limit after a 429; this keeps the bot
    under it. A request holds its slot from the moment it leaves until one window
    after its response arrived: Discord counted it somewhere in between, so a slow
    connection or a busy event loop cannot pack two windows' worth of requests into
    one of Discord's. The price is the round trip: the sustained rate is
    ``rate_per_s / (1 s + round trip)``, e.g. 95 % of the limit at 50 ms. It runs as an aiohttp trace hook, i.e. after discord.py's own
    per-route bucket wait, right before a request leaves.
    """

    def __init__(self, rate_per_s: float, *, window_s: float = 1.0, margin_s: float = 0.005):
        self.capacity = max(int(rate_per_s * window_s), 1)
        self.span_s = window_s + margin_s
        self.spacing_s = window_s / (self.capacity * 2)
        self._slots: list[_Slot] = []
        self._last = -1e9
        self._lock = asyncio.Lock()
        self._ended = asyncio.Event()
        self.round_trips_s: deque[float] = deque(maxlen=1024)

    def _wait_s(self, now: float) -> float:
        self._slots = [
            s
            for s in self._slots
            if (s.at > now - self.span_s) or (not s.done and s.at > now - STALE_SLOT_S)
        ]
        wait = self._last + self.spacing_s - now
        if len(self._slots) >= self.capacity:
            expiries = [s.at + self.span_s - now for s in self._slots if s.done]
            wait = max(wait, min(expiries) if expiries else self.span_s)
        return wait

    async def acquire(self) -> _Slot:
        """Wait for a slot; ``release`` it when the response (or an error) arrives."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            while (wait := self._wait_s(loop.time())) > 0:
                self._ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), wait)
            self._last = loop.time()
            slot = _Slot(self._last)
            self._slots.append(slot)
            return slot

    def release(self, slot: _Slot) -> None:
        now = asyncio.get_running_loop().time()
        self.round_trips_s.append(now - slot.at)
        slot.at, slot.done = now, True
        self._ended.set()

    def trace(self) -> aiohttp.TraceConfig:
        """A trace config that holds a slot for each bot request."""

        async def on_start(_: Any, ctx: SimpleNamespace, params: Any) -> None:
            path = params.url.path
            if "/interactions/" not in path and "/webhooks/" not in path:
                ctx.slot = await self.acquire()

        async def on_end(_: Any, ctx: SimpleNamespace, __: Any) -> None:
            slot = getattr(ctx, "slot", None)
            if slot is not None:
                self.release(slot)

        config = aiohttp.TraceConfig()
        config.on_request_start.append(on_start)
        config.on_request_end.append(on_end)
        config.on_request_exception.append(on_end)
        return config


# HTTP status → error class; anything else: 5xx retryable, other 4xx rejected.
ERRORS: Mapping[int, type[SendError]] = {
    401: PlatformUnavailable,  # the token was revoked: not the delivery's fault; wait for a fix
    403: DestinationUnavailable,  # 50001 Missing Access, 50013 Missing Permissions
    404: DestinationUnavailable,  # 10003 Unknown Channel, 10015 Unknown Webhook
    502: PlatformUnavailable,  # Discord is down (discord.py has already retried these)
    503: PlatformUnavailable,
    504: PlatformUnavailable,
}
CLOUDFLARE_BAN_RETRY_S = 60.0


def _http_error(exc: discord.HTTPException) -> SendError:
    detail = f"Discord {exc.status} (code {exc.code}): {exc.text or exc}"
    if exc.status == 429:  # discord.py raises this only for a Cloudflare ban (no Via header)
        return RateLimitedError(detail, retry_after_s=CLOUDFLARE_BAN_RETRY_S)
    default = RetryableSendError if exc.status >= 500 else RejectedError
    return ERRORS.get(exc.status, default)(detail)


async def _guarded(call: Callable[[], Awaitable[str]]) -> str:
    """Run a discord.py call, translating every failure into a ``SendError``."""
    try:
        return await call()
    except discord.RateLimited as exc:
        raise RateLimitedError(
            f"Discord asks to wait {exc.retry_after:.1f} s", retry_after_s=exc.retry_after
        ) from exc
    except discord.HTTPException as exc:
        raise _http_error(exc) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise PlatformUnavailable(f"cannot reach Discord: {exc!r}") from exc


class DiscordOptions(BaseModel):
    """Options of a ``discord`` destination.

    ``post = "forum_post"`` when the target is a forum channel: each alert opens a
    post titled with the alert title. ``guild_id`` is filled in by the slash
    commands (so leaving a guild drops its subscriptions).
    """

    model_config = ConfigDict(extra="forbid")

    post: Literal["message", "forum_post"] = "message"
    guild_id: str | None = None


class AlertsClient(discord.Client):
    """A discord.py client that tells listeners when the bot leaves a guild."""

    def __init__(self, settings: DiscordSettings, limiter: GlobalLimiter) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        super().__init__(
            intents=discord.Intents(guilds=True),
            max_ratelimit_timeout=settings.max_ratelimit_timeout_s,
            http_trace=limiter.trace(),
            guild_ready_timeout=settings.guild_ready_timeout_s,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.guild_left: list[Callable[[int], Awaitable[None]]] = []

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        for callback in self.guild_left:
            await callback(guild.id)


def _channel_id(destination: Destination) -> int:
    if not _SNOWFLAKE.match(destination.target):
        raise ConfigError(
            f"destinations.{destination.id}.target: not a Discord channel id (enable "
            "Developer Mode, right-click the channel, Copy Channel ID)"
        )
    return int(destination.target)


def _webhook_named(settings: DiscordSettings, destination: Destination) -> None:
    urls = settings.webhook_urls()
    if destination.target not in urls:
        known = ", ".join(sorted(urls)) or "none configured"
        raise ConfigError(
            f"destinations.{destination.id}.target: no webhook named {destination.target!r} "
            f"(ALERTS_DISCORD_WEBHOOKS / ALERTS_DISCORD_WEBHOOK_URL; known: {known})"
        )
    if _WEBHOOK_URL.search(urls[destination.target]) is None:
        raise ConfigError(
            f"destinations.{destination.id}.target: the URL of webhook "
            f"{destination.target!r} is not a Discord webhook URL (…/webhooks/ID/TOKEN)"
        )


def _options(model: type[BaseModel], destination: Destination) -> Any:
    try:
        return model.model_validate(dict(destination.options))
    except ValidationError as exc:
        raise ConfigError(f"destinations.{destination.id}.options: {exc}") from None


class DiscordSink:
    """Discord bot: post alerts as embeds and answer ``/alerts`` slash commands.

    Destination: ``sink = "discord"``, ``target = "<channel id>"`` (a thread id
    works the same). For a forum channel set ``post = "forum_post"`` on the destination:
    every alert opens a post titled with the alert title.

    Environment: ``ALERTS_DISCORD_TOKEN`` (the bot token, required),
    ``ALERTS_DISCORD_GUILDS`` (comma-separated guild ids to sync the slash commands
    to on start), ``ALERTS_DISCORD_GLOBAL_COMMANDS=true`` (sync globally instead),
    ``ALERTS_DISCORD_MAX_RATELIMIT_TIMEOUT_S`` (default 30: a longer rate-limit wait
    is handed back to the dispatcher, which retries that channel later),
    ``ALERTS_DISCORD_GLOBAL_RATE_PER_S`` (default 50, Discord's global limit).

    Each message carries a ``nonce`` derived from the delivery id with
    ``enforce_nonce``, so a retry within Discord's window returns the first message
    instead of posting a second one. Mentions are disabled (``allowed_mentions``
    parses nothing): no text from a source can ping anyone.
    """

    kind: ClassVar[str] = "discord"
    Options: ClassVar[type[BaseModel]] = DiscordOptions
    Settings: ClassVar[type[BaseSettings] | None] = DiscordSettings

    def __init__(self, *, context: SinkContext, settings: DiscordSettings | None = None) -> None:
        self.context = context
        self.settings = settings or DiscordSettings()
        self.limiter = GlobalLimiter(self.settings.global_rate_per_s)
        self._client: AlertsClient | None = None
        self._front: Any = None

    @classmethod
    def configured(cls) -> bool:
        """A bot token is in the environment: start the bot even with no destination
        in config yet (channels subscribe with slash commands)."""
        return DiscordSettings().token is not None

    @property
    def client(self) -> AlertsClient:
        if self._client is None:
            raise RuntimeError("DiscordSink.start() has not run")
        return self._client

    async def start(self) -> None:
        if self.settings.token is None:
            raise ConfigError("ALERTS_DISCORD_TOKEN: required by sink 'discord' (the bot token)")
        self._client = AlertsClient(self.settings, self.limiter)
        try:
            await self._client.login(self.settings.token.get_secret_value())
        except discord.LoginFailure:
            await self._client.close()
            raise ConfigError("ALERTS_DISCORD_TOKEN: Discord rejected the bot token") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: a channel id and known options."""
        _channel_id(destination)
        _options(DiscordOptions, destination)

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)

    async def send(self, delivery: Delivery) -> str | None:
        destination = delivery.destination
        try:
            channel_id = _channel_id(destination)
            options: DiscordOptions = _options(DiscordOptions, destination)
        except ConfigError as exc:
            raise DestinationUnavailable(str(exc)) from None
        embed = render_embed(delivery.event)
        http = self.client.http
        if options.post == "forum_post":
            params = handle_message_parameters(
                embed=embed,
                allowed_mentions=allowed_mentions(),
                channel_payload={"name": thread_name(delivery.event)},
            )

            route = Route("POST", "/channels/{channel_id}/threads", channel_id=channel_id)

            async def post() -> str:
                thread = await http.request(route, json=params.payload)
                return str(thread["id"])

            return await _guarded(post)
        params = handle_message_parameters(
            embed=embed, allowed_mentions=allowed_mentions(), nonce=delivery.idempotency_key
        )

        async def message() -> str:
            return str((await http.send_message(channel_id, params=params))["id"])

        return await _guarded(message)

    async def listen(self, commands: CommandService) -> None:
        """Connect to the gateway and answer ``/alerts`` until cancelled."""
        from alerts.chat.discord import DiscordCommands

        if self._front is None:  # one command tree per client, kept across restarts
            self._front = DiscordCommands(
                self.client,
                commands,
                guilds=self.settings.guilds,
                global_commands=self.settings.global_commands,
            )
        self._front.service = commands
        await self._front.run()


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
    ``ALERTS_DISCORD_WEBHOOK_URL``. Options: ``thread_id`` to post into a thread,
    ``forum = true`` for a forum channel's webhook (a post per alert).

    Messages are sent with ``wait=true`` and the returned message id is stored.
    Webhooks take no nonce: if the service dies after Discord accepted a message
    and before the outbox recorded it, that one alert is posted again on restart.
    The window is one HTTP round trip plus one store write.
    """

    kind: ClassVar[str] = "discord_webhook"
    Options: ClassVar[type[BaseModel]] = WebhookOptions
    Settings: ClassVar[type[BaseSettings] | None] = DiscordSettings

    def __init__(self, *, context: SinkContext, settings: DiscordSettings | None = None) -> None:
        self.context = context
        self.settings = settings or DiscordSettings()
        self._session: aiohttp.ClientSession | None = None
        self._webhooks: dict[str, discord.Webhook] = {}

    @classmethod
    def configured(cls) -> bool:
        """Webhook URLs are in the environment."""
        return bool(DiscordSettings().webhook_urls())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for name, url in self.settings.webhook_urls().items():
            match = _WEBHOOK_URL.search(url)
            if match is None:
                raise ConfigError(f"ALERTS_DISCORD_WEBHOOKS.{name}: not a Discord webhook URL")
            self._webhooks[name] = discord.Webhook.partial(
                int(match["id"]), match["token"], session=self._session
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: known options and a webhook name the
        environment defines (URLs are secrets, checked at start)."""
        _webhook_named(DiscordSettings(), destination)
        _options(WebhookOptions, destination)

    def validate_destination(self, destination: Destination) -> None:
        _webhook_named(self.settings, destination)
        _options(WebhookOptions, destination)

    async def send(self, delivery: Delivery) -> str | None:
        destination = delivery.destination
        webhook = self._webhooks.get(destination.target)
        if webhook is None:
            raise DestinationUnavailable(f"no webhook named {destination.target!r}")
        options: WebhookOptions = _options(WebhookOptions, destination)
        extra: dict[str, Any] = {}
        if options.thread_id:
            extra["thread"] = discord.Object(int(options.thread_id))
        elif options.forum:
            extra["thread_name"] = thread_name(delivery.event)

        async def execute() -> str:
            message = await webhook.send(
                embed=render_embed(delivery.event),
                allowed_mentions=allowed_mentions(),
                wait=True,
                **extra,
            )
            return str(message.id)

        return await _guarded(execute)
