"""Sinks: send one rendered alert to one destination on one platform.

The contract is ``alerts.contracts.Sink`` (re-exported here): a class with
``kind``, ``Options``, ``Settings``, a docstring, ``__init__(*, context)``,
``async start()``, ``async close()``, ``async send(delivery)``,
``validate_destination(destination)`` and the classmethods
``check_destination(destination)`` and ``configured()``. ``BaseSink`` gives the
optional hooks a default. A sink that also reads commands from its platform
(Discord slash commands, Matrix ``!alerts``) implements ``ChatListener.listen``;
the runtime runs it on the leader.

Built-ins are listed in ``BUILTIN`` and imported when first looked up, so commands
that need no platform never import discord.py or matrix-nio (half a second of
start-up). Plugins use the ``alerts.sinks`` entry-point group and are loaded and
checked at once: a duplicate kind is an error, and so is a class that does not
declare the whole contract.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeGuard

from alerts import plugins
from alerts.contracts import BaseSink, ChatListener, Sink, SinkContext, SinkFactory
from alerts.errors import ConfigError

__all__ = [
    "BUILTIN",
    "BaseSink",
    "ChatListener",
    "Sink",
    "SinkContext",
    "SinkFactory",
    "SinkRegistry",
    "registry",
]

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


@dataclass(frozen=True, slots=True)
class SinkEntry:
    """Where a sink class lives (``module:Class``) and the prefix of the environment
    variables its settings read (``None``: it reads none, or it is unknown)."""

    path: str
    env_prefix: str | None = None


BUILTIN: Mapping[str, SinkEntry] = {
    "console": SinkEntry("alerts.sinks.console:ConsoleSink"),
    "jsonl": SinkEntry("alerts.sinks.console:JsonlSink"),
    "discord": SinkEntry("alerts.platforms.discord:DiscordSink", "ALERTS_DISCORD_"),
    "discord_webhook": SinkEntry("alerts.platforms.discord:DiscordWebhookSink", "ALERTS_DISCORD_"),
    "matrix": SinkEntry("alerts.platforms.matrix:MatrixSink", "ALERTS_MATRIX_"),
}


class SinkRegistry(Mapping[str, SinkFactory]):
    """Sink kinds known up front; each class imported (and its contract checked) when
    first looked up."""

    def __init__(
        self, entries: Mapping[str, SinkEntry], plugins: Mapping[str, SinkFactory] = {}
    ) -> None:
        self._entries = {**entries, **{kind: SinkEntry(f"plugin:{kind}") for kind in plugins}}
        self._loaded: dict[str, SinkFactory] = dict(plugins)

    def __getitem__(self, kind: str) -> SinkFactory:
        if kind not in self._loaded:
            self._loaded[kind] = _load(kind, self._entries[kind].path)
        return self._loaded[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def in_use(self, used: Collection[str], environ: Mapping[str, str]) -> list[str]:
        """The kinds whose settings matter now: those ``used`` by destinations, those
        with variables in ``environ``, and every plugin (whose prefix is unknown)."""
        return sorted(
            kind
            for kind, entry in self._entries.items()
            if kind in used
            or (entry.env_prefix is None and kind not in BUILTIN)
            or (
                entry.env_prefix is not None
                and any(name.startswith(entry.env_prefix) for name in environ)
            )
        )


def registry() -> SinkRegistry:
    """Built-in sinks plus those of installed plugins; duplicates are an error."""
    found: dict[str, SinkFactory] = {}
    for ep in plugins.entry_points(group="alerts.sinks"):
        plugin = plugins.load(ep, "sink")
        if not _is_factory(plugin):
            raise ConfigError(
                f"sink plugin {ep.value}: {plugins.shortfall(plugin, CONTRACT, 'sink')}"
            )
        if plugin.kind in BUILTIN or plugin.kind in found:
            raise ConfigError(f"sink plugin {ep.value}: kind {plugin.kind!r} is already registered")
        found[plugin.kind] = plugin
    return SinkRegistry(BUILTIN, found)


def _load(kind: str, path: str) -> SinkFactory:
    module, _, name = path.partition(":")
    try:
        obj: object = getattr(importlib.import_module(module), name)
    except Exception as exc:
        raise ConfigError(f"sink {path}: cannot be loaded: {exc!r}") from None
    if not _is_factory(obj):
        raise ConfigError(f"sink {path}: {plugins.shortfall(obj, CONTRACT, 'sink')}")
    if obj.kind != kind:
        raise ConfigError(f"sink {path} declares kind {obj.kind!r} but is registered as {kind!r}")
    return obj


def _is_factory(obj: object) -> TypeGuard[SinkFactory]:
    return plugins.declares(obj, CONTRACT)
