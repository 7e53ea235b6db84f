"""Matrix sink: alerts into Matrix rooms with matrix-nio (see ``MatrixSink``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import aiohttp
import nio
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator
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
from alerts.render.matrix import render

if TYPE_CHECKING:
    from alerts.chat.commands import CommandService
    from alerts.model import Delivery, Destination
    from alerts.sinks import SinkContext

log = logging.getLogger(__name__)

KV_NAMESPACE = "matrix"
ROOM_ID = re.compile(r"^![^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
ROOM_ALIAS = re.compile(r"^#[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")

# Matrix errcodes → error classes; HTTP status decides when the errcode is unknown.
ERRCODE_ERRORS: Mapping[str, type[SendError]] = {
    "M_LIMIT_EXCEEDED": RateLimitedError,
    "M_FORBIDDEN": DestinationUnavailable,
    "M_NOT_FOUND": DestinationUnavailable,
    "M_GUEST_ACCESS_FORBIDDEN": DestinationUnavailable,
    "M_UNKNOWN_TOKEN": PlatformUnavailable,  # logged out or token revoked: operator's fix
    "M_MISSING_TOKEN": PlatformUnavailable,
    "M_RESOURCE_LIMIT_EXCEEDED": RetryableSendError,
    "M_TOO_LARGE": RejectedError,
    "M_BAD_JSON": RejectedError,
    "M_NOT_JSON": RejectedError,
    "M_INVALID_PARAM": RejectedError,
    "M_UNRECOGNIZED": RejectedError,
}
STATUS_ERRORS: Mapping[int, type[SendError]] = {
    403: DestinationUnavailable,
    404: DestinationUnavailable,
    429: RateLimitedError,
    502: PlatformUnavailable,  # the homeserver is down behind its proxy
    503: PlatformUnavailable,
    504: PlatformUnavailable,
}


def error_for(response: nio.ErrorResponse) -> SendError:
    """The ``SendError`` a failed nio response stands for (tables, then status class)."""
    status = _status(response)
    cls = ERRCODE_ERRORS.get(response.status_code or "") or STATUS_ERRORS.get(status or 0)
    if cls is None:
        cls = RejectedError if status is not None and 400 <= status < 500 else RetryableSendError
    message = f"Matrix: {response.status_code or 'HTTP ' + str(status)}: {response.message}"
    if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        message += (
            " (the bot's login was revoked or has expired: restart alerts with a valid "
            "ALERTS_MATRIX_PASSWORD or ALERTS_MATRIX_ACCESS_TOKEN; deliveries wait)"
        )
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after_s=(response.retry_after_ms or 5000) / 1000)
    return cls(message)


def txn_id_for(idempotency_key: str) -> str:
    """The Matrix transaction id of a delivery (stable, URL-safe)."""
    safe = re.sub(r"[^A-Za-z0-9._~-]", "_", idempotency_key)
    return (
        f"alerts.{safe}"
        if len(safe) <= 64
        else "alerts." + hashlib.sha256(idempotency_key.encode()).hexdigest()
    )


def _status(response: nio.Response) -> int | None:
    transport = getattr(response, "transport_response", None)
    return int(transport.status) if transport is not None else None


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class MatrixSettings(BaseSettings):
    """Deployment settings of the Matrix bot, from ``ALERTS_MATRIX_*``."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_MATRIX_", extra="ignore")

    homeserver: str = ""
    user: str = ""
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_name: str = "alerts"
    encryption: bool = True
    store_key: SecretStr = SecretStr("alerts")
    invite_users: Annotated[list[str], NoDecode] = []
    invite_servers: Annotated[list[str], NoDecode] = []
    invite_anyone: bool = False
    manage_power_level: int = 50
    command_prefix: str = "!alerts"
    sync_timeout_s: float = 30.0
    request_timeout_s: float = 30.0

    _split = field_validator("invite_users", "invite_servers", mode="before")(_comma_list)

    def user_id(self) -> str:
        """The full mxid, ``@localpart:server`` from a bare localpart and the homeserver."""
        if self.user.startswith("@"):
            return self.user
        host = re.sub(r"^https?://", "", self.homeserver).split("/")[0].split(":")[0]
        return f"@{self.user}:{host}"


class MatrixOptions(BaseModel):
    """Options of a Matrix destination."""

    model_config = ConfigDict(extra="forbid")

    msgtype: Literal["m.notice", "m.text"] = "m.notice"


