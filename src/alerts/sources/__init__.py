"""Source adapters: fetch something and say what is there now.

The contract is ``alerts.contracts.Source`` (re-exported here): a class with
``kind``, ``Options``, ``fingerprint_fields``, ``item_fields``, ``default_url``, a
docstring (its user documentation, printed by ``alerts adapters``),
``__init__(*, source_id, url, options, http)`` and ``async fetch(state)``.

An adapter never decides what is new: it reports what it sees, and the detector
compares that with stored state. It raises ``SourceError`` subclasses for anything
that goes wrong (a payload that no longer matches is a ``ParseError``, never an
empty result).

Built-ins are listed in ``_builtin``; third-party packages add adapters through
the ``alerts.sources`` entry-point group. A duplicate kind is an error, and so is a
plugin that does not declare the whole contract.
"""

from __future__ import annotations

from typing import TypeGuard

from alerts import plugins
from alerts.contracts import Derived, DerivesEvents, Source, SourceFactory, SourceState

__all__ = [
    "Derived",
    "DerivesEvents",
    "Source",
    "SourceFactory",
    "SourceState",
    "registry",
]

CONTRACT = ("kind", "Options", "fingerprint_fields", "item_fields", "default_url", "fetch")


def _builtin() -> list[SourceFactory]:
    from alerts.sources.awards import AwardsSource
    from alerts.sources.bluesky import BlueskySource
    from alerts.sources.federal_register import FederalRegisterSource
    from alerts.sources.feed import FeedSource
    from alerts.sources.petition import PetitionSource
    from alerts.sources.sam import SamSource
    from alerts.sources.webpage import WebpageSource

    return [
        FeedSource,
        PetitionSource,
        AwardsSource,
        FederalRegisterSource,
        WebpageSource,
        BlueskySource,
        SamSource,
    ]


def registry() -> dict[str, SourceFactory]:
    """Built-in adapters plus those of installed plugins; duplicates are an error."""
    return plugins.registry("alerts.sources", _builtin(), _is_factory, CONTRACT, "source adapter")


def _is_factory(obj: object) -> TypeGuard[SourceFactory]:
    return plugins.declares(obj, CONTRACT)
