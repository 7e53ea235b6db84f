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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast, runtime_checkable

from pydantic import BaseModel

from alerts.errors import ConfigError
from alerts.model import JSON, Event, Item, Observation, Validators

if TYPE_CHECKING:
    from alerts.sources.http import HttpClient


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the adapter gets back from the previous poll."""

    validators: Validators = Validators()
    cursor: Mapping[str, JSON] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """A source adapter instance, bound to one configured source."""

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    fingerprint_fields: ClassVar[tuple[str, ...]]

    async def fetch(self, state: SourceState) -> Observation:
        """Fetch once and report what is there now."""
        ...


@dataclass(frozen=True, slots=True)
class Derived:
    """What an adapter's ``derive`` hook adds to the generic item diff.

    ``events``: extra events (milestone, delta…); the detector fills in topics.
    ``state``: the adapter's own detector state, stored with the poll and handed
    back next time. ``keep_item_events``: when not None, only the generic
    ``new``/``updated`` events of these item keys are kept (the rest are folded into
    the adapter's own events, e.g. a ``delta`` of signatories).
    """

    events: Sequence[Event] = ()
    state: Mapping[str, JSON] = field(default_factory=dict)
    keep_item_events: frozenset[str] | None = None


@runtime_checkable
class DerivesEvents(Protocol):
    """Optional: an adapter that turns observations into its own events.

    Called by the detector after the generic item diff of every successful poll
    (including the baseline, where it must not alert: ``baseline`` is True).
    """

    def derive(
        self,
        *,
        observation: Observation,
        new_items: Sequence[Item],
        updated_items: Sequence[tuple[Item, Mapping[str, JSON]]],
        state: Mapping[str, JSON],
        now: datetime,
        baseline: bool,
    ) -> Derived:
        """``updated_items`` pairs each changed item with its previous snapshot."""
        ...


class SourceFactory(Protocol):
    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    fingerprint_fields: ClassVar[tuple[str, ...]]
    __doc__: str | None

    def __call__(self, *, source_id: str, url: str, options: Any, http: HttpClient) -> Source: ...


def _builtin() -> dict[str, SourceFactory]:
    from alerts.sources.awards import AwardsSource
    from alerts.sources.bluesky import BlueskySource
    from alerts.sources.federal_register import FederalRegisterSource
    from alerts.sources.feed import FeedSource
    from alerts.sources.petition import PetitionSource
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
