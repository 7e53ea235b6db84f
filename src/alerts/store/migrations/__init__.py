"""Versioned schema migrations, shared by every backend.

Each backend has a folder of numbered files (``sqlite/0001_initial.sql``,
``postgres/0001_initial.sql``…). Opening a store applies, in one transaction, every
bundled migration the database has not recorded as applied — in a
``schema_migrations`` table on both backends (on PostgreSQL under an advisory lock,
so replicas starting together migrate once). A migration numbered below the newest
applied one (a file that landed later) is applied too. Files are never edited
once released; a schema change is a new file with the next number.

This package only holds the files; the backends apply them and record what they
applied (``alerts.store.migration_status`` and ``alerts.store.migrate`` serve
``alerts db status`` and ``alerts db migrate``), so it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered file of one backend."""

    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """What a database has applied, against what this version of alerts bundles."""

    backend: str
    applied: tuple[int, ...]
    bundled: tuple[Migration, ...]

    @property
    def current(self) -> int:
        return max(self.applied, default=0)

    @property
    def pending(self) -> list[Migration]:
        done = set(self.applied)
        return [m for m in self.bundled if m.version not in done]


def bundled(dialect: str) -> list[Migration]:
    """Every migration shipped for ``dialect`` (``sqlite`` or ``postgres``), in order."""
    folder = resources.files(__name__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def statements(sql: str) -> list[str]:
    """Split a migration file into statements.

    Whole-line ``--`` comments are dropped first, so a ``;`` in a comment does not cut a
    statement; by convention no ``;`` appears inside a literal.
    """
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]
