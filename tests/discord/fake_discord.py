"""A local Discord, faithful enough for the real discord.py: REST and gateway.

What it emulates, from Discord's documentation and discord.py's expectations:

* REST under ``/api/v10``: login (``/users/@me``, ``/oauth2/applications/@me``),
  messages (``nonce`` + ``enforce_nonce`` deduplication, replies with a
  ``message_reference``), message edits (``PATCH /channels/{channel.id}/messages/
  {message.id}``: only the bot's own, 404 Unknown Message (10008) once deleted),
  forum posts, webhooks (``wait``, ``thread_id``, ``thread_name``) and their message
  edits (``PATCH /webhooks/{id}/{token}/messages/{message.id}``, ``thread_id``),
  command sync, interaction callbacks.
* Rate limits with the real headers: per-route buckets (``X-RateLimit-Limit``,
  ``-Remaining``, ``-Reset``, ``-Reset-After``, ``-Bucket``) and a global limit for
  bot requests; edits have buckets of their own (per channel, per webhook), as
  Discord's per-route limits do; a 429 carries ``retry_after`` and ``global`` in its body,
  ``X-RateLimit-Scope`` and ``Retry-After`` headers and a ``Via`` header (without
  it discord.py takes a 429 for a Cloudflare ban).
* Errors with Discord's codes: 401 (bad token), 403 Missing Access (50001),
  404 Unknown Channel (10003) / Unknown Webhook (10015) / Unknown Message (10008),
  403 for an edit of another author's message (50005), 400 for messages posted
  straight into a forum (50008); a ``Fault`` injects any other (30046, the limit on
  edits of messages older than an hour, say).
* The gateway: HELLO → IDENTIFY → READY → GUILD_CREATE, heartbeats, dispatch of
  ``INTERACTION_CREATE`` and ``GUILD_DELETE``.
* Direct messages: DM channels (type 1, ``DM`` in Channel Types; no guild, the user
  in ``recipients``: OpenAPI ``PrivateChannelResponse``), ``POST /users/@me/channels``
  with a ``recipient_id`` (operation ``create_dm``: it returns the existing DM with
  that user, or opens one), and interactions from the bot's DM (``context`` 1 =
  ``BOT_DM``), which carry ``user`` instead of ``member`` and no ``guild_id`` (Discord
  docs, Interactions → "Interaction Object": "member is sent when the interaction is
  invoked in a guild, and user is sent when invoked in a DM"; discord.py
  ``Interaction._from_data`` reads them so). A guild-installed app's
  ``authorizing_integration_owners`` is ``{"0": "0"}`` there (docs: "the value is
  ``0`` if the interaction was triggered from a DM with the app's bot user").
* Interaction follow-ups: after a deferred answer (callback type 5), the bot sends
  ``POST /webhooks/{application.id}/{interaction.token}`` (operation
  ``execute_webhook``; discord.py ``Interaction.followup``).

Every request is checked against Discord's OpenAPI spec and so is every response
the fake gives (``violations`` collects the problems; the fixture fails the test
on any). Bodies are ``application/json`` exactly, as discord.py requires.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from discord_openapi import OpenApi

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MANAGE_CHANNELS = 1 << 4
ADMIN_PERMISSIONS = (1 << 41) - 1

TEXT, DM, PUBLIC_THREAD, FORUM = 0, 1, 11, 15

RAW_BODY = web.RequestKey("raw_body", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Snowflakes:
    """Real-shaped ids: a timestamp part and an increment (18-19 digits)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0xFFF)


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).isoformat()


def user_json(user_id: int) -> dict[str, Any]:
    """A user as Discord sends one (OpenAPI ``UserResponse``)."""
    return {
        "id": str(user_id),
        "username": f"user{user_id % 1000}",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": None,
    }


@dataclass
class Channel:
    id: int
    guild_id: int | None  # None for a DM
    name: str
    type: int = TEXT
    parent_id: int | None = None
    forbidden: bool = False
    recipient: int | None = None  # a DM's user

    def to_json(self) -> dict[str, Any]:
        if self.type == DM:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [user_json(self.recipient)],
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "flags": 0,
            "parent_id": str(self.parent_id) if self.parent_id else None,
        }
        if self.type == FORUM:
            data |= {"available_tags": [], "default_reaction_emoji": None}
        return data


