"""What the store keeps and what it is handed: rows, commits, outbox figures and the
messages kept alive in rooms (``Post``).

Plain frozen data shared by the ``Store`` contract (``alerts.contracts``), its
backends (``alerts.store``) and the pipeline stages that read or write them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from alerts.model import (
    JSON,
    DeliveryState,
    Destination,
    Event,
    Validators,
    View,
)


@dataclass(frozen=True, slots=True)
class AccountLease:
    """A chat account's lease as held (``Store.try_account``), with what the last
    owner left for the next: the Matrix device id and its key store (zlib + base64)."""

    name: str
    owner: str
    until: datetime
    device_id: str | None = None
    keys: str | None = None


@dataclass(frozen=True, slots=True)
class SourceRow:
    """Scheduling and detector state of one source, as stored."""

    source_id: str
    next_due: datetime
    validators: Validators = Validators()
    cursor: Mapping[str, JSON] = field(default_factory=dict)
    detector: Mapping[str, JSON] = field(default_factory=dict)
    baselined: bool = False
    failures: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_new_at: datetime | None = None
    item_count: int = 0


@dataclass(frozen=True, slots=True)
class ItemState:
    """What the detector remembers of one item; ``digest``: the ``Entry.digest``
    it was read from (None: read in full, or stored before digests were kept)."""

    fingerprint: str
    snapshot: Mapping[str, JSON] = field(default_factory=dict)
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A delivery held for a digest or quiet hours until ``until``; ``key`` says why
    (``daily@09:00``, ``hourly``, ``quiet``)."""

    until: datetime
    key: str


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    """An event and the destinations it goes to; ``views`` says how each of their
    rooms shows it (a destination missing there gets the default ``View``), ``holds``
    which of them wait for a digest (``alerts.schedule``)."""

    event: Event
    destination_ids: tuple[str, ...]
    views: Mapping[str, View] = field(default_factory=dict)
    holds: Mapping[str, Hold] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NotModified:
    """An unchanged poll (HTTP 304): only its bookkeeping is written."""

    source_id: str
    owner: str
    now: datetime
    next_due: datetime
    validators: Validators = Validators()


@dataclass(frozen=True, slots=True)
class PollCommit:
    """Everything one poll writes, in one transaction.

    On success (``error is None``): validators, cursor and detector state (``None``
    keeps the stored one), item upserts, events and their deliveries, ``failures``
    reset. On failure: only ``error``, ``failures + 1`` and ``next_due`` (the backoff)
    are written, with ``events`` (the failure notice of ``alerts.notices``, if any).
    """

    source_id: str
    now: datetime
    next_due: datetime
    error: str | None = None
    validators: Validators = Validators()
    cursor: Mapping[str, JSON] | None = None
    detector: Mapping[str, JSON] | None = None
    baselined: bool = True
    items: Mapping[str, ItemState] = field(default_factory=dict)
    events: Sequence[RoutedEvent] = ()
    saw_new: bool = False
    digests: Mapping[str, str] = field(default_factory=dict)  # known items re-read unchanged


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery as ``alerts deliveries`` shows it."""

    id: int
    event: Event
    destination_id: str
    state: DeliveryState
    attempts: int
    created_at: datetime
    last_error: str | None = None
    sent_at: datetime | None = None
    remote_id: str | None = None
    hold_until: datetime | None = None  # a held delivery: when its digest or quiet hours end


@dataclass(frozen=True, slots=True)
class DestinationRow:
    destination: Destination
    parked_reason: str | None = None
    parked_at: datetime | None = None
    blocked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    dead: int
    oldest_pending_at: datetime | None
    parked_destinations: int
    held: int = 0  # waiting for a digest or the end of quiet hours


class PostKind(StrEnum):
    ITEM = "item"  # a story: the first report of an item, later edited and merged into
    COUNTER = "counter"  # a source's live count (its ``delta`` events), edited as it moves


@dataclass(frozen=True, slots=True)
class Post:
    """One message alerts keeps alive in a room, so that later events edit it.

    ``remote_id`` is the platform's message id (Discord message id, Matrix event id)
    and ``room`` where the platform keeps it (a channel, thread or room id);
    ``target`` is the destination's target when it was posted (a room re-created
    under a new id means a new message). ``source_id`` / ``item_key`` name the item
    it was posted for (``item_key`` is empty for a counter). ``state`` is what it
    shows (``alerts.edits``); ``delivery_id`` the delivery that posted it.
    """

    destination_id: str
    kind: PostKind
    source_id: str
    item_key: str
    remote_id: str
    room: str
    target: str
    delivery_id: int
    detected_at: datetime
    state: Mapping[str, JSON] = field(default_factory=dict)
    edits: int = 0
    edited_at: datetime | None = None
    closed: bool = False
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ChatSource:
    """A feed added from chat (``add-feed``): it belongs to one room (``destination_id``)
    and reaches that room alone, through a subscription to ``id``. ``topic`` is the
    label the room gave it (a configured topic, or empty)."""

    id: str
    destination_id: str
    url: str
    added_by: str
    added_at: datetime
    kind: str = "feed"
    topic: str = ""
