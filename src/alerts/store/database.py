"""What the shared store needs from a backend: a database handle that runs
statements and whole transactions, each written once in the dialect's SQL.

A transaction is handed over as one function, ``body(tx)``. On PostgreSQL it runs
on a pooled connection, awaiting each statement. On SQLite it runs, whole, on the
thread that owns the connection: the SQLite ``Tx`` methods are coroutines that
never suspend (the statement runs on the spot), so ``run_now`` drives ``body`` to
its end on that thread — a transaction of any size is one trip to the thread.
A body therefore awaits nothing but its ``Tx``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast

from alerts.store.dialect import Dialect

T = TypeVar("T")


class Row(Protocol):
    """A result row: by column name or position (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]:
        """The values, in column order."""
        ...


class Tx(Protocol):
    """One open transaction. Statements take the dialect's ``$n`` placeholders."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or ``None`` without rows."""
        ...


Body = Coroutine[Any, Any, T]


class Database(Protocol):
    """A handle on one database. Every driver error it lets out is translated
    (``alerts.store.faults``); statements take the dialect's ``$n`` placeholders."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def where(self) -> str:
        """The file or server, for messages (never with a password)."""
        ...

    async def transaction(self, body: Callable[[Tx], Body[T]]) -> T:
        """Run ``body(tx)`` in one transaction: committed when it returns, rolled
        back when it raises."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """One writing statement, atomically; returns the number of rows changed."""
        ...

    async def execute_returning(self, sql: str, *args: Any) -> list[Row]:
        """One writing statement with ``RETURNING``, atomically; returns its rows."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """A read, outside any explicit transaction."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def close(self) -> None: ...


def run_now(body: Body[T]) -> T:
    """Run a coroutine that never suspends, to its end, on the calling thread."""
    try:
        body.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    body.close()
    raise RuntimeError("a SQLite transaction awaited something other than its database")
