"""The Matrix session: one logged-in account, the layer under the sink and the chat.

``MatrixSession`` owns the matrix-nio client and everything that is about the
account rather than about alerts or commands: login (password or access token),
the device and where it lives between runs (``DeviceHome``), the sync loop and its
hooks, end-to-end key upkeep, pacing to the homeserver's rate limit (``Pacer``) and
the mapping of Matrix failures onto the error tree (``ERRCODE_ERRORS``,
``STATUS_ERRORS``). The sink (``sink.py``) and the room front end (``chat.py``)
both stand on it and never on each other; they meet only in the package's
``MatrixSink``, which runs both on one session.

One process owns an account's device at a time. ``DeviceHome`` is where the device
id and its key store are kept: today the id in the alerts store and the keys under
the data directory; handing a device to another process means moving those two
things behind the same interface, and claiming them (``open``) and releasing them
(``close``) is already where a lease would go.
"""

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
from typing import Annotated, Any, TypeVar

import aiohttp
import nio
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.contracts import Store
from alerts.errors import (
    ConfigError,
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
    SendError,
)
from alerts.supervise import Faults, Loop

log = logging.getLogger(__name__)

KV_NAMESPACE = "matrix"
T = TypeVar("T")

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
    invite_direct: bool = True  # DM invites (is_direct) from anyone: personal subscriptions
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

    def has_credentials(self) -> bool:
        """A homeserver, a user and a password or token are set."""
        secret = self.password is not None or self.access_token is not None
        return bool(self.homeserver and self.user and secret)


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


@dataclass(frozen=True, slots=True)
class DeviceHome:
    """Where an account's device lives between runs: its id in the alerts store (kv
    namespace ``matrix``) and its end-to-end key store in ``key_dir``.

    Keep both: the same device means Synapse deduplicates transaction ids across a
    restart, and room members' clients keep trusting the bot's keys."""

    store: Store
    key_dir: Path

    async def device_id(self, user_id: str) -> str | None:
        return await self.store.kv_get(KV_NAMESPACE, f"device:{user_id}")

    async def remember(self, user_id: str, device_id: str) -> None:
        await self.store.kv_set(KV_NAMESPACE, f"device:{user_id}", device_id)

    def has_keys(self, user_id: str, device_id: str) -> bool:
        return (self.key_dir / f"{user_id}_{device_id}.db").exists()


SyncHook = Callable[[nio.SyncResponse, bool], Awaitable[None]]


