"""Driver errors become ``StoreUnavailable`` (wait it out) or ``StoreCorrupt`` (name the
file, say what to do), and the store works again once the fault clears.

Real faults where they can be made here: a file that is not a database, a damaged
one, a full disk (a small tmpfs mounted by the test), a PostgreSQL backend killed
mid-transaction. The rest of the tables is checked row by row with the drivers' own
exception classes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import FileIO
from pathlib import Path

import asyncpg
import pytest
from asyncpg import exceptions as pg

from alerts.errors import StoreCorrupt, StoreError, StoreUnavailable
from alerts.model import Destination, Event, EventKind
from alerts.store import ItemState, PollCommit, RoutedEvent, Store, open_store
from alerts.store.faults import postgres_fault, sqlite_fault
from alerts.store.postgres import open_postgres
from alerts.store.sqlite import SqliteStore

from ..pg_support import fresh_database
from .conftest import StoreFactory

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def poll(source: str, *, items: int = 0, item_bytes: int = 0, events: int = 0) -> PollCommit:
    return PollCommit(
        source_id=source,
        now=at(10),
        next_due=at(900),
        items={f"k{n}": ItemState(f"fp{n}", {"body": "x" * item_bytes}) for n in range(items)},
        events=[
            RoutedEvent(Event(source, EventKind.NEW, f"k{n}", f"t{n}"), ("room",))
            for n in range(events)
        ],
    )


async def seeded(store: Store) -> None:
    await store.upsert_destination(Destination("room", "console"))
    await store.sync_sources({"s1": at(0)})
    assert len(await store.claim_due_sources(at(1), owner="w", lease_s=600, limit=1)) == 1


# --- a file that is not a database, or a damaged one -------------------------------------


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"this is a shopping list, not a database\n" * 200)


def _damaged(path: Path) -> None:
    """A real store whose pages after the header page are overwritten."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")  # everything in the main file
    conn.close()
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xa5" * (size - 4096))


