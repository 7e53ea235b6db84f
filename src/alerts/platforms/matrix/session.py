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
import base64
import contextlib
import hashlib
import logging
import re
import shutil
import sqlite3
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import aiohttp
import nio
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.accounts import AccountKeeper, AccountLost
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
from alerts.platforms.matrix.render import MARKER
from alerts.supervise import Faults, Loop

log = logging.getLogger(__name__)

KV_NAMESPACE = "matrix"
LEASE_PAUSE_S = 0.5
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
    txn_window_s: float = 600.0

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


class DeviceHome:
    """Where an account's device lives between owners: the device id and matrix-nio's
    key store in the ``accounts`` row whose lease this process holds (``keeper``), and
    while this process owns it, the key store's file under ``key_dir`` (private to the
    process: ``<data dir>/matrix/<pid>``).

    Keep both: the same device means Synapse deduplicates transaction ids across a
    failover, and room members' clients keep trusting the bot's keys. ``legacy_dir``
    is where alerts kept the key store before it moved into the database (the data
    directory): a store found there for the stored device is imported once."""

    def __init__(
        self, keeper: AccountKeeper, key_dir: Path, *, legacy: tuple[Store, Path] | None = None
    ) -> None:
        self.keeper = keeper
        self.key_dir = key_dir
        self.legacy = legacy
        self._saved_digest = ""

    async def device_id(self, user_id: str) -> str | None:
        if self.keeper.lease.device_id:
            return self.keeper.lease.device_id
        if self.legacy is not None:
            return await self.legacy[0].kv_get(KV_NAMESPACE, f"device:{user_id}")
        return None

    async def remember(self, user_id: str, device_id: str) -> None:
        await self.keeper.save(device_id=device_id)

    def key_file(self, user_id: str, device_id: str) -> Path:
        return self.key_dir / f"{user_id}_{device_id}.db"

    async def restore(self, user_id: str, device_id: str) -> bool:
        """Put the device's key store where nio reads it; False when there is none."""
        target = self.key_file(user_id, device_id)
        await asyncio.to_thread(_fresh_dir, self.key_dir)
        packed = self.keeper.lease.keys if self.keeper.lease.device_id == device_id else None
        if packed:
            await asyncio.to_thread(_unpack, packed, target)
            return True
        if self.legacy is not None:
            old = self.legacy[1] / target.name
            if await asyncio.to_thread(old.exists):
                await asyncio.to_thread(shutil.copyfile, old, target)
                log.info("Matrix: importing the key store of device %s into the store", device_id)
                return True
        return False

    async def save(self, user_id: str, device_id: str) -> None:
        """Save the key store for the next owner when it changed since the last save."""
        path = self.key_file(user_id, device_id)
        if not await asyncio.to_thread(path.exists):
            return
        packed = await asyncio.to_thread(_pack, path)
        digest = hashlib.sha256(packed.encode()).hexdigest()
        if digest == self._saved_digest:
            return
        await self.keeper.save(device_id=device_id, keys=packed)
        self._saved_digest = digest


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def _unpack(packed: str, target: Path) -> None:
    """Write a saved key store to ``target``, less its Olm sessions.

    The last owner may have encrypted with an Olm session after its last save (a kill
    between sharing a room key and saving): continuing from the saved, older ratchet
    would send messages the other device already saw, which it refuses — and with
    them the room keys, so the room's messages could not be decrypted. Without the
    sessions, nio starts new ones (claiming one-time keys) the next time it shares a
    room key: a few requests per takeover. The account, the device list and the
    room keys stay.
    """
    target.write_bytes(zlib.decompress(base64.b64decode(packed)))
    db = sqlite3.connect(target)
    try:
        with db:
            db.execute("DELETE FROM olmsessions")
    finally:
        db.close()