class MatrixSession:
    """One logged-in Matrix account on its persisted device, kept in sync.

    ``open`` logs in, syncs once (``catching_up``) and keeps syncing in the
    background; hooks added with ``add_sync_hook`` see every sync. ``send_message``
    sends one ``m.room.message`` with a fixed transaction id, paced and with its
    failures mapped onto the error tree.
    """

    def __init__(
        self, *, settings: MatrixSettings, home: DeviceHome | None, pacer: Pacer | None = None
    ) -> None:
        self.settings = settings
        self.home = home
        self.pacer = pacer or Pacer()
        self._client: nio.AsyncClient | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._faults = Faults()
        self._synced = asyncio.Condition()
        self._sync_count = 0
        self._keys_lock = asyncio.Lock()
        self._hooks: list[SyncHook] = []
        self._aliases: dict[str, str] = {}  # room alias -> room id, resolved when first used

    @property
    def client(self) -> nio.AsyncClient:
        """The nio client of the open session."""
        if self._client is None:
            raise RetryableSendError("Matrix session is not open")
        return self._client

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    # --- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Log in on the persisted device, sync once, upload keys, keep syncing."""
        settings = self.settings
        if not settings.homeserver or not settings.user:
            raise ConfigError("ALERTS_MATRIX_HOMESERVER and ALERTS_MATRIX_USER must be set")
        if settings.password is None and settings.access_token is None:
            raise ConfigError("set ALERTS_MATRIX_PASSWORD or ALERTS_MATRIX_ACCESS_TOKEN")
        home = self._home()
        await asyncio.to_thread(home.key_dir.mkdir, parents=True, exist_ok=True)
        self._client = nio.AsyncClient(
            settings.homeserver,
            settings.user_id(),
            store_path=str(home.key_dir),
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
            await self._login()
            await self._sync_once(first=True)
        except BaseException:
            await self.close()
            raise
        self._sync_task = asyncio.create_task(self._sync_loop(), name="matrix-sync")

    async def close(self) -> None:
        """Stop syncing and close the client (the device stays for the next run)."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _login(self) -> None:
        if self.settings.access_token is not None:
            await self._login_with_token(self.settings.access_token.get_secret_value())
        else:
            await self._login_with_password()
        client = self.client
        await self._home().remember(str(client.user_id), str(client.device_id))
        log.info("Matrix: logged in as %s on device %s", client.user_id, client.device_id)

    async def _login_with_token(self, token: str) -> None:
        client = self.client
        client.access_token = token
        who = await self.request(client.whoami())
        if not isinstance(who, nio.WhoamiResponse) or not who.device_id:
            raise ConfigError(f"ALERTS_MATRIX_ACCESS_TOKEN was refused: {who}")
        client.restore_login(who.user_id, who.device_id, token)

    async def _login_with_password(self) -> None:
        client, settings = self.client, self.settings
        assert settings.password is not None
        user_id, home = settings.user_id(), self._home()
        device_id = await home.device_id(user_id)
        if device_id and settings.encryption and not home.has_keys(user_id, device_id):
            log.warning(
                "Matrix: device %s has no key store under %s; logging in as a new device",
                device_id,
                home.key_dir,
            )
            device_id = None
        client.device_id = device_id
        resp = await self.request(
            client.login(settings.password.get_secret_value(), device_name=settings.device_name)
        )
        if not isinstance(resp, nio.LoginResponse):
            raise ConfigError(f"Matrix login as {client.user_id} failed: {resp}")

    def _home(self) -> DeviceHome:
        if self.home is None:
            raise ConfigError("Matrix: no place to keep the device (no store or data directory)")
        return self.home

    # --- syncing -------------------------------------------------------------------

    def add_sync_hook(self, hook: SyncHook) -> None:
        """Call ``hook(response, catching_up)`` after every sync (the chat front end)."""
        self._hooks.append(hook)

    def remove_sync_hook(self, hook: SyncHook) -> None:
        self._hooks.remove(hook)

    async def _sync_once(self, *, first: bool = False) -> None:
        client = self.client
        timeout_ms = 0 if first else int(self.settings.sync_timeout_s * 1000)
        resp = await client.sync(timeout=timeout_ms, full_state=first or None)
        if not isinstance(resp, nio.SyncResponse):
            raise error_for(resp)
        if client.should_upload_keys:
            await self.request(client.keys_upload())
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
        """Sync until cancelled, on the service's one supervised-loop helper: a failure
        is logged once (and once when it recovers), retried with backoff."""
        await Loop("matrix sync", self._sync_once, faults=self._faults).run()

    async def _maintain_keys(self) -> None:
        client = self.client
        if client.olm is None:
            return
        async with self._keys_lock:
            if client.should_query_keys:
                await self.request(client.keys_query())
            if client.should_claim_keys:
                await self.request(client.keys_claim(client.get_users_for_key_claiming()))
            if client.outgoing_to_device_messages:
                await self.request(client.send_to_device_messages())

    def _forget_left_rooms(self, resp: nio.SyncResponse) -> None:
        client = self.client
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

    # --- rooms ---------------------------------------------------------------------

    def room(self, room_id: str) -> nio.MatrixRoom | None:
        """The joined room as of the last sync, or None."""
        return self.client.rooms.get(room_id)

    def invites(self) -> dict[str, str | None]:
        """Pending invites: room id → the inviter (None when unknown)."""
        return {rid: room.inviter for rid, room in self.client.invited_rooms.items()}

    async def join(self, room_id: str) -> bool:
        """Join (accept an invite); True when the homeserver agreed."""
        resp = await self.request(self.client.join(room_id))
        self.client.invited_rooms.pop(room_id, None)
        return isinstance(resp, nio.JoinResponse)

    async def leave(self, room_id: str) -> bool:
        """Leave (or refuse an invite); True when the homeserver agreed."""
        resp = await self.request(self.client.room_leave(room_id))
        self.client.invited_rooms.pop(room_id, None)
        return isinstance(resp, nio.RoomLeaveResponse)

    async def room_state(self, room_id: str) -> list[dict[str, Any]] | None:
        """The room's full state events, or None when they cannot be read."""
        resp = await self.request(self.client.room_get_state(room_id))
        return list(resp.events) if isinstance(resp, nio.RoomGetStateResponse) else None

    async def resolve_room(self, target: str) -> str:
        """The room id of a room id or alias (aliases are resolved once and cached)."""
        if not target.startswith("#"):
            return target
        known = self._aliases.get(target)
        if known is not None:
            return known
        resp = await self.request(self.client.room_resolve_alias(target))
        if isinstance(resp, nio.RoomResolveAliasResponse):
            self._aliases[target] = str(resp.room_id)
            return str(resp.room_id)
        error = error_for(resp)
        if isinstance(error, DestinationUnavailable):
            raise DestinationUnavailable(f"Matrix: room alias {target} does not resolve: {error}")
        raise error

    def forget_alias(self, target: str) -> None:
        """Resolve ``target`` again next time (it may point elsewhere by now)."""
        self._aliases.pop(target, None)

    # --- sending -------------------------------------------------------------------

    async def send_message(
        self, room_id: str, content: dict[str, Any], txn_id: str, *, patient: bool = False
    ) -> str:
        """Send an ``m.room.message`` with a fixed transaction id; map failures.

        ``patient`` waits out the pacer instead of raising ``RateLimitedError``. In an
        encrypted room matrix-nio leaves a relation (edit, thread, reply) in the
        cleartext part, where the spec wants it.
        """
        client = self.client
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

    async def message_gone(self, room_id: str, event_id: str) -> bool:
        """True when the event is redacted or unknown to the homeserver: an edit of it
        would show nowhere (spec: a redacted original hides its replacements)."""
        resp = await self.request(self.client.room_get_event(room_id, event_id))
        if isinstance(resp, nio.RoomGetEventResponse):
            source = resp.event.source
            return not source.get("content") or "redacted_because" in source.get("unsigned", {})
        if resp.status_code == "M_NOT_FOUND":
            return True
        raise error_for(resp)

    async def _require_room(self, room_id: str) -> None:
        """Make sure nio knows the room (it must, to encrypt) or say why not."""
        client = self.client
        if room_id in client.rooms:
            return
        joined = await self.request(client.joined_rooms())
        if not isinstance(joined, nio.JoinedRoomsResponse):
            raise error_for(joined)
        if room_id not in joined.rooms:
            raise DestinationUnavailable(f"Matrix: the bot is not in room {room_id}")
        await self.wait_for_sync(self.settings.sync_timeout_s + 5)
        if room_id not in client.rooms:
            raise RetryableSendError(f"Matrix: room {room_id} not synced yet")

    async def request(self, call: Awaitable[T]) -> T:
        """Await a nio call; an unreachable homeserver is ``PlatformUnavailable``."""
        try:
            return await call
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(f"Matrix homeserver unreachable: {exc!r}") from exc
