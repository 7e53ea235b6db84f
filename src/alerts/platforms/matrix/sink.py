"""Sending alerts into Matrix rooms, on a ``MatrixSession``.

``MatrixSender`` renders a delivery (``render.py``) and sends it with a transaction
id derived from the delivery's idempotency key. Rooms are named by id or alias, as
the spec allows (see ``target_problem``).

It keeps messages alive (``alerts.contracts.EditingSink``): an edit is an
``m.replace`` event and a reply an ``m.thread`` message, each with a transaction id
of its own derived from the same key, so a retried edit or reply applies once. An
original that was redacted (or that the homeserver no longer has) raises
``MessageGone``: the update is posted as a new message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings

from alerts.accounts import AccountKeeper, needs_reconciling
from alerts.errors import ConfigError, DestinationUnavailable, MessageGone
from alerts.model import MessageView, Posted
from alerts.platforms.matrix.render import edit_content, marked, render_view, thread_content
from alerts.platforms.matrix.session import DeviceHome, MatrixSession, MatrixSettings, txn_id_for

if TYPE_CHECKING:
    from alerts.contracts import SinkContext
    from alerts.model import Delivery, Destination

log = logging.getLogger(__name__)

EDIT_SUFFIX = ".edit"
REPLY_SUFFIX = ".reply"

# Identifier grammar (spec: appendices, "Room IDs", "Room Aliases", "Server Name"):
# a room id is "!" + an opaque part without ":" and, up to room version 11, ":" + the
# server name; room version 12 ids have no server part ("!" + 43 base64url chars).
# An alias is always "#" + a localpart without ":" + ":" + the server name.
_OPAQUE = r"[^:\s\x00-\x1f\x7f]+"
_SERVER = r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(?::[0-9]{1,5})?"
ROOM_ID = re.compile(rf"!{_OPAQUE}(?::{_SERVER})?")
ROOM_ALIAS = re.compile(rf"#{_OPAQUE}:{_SERVER}")
ID_MAX_BYTES = 255


def target_problem(target: str) -> str | None:
    """Why ``target`` cannot name a Matrix room, or None when it can."""
    if len(target.encode()) > ID_MAX_BYTES:
        return f"longer than {ID_MAX_BYTES} bytes, which no room id or alias is"
    if ROOM_ID.fullmatch(target) or ROOM_ALIAS.fullmatch(target):
        return None
    return (
        f"{target!r} is not a Matrix room id or alias (like !abc:example.org, "
        "!8lsnbjajp2zNhbE7J5vh7PqymoI6HQKrZoxGoI1ZUb8 or #alerts:example.org)"
    )


class MatrixOptions(BaseModel):
    """Options of a Matrix destination."""

    model_config = ConfigDict(extra="forbid")

    msgtype: Literal["m.notice", "m.text"] = "m.notice"


def _options(destination: Destination) -> MatrixOptions:
    try:
        return MatrixOptions.model_validate(dict(destination.options))
    except ValidationError as exc:
        raise ConfigError(f"destinations.{destination.id}: {exc}") from None


class MatrixSender:
    """Sends deliveries to Matrix rooms over one ``MatrixSession``."""

    kind: ClassVar[str] = "matrix"
    Options: ClassVar[type[BaseModel]] = MatrixOptions
    Settings: ClassVar[type[BaseSettings] | None] = MatrixSettings
    edit_interval_s: ClassVar[float] = 2.0  # edits are messages: Synapse's rc_message

    def __init__(self, *, context: SinkContext, settings: MatrixSettings | None = None) -> None:
        self.context = context
        self.settings = settings or MatrixSettings()
        self.session = MatrixSession(settings=self.settings, home=None)
        self._standalone = False

    @classmethod
    def configured(cls) -> bool:
        """True when the environment names a homeserver, a user and a credential."""
        return MatrixSettings().has_credentials()

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Static checks for ``alerts check``: a room id or alias, and known options."""
        problem = target_problem(destination.target)
        if problem is not None:
            raise ConfigError(f"destinations.{destination.id}.target: {problem}")
        _options(destination)

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)

    def account(self) -> str | None:
        """One process at a time sends and syncs as the bot (``alerts.accounts``)."""
        return f"matrix:{self.settings.user_id()}" if self.settings.has_credentials() else None

    def hand_over(self, keeper: AccountKeeper) -> None:
        """The lease is held: keep the device and its keys in the database."""
        data = Path(self.context.data_dir) / "matrix"
        legacy = (self.context.store, data) if self.context.store is not None else None
        self.session.home = DeviceHome(keeper, data / str(os.getpid()), legacy=legacy)

    async def start(self) -> None:
        name = self.account()
        if self.session.home is None and name and self.context and self.context.store:
            self.hand_over(await AccountKeeper.standalone(self.context.store, name))
            self._standalone = True
        await self.session.open()

    async def close(self) -> None:
        await self.session.close()
        if self._standalone and self.session.home is not None:
            with contextlib.suppress(Exception):
                await self.session.home.keeper.release()
            self.session.home = None
            self._standalone = False

    async def send(self, delivery: Delivery) -> str | None:
        """Send one alert; the txn id makes a repeat of the same delivery a no-op."""
        return (
            await self.post(delivery, MessageView(delivery.event, template=delivery.view.template))
        ).remote_id

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        """Show ``view`` as a new message in the destination's room."""
        content = render_view(view, msgtype=_options(delivery.destination).msgtype)
        room_id, event_id = await self._send(delivery, content, "")
        return Posted(event_id, room_id)

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        """Replace what the message at ``posted`` shows (an ``m.replace`` event)."""
        await self._still_there(delivery, posted)
        content = render_view(view, msgtype=_options(delivery.destination).msgtype)
        await self._send(delivery, edit_content(content, posted.remote_id), EDIT_SUFFIX)

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        """Post ``view`` in the thread of the message at ``posted``."""
        content = render_view(view, msgtype=_options(delivery.destination).msgtype)
        _, event_id = await self._send(
            delivery, thread_content(content, posted.remote_id), REPLY_SUFFIX
        )
        return event_id

    async def _still_there(self, delivery: Delivery, posted: Posted) -> None:
        room_id = await self.session.resolve_room(delivery.destination.target)
        if room_id != posted.room:
            raise MessageGone(f"Matrix: {delivery.destination.target} is now room {room_id}")
        if await self.session.message_gone(posted.room, posted.remote_id):
            raise MessageGone(f"Matrix: event {posted.remote_id} was redacted")

    async def _send(
        self, delivery: Delivery, content: dict[str, Any], suffix: str
    ) -> tuple[str, str]:
        """Send ``content`` to the destination's room with the delivery's transaction id
        (plus ``suffix``); returns the room id and the event id."""
        target = delivery.destination.target
        room_id = await self.session.resolve_room(target)
        txn_id = txn_id_for(delivery.idempotency_key + suffix)
        try:
            if delivery.tried_at and needs_reconciling(delivery, self.settings.txn_window_s):
                found = await self.session.find_marked(room_id, txn_id, since=delivery.tried_at)
                if found is not None:
                    log.info("delivery %s: already in %s as %s", delivery.id, room_id, found)
                    return room_id, found
            sent = await self.session.send_message(room_id, marked(content, txn_id), txn_id)
            return room_id, sent
        except DestinationUnavailable as exc:
            self.session.forget_alias(target)
            if room_id != target:
                raise DestinationUnavailable(f"{exc} (room alias {target})") from exc
            raise
