"""Driver errors become ours, here and nowhere else.

Each backend's database handle runs every call into its driver inside
``translated``, which looks the exception up in this module's tables:

* ``StoreUnavailable`` — the store may recover by itself (disk full, database
  locked past the busy timeout, I/O error, connection refused or dropped, server
  restarting, failing over or out of connections). Nothing was committed; callers
  wait it out and try again.
* ``StoreCorrupt`` — the SQLite file is damaged or is not a database. The message
  names the file and what to do; the service cannot go on.

Anything not in a table (a constraint violated, a syntax error) is a bug and
propagates unchanged; so do our own ``StoreError``s (``LeaseLostError``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType

from alerts.errors import StoreCorrupt, StoreError, StoreUnavailable


@dataclass(frozen=True, slots=True)
class Fault:
    """What a driver error means: the error we raise and what the operator can do."""

    error: type[StoreError]
    advice: str


_CORRUPT = (
    "stop alerts, move the file aside and restore the latest backup, or start afresh "
    "without it: alerts then creates a new, empty database and its state and pending "
    "alerts are lost"
)

# SQLite primary result codes (https://www.sqlite.org/rescode.html); an extended
# code (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT…) is looked up by its low byte.
SQLITE_FAULTS: dict[int, Fault] = {
    sqlite3.SQLITE_FULL: Fault(StoreUnavailable, "free disk space"),
    sqlite3.SQLITE_BUSY: Fault(StoreUnavailable, "another process holds the write lock"),
    sqlite3.SQLITE_LOCKED: Fault(StoreUnavailable, "another connection holds a lock"),
    sqlite3.SQLITE_IOERR: Fault(StoreUnavailable, "check the disk and its file system"),
    sqlite3.SQLITE_NOMEM: Fault(StoreUnavailable, "the process is out of memory"),
    sqlite3.SQLITE_READONLY: Fault(StoreUnavailable, "the file or its folder is read-only"),
    sqlite3.SQLITE_CANTOPEN: Fault(
        StoreUnavailable, "check that the folder exists and is writable"
    ),
    sqlite3.SQLITE_PROTOCOL: Fault(StoreUnavailable, "lock contention between processes"),
    sqlite3.SQLITE_CORRUPT: Fault(StoreCorrupt, _CORRUPT),
    sqlite3.SQLITE_NOTADB: Fault(StoreCorrupt, _CORRUPT),
}

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html):
# an exact code first, then its two-character class.
POSTGRES_SQLSTATES: dict[str, Fault] = {
    "08": Fault(StoreUnavailable, "the connection failed or dropped"),  # connection exception
    "53": Fault(StoreUnavailable, "the server is out of connections, memory or disk"),
    "57P01": Fault(StoreUnavailable, "the server is shutting down"),  # admin_shutdown
    "57P02": Fault(StoreUnavailable, "the server crashed"),  # crash_shutdown
    "57P03": Fault(StoreUnavailable, "the server is starting up"),  # cannot_connect_now
    "25006": Fault(StoreUnavailable, "the server is read-only (a standby, or failing over)"),
}


@lru_cache(maxsize=1)
def postgres_types() -> dict[type[BaseException], Fault | None]:
    """Errors that carry no SQLSTATE, by class (the nearest class in the MRO wins;
    ``None``: not a store fault). Built on first use, so SQLite never imports asyncpg."""
    import asyncpg
    from asyncpg import exceptions as pg

    return {
        OSError: Fault(StoreUnavailable, "is the server running and reachable?"),
        asyncpg.InterfaceError: Fault(StoreUnavailable, "the connection or pool was closed"),
        # what a pooled connection the server ended while idle raises on its next use
        # (asyncpg issue 1069: "cannot switch to state 12; another operation (2) is in
        # progress"); the pool is then renewed
        pg.InternalClientError: Fault(StoreUnavailable, "the server ended the connection"),
        pg.DataError: None,  # a value the driver cannot encode: a bug
        pg.ClientConfigurationError: None,
        pg.UnsupportedClientFeatureError: None,
        pg.UnsupportedServerFeatureError: None,
    }


def sqlite_fault(exc: BaseException, path: str) -> StoreError | None:
    """Our error for a ``sqlite3`` exception raised on the file at ``path``, if any."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return None
    fault = SQLITE_FAULTS.get(code & 0xFF)
    return None if fault is None else fault.error(f"SQLite database {path}: {exc} ({fault.advice})")


def postgres_fault(exc: BaseException, server: str) -> StoreError | None:
    """Our error for an asyncpg (or socket) exception talking to ``server`` (a URL
    without its password), if any."""
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        fault = POSTGRES_SQLSTATES.get(state) or POSTGRES_SQLSTATES.get(state[:2])
    else:
        table = postgres_types()
        fault = next((table[c] for c in type(exc).__mro__ if c in table), None)
    if fault is None:
        return None
    detail = str(exc) or type(exc).__name__
    return fault.error(f"PostgreSQL at {server}: {detail} ({fault.advice})")


class translated:
    """``with translated(fault):`` raises ``fault(exc)`` from a driver exception it
    maps and lets anything else through (a class: entered on every store call)."""

    __slots__ = ("_fault",)

    def __init__(self, fault: Callable[[BaseException], StoreError | None]) -> None:
        self._fault = fault

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, StoreError):
            return
        mapped = self._fault(exc)
        if mapped is not None:
            raise mapped from exc
