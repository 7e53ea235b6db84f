"""The Discord session: the bot's client and the webhooks, under the sinks and chat.

``DiscordSession`` is the logged-in bot (discord.py's client with the intents,
allowed mentions and global rate limiter alerts uses); ``WebhookSession`` holds
the incoming webhooks named in the environment. Both translate every failure into
the error tree through one table (``CODE_ERRORS`` for Discord's JSON error codes,
then ``STATUS_ERRORS`` for HTTP statuses; otherwise 5xx is retryable and other 4xx
rejected), in ``guarded``. The sinks (``sink.py``) and the slash commands
(``chat.py``) stand on it and never on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, Any, TypeVar

import aiohttp
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.errors import (
    ConfigError,
    DestinationUnavailable,
    MessageGone,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
    SendError,
)

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord

T = TypeVar("T")

SNOWFLAKE = re.compile(r"[1-9][0-9]{5,19}")
WEBHOOK_URL = re.compile(r"/webhooks/(?P<id>[0-9]{5,20})/(?P<token>[A-Za-z0-9._-]+)/?$")


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
    nonce_window_s: float = Field(default=60.0, ge=0)

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


# --- errors -------------------------------------------------------------------------

# Discord's JSON error codes (docs: topics/opcodes-and-status-codes, "JSON Error Codes").
CODE_ERRORS: Mapping[int, type[SendError]] = {
    10003: DestinationUnavailable,  # Unknown Channel
    10015: DestinationUnavailable,  # Unknown Webhook
    50001: DestinationUnavailable,  # Missing Access
    50013: DestinationUnavailable,  # Missing Permissions
    10008: MessageGone,  # Unknown Message: the message to edit was deleted
    30046: MessageGone,  # Maximum number of edits to messages older than 1 hour reached
    50083: MessageGone,  # Operation on an archived thread: its messages cannot be edited
    160002: MessageGone,  # a reply without Read Message History: the edit stands alone
}
# HTTP statuses, when the code is not in the table.
STATUS_ERRORS: Mapping[int, type[SendError]] = {
    401: PlatformUnavailable,  # the token was revoked: not the delivery's fault; wait for a fix
    403: DestinationUnavailable,
    404: DestinationUnavailable,
    502: PlatformUnavailable,  # Discord is down (discord.py has already retried these)
    503: PlatformUnavailable,
    504: PlatformUnavailable,
}
CLOUDFLARE_BAN_RETRY_S = 60.0


def error_for(exc: discord.HTTPException) -> SendError:
    """The ``SendError`` a failed Discord request stands for."""
    detail = f"Discord {exc.status} (code {exc.code}): {exc.text or exc}"
    if exc.status == 429:  # discord.py raises this only for a Cloudflare ban (no Via header)
        return RateLimitedError(detail, retry_after_s=CLOUDFLARE_BAN_RETRY_S)
    cls = CODE_ERRORS.get(exc.code) or STATUS_ERRORS.get(exc.status)
    if cls is None:
        cls = RetryableSendError if exc.status >= 500 else RejectedError
    return cls(detail)


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run a discord.py call, translating every failure into a ``SendError``."""
    try:
        return await call()
    except discord.RateLimited as exc:
        raise RateLimitedError(
            f"Discord asks to wait {exc.retry_after:.1f} s", retry_after_s=exc.retry_after
        ) from exc
    except discord.HTTPException as exc:
        raise error_for(exc) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise PlatformUnavailable(f"cannot reach Discord: {exc!r}") from exc


# --- pacing -------------------------------------------------------------------------

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
    ``rate_per_s / (1 s + round trip)``, e.g. 95 % of the limit at 50 ms. It runs as
    an aiohttp trace hook, i.e. after discord.py's own per-route bucket wait, right
    before a request leaves.
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


# --- the bot ------------------------------------------------------------------------


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


class DiscordSession:
    """The bot, logged in with ``ALERTS_DISCORD_TOKEN``: its client and rate limiter.

    ``open`` logs in over REST (sending needs no gateway); the chat front end
    connects the same client to the gateway when it runs."""

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self.limiter = GlobalLimiter(settings.global_rate_per_s)
        self._client: AlertsClient | None = None

    @property
    def client(self) -> AlertsClient:
        """The logged-in client."""
        if self._client is None:
            raise RetryableSendError("the Discord session is not open")
        return self._client

    async def open(self) -> None:
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


class WebhookSession:
    """The incoming webhooks named in ``ALERTS_DISCORD_WEBHOOKS`` /
    ``ALERTS_DISCORD_WEBHOOK_URL`` (their URLs are secrets: never shown)."""

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._webhooks: dict[str, discord.Webhook] = {}

    def names(self) -> list[str]:
        return sorted(self.settings.webhook_urls())

    def webhook(self, name: str) -> discord.Webhook | None:
        return self._webhooks.get(name)

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()
        for name, url in self.settings.webhook_urls().items():
            match = WEBHOOK_URL.search(url)
            if match is None:
                raise ConfigError(f"ALERTS_DISCORD_WEBHOOKS.{name}: not a Discord webhook URL")
            self._webhooks[name] = discord.Webhook.partial(
                int(match["id"]), match["token"], session=self._http
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