def _pack(path: Path) -> str:
    """A consistent copy of an SQLite file (backup API), compressed, as text."""
    source = sqlite3.connect(path)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        image = copy.serialize()
    finally:
        source.close()
        copy.close()
    return base64.b64encode(zlib.compress(image, 6)).decode()


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
        self._saved_sessions: dict[str, str] = {}  # room id -> megolm session saved with

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
        await asyncio.to_thread(_fresh_dir, home.key_dir)
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
        """Stop syncing, save the key store for the next owner and close the client
        (the device stays for the next run)."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self.save_keys()
            await self._client.close()
            self._client = None

    def _require_lease(self) -> None:
        """Refuse to act as the account once its lease may have run out."""
        if self.home is not None and not self.home.keeper.valid():
            raise AccountLost(
                f"Matrix: the lease of {self.settings.user_id()} ran out; "
                "another replica may own it now"
            )

    async def save_keys(self) -> None:
        """Save the key store into the database when it changed (after syncs, sends)."""
        client = self._client
        if client is None or self.home is None or client.olm is None or not client.device_id:
            return
        await self.home.save(str(client.user_id), str(client.device_id))

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
        await self._home().restore(who.user_id, who.device_id)
        client.restore_login(who.user_id, who.device_id, token)

    async def _login_with_password(self) -> None:
        client, settings = self.client, self.settings
        assert settings.password is not None
        user_id, home = settings.user_id(), self._home()
        device_id = await home.device_id(user_id)
        if device_id and not await home.restore(user_id, device_id) and settings.encryption:
            log.warning(
                "Matrix: device %s has no key store in the database; logging in as a new "
                "device (its keys cannot be recreated)",
                device_id,
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
        if self.home is not None and not self.home.keeper.valid():
            # The lease was not renewed in time (a busy process, a slow store): sync
            # nothing until the runtime renews it, or stops this session if lost.
            await asyncio.sleep(LEASE_PAUSE_S)
            return
        client = self.client
        timeout_ms = 0 if first else int(self.settings.sync_timeout_s * 1000)
        resp = await client.sync(timeout=timeout_ms, full_state=first or None)
        if not isinstance(resp, nio.SyncResponse):
            raise error_for(resp)
        if client.should_upload_keys:
            await self.request(client.keys_upload())
        await self._maintain_keys()
        await self.save_keys()
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
        self._require_lease()
        await self._require_room(room_id)
        try:
            await self._maintain_keys()
            turn = await self.pacer.wait_turn(patient=patient)
            self._require_lease()
            resp = await client.room_send(
                room_id, "m.room.message", content, tx_id=txn_id, ignore_unverified_devices=True
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(f"Matrix homeserver unreachable: {exc!r}") from exc
        except nio.LocalProtocolError as exc:
            raise RetryableSendError(f"Matrix: could not prepare the message: {exc}") from exc
        if isinstance(resp, nio.RoomSendResponse):
            await self._save_new_session(room_id)
            return str(resp.event_id)
        error = error_for(resp)
        if isinstance(error, RateLimitedError):
            said = getattr(resp, "retry_after_ms", None)
            self.pacer.limited(turn, said / 1000 if said is not None else None)
        raise error

    async def find_marked(
        self, room_id: str, marker: str, *, since: datetime, pages: int = 5
    ) -> str | None:
        """The id of the bot's event in ``room_id`` whose content carries ``marker``
        (``render.MARKER``), looking back through recent history (newest first) to
        ``since``; None when it is not there. Encrypted events are decrypted with the
        key store the owner keeps (a megolm session is saved when it starts)."""
        client = self.client
        wanted = {"senders": [self.user_id], "types": ["m.room.message", "m.room.encrypted"]}
        start: str | None = None
        oldest_ms = since.timestamp() * 1000 - 60_000  # clock skew with the homeserver
        for _ in range(pages):
            resp = await self.request(
                client.room_messages(room_id, start=start, limit=100, message_filter=wanted)
            )
            if not isinstance(resp, nio.RoomMessagesResponse):
                raise error_for(resp)
            for event in resp.chunk:
                if (getattr(event, "source", None) or {}).get("content", {}).get(MARKER) == marker:
                    return str(event.event_id)
            timestamps = [getattr(e, "server_timestamp", 0) or 0 for e in resp.chunk]
            if not resp.chunk or not resp.end or min(timestamps) < oldest_ms:
                return None
            start = resp.end
        return None

    async def _save_new_session(self, room_id: str) -> None:
        """A send that started a new megolm session saves the key store at once: the
        next owner needs the session to read this message back (reconciliation)."""
        olm = self.client.olm
        session = olm.outbound_group_sessions.get(room_id) if olm is not None else None
        if session is None or self._saved_sessions.get(room_id) == session.id:
            return
        with contextlib.suppress(AccountLost):
            await self.save_keys()
        self._saved_sessions[room_id] = session.id

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