SyncHook = Callable[[nio.SyncResponse, bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Turn:
    """A send's slot: when it starts and the spacing it was paced with."""

    start_s: float
    interval_s: float


class Pacer:
    """Spaces one account's sends to the homeserver's rate limit, learnt from its 429s.

    Matrix rate limits are per user, not per room, and Synapse holds every refused
    request for half a second before answering 429: a sender that keeps bumping into
    the limit gets a fraction of it. Synapse's limit is a leaky bucket, and a 429's
    ``retry_after_ms`` is the time until the bucket has room for one more message:
    never more than the bucket's spacing (1 / rate), and equal to it when the refused
    message came right after one was let in. So the pacer hands out start slots
    ``interval_s`` apart, ``interval_s`` being the longest ``retry_after`` seen (at
    most ``max_interval_s``): after the first few 429s it is the server's own spacing,
    and sends go out at the limit with hardly another refusal. A 429 also moves the
    next slot past the server's retry time. A send whose slot is further off than
    ``max_wait_s`` is not sent: it comes back as ``RateLimitedError`` so the dispatcher
    reschedules that room and moves on. With no 429 for ``forget_s`` the spacing is
    dropped (the limit may have been lifted).
    """

    UNKNOWN_RETRY_S = 1.0

    def __init__(
        self,
        *,
        max_wait_s: float = 1.0,
        max_interval_s: float = 10.0,
        forget_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.max_interval_s = max_interval_s
        self.forget_s = forget_s
        self.clock = clock
        self.interval_s = 0.0
        self._next_s = 0.0
        self._last_limited_s = 0.0

    async def wait_turn(self, *, patient: bool = False) -> Turn:
        """Sleep until this send's slot, or raise ``RateLimitedError`` if it is far off."""
        now = self.clock()
        if self.interval_s and now - self._last_limited_s > self.forget_s:
            self.interval_s = 0.0
        slot = max(now, self._next_s)
        if slot - now > self.max_wait_s and not patient:
            raise RateLimitedError(
                "Matrix: holding back to the homeserver's rate limit", retry_after_s=slot - now
            )
        self._next_s = slot + self.interval_s
        if slot > now:
            await asyncio.sleep(slot - now)
        return Turn(slot, self.interval_s)

    def limited(self, turn: Turn, retry_after_s: float | None) -> None:
        """The send of ``turn`` was refused: learn the spacing from the server's
        ``retry_after`` (a 429 without one only pushes the next slot back a second)."""
        self._last_limited_s = self.clock()
        if retry_after_s is None:
            self._next_s = max(self._next_s, self.clock() + self.UNKNOWN_RETRY_S)
            return
        self._next_s = max(self._next_s, turn.start_s + retry_after_s)
        self.interval_s = min(self.max_interval_s, max(self.interval_s, retry_after_s))


class MatrixSink:
    """Matrix sink: post alerts to Matrix rooms as a bot user, with matrix-nio.

    A destination's ``target`` is a room id (``!abc:example.org``); the bot must be
    a member of the room (invite it; see ``docs/matrix.md``). Options::

        [destinations.ops]
        sink = "matrix"
        target = "!abc:example.org"
        msgtype = "m.notice"        # or "m.text" to make clients notify

    The bot logs in with ``ALERTS_MATRIX_HOMESERVER`` and ``ALERTS_MATRIX_USER`` plus
    either ``ALERTS_MATRIX_PASSWORD`` or ``ALERTS_MATRIX_ACCESS_TOKEN``. Its device id
    is kept in the store and its encryption keys under the data directory, so a
    restart is the same device: Synapse deduplicates the transaction id (derived from
    the delivery's idempotency key) per device, so a delivery retried after a crash
    shows once. Encrypted rooms work (keys are shared with every device of the room,
    verified or not, as a bot must). A 429 comes straight back as ``RateLimitedError``
    with the server's ``retry_after_ms``; forbidden / not in the room means the
    destination is parked. The same sink answers ``!alerts`` commands in rooms when
    the runtime runs it as the chat listener.
    """

    kind: ClassVar[str] = "matrix"
    Options: ClassVar[type[BaseModel]] = MatrixOptions
    Settings: ClassVar[type[BaseSettings] | None] = MatrixSettings

    def __init__(self, *, context: SinkContext, settings: MatrixSettings | None = None) -> None:
        self.context = context
        self.settings = settings or MatrixSettings()
        self.client: nio.AsyncClient | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._synced = asyncio.Condition()
        self._sync_count = 0
        self._keys_lock = asyncio.Lock()
        self._hooks: list[SyncHook] = []
        self._aliases: dict[str, str] = {}  # room alias -> room id, resolved when first used
        self.pacer = Pacer()

    @classmethod
    def configured(cls) -> bool:
        """True when the environment names a homeserver, a user and a credential."""
        settings = MatrixSettings()
        has_secret = settings.password is not None or settings.access_token is not None
        return bool(settings.homeserver and settings.user and has_secret)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Log in on the persisted device, sync once, upload keys, keep syncing."""
        settings = self.settings
        if not settings.homeserver or not settings.user:
            raise ConfigError("ALERTS_MATRIX_HOMESERVER and ALERTS_MATRIX_USER must be set")
        if settings.password is None and settings.access_token is None:
            raise ConfigError("set ALERTS_MATRIX_PASSWORD or ALERTS_MATRIX_ACCESS_TOKEN")
        store_dir = Path(self.context.data_dir) / "matrix"
        store_dir.mkdir(parents=True, exist_ok=True)
        self.client = nio.AsyncClient(
            settings.homeserver,
            settings.user_id(),
            store_path=str(store_dir),
            config=nio.AsyncClientConfig(
                max_limit_exceeded=0,
                max_timeouts=0,
                request_timeout=settings.request_timeout_s,
                encryption_enabled=settings.encryption,
                store_sync_tokens=True,
                pickle_key=settings.store_key.get_secret_value(),
            ),
        )
        try:
            await self._login(store_dir)
            await self._sync_once(first=True)
        except BaseException:
            await self.close()
            raise
        self._sync_task = asyncio.create_task(self._sync_loop(), name="matrix-sync")

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _login(self, store_dir: Path) -> None:
        client = self._client()
        user_id = self.settings.user_id()
        device_key = f"device:{user_id}"
        if self.settings.access_token is not None:
            token = self.settings.access_token.get_secret_value()
            client.access_token = token
            who = await self._request(client.whoami())
            if not isinstance(who, nio.WhoamiResponse) or not who.device_id:
                raise ConfigError(f"ALERTS_MATRIX_ACCESS_TOKEN was refused: {who}")
            client.restore_login(who.user_id, who.device_id, token)
        else:
            assert self.settings.password is not None
            device_id = await self.context.store.kv_get(KV_NAMESPACE, device_key)
            if (
                device_id
                and self.settings.encryption
                and not (store_dir / f"{user_id}_{device_id}.db").exists()
            ):
                log.warning(
                    "Matrix: device %s has no key store under %s; logging in as a new device",
                    device_id,
                    store_dir,
                )
                device_id = None
            client.device_id = device_id
            resp = await self._request(
                client.login(
                    self.settings.password.get_secret_value(), device_name=self.settings.device_name
                )
            )
            if not isinstance(resp, nio.LoginResponse):
                raise ConfigError(f"Matrix login as {client.user_id} failed: {resp}")
        await self.context.store.kv_set(KV_NAMESPACE, device_key, str(client.device_id))
        log.info("Matrix: logged in as %s on device %s", client.user_id, client.device_id)

    # --- syncing -------------------------------------------------------------------

    def add_sync_hook(self, hook: SyncHook) -> None:
        """Call ``hook(response, catching_up)`` after every sync (the chat front end)."""
        self._hooks.append(hook)

    def remove_sync_hook(self, hook: SyncHook) -> None:
        self._hooks.remove(hook)

    async def _sync_once(self, *, first: bool = False) -> None:
        client = self._client()
        timeout_ms = 0 if first else int(self.settings.sync_timeout_s * 1000)
        resp = await client.sync(timeout=timeout_ms, full_state=first or None)
        if not isinstance(resp, nio.SyncResponse):
            raise error_for(resp)
        if client.should_upload_keys:
            await self._request(client.keys_upload())
        await self._maintain_keys()
        self._forget_left_rooms(resp)
        for hook in list(self._hooks):
            try:
                await hook(resp, first)
            except Exception:
                log.exception("Matrix: a sync hook failed; its events are skipped")
        async with self._synced:
            self._sync_count += 1
            self._synced.notify_all()

    async def _sync_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._sync_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(2.0**failures, 60.0)
                log.warning("Matrix sync failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)

    async def _maintain_keys(self) -> None:
        client = self._client()
        if client.olm is None:
            return
        async with self._keys_lock:
            if client.should_query_keys:
                await self._request(client.keys_query())
            if client.should_claim_keys:
                await self._request(client.keys_claim(client.get_users_for_key_claiming()))
            if client.outgoing_to_device_messages:
                await self._request(client.send_to_device_messages())

    def _forget_left_rooms(self, resp: nio.SyncResponse) -> None:
        client = self._client()
        for room_id in resp.rooms.leave:
            client.rooms.pop(room_id, None)
            client.invited_rooms.pop(room_id, None)

    async def wait_for_sync(self, timeout_s: float) -> bool:
        """Wait until the next sync has been processed; False on timeout."""
        async with self._synced:
            seen = self._sync_count
            try:
                await asyncio.wait_for(
                    self._synced.wait_for(lambda: self._sync_count > seen), timeout_s
                )
            except TimeoutError:
                return False
        return True

    # --- sending -------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> str | None:
        """Send one alert; the txn id makes a repeat of the same delivery a no-op."""
        options = MatrixOptions.model_validate(dict(delivery.destination.options))
        content = render(delivery.event, msgtype=options.msgtype)
        target = delivery.destination.target
        room_id = await self._room_id(target)
        try:
            return await self.send_content(room_id, content, txn_id_for(delivery.idempotency_key))
        except DestinationUnavailable as exc:
            self._aliases.pop(target, None)  # the alias may point elsewhere by now
            if room_id != target:
                raise DestinationUnavailable(f"{exc} (room alias {target})") from exc
            raise

    async def _room_id(self, target: str) -> str:
        """The room id of a destination's target: itself, or what its alias points to."""
        if not target.startswith("#"):
            return target
        known = self._aliases.get(target)
        if known is not None:
            return known
        resp = await self._request(self._client().room_resolve_alias(target))
        if isinstance(resp, nio.RoomResolveAliasResponse):
            self._aliases[target] = resp.room_id
            return str(resp.room_id)
        error = error_for(resp)
        if isinstance(error, DestinationUnavailable):
            raise DestinationUnavailable(f"Matrix: room alias {target} does not resolve: {error}")
        raise error

    async def send_content(
        self, room_id: str, content: dict[str, Any], txn_id: str, *, patient: bool = False
    ) -> str:
        """Send an ``m.room.message`` with a fixed transaction id; map failures.

        ``patient`` waits out the pacer instead of raising ``RateLimitedError``.
        """
        client = self._client()
        await self._require_room(room_id)
        try:
            await self._maintain_keys()
            turn = await self.pacer.wait_turn(patient=patient)
            resp = await client.room_send(
                room_id, "m.room.message", content, tx_id=txn_id, ignore_unverified_devices=True
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(f"Matrix homeserver unreachable: {exc!r}") from exc
        except nio.LocalProtocolError as exc:
            raise RetryableSendError(f"Matrix: could not prepare the message: {exc}") from exc
        if isinstance(resp, nio.RoomSendResponse):
            return str(resp.event_id)
        error = error_for(resp)
        if isinstance(error, RateLimitedError):
            said = getattr(resp, "retry_after_ms", None)
            self.pacer.limited(turn, said / 1000 if said is not None else None)
        raise error

    async def _require_room(self, room_id: str) -> None:
        """Make sure nio knows the room (it must, to encrypt) or say why not."""
        client = self._client()
        if room_id in client.rooms:
            return
        joined = await self._request(client.joined_rooms())
        if not isinstance(joined, nio.JoinedRoomsResponse):
            raise error_for(joined)
        if room_id not in joined.rooms:
            raise DestinationUnavailable(f"Matrix: the bot is not in room {room_id}")
        await self.wait_for_sync(self.settings.sync_timeout_s + 5)
        if room_id not in client.rooms:
            raise RetryableSendError(f"Matrix: room {room_id} not synced yet")

    async def _request(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(f"Matrix homeserver unreachable: {exc!r}") from exc

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: a room id or alias and known options."""
        if not (ROOM_ID.match(destination.target) or ROOM_ALIAS.match(destination.target)):
            raise ConfigError(
                f"destinations.{destination.id}.target: {destination.target!r} is not a Matrix "
                "room id or alias (like !abc:example.org or #alerts:example.org)"
            )
        try:
            MatrixOptions.model_validate(dict(destination.options))
        except ValidationError as exc:
            raise ConfigError(f"destinations.{destination.id}: {exc}") from None

    # --- chat ----------------------------------------------------------------------

    async def listen(self, commands: CommandService) -> None:
        """Answer ``!alerts`` commands and follow invites and kicks until cancelled."""
        from alerts.chat.matrix import MatrixRooms

        rooms = MatrixRooms(sink=self, commands=commands, settings=self.settings)
        self.add_sync_hook(rooms.on_sync)
        try:
            await asyncio.Event().wait()
        finally:
            self.remove_sync_hook(rooms.on_sync)

    def _client(self) -> nio.AsyncClient:
        if self.client is None:
            raise RetryableSendError("Matrix sink is not started")
        return self.client
