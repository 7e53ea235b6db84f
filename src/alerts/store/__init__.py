"""The store: durable state, the outbox, subscriptions, leases.

Every backend implements ``alerts.contracts.Store`` and passes the same contract
suite (``tests/store/test_contract.py``). The interface is shaped for several
replicas sharing one database from the start: work is *claimed* with time-bounded
leases (``claim_due_sources``, ``claim_deliveries``), never guarded by in-process
locks, and a claim that has expired may be taken by another worker.

The central invariant lives in ``commit_poll``: detector state, item states, events
and their deliveries are written in one transaction, and only if the caller still
holds the source's lease. So a crash anywhere either loses the whole poll (it is
simply polled again) or keeps all of it (its deliveries are pending and will be sent).

Time is passed in as aware ``datetime`` values by the caller, never read from a clock
inside the store, so tests control it.
"""

from __future__ import annotations

from alerts.contracts import Store
from alerts.records import (
    DeliveryRow,
    DestinationRow,
    ItemState,
    NotModified,
    OutboxStats,
    PollCommit,
    RoutedEvent,
    SourceRow,
)

__all__ = [
    "DeliveryRow",
    "DestinationRow",
    "ItemState",
    "NotModified",
    "OutboxStats",
    "PollCommit",
    "RoutedEvent",
    "SourceRow",
    "Store",
    "open_store",
]


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