@dataclass
class Message:
    id: int
    channel_id: int
    payload: Mapping[str, Any]
    author: Mapping[str, Any]
    nonce: str | None = None
    webhook_id: int | None = None
    created: float = field(default_factory=time.time)
    reference: Message | None = None  # the message this one replies to
    edits: list[Mapping[str, Any]] = field(default_factory=list)  # each PATCH body, in order
    edited: float | None = None
    deleted: bool = False

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    def edit(self, patch: Mapping[str, Any]) -> None:
        """Apply a PATCH: the fields it sets replace the message's (Discord's rule)."""
        self.edits.append(dict(patch))
        self.payload = {**self.payload, **{k: v for k, v in patch.items() if k != "flags"}}
        self.edited = time.time()

    def to_json(self, *, nested: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": 19 if self.reference is not None else 0,
            "content": self.payload.get("content") or "",
            "author": dict(self.author),
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "attachments": [],
            "embeds": [{**e, "type": "rich"} for e in self.embeds],
            "components": [],
            "timestamp": iso(self.created),
            "edited_timestamp": iso(self.edited) if self.edited is not None else None,
            "flags": 0,
            "pinned": False,
            "tts": False,
        }
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.reference is not None:
            data["message_reference"] = {
                "type": 0,
                "channel_id": str(self.reference.channel_id),
                "message_id": str(self.reference.id),
            }
            if nested:  # a referenced message carries no reference of its own
                gone = self.reference.deleted
                data["referenced_message"] = None if gone else self.reference.to_json(nested=False)
        return data


@dataclass
class Bucket:
    """One rate-limit bucket: ``limit`` requests per fixed window of ``window_s``."""

    hash: str
    limit: int
    window_s: float
    key: str = ""
    used: int = 0
    reset_at: float = 0.0

    def take(self, now: float) -> bool:
        if now >= self.reset_at:
            self.used, self.reset_at = 0, now + self.window_s
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        reset_after = max(self.reset_at - now, 0.0)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.limit - self.used, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.hash,
        }


@dataclass(frozen=True)
class Fault:
    """An injected answer for the next matching request (a 429 storm, a 503)."""

    status: int
    scope: str = "user"
    retry_after_s: float = 0.2
    path_contains: str = "/messages"
    code: int = 0  # Discord's JSON error code of an injected 4xx
    method: str | None = None  # only requests of this method (None: any)


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    status: int
    bucket: str | None
    scope: str | None
    at: float
    key: str | None = None


@dataclass
class Limits:
    """Rate limits the fake enforces (Discord's real sizes by default)."""

    global_per_s: int = 50
    messages_per_channel: int = 5
    messages_window_s: float = 5.0
    webhook_per_id: int = 5
    webhook_window_s: float = 2.0
    edits_per_channel: int = 5
    edits_window_s: float = 5.0
    webhook_edits_per_id: int = 5
    webhook_edits_window_s: float = 2.0
    # Discord docs (Create Message, ``enforce_nonce``): a nonce is checked for
    # uniqueness "in the past few minutes"; tests shorten it to reach past it.
    nonce_window_s: float = 300.0
    history_per_channel: int = 50  # reads of a channel's messages per window
    history_window_s: float = 1.0


