"""Plain data passed between the stages of the pipeline.

Everything here is immutable and JSON-friendly so that it can be stored as-is:
``Item`` (what an adapter observed), ``Event`` (what the detector concluded),
``Destination`` (where alerts go), ``Subscription`` (who wants what),
``Delivery`` (one event for one destination, the unit of the outbox), ``View``
(how that destination's room shows it: updates edited in place, stories merged) and
what an editing sink is handed (``MessageView``) and gives back (``Posted``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts.schedule import Schedule
    from alerts.templates import Template

JSON = Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventKind(StrEnum):
    NEW = "new"  # an unseen item key
    UPDATED = "updated"  # a known key whose fingerprint changed
    MILESTONE = "milestone"  # a measured value crossed a configured threshold
    DELTA = "delta"  # N more of something since the last alert
    SUMMARY = "summary"  # the excess of a capped poll, summarised


@dataclass(frozen=True, slots=True)
class Item:
    """One thing a source lists: a feed entry, an award, a signatory, a document.

    ``key`` is stable across polls; ``fields`` holds adapter facts
    (``amount``, ``recipient``, ``count``…) that rendering and routing use.
    ``former_keys`` are keys an older version of the adapter stored the same item
    under: the detector carries such an item's state over instead of calling it new.
    """

    key: str
    title: str = ""
    url: str | None = None
    summary: str = ""
    published: datetime | None = None
    author: str | None = None
    fields: Mapping[str, JSON] = field(default_factory=dict)
    former_keys: tuple[str, ...] = ()

    def value(self, name: str) -> JSON:
        """A named field for fingerprinting: the attributes, then ``fields``."""
        if name in ("title", "url", "summary", "author"):
            return getattr(self, name)
        if name == "published":
            return self.published.isoformat() if self.published else None
        return self.fields.get(name)


@dataclass(frozen=True, slots=True)
class Validators:
    """HTTP conditional-request state, persisted per source."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """The result of one fetch.

    ``not_modified`` means the server answered 304 and nothing else is meaningful.
    ``values`` are measured numbers (a signature count). ``cursor`` is adapter
    state persisted between polls (paging marks, last window); it is stored in the
    same transaction as the detector state.
    """

    items: tuple[Item, ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)
    not_modified: bool = False
    validators: Validators = Validators()
    cursor: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """An item a fetch found but has not read yet (``alerts.contracts.ListsEntries``).

    ``key`` and ``former_keys`` are the item's; ``url`` its ``Item.url``; ``digest``
    changes whenever anything ``read()`` would return changes (the raw fields, and
    how the adapter reads them). Reading (plain text, dates, facts) is the costly
    part, so the detector reads only entries whose key or digest it does not know.
    """

    key: str
    former_keys: tuple[str, ...]
    url: str | None
    digest: str
    read: Callable[[], Item]


@dataclass(frozen=True, slots=True)
class Listing:
    """A modified fetch as entries not read yet: an ``Observation`` whose items
    are read on demand."""

    entries: tuple[Entry, ...]
    validators: Validators = Validators()
    cursor: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """A development worth telling a room about."""

    source_id: str
    kind: EventKind
    key: str
    title: str
    url: str | None = None
    summary: str = ""
    topics: tuple[str, ...] = ()
    fields: Mapping[str, JSON] = field(default_factory=dict)
    changes: Mapping[str, tuple[JSON, JSON]] = field(default_factory=dict)
    occurred_at: datetime | None = None
    detected_at: datetime = field(default_factory=utcnow)
    id: int | None = None
    source_name: str | None = None  # the source's configured ``name``, if it has one
    item_key: str | None = None  # the item it is about, when not ``key`` (a modification)

    @property
    def source_label(self) -> str:
        """How alerts name the source: its configured name, else its id."""
        return self.source_name or self.source_id

    @property
    def item(self) -> str:
        """The key of the item the event is about: rooms keep one message per item
        (``alerts.edits``), so every event about it edits that message."""
        return self.item_key or self.key

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "source_id": self.source_id,
            "source_name": self.source_name,
            "kind": self.kind.value,
            "key": self.key,
            "title": self.title,
            "url": self.url,
            "summary": self.summary,
            "topics": list(self.topics),
            "fields": dict(self.fields),
            "changes": {k: [old, new] for k, (old, new) in self.changes.items()},
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "detected_at": self.detected_at.isoformat(),
            **({"item_key": self.item_key} if self.item_key is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> Event:
        return cls(
            id=data.get("id"),
            source_id=data["source_id"],
            source_name=data.get("source_name"),
            kind=EventKind(data["kind"]),
            key=data["key"],
            title=data["title"],
            url=data.get("url"),
            summary=data.get("summary", ""),
            topics=tuple(data.get("topics", ())),
            fields=dict(data.get("fields", {})),
            changes={k: (v[0], v[1]) for k, v in data.get("changes", {}).items()},
            occurred_at=_parse_dt(data.get("occurred_at")),
            detected_at=_parse_dt(data.get("detected_at")) or utcnow(),
            item_key=data.get("item_key"),
        )

    def with_id(self, event_id: int) -> Event:
        return dataclasses.replace(self, id=event_id)


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where alerts go: a sink kind plus a target the sink understands.

    Config destinations have operator-chosen ids; rooms subscribed by chat command
    get ``"<sink>:<target>"`` (``discord:1234``, ``matrix:!room:example.org``).
    """

    id: str
    sink: str
    target: str = ""
    options: Mapping[str, JSON] = field(default_factory=dict)

    @staticmethod
    def chat_id(sink: str, target: str) -> str:
        return f"{sink}:{target}"


