"""SQLite records each applied migration: a migration numbered below one already
applied (helpers number theirs in parallel) is still applied, and a file from before
the record existed is upgraded from its ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts.store import common
from alerts.store.migrations import Migration, bundled, statements
from alerts.store.sqlite import SqliteStore, applied_versions

SHIPPED = [m.version for m in bundled("sqlite")]


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_each_migration_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = await SqliteStore.open(url)
    await store.close()
    path = tmp_path / "a.db"
    recorded = rows(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert recorded == [(m.version, m.name) for m in bundled("sqlite")]
    assert rows(path, "PRAGMA user_version") == [(max(SHIPPED),)]
    assert await applied_versions(url) == tuple(SHIPPED)


async def test_a_lower_number_shipped_later_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = await SqliteStore.open(url)
    await store.close()
    late = Migration(4, "0004_late.sql", "CREATE TABLE late_arrival (x INTEGER)")
    assert max(SHIPPED) > 4 and 4 not in SHIPPED  # 0006 is applied already
    monkeypatch.setattr(
        common, "bundled", lambda name: sorted([*bundled(name), late], key=lambda m: m.version)
    )
    store = await SqliteStore.open(url)
    await store.close()
    path = tmp_path / "a.db"
    assert rows(path, "SELECT count(*) FROM late_arrival") == [(0,)]
    assert (4, "0004_late.sql") in rows(path, "SELECT version, name FROM schema_migrations")
    assert rows(path, "PRAGMA user_version") == [(max(SHIPPED),)]  # still the highest


async def test_a_file_from_before_the_record_is_upgraded(tmp_path: Path) -> None:
    # A database made by an older alerts: 0001-0003 applied, user_version = 3.
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for migration in bundled("sqlite")[:3]:
            for statement in statements(migration.sql):
                db.execute(statement)
        db.execute("PRAGMA user_version = 3")
    url = f"sqlite:///{path}"
    assert await applied_versions(url) == (1, 2, 3)  # read without changing anything
    store = await SqliteStore.open(url)
    await store.close()
    assert [v for (v,) in rows(path, "SELECT version FROM schema_migrations")] == SHIPPED
    assert rows(path, "SELECT count(*) FROM chat_sources") == [(0,)]
