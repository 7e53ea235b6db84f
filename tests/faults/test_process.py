"""Faults that are about the process, against a real ``alerts run``: shutdown with
hung polls, a second signal, a reload that blows the stack, a damaged database file,
and ``alerts poll`` on a live install."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.store import open_store

from ..support import feed_server, read_jsonl, write_config
from .helpers import (
    JSONL_ROUTE,
    Service,
    hanging_server,
    register_idle,
    service,
    set_service,
    wait_for,
)

pytestmark = pytest.mark.slow

GRACE_S = 3.0


def _leases(db: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, lease_owner FROM sources ORDER BY id"))


async def test_sigterm_with_hung_polls_exits_0_within_the_grace(tmp_path: Path) -> None:
    """Three polls hang on a server that never answers; SIGTERM cancels them, gives
    their leases back and exits 0 well within ``shutdown_grace``."""
    async with hanging_server() as (url, held):
        config = write_config(tmp_path, {f"hung{i}": f"{url}/feed{i}.xml" for i in range(3)})
        set_service(config, shutdown_grace=f'"{GRACE_S:g}s"')
        db = tmp_path / "alerts.db"
        async with service(tmp_path, config, f"sqlite:///{db}") as svc:
            await svc.force_poll("hung0", "hung1", "hung2")
            await wait_for(lambda: len(held) >= 3, 30, "three hung polls")
            took = await svc.stop(signal.SIGTERM)
            assert svc.proc is not None and svc.proc.returncode == 0, svc.text()
            assert took < GRACE_S + 1.5, f"took {took:.1f} s\n{svc.text()}"
            assert "SIGTERM: stopping within 3 s" in svc.text()
            assert "stopped cleanly" in svc.text()
            assert "Traceback" not in svc.text()
        assert [owner for _id, owner in _leases(db)] == [None, None, None]  # given back


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock: the service's writes wait (its busy timeout)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.close()


async def test_a_stuck_store_does_not_hold_the_exit_past_the_grace(tmp_path: Path) -> None:
    """The polls' leases cannot be given back (the database is locked by another
    process): the service still exits 0 within the grace; the leases come back
    on the next start."""
    async with hanging_server() as (url, held):
        config = write_config(tmp_path, {"hung": f"{url}/feed.xml"})
        set_service(config, shutdown_grace=f'"{GRACE_S:g}s"')
        db = tmp_path / "alerts.db"
        async with service(tmp_path, config, f"sqlite:///{db}") as svc:
            await svc.force_poll("hung")
            await wait_for(lambda: len(held) >= 1, 30, "a hung poll")
            with write_lock(db):
                took = await svc.stop(signal.SIGTERM)
            assert svc.proc is not None and svc.proc.returncode == 0, svc.text()
            assert took < GRACE_S + 1.5, f"took {took:.1f} s\n{svc.text()}"


async def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    async with hanging_server() as (url, held):
        config = write_config(tmp_path, {"hung": f"{url}/feed.xml"})
        set_service(config, shutdown_grace='"60s"')
        db = tmp_path / "alerts.db"
        async with service(tmp_path, config, f"sqlite:///{db}") as svc:
            await svc.force_poll("hung")
            await wait_for(lambda: len(held) >= 1, 30, "a hung poll")
            with write_lock(db):  # the shutdown waits on the store: up to 60 s
                await svc.send(signal.SIGINT)
                await svc.wait_log("SIGINT: stopping within 60 s")
                took = await svc.stop(signal.SIGINT, timeout_s=10)
            assert svc.proc is not None
            assert svc.proc.returncode == 128 + signal.SIGINT.value, svc.text()
            assert took < 2.0, svc.text()
            assert "second SIGINT: exiting now" in svc.text()


async def test_a_reload_that_overflows_the_stack_keeps_the_running_config(
    tmp_path: Path,
) -> None:
    async with feed_server() as server:
        config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
        async with service(tmp_path, config, f"sqlite:///{tmp_path / 'alerts.db'}") as svc:
            evil = config / "sources.d" / "evil.toml"
            evil.write_text("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n")
            await svc.send(signal.SIGHUP)
            await svc.wait_log("reload failed; keeping the running config: ")
            line = next(ln for ln in svc.text().splitlines() if "reload failed" in ln)
            assert "evil.toml" in line or "RecursionError" in line, line
            assert "Task exception was never retrieved" not in svc.text()
            assert "Traceback" not in svc.text()
            evil.unlink()
            await svc.send(signal.SIGHUP)
            await svc.wait_log("config reloaded: 1 sources")
            assert await svc.stop() < 10 and svc.proc is not None and svc.proc.returncode == 0


COMMANDS = [
    ("run",),
    ("sources",),
    ("deliveries",),
    ("destinations",),
    ("poll", "wire"),
    ("poll", "wire", "--dry-run"),
    ("db", "status"),
    ("db", "migrate"),
]


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"this is not a database\n" * 200, id="not-a-database"),
        pytest.param(b"SQLite format 3\x00" + b"\xff" * 4096, id="damaged-header"),
    ],
)
async def test_a_damaged_database_file_is_one_line_for_every_command(
    tmp_path: Path, garbage: bytes
) -> None:
    db = tmp_path / "alerts.db"
    db.write_bytes(garbage)
    async with feed_server() as server:
        config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
        probe = Service(tmp_path, config, f"sqlite:///{db}")
        for args in COMMANDS:
            code, out, err = await probe.command(*args)
            assert code == 1, (args, out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1, (args, err)
            assert str(db) in lines[0], (args, err)
            assert any(w in lines[0] for w in ("not a database", "malformed")), (args, err)
            assert "restore" in lines[0] and "backup" in lines[0], (args, err)
        code, _out, err = await probe.command(
            "migrate-store", "--from", f"sqlite:///{db}", "--to", f"sqlite:///{tmp_path / 'n.db'}"
        )
        assert code == 1 and len(err.strip().splitlines()) == 1 and str(db) in err, err
    assert db.read_bytes() == garbage  # nothing wrote to it


async def test_alerts_poll_on_a_live_install_leaves_the_active_set_alone(
    tmp_path: Path,
) -> None:
    async with feed_server() as server:
        feeds = {name: server.feed(name, f"{name}1") for name in ("a", "b")}
        config = write_config(tmp_path, feeds, extra=JSONL_ROUTE)
        db_url = f"sqlite:///{tmp_path / 'alerts.db'}"
        # The operator's checkout has a source the running service does not know yet.
        other = write_config(tmp_path / "next", {**feeds, "c": server.feed("c", "c1")})
        await register_idle(db_url, "a", "b")
        async with service(tmp_path, config, db_url) as svc:
            code, out, err = await svc.command("poll", "a")
            assert code == 0, err
            assert "a: baseline recorded" in out
            code, out, err = await svc.command("poll", "c", config=other)
            assert code == 0, err
            store = await open_store(db_url)
            try:
                assert [r.source_id for r in await store.list_sources()] == ["a", "b"]
                assert (await store.get_source("c")) is not None  # known, not active
            finally:
                await store.close()
            # The service still polls b (its baseline first), and alerts on new items.
            await svc.force_poll("b")
            await wait_for(lambda: server.hits["b"] >= 1, 30, "the service to poll b")
            await svc.wait_log("source b: baseline")
            server.add("a", "a2")
            server.add("b", "b2")
            await svc.force_poll("a", "b")
            titles = lambda: {r["event"]["title"] for r in read_jsonl(svc.archive)}  # noqa: E731
            await wait_for(lambda: titles() == {"Item a2", "Item b2"}, 30, "a2 and b2")
            assert server.hits["c"] == 1  # only the one-off poll
            assert await svc.stop() < 10
