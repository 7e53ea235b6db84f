"""Sinks: send one rendered alert to one destination on one platform.

A sink is a class with:

* ``kind`` — the name operators write in ``[destinations.X] sink = "…"``;
* ``Options`` — a pydantic model of a destination's options (``extra="forbid"``);
* a docstring — its user documentation;
* ``__init__(*, context: SinkContext)``, ``async start()``, ``async close()``;
* ``async send(delivery) -> str | None`` — send ``delivery.event`` to
  ``delivery.destination`` using ``delivery.idempotency_key`` so that sending the
  same delivery twice shows once; return the platform's message id.

``send`` raises only ``SendError`` subclasses: ``RateLimitedError`` (retry that
destination at T, not counted as an attempt), ``RetryableSendError``,
``RejectedError`` (dead), ``DestinationUnavailable`` (park the destination).

A sink class may also offer ``configured() -> bool`` (a classmethod: its credentials
are in the environment, so the runtime starts it even before any destination uses
it) and ``check_destination(destination)`` (a classmethod used by ``alerts check``;
raises ``ConfigError``).

A sink that also reads commands from its platform (Discord slash commands, Matrix
``!alerts``) implements ``ChatListener.listen``; the runtime runs it on the leader.

Built-ins are registered in ``BUILTIN``; plugins use the ``alerts.sinks``
entry-point group. A duplicate kind is an error.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from alerts.contracts import ChatListener, Sink, SinkContext, SinkFactory
from alerts.errors import ConfigError

__all__ = ["ChatListener", "Sink", "SinkContext", "SinkFactory", "registry"]


def _builtin() -> dict[str, Any]:
    from alerts.sinks.console import ConsoleSink, JsonlSink
    from alerts.sinks.discord import DiscordSink, DiscordWebhookSink
    from alerts.sinks.matrix import MatrixSink

    return {
        ConsoleSink.kind: ConsoleSink,
        JsonlSink.kind: JsonlSink,
        DiscordSink.kind: DiscordSink,
        DiscordWebhookSink.kind: DiscordWebhookSink,
        MatrixSink.kind: MatrixSink,
    }


def registry() -> dict[str, SinkFactory]:
    """Built-in sinks plus those of installed plugins; duplicates are an error."""
    found: dict[str, SinkFactory] = dict(_builtin())
    for ep in entry_points(group="alerts.sinks"):
        factory = ep.load()
        kind = getattr(factory, "kind", None)
        if kind in found:
            raise ConfigError(f"sink kind {kind!r} from plugin {ep.value} is already registered")
        found[str(kind)] = factory
    return found
