"""Sinks: send one rendered alert to one destination on one platform.

The contract is ``alerts.contracts.Sink`` (re-exported here): a class with
``kind``, ``Options``, ``Settings``, a docstring, ``__init__(*, context)``,
``async start()``, ``async close()``, ``async send(delivery)``,
``validate_destination(destination)`` and the classmethods
``check_destination(destination)`` and ``configured()``. ``BaseSink`` gives the
optional hooks a default. A sink that also reads commands from its platform
(Discord slash commands, Matrix ``!alerts``) implements ``ChatListener.listen``;
the runtime runs it on the leader.

Built-ins are listed in ``_builtin``; plugins use the ``alerts.sinks`` entry-point
group. A duplicate kind is an error, and so is a plugin that does not declare the
whole contract.
"""

from __future__ import annotations

from typing import TypeGuard

from alerts import plugins
from alerts.contracts import BaseSink, ChatListener, Sink, SinkContext, SinkFactory

__all__ = ["BaseSink", "ChatListener", "Sink", "SinkContext", "SinkFactory", "registry"]

CONTRACT = (
    "kind",
    "Options",
    "Settings",
    "start",
    "close",
    "send",
    "validate_destination",
    "check_destination",
    "configured",
)


def _builtin() -> list[SinkFactory]:
    from alerts.sinks.console import ConsoleSink, JsonlSink
    from alerts.sinks.discord import DiscordSink, DiscordWebhookSink
    from alerts.sinks.matrix import MatrixSink

    return [ConsoleSink, JsonlSink, DiscordSink, DiscordWebhookSink, MatrixSink]


def registry() -> dict[str, SinkFactory]:
    """Built-in sinks plus those of installed plugins; duplicates are an error."""
    return plugins.registry("alerts.sinks", _builtin(), _is_factory, CONTRACT, "sink")


def _is_factory(obj: object) -> TypeGuard[SinkFactory]:
    return plugins.declares(obj, CONTRACT)
