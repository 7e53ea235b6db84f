"""Source adapters: fetch something and say what is there now.

A source adapter is a class with:

* ``kind`` — the name operators write in ``kind = "…"``;
* ``Options`` — a pydantic model of its options (``extra="forbid"``), validated at
  start-up; option keys are written directly on the ``[[sources]]`` table;
* a docstring — its user documentation, printed by ``alerts adapters``;
* ``fingerprint_fields`` — which item fields count as a change by default
  (operators override with ``fingerprint = [...]``);
* ``__init__(*, source_id, url, options, http)`` and
  ``async fetch(state) -> Observation``.

An adapter never decides what is new: it reports what it sees, and the detector
compares that with stored state. It raises ``SourceError`` subclasses for anything
that goes wrong (a payload that no longer matches is a ``ParseError``, never an
empty result).

Built-ins are registered in ``BUILTIN``; third-party packages add adapters through
the ``alerts.sources`` entry-point group. A duplicate kind is an error.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from alerts.contracts import Derived, DerivesEvents, Source, SourceFactory, SourceState
from alerts.errors import ConfigError

__all__ = [
    "Derived",
    "DerivesEvents",
    "Source",
    "SourceFactory",
    "SourceState",
    "registry",
]


def _builtin() -> dict[str, SourceFactory]:
    from alerts.sources.awards import AwardsSource
    from alerts.sources.bluesky import BlueskySource
    from alerts.sources.federal_register import FederalRegisterSource
    from alerts.sources.feed import FeedSource
    from alerts.sources.petition import PetitionSource
    from alerts.sources.sam import SamSource
    from alerts.sources.webpage import WebpageSource

    # mypy cannot match a class object against a protocol mixing ``__call__`` with
    # class attributes (it checks the metaclass ``__call__``), hence the cast; the
    # registry invariant test checks each adapter instead.
    adapters = (
        FeedSource,
        PetitionSource,
        AwardsSource,
        FederalRegisterSource,
        WebpageSource,
        BlueskySource,
        SamSource,
    )
    return {a.kind: cast("SourceFactory", a) for a in adapters}


def registry() -> dict[str, SourceFactory]:
    """Built-in adapters plus those of installed plugins; duplicates are an error."""
    found: dict[str, SourceFactory] = dict(_builtin())
    for ep in entry_points(group="alerts.sources"):
        factory = ep.load()
        kind = getattr(factory, "kind", None)
        if kind in found:
            raise ConfigError(
                f"source adapter kind {kind!r} from plugin {ep.value} is already registered"
            )
        found[str(kind)] = factory
    return found