class FakeDiscord:
    """The fake. ``await start()`` returns its base URL; point discord.py at it
    with ``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``."""

    token = "fake-bot-token"

    def __init__(self, *, api: OpenApi | None, limits: Limits | None = None) -> None:
        self.api = api
        self.limits = limits or Limits()
        self.snowflake = Snowflakes()
        self.application_id = self.snowflake()
        self.bot_user = {
            "id": str(self.application_id),
            "username": "alerts-bot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
        }
        self.guilds: dict[int, str] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: list[Message] = []
        self.webhooks: dict[int, tuple[str, int]] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.callbacks: dict[int, dict[str, Any]] = {}
        self.violations: list[str] = []
        self.hits: list[Hit] = []
        self.faults: deque[Fault] = deque()
        self.validate = api is not None
        self._buckets: dict[str, Bucket] = {}
        self._global = Bucket("global", self.limits.global_per_s, 1.0)
        self._nonces: dict[tuple[int, str], Message] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = itertools.count(1)
        self._callback_waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._followup_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._interactions: dict[str, int] = {}  # token → channel of an interaction
        self._identified = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- set-up ------------------------------------------------------------------

    def add_guild(self, name: str = "Campaign") -> int:
        guild_id = self.snowflake()
        self.guilds[guild_id] = name
        return guild_id

    def add_channel(
        self, guild_id: int, name: str, *, type: int = TEXT, parent_id: int | None = None
    ) -> int:
        channel_id = self.snowflake()
        self.channels[channel_id] = Channel(channel_id, guild_id, name, type, parent_id)
        return channel_id

    def dm_with(self, user_id: int) -> int | None:
        """The id of the bot's DM channel with ``user_id``, if one was opened."""
        return next(
            (c.id for c in self.channels.values() if c.type == DM and c.recipient == user_id),
            None,
        )

    def add_dm(self, user_id: int) -> int:
        """The bot's DM channel with ``user_id`` (opened by the user writing to the bot)."""
        found = self.dm_with(user_id)
        if found is not None:
            return found
        channel_id = self.snowflake()
        self.channels[channel_id] = Channel(channel_id, None, "", DM, recipient=user_id)
        return channel_id

    def set_limits(self, limits: Limits) -> None:
        """New limits from now on (existing per-route buckets are forgotten)."""
        self.limits = limits
        self._buckets.clear()
        self._global = Bucket("global", limits.global_per_s, 1.0)

    def forbid(self, channel_id: int) -> None:
        self.channels[channel_id].forbidden = True

    def add_webhook(self, channel_id: int) -> str:
        webhook_id = self.snowflake()
        token = f"wh-{webhook_id:x}-" + "t" * 48
        self.webhooks[webhook_id] = (token, channel_id)
        return f"https://discord.com/api/webhooks/{webhook_id}/{token}"

    def messages_in(self, channel_id: int) -> list[Message]:
        return [m for m in self.messages if m.channel_id == channel_id]

    def visible_in(self, channel_id: int) -> list[Message]:
        """What a member sees in the channel: its messages that were not deleted."""
        return [m for m in self.messages_in(channel_id) if not m.deleted]

    def message(self, message_id: int | str) -> Message:
        return next(m for m in self.messages if m.id == int(message_id))

    def delete_message(self, message_id: int | str) -> None:
        """A moderator deletes a message (its edits and replies to it fail from now on)."""
        self.message(message_id).deleted = True

    def edits_of(self, message_id: int | str) -> list[Mapping[str, Any]]:
        return self.message(message_id).edits

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _routes(self, app: web.Application) -> None:
        p = API_PREFIX
        app.router.add_get(f"{p}/users/@me", self._me)
        app.router.add_get(f"{p}/oauth2/applications/@me", self._application)
        app.router.add_post(f"{p}/users/@me/channels", self._create_dm)
        app.router.add_post(f"{p}/channels/{{channel_id}}/messages", self._create_message)
        app.router.add_get(f"{p}/channels/{{channel_id}}/messages", self._list_messages)
        app.router.add_patch(
            f"{p}/channels/{{channel_id}}/messages/{{message_id}}", self._edit_message
        )
        app.router.add_patch(
            f"{p}/webhooks/{{webhook_id}}/{{token}}/messages/{{message_id}}",
            self._edit_webhook_message,
        )
        app.router.add_post(f"{p}/channels/{{channel_id}}/threads", self._create_thread)
        app.router.add_post(f"{p}/webhooks/{{webhook_id}}/{{token}}", self._execute_webhook)
        app.router.add_put(f"{p}/applications/{{app_id}}/commands", self._sync_commands)
        app.router.add_put(
            f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self._sync_commands
        )
        app.router.add_post(f"{p}/interactions/{{id}}/{{token}}/callback", self._callback)
        app.router.add_get("/gateway", self._gateway)

    # --- the HTTP pipeline -------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        path = request.path.removeprefix(API_PREFIX)
        is_bot = "Authorization" in request.headers
        global_ok = True
        if is_bot and not path.startswith("/interactions/"):
            global_ok = self._global.take(time.monotonic())  # on arrival, before the slow part
        body = await self._body(request)
        if self.validate and self.api is not None:
            content_type = request.headers.get("Content-Type")
            problems = self.api.check_request(
                request.method, path, dict(request.query), body, content_type=content_type
            )
            if problems:
                self.violations += problems
                return self._error(request, 400, 50035, "Invalid Form Body: " + problems[0])
        if is_bot and request.headers["Authorization"] != f"Bot {self.token}":
            return self._error(request, 401, 0, "401: Unauthorized")
        fault = self._take_fault(request.method, path)
        if fault is not None:
            if fault.scope == "cloudflare":  # an HTML page, no Via header: an IP ban
                self.hits.append(Hit(request.method, path, 429, None, "cloudflare", time.time()))
                return web.Response(status=429, text="<html>error 1015</html>")
            if fault.status == 429:
                return self._too_many(request, fault.retry_after_s, scope=fault.scope)
            return self._error(request, fault.status, fault.code, "injected failure")
        if not global_ok:
            retry = max(self._global.reset_at - time.monotonic(), 0.001)
            return self._too_many(request, retry, scope="global")
        return await handler(request)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        if fault.path_contains in path and fault.method in (None, method):
            return self.faults.popleft()
        return None

    @staticmethod
    async def _body(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        raw = await request.read()
        request[RAW_BODY] = raw
        return json.loads(raw) if raw else None

    def _json(
        self,
        request: web.Request,
        status: int,
        body: Any,
        *,
        bucket: Bucket | None = None,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        path = request.path.removeprefix(API_PREFIX)
        if self.validate and self.api is not None:
            self.violations += self.api.check_response(request.method, path, status, body)
        all_headers = {"Via": "1.1 google", **(bucket.headers(time.monotonic()) if bucket else {})}
        all_headers |= headers or {}
        key = "global" if scope == "global" else (bucket.key if bucket else None)
        self.hits.append(
            Hit(
                request.method,
                path,
                status,
                bucket.hash if bucket else None,
                scope,
                time.time(),
                key,
            )
        )
        if body is None:
            return web.Response(status=status, headers=all_headers)
        all_headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)

    def _error(
        self,
        request: web.Request,
        status: int,
        code: int,
        message: str,
        bucket: Bucket | None = None,
    ) -> web.Response:
        return self._json(request, status, {"code": code, "message": message}, bucket=bucket)

    def _too_many(
        self,
        request: web.Request,
        retry_after_s: float,
        *,
        scope: str,
        bucket: Bucket | None = None,
    ) -> web.Response:
        body = {
            "code": 0,
            "message": "You are being rate limited.",
            "retry_after": round(retry_after_s, 3),
            "global": scope == "global",
        }
        headers = {"X-RateLimit-Scope": scope, "Retry-After": str(max(int(retry_after_s), 1))}
        if scope == "global":
            headers["X-RateLimit-Global"] = "true"
        return self._json(request, 429, body, bucket=bucket, scope=scope, headers=headers)

    def _bucket(self, key: str, limit: int, window_s: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            route = key.split(":", 1)[0]
            bucket = Bucket(f"{abs(hash(route)):x}"[:10], limit, window_s, key)
            self._buckets[key] = bucket
        return bucket

    # --- login -------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        private = {"mfa_enabled": False, "locale": "en-US", "verified": True, "email": None}
        return self._json(request, 200, self.bot_user | private)

    async def _application(self, request: web.Request) -> web.Response:
        app = {
            "id": str(self.application_id),
            "name": "alerts",
            "icon": None,
            "description": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "flags_new": "0",
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "owner": dict(self.bot_user),
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "team": None,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "bot": dict(self.bot_user),
        }
        return self._json(request, 200, app)

    async def _create_dm(self, request: web.Request) -> web.Response:
        """``create_dm``: the DM with ``recipient_id``, opened if need be."""
        recipient = json.loads(request[RAW_BODY]).get("recipient_id")
        if recipient is None:
            return self._error(request, 400, 50035, "Invalid Form Body: recipient_id")
        channel = self.channels[self.add_dm(int(recipient))]
        return self._json(request, 200, channel.to_json())

    # --- messages ----------------------------------------------------------------

    def _channel_or_error(
        self, request: web.Request, channel_id: int, bucket: Bucket
    ) -> Channel | web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return self._error(request, 404, 10003, "Unknown Channel", bucket)
        if channel.forbidden:
            return self._error(request, 403, 50001, "Missing Access", bucket)
        return channel

    def _post(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        *,
        webhook_id: int | None = None,
        reference: Message | None = None,
    ) -> Message:
        author = self.bot_user if webhook_id is None else {**self.bot_user, "id": str(webhook_id)}
        nonce = payload.get("nonce")
        message = Message(
            self.snowflake(),
            channel_id,
            payload,
            dict(author),
            nonce=str(nonce) if nonce is not None else None,
            webhook_id=webhook_id,
            reference=reference,
        )
        self.messages.append(message)
        return message

    def _referenced(self, channel_id: int, payload: Mapping[str, Any]) -> Message | str | None:
        """The message a reply refers to; None when there is none (or it is gone and
        ``fail_if_not_exists`` is false); a reason when the reply must be refused."""
        reference = payload.get("message_reference")
        if not reference:
            return None
        wanted = int(reference["message_id"])
        found = next(
            (m for m in self.messages if m.id == wanted and not m.deleted),
            None,
        )
        if found is None or found.channel_id != channel_id:
            return None if reference.get("fail_if_not_exists") is False else "Unknown message"
        return found

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        limits = self.limits
        bucket = self._bucket(
            f"messages:{channel_id}", limits.messages_per_channel, limits.messages_window_s
        )
        found = self._channel_or_error(request, channel_id, bucket)
        if isinstance(found, web.Response):
            return found
        payload = json.loads(request[RAW_BODY])
        nonce = payload.get("nonce")
        if payload.get("enforce_nonce") and nonce is not None:
            earlier = self._nonces.get((channel_id, str(nonce)))
            if earlier is not None and time.time() - earlier.created < limits.nonce_window_s:
                return self._json(request, 200, earlier.to_json(), bucket=bucket)
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="user", bucket=bucket)
        if found.type == FORUM:
            return self._error(
                request, 400, 50008, "Cannot send messages in a non-text channel", bucket
            )
        reference = self._referenced(channel_id, payload)
        if isinstance(reference, str):
            return self._error(request, 400, 50035, f"Invalid Form Body: {reference}", bucket)
        message = self._post(channel_id, payload, reference=reference)
        if payload.get("enforce_nonce") and nonce is not None:
            self._nonces[(channel_id, str(nonce))] = message
        return self._json(request, 200, message.to_json(), bucket=bucket)

    async def _list_messages(self, request: web.Request) -> web.Response:
        """``GET /channels/{channel.id}/messages`` (Discord docs: "Get Channel
        Messages"): newest first, ``limit`` 1-100 (default 50), ``before`` / ``after``
        a message id. A nonce is not part of a message read back (only of the
        answer to its creation)."""
        channel_id = int(request.match_info["channel_id"])
        limits = self.limits
        bucket = self._bucket(
            f"history:{channel_id}", limits.history_per_channel, limits.history_window_s
        )
        found = self._channel_or_error(request, channel_id, bucket)
        if isinstance(found, web.Response):
            return found
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="user", bucket=bucket)
        query = request.query
        limit = int(query.get("limit", "50"))
        if not 1 <= limit <= 100:
            return self._error(request, 400, 50035, "Invalid Form Body: limit", bucket)
        before = int(query["before"]) if "before" in query else None
        after = int(query["after"]) if "after" in query else None
        shown = [
            m
            for m in self.messages
            if m.channel_id == channel_id
            and not m.deleted
            and (before is None or m.id < before)
            and (after is None or m.id > after)
        ]
        shown.sort(key=lambda m: m.id, reverse=True)
        body = []
        for message in shown[:limit]:
            data = message.to_json()
            data.pop("nonce", None)
            body.append(data)
        return self._json(request, 200, body, bucket=bucket)

    async def _edit_message(self, request: web.Request) -> web.Response:
        """``PATCH /channels/{channel.id}/messages/{message.id}``: the bot edits its own
        message (Discord docs: "Edit Message"; fields not sent are left as they are)."""
        channel_id = int(request.match_info["channel_id"])
        limits = self.limits
        bucket = self._bucket(
            f"edits:{channel_id}", limits.edits_per_channel, limits.edits_window_s
        )
        found = self._channel_or_error(request, channel_id, bucket)
        if isinstance(found, web.Response):
            return found
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="user", bucket=bucket)
        message = self._live_message(int(request.match_info["message_id"]), channel_id)
        if message is None:
            return self._error(request, 404, 10008, "Unknown Message", bucket)
        if message.author.get("id") != self.bot_user["id"] or message.webhook_id is not None:
            return self._error(
                request, 403, 50005, "Cannot edit a message authored by another user", bucket
            )
        message.edit(json.loads(request[RAW_BODY]))
        return self._json(request, 200, message.to_json(), bucket=bucket)

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        """``PATCH /webhooks/{id}/{token}/messages/{message.id}``: a webhook edits a
        message it sent, in a thread when ``thread_id`` says so (Discord docs: "Edit
        Webhook Message")."""
        webhook_id = int(request.match_info["webhook_id"])
        limits = self.limits
        bucket = self._bucket(
            f"webhook-edits:{webhook_id}",
            limits.webhook_edits_per_id,
            limits.webhook_edits_window_s,
        )
        known = self.webhooks.get(webhook_id)
        if known is None or known[0] != request.match_info["token"]:
            return self._error(request, 404, 10015, "Unknown Webhook", bucket)
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="shared", bucket=bucket)
        channel_id = int(request.query.get("thread_id") or known[1])
        message = self._live_message(int(request.match_info["message_id"]), channel_id)
        if message is None or message.webhook_id != webhook_id:
            return self._error(request, 404, 10008, "Unknown Message", bucket)
        message.edit(json.loads(request[RAW_BODY]))
        return self._json(request, 200, message.to_json(), bucket=bucket)

    def _live_message(self, message_id: int, channel_id: int) -> Message | None:
        return next(
            (
                m
                for m in self.messages
                if m.id == message_id and m.channel_id == channel_id and not m.deleted
            ),
            None,
        )

    async def _create_thread(self, request: web.Request) -> web.Response:
        forum_id = int(request.match_info["channel_id"])
        bucket = self._bucket(f"threads:{forum_id}", 5, 5.0)
        found = self._channel_or_error(request, forum_id, bucket)
        if isinstance(found, web.Response):
            return found
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="user", bucket=bucket)
        payload = json.loads(request[RAW_BODY])
        if found.type != FORUM or "message" not in payload:
            return self._error(request, 400, 50024, "Cannot execute action on this channel type")
        thread_id = self.add_channel(
            found.guild_id, payload["name"], type=PUBLIC_THREAD, parent_id=forum_id
        )
        message = self._post(thread_id, payload["message"])
        message.id = thread_id
        return self._json(request, 201, self._thread_json(thread_id, message), bucket=bucket)

    def _thread_json(self, thread_id: int, message: Message) -> dict[str, Any]:
        return {
            **self.channels[thread_id].to_json(),
            "owner_id": str(self.application_id),
            "thread_metadata": {
                "archived": False,
                "archive_timestamp": iso(),
                "auto_archive_duration": 4320,
                "locked": False,
                "create_timestamp": iso(),
            },
            "message_count": 1,
            "member_count": 1,
            "total_message_sent": 1,
            "rate_limit_per_user": 0,
            "last_message_id": str(message.id),
            "member": {
                "id": str(thread_id),
                "user_id": str(self.application_id),
                "join_timestamp": iso(),
                "flags": 1,
            },
            "message": message.to_json(),
        }

    async def _execute_webhook(self, request: web.Request) -> web.Response:
        webhook_id = int(request.match_info["webhook_id"])
        bucket = self._bucket(
            f"webhook:{webhook_id}", self.limits.webhook_per_id, self.limits.webhook_window_s
        )
        if webhook_id == self.application_id:
            return self._followup(request, bucket)
        known = self.webhooks.get(webhook_id)
        if known is None or known[0] != request.match_info["token"]:
            return self._error(request, 404, 10015, "Unknown Webhook", bucket)
        if not bucket.take(time.monotonic()):
            retry = bucket.reset_at - time.monotonic()
            return self._too_many(request, retry, scope="shared", bucket=bucket)
        payload = json.loads(request[RAW_BODY])
        channel_id = known[1]
        is_forum = self.channels[channel_id].type == FORUM
        if is_forum and "thread_id" not in request.query and "thread_name" not in payload:
            return self._error(
                request,
                400,
                220001,
                "Webhooks posted to forum channels must have a thread_name or thread_id",
                bucket,
            )
        if "thread_id" in request.query:
            channel_id = int(request.query["thread_id"])
        elif "thread_name" in payload:
            channel_id = self.add_channel(
                self.channels[known[1]].guild_id,
                payload["thread_name"],
                type=PUBLIC_THREAD,
                parent_id=known[1],
            )
        message = self._post(channel_id, payload, webhook_id=webhook_id)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return self._json(request, 200, message.to_json(), bucket=bucket)
        return self._json(request, 204, None, bucket=bucket)

    def _followup(self, request: web.Request, bucket: Bucket) -> web.Response:
        """A follow-up message of an interaction (its token stands for the webhook's)."""
        token = request.match_info["token"]
        channel_id = self._interactions.get(token)
        if channel_id is None:
            return self._error(request, 404, 10015, "Unknown Webhook", bucket)
        payload = json.loads(request[RAW_BODY])
        message = self._post(channel_id, payload, webhook_id=self.application_id)
        waiter = self._followup_waiters.pop(token, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return self._json(request, 200, message.to_json(), bucket=bucket)
        return self._json(request, 204, None, bucket=bucket)

    # --- application commands and interactions -----------------------------------

    async def _sync_commands(self, request: web.Request) -> web.Response:
        guild = request.match_info.get("guild_id")
        guild_id = int(guild) if guild else None
        created = []
        for command in json.loads(request[RAW_BODY]):
            created.append(
                {
                    "id": str(self.snowflake()),
                    "application_id": str(self.application_id),
                    "version": str(self.snowflake()),
                    "type": command.get("type", 1),
                    "name": command["name"],
                    "description": command.get("description", ""),
                    "default_member_permissions": _str_or_none(
                        command.get("default_member_permissions")
                    ),
                    "options": command.get("options", []),
                    "dm_permission": command.get("dm_permission", True),
                    "contexts": command.get("contexts"),
                    "integration_types": command.get("integration_types"),
                    "nsfw": command.get("nsfw", False),
                    **({"guild_id": str(guild_id)} if guild_id else {}),
                }
            )
        self.commands[guild_id] = created
        return self._json(request, 200, created)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction_id = int(request.match_info["id"])
        payload = json.loads(request[RAW_BODY])
        self.callbacks[interaction_id] = payload
        waiter = self._callback_waiters.pop(interaction_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return self._json(request, 204, None)
        body: dict[str, Any] = {"interaction": {"id": str(interaction_id), "type": 2}}
        if payload.get("type") == 4:
            channel_id = self.snowflake()
            message = Message(self.snowflake(), channel_id, payload.get("data", {}), self.bot_user)
            body["resource"] = {"type": 4, "message": message.to_json()}
            body["interaction"]["response_message_id"] = str(message.id)
            body["interaction"]["response_message_ephemeral"] = bool(
                payload.get("data", {}).get("flags", 0) & 64
            )
        return self._json(request, 200, body)

    # --- the gateway -------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                await self._on_gateway(ws, json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
        return ws

    async def _on_gateway(self, ws: web.WebSocketResponse, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        if op == 1:
            await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._send(ws, "READY", self._ready())
            for guild_id in self.guilds:
                await self._send(ws, "GUILD_CREATE", self._guild_json(guild_id))
            self._identified.set()

    async def _send(self, ws: web.WebSocketResponse, event: str, data: Any) -> None:
        await ws.send_json({"op": 0, "t": event, "s": next(self._seq), "d": data})

    async def dispatch(self, event: str, data: Any) -> None:
        for ws in list(self._sockets):
            await self._send(ws, event, data)

    async def wait_identified(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._identified.wait(), timeout_s)

    def _ready(self) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": "fake-session",
            "resume_gateway_url": self.base_url.replace("http", "ws", 1) + "/gateway",
            "shard": [0, 1],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }

    def _guild_json(self, guild_id: int) -> dict[str, Any]:
        return {
            "id": str(guild_id),
            "name": self.guilds[guild_id],
            "icon": None,
            "owner_id": str(self.snowflake()),
            "unavailable": False,
            "member_count": 2,
            "large": False,
            "features": [],
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": "0",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "members": [],
            "channels": [
                c.to_json()
                for c in self.channels.values()
                if c.guild_id == guild_id and c.type != PUBLIC_THREAD
            ],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "joined_at": iso(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
        }

    async def remove_guild(self, guild_id: int) -> None:
        """The bot was kicked: Discord sends GUILD_DELETE without ``unavailable``."""
        self.guilds.pop(guild_id, None)
        await self.dispatch("GUILD_DELETE", {"id": str(guild_id)})

    async def interact(
        self,
        *,
        channel_id: int,
        user_id: int,
        permissions: int,
        subcommand: str,
        options: Mapping[str, str] | None = None,
        autocomplete: str | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """Run ``/alerts <subcommand> …`` as a member (as the user, in a DM channel);
        return the bot's callback body. A deferred answer (type 5) waits for the
        follow-up and returns ``{"type": 5, "data": <the follow-up's body>}``.

        With ``autocomplete`` set to an option name, that option is focused and the
        interaction is an autocomplete request (type 4).
        """
        channel = self.channels[channel_id]
        interaction_id = self.snowflake()
        token = f"itoken-{interaction_id}"
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        followup: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._callback_waiters[interaction_id] = waiter
        self._followup_waiters[token] = followup
        self._interactions[token] = channel_id
        sub_options = [
            {"name": k, "type": 3, "value": v, **({"focused": True} if k == autocomplete else {})}
            for k, v in (options or {}).items()
        ]
        command = next(
            (c for cmds in self.commands.values() for c in cmds if c["name"] == "alerts"), None
        )
        data: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 4 if autocomplete else 2,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": channel.to_json(),
            "app_permissions": str(ADMIN_PERMISSIONS),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 8 * 1024 * 1024,
            "data": {
                "id": command["id"] if command else str(self.snowflake()),
                "name": "alerts",
                "type": 1,
                "options": [{"name": subcommand, "type": 1, "options": sub_options}],
            },
        }
        if channel.type == DM:
            data |= {
                "user": user_json(user_id),
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,
            }
        else:
            assert channel.guild_id is not None
            data |= {
                "guild_id": str(channel.guild_id),
                "guild": {"id": str(channel.guild_id), "features": [], "locale": "en-US"},
                "guild_locale": "en-US",
                "member": {
                    "user": user_json(user_id),
                    "roles": [],
                    "joined_at": iso(),
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "permissions": str(permissions),
                },
                "authorizing_integration_owners": {"0": str(channel.guild_id)},
                "context": 0,
            }
            data["data"]["guild_id"] = str(channel.guild_id)
        await self.dispatch("INTERACTION_CREATE", data)
        try:
            callback = await asyncio.wait_for(waiter, timeout_s)
            if callback.get("type") == 5:
                return {"type": 5, "data": await asyncio.wait_for(followup, timeout_s)}
            return callback
        finally:
            self._callback_waiters.pop(interaction_id, None)
            self._followup_waiters.pop(token, None)

    # --- what tests look at -------------------------------------------------------

    def invalid_beyond_first_429(self) -> int:
        """4xx answers, not counting the first 429 of each bucket (the global one included)."""
        errors = [h for h in self.hits if 400 <= h.status < 500]
        first_429 = {h.key for h in errors if h.status == 429}
        return len(errors) - len(first_429)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
