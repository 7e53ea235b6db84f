"""Matrix: alerts into rooms and ``!alerts`` commands, with matrix-nio.

::

    session.py   MatrixSession: login, device, sync, E2E keys, pacing, error table
    sink.py      MatrixSender: renders and sends deliveries on the session
    chat.py      MatrixRooms: invites, kicks and commands on the session
    render.py    facts → m.notice content (formatting only)

``sink`` and ``chat`` stand on ``session`` and never on each other; ``MatrixSink``
below, the registered sink, runs both on one session.
"""

from __future__ import annotations

from alerts.chat.commands import CommandService
from alerts.platforms.matrix.chat import MatrixRooms
from alerts.platforms.matrix.session import MatrixSession, MatrixSettings
from alerts.platforms.matrix.sink import MatrixOptions, MatrixSender, target_problem

__all__ = [
    "MatrixOptions",
    "MatrixRooms",
    "MatrixSender",
    "MatrixSession",
    "MatrixSettings",
    "MatrixSink",
    "target_problem",
]


class MatrixSink(MatrixSender):
    """Matrix sink: post alerts to Matrix rooms as a bot user, with matrix-nio.

    A destination's ``target`` is a room id (``!abc:example.org``, or in room
    version 12 and later ``!8lsnbjajp2zNhbE7J5vh7PqymoI6HQKrZoxGoI1ZUb8``) or a room
    alias (``#alerts:example.org``, resolved when the first alert goes); the bot
    must be a member of the room (invite it; see ``docs/matrix.md``). Options::

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
    destination is parked. Text from sources is text: it never becomes markup, a
    mention or a link (``docs/matrix.md``, "What an alert looks like"). An update
    edits the earlier alert (``m.replace``) and may reply in its thread
    (``m.thread``), each with a transaction id of its own (``docs/matrix.md``,
    "Edits, threads and one message per story"). The same sink answers ``!alerts``
    commands in rooms when the runtime runs it as the chat listener.
    """

    async def listen(self, commands: CommandService) -> None:
        """Answer ``!alerts`` commands and follow invites and kicks until cancelled."""
        await MatrixRooms(session=self.session, commands=commands).run()
