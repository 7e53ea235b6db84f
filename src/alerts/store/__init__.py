"""The store: durable state, the outbox, subscriptions, leases.

Every backend implements ``Store`` and passes the same contract suite
(``tests/store_contract.py``). The interface is shaped for several replicas sharing
one database from the start: work is *claimed* with time-bounded leases
(``claim_due_sources``, ``claim_deliveries``), never guarded by in-process locks,
and a claim that has expired may be taken by another worker.

The central invariant lives in ``commit_poll``: detector state, item states, events
and their deliveries are written in one transaction, and only if the caller still
holds the source's lease. So a crash anywhere either loses the whole poll (it is
simply polled again) or keeps all of it (its deliveries are pending and will be sent).

Time is passed in as aware ``datetime`` values by the caller, never read from a clock
inside the store, so tests control it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from alerts.model import (
    JSON,
    Delivery,
    DeliveryState,
    Destination,
    Event,
    Subscription,
    Validators,
)


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
    """What the detector remembers of one item."""

    fingerprint: str
    snapshot: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    event: Event
    destination_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PollCommit:
    """Everything one poll writes, in one transaction.

    On success (``error is None``): validators, cursor and detector state (``None``
    keeps the stored one), item upserts, events and their deliveries, ``failures``
    reset. On failure: only ``error``, ``failures + 1`` and ``next_due`` (the backoff)
    are written.
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


class Store(Protocol):
    """Durable state of the service. All methods are safe to call concurrently from
    several processes sharing the database."""

    install_id: str
    """Random id of this database, fixed at creation; part of idempotency keys."""

    async def close(self) -> None: ...

    # --- sources -----------------------------------------------------------------

    async def sync_sources(self, due: Mapping[str, datetime]) -> None:
        """Make the given sources the active set: new ones are registered, first due
        at the given times; known ones keep their state; sources not given are
        deactivated (kept with their state, never claimed) in case they come back."""
        ...

    async def claim_due_sources(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        only: Collection[str] | None = None,
    ) -> list[SourceRow]:
        """Lease up to ``limit`` active sources with ``next_due <= now`` whose lease is
        free or expired, earliest due first; restrict to ``only`` when given."""
        ...

    async def release_source(self, source_id: str, *, owner: str) -> None:
        """Give a claimed source back without polling it (shutdown)."""
        ...

    async def get_source(self, source_id: str) -> SourceRow | None: ...

    async def list_sources(self) -> list[SourceRow]: ...

    async def set_next_due(self, source_id: str, next_due: datetime) -> None: ...

    async def load_items(
        self, source_id: str, keys: Collection[str] | None = None
    ) -> dict[str, ItemState]:
        """Item states of a source (all of them when ``keys`` is None)."""
        ...

    async def commit_poll(self, commit: PollCommit, *, owner: str) -> list[Event]:
        """Write one poll atomically (see ``PollCommit``) and release the lease.

        Every destination id must exist (config destinations are upserted at
        start-up, chat ones on subscribe). Returns the events with their ids. Raises
        ``LeaseLostError`` (and writes nothing) if ``owner`` no longer holds the lease.
        """
        ...

    # --- destinations and subscriptions ------------------------------------------

    async def upsert_destination(self, destination: Destination) -> None: ...

    async def get_destination(self, destination_id: str) -> DestinationRow | None: ...

    async def list_destinations(self) -> list[DestinationRow]: ...

    async def park_destination(self, destination_id: str, *, reason: str, now: datetime) -> None:
        """Stop sending to a destination until an operator unparks it."""
        ...

    async def unpark_destination(self, destination_id: str) -> bool: ...

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        """Forget a chat destination (bot kicked, guild left): drop its
        subscriptions and mark its pending deliveries dead with ``reason``.
        Returns the number of subscriptions dropped."""
        ...

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        """Store a subscription, replacing one for the same destination and the same
        topic/source. Returns it with its id."""
        ...

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        """Remove the destination's subscriptions to ``topic`` / ``source``; with
        neither, remove all of them. Returns how many were removed."""
        ...

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]: ...

    async def subscriptions_version(self) -> int:
        """A number that changes whenever subscriptions change (router cache key)."""
        ...

    # --- the outbox --------------------------------------------------------------

    async def claim_deliveries(
        self, now: datetime, *, owner: str, lease_s: float, limit: int
    ) -> list[Delivery]:
        """Lease pending deliveries in id order, keeping per-destination order: a
        delivery is claimable only when its destination is neither parked nor blocked
        (``blocked_until > now``) and no earlier pending delivery of the same
        destination is leased by someone else."""
        ...

    async def mark_sent(
        self, delivery_id: int, *, remote_id: str | None, now: datetime
    ) -> None: ...

    async def mark_retry(
        self, delivery_id: int, *, error: str, retry_at: datetime, count_attempt: bool
    ) -> None:
        """Release the lease, record the error, add an attempt if ``count_attempt``,
        and block the delivery's destination until ``retry_at``."""
        ...

    async def mark_dead(self, delivery_id: int, *, error: str, now: datetime) -> None: ...

    async def release_deliveries(self, delivery_ids: Collection[int]) -> None:
        """Give leased deliveries back untouched (shutdown, destination blocked)."""
        ...

    async def list_deliveries(
        self, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[DeliveryRow]: ...

    async def requeue_dead(self, delivery_ids: Collection[int] | None = None) -> int:
        """Make dead deliveries pending again (all when ``None``), attempts reset."""
        ...

    async def outbox_stats(self) -> OutboxStats: ...

    # --- small persisted state for sinks (device ids, sync tokens) ----------------

    async def kv_get(self, namespace: str, key: str) -> str | None: ...

    async def kv_set(self, namespace: str, key: str, value: str) -> None: ...

    # --- claims of workers that died ------------------------------------------------

    async def lease_owners(self) -> set[str]:
        """Owners holding any unexpired-or-not claim (sources, deliveries, leadership)."""
        ...

    async def release_owner(self, owner: str) -> int:
        """Drop every claim of ``owner`` (a worker known to be dead); returns how many."""
        ...

    # --- leadership (chat listeners run on exactly one replica) -------------------

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        """Become or stay the leader for ``name``; False while another owner leads."""
        ...

    async def resign(self, name: str, *, owner: str) -> None: ...


async def open_store(url: str) -> Store:
    """Open (and migrate) the store named by a URL: ``sqlite:///path`` or
    ``postgresql://…``."""
    if url.startswith("sqlite:"):
        from alerts.store.sqlite import SqliteStore

        return await SqliteStore.open(url)
    if url.startswith(("postgres://", "postgresql://")):
        import importlib

        postgres = importlib.import_module("alerts.store.postgres")
        store: Store = await postgres.open_postgres(url)
        return store
    from alerts.errors import ConfigError

    raise ConfigError(f"ALERTS_DATABASE_URL: unsupported scheme in {url!r}")