async def _make_store(path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{path}")
    await seeded(store)
    await store.close()


@pytest.mark.parametrize(
    ("spoil", "what"),
    [
        pytest.param(_not_a_database, "file is not a database", id="not-a-database"),
        pytest.param(_damaged, "malformed", id="damaged"),
    ],
)
async def test_a_bad_file_is_corrupt_and_named_when_the_store_opens(
    tmp_path: Path, spoil: Callable[[Path], None], what: str
) -> None:
    path = tmp_path / "alerts.db"
    await _make_store(path)
    spoil(path)
    with pytest.raises(StoreCorrupt) as caught:
        await open_store(f"sqlite:///{path}")
    message = str(caught.value)
    assert str(path) in message and what in message
    assert "restore the latest backup" in message
    assert "\n" not in message


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    _not_a_database(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env["PYTHONPATH"] = str(REPO / "src")
    for command in (["deliveries"], ["db", "status"]):
        done = subprocess.run(
            [sys.executable, "-m", "alerts", "--database-url", f"sqlite:///{path}", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert str(path) in line and "file is not a database" in line, line
        assert "Traceback" not in done.stderr


# --- a full disk --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot run mount to make a small disk: {exc}")
    if done.returncode != 0:
        pytest.skip(
            "mounting a tmpfs is not allowed here (needs root or CAP_SYS_ADMIN): "
            + done.stderr.strip()
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as fh, pytest.raises(OSError, match="No space") as full:
        _write_forever(fh)
    assert full.value.errno == errno.ENOSPC
    return filler


def _write_forever(fh: FileIO) -> None:
    while True:
        fh.write(b"\0" * 16384)


async def test_a_full_disk_is_waited_out_and_nothing_is_half_written(small_disk: Path) -> None:
    path = small_disk / "alerts.db"
    store = await SqliteStore.open(f"sqlite:///{path}")
    try:
        await seeded(store)
        filler = _fill(small_disk)
        commit = poll("s1", items=60, item_bytes=4000, events=3)
        with pytest.raises(StoreUnavailable) as caught:
            await store.commit_poll(commit, owner="w")
        assert str(path) in str(caught.value) and "full" in str(caught.value)
        assert await store.load_items("s1") == {}  # rolled back whole
        assert (await store.outbox_stats()).pending == 0
        filler.unlink()
        stored = await store.commit_poll(commit, owner="w")  # the lease was kept
        assert len(stored) == 3 and len(await store.load_items("s1")) == 60
        assert (await store.outbox_stats()).pending == 3
    finally:
        await store.close()


# --- a closed store ------------------------------------------------------------------------


async def test_a_closed_store_is_unavailable_not_a_driver_error(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.list_sources()


# --- PostgreSQL: a backend killed mid-use, every backend killed while idle ------------------


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


async def _wait_for_row(admin: asyncpg.Connection, query: str, *args: object) -> int:
    """The first value of ``query`` once it returns a row (polled on the server)."""
    async with asyncio.timeout(30):
        while True:
            value = await admin.fetchval(query, *args)
            if value is not None:
                return int(value)
            await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_a_backend_killed_mid_transaction_is_unavailable_then_recovers(
    pg_url: str,
) -> None:
    store = await open_postgres(pg_url, max_connections=2)
    admin = await asyncpg.connect(pg_url)
    try:
        await seeded(store)
        locker = admin.transaction()
        await locker.start()
        await admin.execute("SELECT 1 FROM sources WHERE id = 's1' FOR UPDATE")
        committing = asyncio.create_task(store.commit_poll(poll("s1", items=2), owner="w"))
        pid = await _wait_for_row(  # commit_poll, waiting for the row lock
            admin,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(StoreUnavailable) as caught:
            await committing
        await locker.rollback()
        assert "PostgreSQL at postgresql://" in str(caught.value)
        assert await store.load_items("s1") == {}  # nothing half-written
        await store.commit_poll(poll("s1", items=2), owner="w")  # the next call succeeds
        assert len(await store.load_items("s1")) == 2
    finally:
        await admin.close()
        await store.close()


_TERMINATE = "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS u(pid)"
_ALL_GONE = "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1::int[]))"


@pytest.mark.postgres
async def test_the_pool_renews_connections_the_server_dropped(pg_url: str) -> None:
    store = await open_postgres(pg_url, max_connections=4)
    admin = await asyncpg.connect(pg_url)
    try:
        await seeded(store)
        await asyncio.gather(*(store.list_sources() for _ in range(8)))  # several connections
        pids = [
            r[0]
            for r in await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        ]
        assert len(pids) >= 2
        assert all(r[0] for r in await admin.fetch(_TERMINATE, pids))
        await _wait_for_row(admin, _ALL_GONE, pids)
        # As after a server restart: each dead connection may fail the call that finds
        # it (StoreUnavailable), is then replaced, and none stays broken.
        failures = 0
        for _ in range(len(pids) + 3):
            try:
                assert [r.source_id for r in await store.list_sources()] == ["s1"]
            except StoreUnavailable:
                failures += 1
        assert failures <= len(pids)
        for _ in range(3):
            assert [r.source_id for r in await store.list_sources()] == ["s1"]
    finally:
        await admin.close()
        await store.close()


# --- the tables, row by row -----------------------------------------------------------------


def _sqlite_error(code: int, message: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(_sqlite_error(13, "database or disk is full"), StoreUnavailable, id="full"),
        pytest.param(_sqlite_error(5, "database is locked"), StoreUnavailable, id="busy"),
        pytest.param(_sqlite_error(517, "database is locked"), StoreUnavailable, id="busy-snap"),
        pytest.param(_sqlite_error(6, "database table is locked"), StoreUnavailable, id="locked"),
        pytest.param(_sqlite_error(778, "disk I/O error"), StoreUnavailable, id="ioerr-write"),
        pytest.param(_sqlite_error(8, "attempt to write a readonly db"), StoreUnavailable, id="ro"),
        pytest.param(
            _sqlite_error(14, "unable to open database file"), StoreUnavailable, id="open"
        ),
        pytest.param(_sqlite_error(26, "file is not a database"), StoreCorrupt, id="notadb"),
        pytest.param(_sqlite_error(11, "database disk image is malformed"), StoreCorrupt, id="bad"),
        pytest.param(_sqlite_error(19, "UNIQUE constraint failed"), None, id="constraint-is-a-bug"),
        pytest.param(_sqlite_error(1, 'near "SELEC": syntax error'), None, id="syntax-is-a-bug"),
        pytest.param(sqlite3.ProgrammingError("wrong number of bindings"), None, id="no-code"),
    ],
)
def test_sqlite_table(exc: BaseException, expected: type[StoreError] | None) -> None:
    mapped = sqlite_fault(exc, "/srv/alerts.db")
    if expected is None:
        assert mapped is None
    else:
        assert type(mapped) is expected and "/srv/alerts.db" in str(mapped)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(ConnectionRefusedError(111, "Connect call failed"), True, id="refused"),
        pytest.param(ConnectionResetError(104, "reset by peer"), True, id="reset"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(pg.ConnectionDoesNotExistError("closed mid-operation"), True, id="08003"),
        pytest.param(pg.ConnectionFailureError("connection failure"), True, id="08006"),
        pytest.param(pg.TooManyConnectionsError("too many clients"), True, id="53300"),
        pytest.param(pg.DiskFullError("no space left"), True, id="53100"),
        pytest.param(pg.AdminShutdownError("terminating connection"), True, id="57P01"),
        pytest.param(pg.CrashShutdownError("crash"), True, id="57P02"),
        pytest.param(pg.CannotConnectNowError("starting up"), True, id="57P03"),
        pytest.param(pg.ReadOnlySQLTransactionError("read-only"), True, id="25006-failover"),
        pytest.param(asyncpg.InterfaceError("pool is closed"), True, id="pool-closed"),
        pytest.param(asyncpg.InterfaceError("connection is closed"), True, id="conn-closed"),
        pytest.param(
            pg.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            ),
            True,
            id="ended-while-idle",
        ),
        pytest.param(pg.QueryCanceledError("canceling statement"), False, id="57014-not-ours"),
        pytest.param(pg.UniqueViolationError("duplicate key"), False, id="23505-is-a-bug"),
        pytest.param(pg.DataError("invalid input for $1"), False, id="data-is-a-bug"),
        pytest.param(ValueError("nope"), False, id="other"),
    ],
)
def test_postgres_table(exc: BaseException, expected: bool) -> None:
    mapped = postgres_fault(exc, "postgresql://alerts:***@db/alerts")
    if not expected:
        assert mapped is None
    else:
        assert type(mapped) is StoreUnavailable
        assert "postgresql://alerts:***@db/alerts" in str(mapped)
