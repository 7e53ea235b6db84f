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

Layout: the statements are written once (``common.SqlStore``) in one dialect
(``dialect``), over a database handle per backend (``database``: the SQLite one owns
its connection's thread, the PostgreSQL one a pool); ``sqlite`` and ``postgres``
override only what differs. Driver errors become ``StoreUnavailable`` or
``StoreCorrupt`` in one place (``faults``).
"""

from __future__ import annotations

from alerts.contracts import Store
from alerts.errors import ConfigError
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
from alerts.store.migrations import Migration, MigrationStatus, bundled

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
    "migrate",
    "migration_status",
    "open_store",
]


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def _check_scheme(url: str) -> None:
    if not (url.startswith("sqlite:") or _is_postgres(url)):
        raise ConfigError(f"ALERTS_DATABASE_URL: unsupported scheme in {url.split(':', 1)[0]!r}")


async def open_store(url: str) -> Store:
    """Open (and migrate) the store named by a URL: ``sqlite:///path`` or
    ``postgresql://…``."""
    _check_scheme(url)
    if _is_postgres(url):
        from alerts.store.postgres import open_postgres  # asyncpg only when needed

        return await open_postgres(url)
    from alerts.store.sqlite import SqliteStore

    return await SqliteStore.open(url)


async def migration_status(url: str) -> MigrationStatus:
    """What the database at ``url`` has applied, without changing it."""
    _check_scheme(url)
    if _is_postgres(url):
        from alerts.store.postgres import applied_versions as pg_applied

        return MigrationStatus("postgres", await pg_applied(url), tuple(bundled("postgres")))
    from alerts.store.sqlite import applied_versions as sqlite_applied

    return MigrationStatus("sqlite", await sqlite_applied(url), tuple(bundled("sqlite")))


async def migrate(url: str) -> list[Migration]:
    """Apply pending migrations; returns those applied now."""
    before = await migration_status(url)
    store = await open_store(url)
    await store.close()
    after = set((await migration_status(url)).applied)
    return [m for m in before.pending if m.version in after]
