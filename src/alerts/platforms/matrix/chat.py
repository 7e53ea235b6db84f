"""The Matrix room front end: invites, kicks and ``!alerts`` commands.

It rides on a ``MatrixSession``'s sync loop (``add_sync_hook``) and only
translates: commands go to ``CommandService.handle_text`` with the room as the
destination, and the reply goes back as an ``m.notice`` reply.

* An invite is accepted when the inviter is allowed (``ALERTS_MATRIX_INVITE_USERS``,
  ``ALERTS_MATRIX_INVITE_SERVERS`` or ``ALERTS_MATRIX_INVITE_ANYONE``), rejected
  otherwise. An invite to a direct chat (the bot's ``m.room.member`` invite says
  ``is_direct``) is accepted from anyone while ``ALERTS_MATRIX_INVITE_DIRECT`` is
  true (the default): a personal subscription. Once joined, the bot leaves such a
  room again if anyone but the inviter is in it or invited.
* When the bot is kicked or banned, the room's subscriptions are dropped
  (``CommandService.forget_room``); so they are when everyone else has left (a DM
  whose user left it), and the bot leaves too.
* ``subscribe`` / ``unsubscribe`` (and ``add-feed`` / ``remove-feed``) need the room
  power level ``ALERTS_MATRIX_MANAGE_POWER_LEVEL`` (default 50, a moderator),
  except in a DM: a room whose only members (joined or invited) are the bot and
  the sender, who then manages their own subscriptions.
* Messages from before the listener started (the catch-up sync) are not replayed;
  a reply's transaction id derives from the command's event id, so it is sent once.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from typing import Any

import nio

from alerts.chat.commands import CommandContext, CommandService
from alerts.errors import SendError
from alerts.platforms.matrix.session import MatrixSession

log = logging.getLogger(__name__)

SINK_KIND = "matrix"


class MatrixRooms:
    """Follows invites/kicks and answers commands for one logged-in Matrix account."""

    def __init__(self, *, session: MatrixSession, commands: CommandService) -> None:
        self.session = session
        self.commands = commands
        self.settings = session.settings
        self._pending_invites_checked = False
        self._creators: dict[str, frozenset[str]] = {}

    async def run(self) -> None:
        """Answer until cancelled."""
        self.session.add_sync_hook(self.on_sync)
        try:
            await asyncio.Event().wait()
        finally:
            self.session.remove_sync_hook(self.on_sync)

    async def on_sync(self, resp: nio.SyncResponse, catching_up: bool) -> None:
        """Handle one sync: invites, kicks, and (unless catching up) commands."""
        session = self.session
        invites = session.invites()
        direct = {rid for rid, info in resp.rooms.invite.items() if self._is_direct(info)}
        if not self._pending_invites_checked:
            self._pending_invites_checked = True
            for room_id, inviter in invites.items():
                if room_id not in resp.rooms.invite:
                    await self._on_invite(room_id, inviter, direct=False)
        for room_id in resp.rooms.invite:
            await self._on_invite(room_id, invites.get(room_id), direct=room_id in direct)
        for room_id, info in resp.rooms.leave.items():
            await self._on_leave(room_id, info.timeline.events)
        for room_id, info in resp.rooms.join.items():
            if any(self._someone_left(e) for e in info.timeline.events):
                await self._leave_if_alone(room_id)
        if catching_up:
            return
        for room_id, info in resp.rooms.join.items():
            room = session.room(room_id)
            for event in info.timeline.events:
                if room is not None and isinstance(event, nio.RoomMessageText):
                    await self._on_message(room, event)

    # --- membership ------------------------------------------------------------

    def inviter_allowed(self, inviter: str | None) -> bool:
        if not inviter:
            return False
        if self.settings.invite_anyone or inviter in self.settings.invite_users:
            return True
        server = inviter.split(":", 1)[1] if ":" in inviter else ""
        return server in self.settings.invite_servers

    def _is_direct(self, info: nio.InviteInfo) -> bool:
        """The bot's invite marks the room a direct chat (``is_direct``)."""
        me = self.session.user_id
        return any(
            isinstance(e, nio.InviteMemberEvent)
            and e.state_key == me
            and e.membership == "invite"
            and e.content.get("is_direct") is True
            for e in info.invite_state
        )

    async def _on_invite(self, room_id: str, inviter: str | None, *, direct: bool) -> None:
        if self.inviter_allowed(inviter):
            joined = await self.session.join(room_id)
            log.info("Matrix: invited to %s by %s; joined: %s", room_id, inviter, joined)
        elif direct and inviter and self.settings.invite_direct:
            joined = await self.session.join(room_id)
            log.info("Matrix: DM invite to %s from %s; joined: %s", room_id, inviter, joined)
            if joined:
                await self._leave_unless_direct(room_id, inviter)
        else:
            left = await self.session.leave(room_id)
            log.info("Matrix: refused invite to %s from %s (left: %s)", room_id, inviter, left)

    async def _leave_unless_direct(self, room_id: str, inviter: str) -> None:
        """A room joined as a DM holds only the bot and its inviter, or the bot leaves."""
        events = await self.session.room_state(room_id)
        members = {
            e.get("state_key")
            for e in events or []
            if e.get("type") == "m.room.member"
            and e.get("content", {}).get("membership") in ("join", "invite", "knock")
        }
        others = members - {self.session.user_id, inviter}
        if events is None or others:
            left = await self.session.leave(room_id)
            log.warning(
                "Matrix: %s was no DM (%d other member(s)); left: %s", room_id, len(others), left
            )

    async def _on_leave(self, room_id: str, events: list[Any]) -> None:
        me = self.session.user_id
        mine = [
            e
            for e in events
            if isinstance(e, nio.RoomMemberEvent)
            and e.state_key == me
            and e.membership in ("leave", "ban")
        ]
        if not mine or mine[-1].sender == me:
            return
        last = mine[-1]
        reason = f"removed from Matrix room by {last.sender} ({last.membership})"
        count = await self.commands.forget_room(SINK_KIND, room_id, reason=reason)
        log.warning("Matrix: %s %s; dropped %d subscriptions", room_id, reason, count)

    def _someone_left(self, event: Any) -> bool:
        return (
            isinstance(event, nio.RoomMemberEvent)
            and event.state_key != self.session.user_id
            and event.membership in ("leave", "ban")
        )

    async def _leave_if_alone(self, room_id: str) -> None:
        """Everyone else left (a DM's user, say): nobody reads the room's alerts any
        more, so its subscriptions and feeds are dropped and the bot leaves too."""
        room = self.session.room(room_id)
        if room is None or (set(room.users) | set(room.invited_users)) - {self.session.user_id}:
            return
        count = await self.commands.forget_room(SINK_KIND, room_id, reason="everyone else left")
        left = await self.session.leave(room_id)
        log.info("Matrix: alone in %s; dropped %d subscriptions, left: %s", room_id, count, left)

    # --- commands --------------------------------------------------------------

    def command_text(self, body: str) -> str | None:
        """The words after the prefix, or None when this is not a command."""
        prefix = self.settings.command_prefix
        stripped = body.strip()
        if stripped == prefix or stripped.startswith(prefix + " "):
            return stripped[len(prefix) :].strip()
        return None

    def is_dm(self, room: nio.MatrixRoom, user_id: str) -> bool:
        """Only the bot and ``user_id`` are in the room (joined or invited)."""
        members = set(room.users) | set(room.invited_users)
        return members <= {self.session.user_id, user_id}

    async def may_manage(self, room: nio.MatrixRoom, user_id: str) -> bool:
        """Power level at least the configured one; room creators of v12+ rooms always;
        anyone in their DM with the bot."""
        if room.power_levels.get_user_level(user_id) >= self.settings.manage_power_level:
            return True
        if self.is_dm(room, user_id):
            return True
        return user_id in await self._privileged_creators(room)

    async def _privileged_creators(self, room: nio.MatrixRoom) -> frozenset[str]:
        """Creators hold unlimited power in room versions 12 and later (MSC4289)."""
        version = str(room.room_version)
        if not (version.isdigit() and int(version) >= 12):
            return frozenset()
        if room.room_id not in self._creators:
            events = await self.session.room_state(room.room_id)
            if events is None:
                return frozenset()
            create: dict[str, Any] = next(
                (e for e in events if e.get("type") == "m.room.create"), {}
            )
            extra = create.get("content", {}).get("additional_creators", [])
            self._creators[room.room_id] = frozenset([create.get("sender", ""), *extra])
        return self._creators[room.room_id]

    async def _on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if event.sender == self.session.user_id:
            return
        text = self.command_text(event.body)
        if text is None:
            return
        ctx = CommandContext(
            sink=SINK_KIND,
            target=room.room_id,
            user=event.sender,
            may_manage=await self.may_manage(room, event.sender),
        )
        reply = await self.commands.handle_text(text, ctx)
        try:
            await self.session.send_message(
                room.room_id,
                reply_content(reply.text, event),
                reply_txn_id(event.event_id),
                patient=True,
            )
        except SendError as exc:
            log.warning("Matrix: could not answer %s in %s: %s", event.event_id, room.room_id, exc)


def reply_content(text: str, to: nio.RoomMessageText) -> dict[str, Any]:
    """An ``m.notice`` reply that mentions no one."""
    return {
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": "<pre>" + html.escape(text) + "</pre>",
        "m.relates_to": {"m.in_reply_to": {"event_id": to.event_id}},
        "m.mentions": {},
    }


def reply_txn_id(event_id: str) -> str:
    return "alerts.reply." + hashlib.sha256(event_id.encode()).hexdigest()[:32]
