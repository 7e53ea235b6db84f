"""The two SQL dialects: how a statement written once is rendered for a backend, and
how values cross between Python and each database. Every conversion of a stored
value lives here.

Statements are written once, in PostgreSQL's spelling, with numbered placeholders
``$1, $2 …``. SQLite understands numbered parameters too, spelled ``?1, ?2 …``, so
rendering is a textual substitution done once per statement (as mautrix-python's
``async_db`` does with its ``POSITIONAL_PARAM_PATTERN``), and a parameter may be used
more than once. By convention no statement holds a ``$`` followed by a digit inside
a string literal.

What the two languages spell differently is named here, once:

* row locks: PostgreSQL locks the rows a transaction is about to change
  (``FOR UPDATE``, and ``SKIP LOCKED`` for claims); SQLite has one writer at a time
  (``BEGIN IMMEDIATE``), so it needs none;
* a list parameter: an array on PostgreSQL (``= ANY($n)``), a JSON array read with
  ``json_each`` on SQLite — either way one parameter, so the statement text (and
  the driver's cached plan) is the same whatever the length of the list;
* times (``timestamptz`` versus UNIX seconds in a ``REAL``) and booleans
  (``boolean`` versus 0/1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

_PARAM = re.compile(r"\$(\d+)")


class Dialect:
    """What differs between the SQL of two backends; PostgreSQL's spelling is the
    reference, so this base renders statements unchanged."""

    name = "postgres"
    lock_rows = " FOR UPDATE"
    """Appended to a ``SELECT`` of rows the transaction is about to change."""
    skip_locked = " FOR UPDATE SKIP LOCKED"
    """Appended to a claim's ``SELECT``: rows another claimer is taking are skipped."""
    columns_sql = (
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    )
    """Name and declared type of every column of the table ``$1``, in order."""
    restart_identity: str | None = (
        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        "COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
    )
    """After rows were copied in with their ids, make the next id of ``{table}``
    follow them (SQLite's ``INTEGER PRIMARY KEY`` does so by itself)."""

    def render(self, sql: str) -> str:
        """The statement as this backend's driver takes it."""
        return sql

    def time(self, value: datetime | None) -> Any:
        """A time as stored (aware ``datetime`` in, ``None`` kept)."""
        return value

    def when(self, stored: Any) -> datetime | None:
        """A stored time as an aware ``datetime`` (``None`` kept)."""
        result: datetime | None = stored
        return result

    def member(self, column: str, param: int, sql_type: str) -> str:
        """``column`` is one of the list parameter ``$param`` (of ``sql_type`` items)."""
        return f"{column} = ANY(${param}::{sql_type}[])"

    def array(self, values: Iterable[Any]) -> Any:
        """The value of a list parameter used with ``member``."""
        return list(values)

    def adapt(self, value: Any, column_type: str) -> Any:
        """A value read from any backend, as a column of ``column_type`` takes it here
        (``alerts migrate-store``): UNIX seconds become times, 0/1 booleans."""
        if value is None:
            return None
        if column_type == "timestamp with time zone" and not isinstance(value, datetime):
            return datetime.fromtimestamp(float(value), UTC)
        if column_type == "boolean":
            return bool(value)
        return value


class SqliteDialect(Dialect):
    """SQLite 3.35 or later (``RETURNING``, upserts, ``json_each``)."""

    name = "sqlite"
    lock_rows = ""
    skip_locked = ""
    columns_sql = "SELECT name, type FROM pragma_table_info($1) ORDER BY cid"
    restart_identity = None

    def render(self, sql: str) -> str:
        return _numbered(sql)

    def time(self, value: datetime | None) -> Any:
        return None if value is None else value.timestamp()

    def when(self, stored: Any) -> datetime | None:
        return None if stored is None else datetime.fromtimestamp(stored, UTC)

    def member(self, column: str, param: int, sql_type: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(${param}))"

    def array(self, values: Iterable[Any]) -> Any:
        return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)

    def adapt(self, value: Any, column_type: str) -> Any:
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, bool):
            return int(value)
        return value


@lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    return _PARAM.sub(r"?\1", sql)


POSTGRES = Dialect()
SQLITE = SqliteDialect()
