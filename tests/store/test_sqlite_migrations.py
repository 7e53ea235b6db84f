"""SQLite records each applied migration (``schema_migrations``), so a migration that
lands with a number lower than the newest applied one is still applied; a file made
when ``PRAGMA user_version`` was the record is upgraded from it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts.store.migrations import Migration, bundled, statements
from alerts.store.sqlite import SqliteStore, applied_versions


def old_style_file(path: Path, upto: int) -> None:
    """A database as alerts made it before the table: migrations up to ``upto``
    applied and ``PRAGMA user_version`` saying so."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for migration in bundled("sqlite"):
            if migration.version <= upto:
                for statement in statements(migration.sql):
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={upto}")
    finally:
        conn.close()


def recorded(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        conn.close()


async def test_a_user_version_file_is_upgraded_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_style_file(path, 3)
    url = f"sqlite:///{path}"
    assert await applied_versions(url) == (1, 2, 3)  # read from user_version, unchanged
    store = await SqliteStore.open(url)
    await store.close()
    everything = [m.version for m in bundled("sqlite")]
    assert recorded(path) == everything
    assert await applied_versions(url) == tuple(everything)


async def test_a_migration_numbered_below_the_newest_is_applied_when_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = bundled("sqlite")
    newest = shipped[-1].version
    first = Migration(newest + 2, f"{newest + 2:04d}_first.sql", "CREATE TABLE first (x INTEGER);")
    late = Migration(newest + 1, f"{newest + 1:04d}_late.sql", "CREATE TABLE late (x INTEGER);")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    for bundle in ([*shipped, first], [*shipped, late, first]):  # "late" lands afterwards
        monkeypatch.setattr("alerts.store.common.bundled", lambda dialect, b=bundle: b)
        monkeypatch.setattr("alerts.store.sqlite.bundled", lambda dialect, b=bundle: b)
        store = await SqliteStore.open(url)
        try:
            assert await store.schema_version() == newest + 2
        finally:
            await store.close()
    assert recorded(tmp_path / "a.db")[-2:] == [newest + 1, newest + 2]
    conn = sqlite3.connect(tmp_path / "a.db")
    try:
        assert conn.execute("SELECT count(*) FROM late").fetchone() == (0,)
    finally:
        conn.close()


def test_a_semicolon_in_a_comment_does_not_cut_a_statement() -> None:
    sql = (
        "-- adds a column; and an index\n"
        "ALTER TABLE t ADD COLUMN c TEXT;\n"
        "  -- indented comment; still a comment\n"
        "CREATE INDEX t_c ON t (c);\n"
        "-- trailing comment only;\n"
    )
    assert statements(sql) == ["ALTER TABLE t ADD COLUMN c TEXT", "CREATE INDEX t_c ON t (c)"]