class UpdateStyle(StrEnum):
    """How a room shows an ``updated`` event (and a counter's next ``delta``)."""

    EDIT = "edit"  # edit the earlier message of the same item in place
    REPLY = "reply"  # edit it, and post a short reply in its thread saying what changed
    NEW = "new"  # a new message, as for any other event


DEFAULT_MERGE_WINDOW_S = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class View:
    """How a room shows the events it gets, fixed when an event is routed to it.

    ``updates`` (``None``: ``edit``) says what an update does to the earlier message;
    ``merge_window_s`` is how far apart two reports of one story may be detected and
    still share one message (0: every report is its own message); ``template`` is
    the operator's wording for its alerts (``alerts.templates``; ``None``: the default).
    """

    updates: UpdateStyle | None = None
    merge_window_s: float = DEFAULT_MERGE_WINDOW_S
    template: Template | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A standing order: send events matching this filter to a destination.

    Exactly one of ``topic`` and ``source`` is set, or neither (everything).
    ``kinds`` empty means every kind. ``include``: at least one keyword must occur;
    ``exclude``: none may (keywords as ``alerts.keywords`` matches them).
    ``min_amount`` drops events whose ``amount`` field is lower; ``min_change`` those
    whose ``delta`` field (the change an update made) is smaller in absolute value.
    ``updates`` overrides the destination's ``updates`` for the events it routes,
    ``template`` (a template's name) its ``template``. ``notify_failures``: the room
    also gets the failure notices of the sources it matches (``alerts.notices``).
    ``schedule`` holds its alerts for digests and quiet hours (``alerts.schedule``).
    """

    destination_id: str
    topic: str | None = None
    source: str | None = None
    kinds: frozenset[EventKind] = frozenset()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_amount: float | None = None
    created_by: str | None = None
    id: int | None = None
    min_change: float | None = None
    updates: UpdateStyle | None = None
    schedule: Schedule | None = None
    template: str | None = None
    notify_failures: bool = False


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    HELD = "held"  # waiting for its room's digest or the end of quiet hours
    DIGESTED = "digested"  # shown by a digest (its own ``digest_id``)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one destination: the unit the dispatcher sends.

    ``idempotency_key`` is derived from the delivery id and the store's install id;
    sinks pass it to the platform (Matrix txn id, Discord nonce) so that a retry
    never shows twice. It is at most 25 characters (Discord's nonce limit).
    ``view`` is how the destination's room shows it (``alerts.edits``).
    ``tried_at`` is when it was first claimed: from then on, until it is marked,
    whether the platform took it is unknown (``alerts.accounts``: reconciliation).
    """

    id: int
    event: Event
    destination: Destination
    attempts: int
    idempotency_key: str
    view: View = View()
    tried_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlsoReported:
    """Another source that reported the story a message shows, and its link."""

    source: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class MessageView:
    """What one message in a room shows: an event, the other sources that reported
    the same story (``also``), how many times the message has been edited and the
    template it is shown with (``alerts.templates``)."""

    event: Event
    also: tuple[AlsoReported, ...] = ()
    edits: int = 0
    template: Template | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a platform keeps a message: its id (Discord message id, Matrix event id)
    and the channel, thread or room it is in."""

    remote_id: str
    room: str
