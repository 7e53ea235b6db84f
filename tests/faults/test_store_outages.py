"""The store goes away under a real ``alerts run``: SQLite on a disk that fills up,
PostgreSQL restarted mid-run. The service stays up, says so in one line, reports
not ready while it lasts, and once the store is back delivers every alert exactly
once."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ..support import FeedServer, feed_server, read_jsonl, write_config
from .helpers import JSONL_ROUTE, Service, free_port, service, set_service, wait_for

pytestmark = pytest.mark.slow

LONG = "x" * 1500  # long titles make one commit far bigger than the WAL file already is


def _titles(svc: Service) -> list[str]:
    return [r["event"]["title"] for r in read_jsonl(svc.archive)]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (skips where mounting is not allowed)."""
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {detail!r}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


async def _baseline(server: FeedServer, svc: Service, source: str) -> None:
    await svc.force_poll(source)
    await svc.wait_log(f"source {source}: baseline")


@pytest.mark.timeout(180)
async def test_sqlite_on_a_full_disk_waits_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "16m") as disk:
        async with feed_server() as server:
            config = write_config(tmp_path, {"wire": server.feed("wire", "b0")}, extra=JSONL_ROUTE)
            set_service(config, poll_lease='"3s"', max_events_per_poll="1000")
            port = free_port()
            async with service(
                tmp_path, config, f"sqlite:///{disk / 'alerts.db'}", http_port=port
            ) as svc:
                await _baseline(server, svc, "wire")
                expected = [f"n{i} {LONG}" for i in range(100)]
                server.add("wire", *expected)
                await svc.force_poll("wire", in_s=2.0)  # it commits on a full disk
                filler = fill(disk)
                await svc.wait_log("database or disk is full", 60)
                status, body = await svc.readyz()
                assert status == 503 and "database or disk is full" in body, body
                await asyncio.sleep(3)  # it keeps failing, quietly, and stays up
                assert svc.running
                filler.unlink()
                await wait_for(
                    lambda: len(_titles(svc)) >= 100, 60, lambda: "100 alerts:\n" + svc.text()
                )
                await svc.wait_log("recovered after")
                status, body = await svc.readyz()
                assert status == 200, body
                assert sorted(_titles(svc)) == sorted(f"Item {k}" for k in expected)
                log = svc.text()
                assert "Traceback" not in log, log
                full = [ln for ln in log.splitlines() if "database or disk is full" in ln]
                assert len(full) <= 2, full  # once per distinct failure, not per tick
                assert await svc.stop() < 10
                assert svc.proc is not None and svc.proc.returncode == 0


# --- PostgreSQL restarted mid-run --------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
    return ["runuser", "-u", "postgres", "--", *cmd]


class Cluster:
    """A private PostgreSQL cluster on a free port (never the shared one on 5432)."""

    def __init__(self, root: Path) -> None:
        self.bin = _pg_bin()
        self.dir = root / "pgdata"  # root: a directory the postgres user can reach
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> None:
        cmd = _as_postgres([str(self.bin / args[0]), *args[1:]])
        done = subprocess.run(cmd, capture_output=True, timeout=120, text=True)
        if done.returncode:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.run("initdb", "-D", str(self.dir), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            "pg_ctl", "-D", str(self.dir), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    """A private cluster in a temporary directory of its own (pytest's tmp_path is
    private to root, and initdb runs as the postgres user)."""
    with tempfile.TemporaryDirectory(prefix="alerts-pg-") as root:
        os.chmod(root, 0o755)
        pg = Cluster(Path(root))
        await asyncio.to_thread(pg.init)
        await asyncio.to_thread(pg.start)
        try:
            yield pg
        finally:
            with contextlib.suppress(AssertionError):
                await asyncio.to_thread(pg.stop)


@pytest.mark.timeout(240)
async def test_postgresql_restarted_mid_run_is_waited_out(tmp_path: Path) -> None:
    async with cluster() as pg, feed_server() as server:
        config = write_config(tmp_path, {"wire": server.feed("wire", "b0")}, extra=JSONL_ROUTE)
        set_service(config, poll_lease='"3s"')
        port = free_port()
        async with service(tmp_path, config, pg.url, http_port=port) as svc:
            await _baseline(server, svc, "wire")
            await asyncio.to_thread(pg.stop)
            expected = [f"p{i}" for i in range(10)]
            server.add("wire", *expected)
            await svc.wait_log("store unavailable", 60)
            status, body = await svc.readyz()
            assert status == 503, body
            await asyncio.sleep(3)
            assert svc.running
            await asyncio.to_thread(pg.start)
            await svc.wait_log("recovered after", 90)
            await svc.force_poll("wire")
            await wait_for(lambda: len(_titles(svc)) >= 10, 60, "10 alerts")
            assert sorted(_titles(svc)) == sorted(f"Item {k}" for k in expected)
            status, body = await svc.readyz()
            assert status == 200, body
            log = svc.text()
            # asyncpg's pool logs its own retries to refill its minimum size, each with
            # a traceback (the store's pool settings, not a loop of ours): no others.
            floor = log.count("asyncpg.pool: Failed to restore the pool connection floor")
            assert log.count("Traceback") == floor, log
            down = [ln for ln in log.splitlines() if "store unavailable" in ln]
            assert 1 <= len(down) <= 4, down  # once per distinct failure, not per tick
            assert await svc.stop() < 10
            assert svc.proc is not None and svc.proc.returncode == 0
