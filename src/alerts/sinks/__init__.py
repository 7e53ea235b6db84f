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
entry-point group, named by kind (``matrix = "pkg.mod:Class"``). A duplicate kind
is an error. Sink classes are imported when first looked up, so commands that need
no platform never import one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import cast

from alerts.contracts import ChatListener, Sink, SinkContext, SinkFactory
from alerts.errors import ConfigError

__all__ = ["BUILTIN", "ChatListener", "Sink", "SinkContext", "SinkFactory", "registry"]

# kind → "module:Class". Platform sinks import discord.py or matrix-nio, which take
# half a second: they are imported when first looked up, not before.
BUILTIN: Mapping[str, str] = {
    "console": "alerts.sinks.console:ConsoleSink",
    "jsonl": "alerts.sinks.console:JsonlSink",
    "discord": "alerts.platforms.discord:DiscordSink",
    "discord_webhook": "alerts.platforms.discord:DiscordWebhookSink",
    "matrix": "alerts.platforms.matrix:MatrixSink",
}


class SinkRegistry(Mapping[str, SinkFactory]):
    """Sink kinds known up front; each class imported when first looked up."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._loaded: dict[str, SinkFactory] = {}

    def __getitem__(self, kind: str) -> SinkFactory:
        if kind not in self._loaded:
            module, _, name = self._paths[kind].partition(":")
            factory = cast(SinkFactory, getattr(importlib.import_module(module), name))
            if getattr(factory, "kind", None) != kind:
                raise ConfigError(f"sink {self._paths[kind]} is registered as {kind!r}")
            self._loaded[kind] = factory
        return self._loaded[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def registry() -> SinkRegistry:
    """Built-in sinks plus those of installed plugins (entry point name = kind);
    duplicates are an error."""
    paths = dict(BUILTIN)
    for ep in entry_points(group="alerts.sinks"):
        if ep.name in paths:
            raise ConfigError(f"sink kind {ep.name!r} from plugin {ep.value} is already registered")
        paths[ep.name] = ep.value
    return SinkRegistry(paths)
