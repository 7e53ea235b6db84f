"""A real ``alerts run`` process for the fault tests, and the peers they break.

``Service`` starts ``python -m alerts run`` on a config directory and a store URL,
logs to a file the test reads, and offers what the tests need: wait for a log line,
force a poll through the store, run another ``alerts`` command against the same
store, stop it with a signal and time the exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp

from alerts.model import utcnow
from alerts.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str | Callable[[], str] = ""
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s} s waiting for {said}")
        await asyncio.sleep(0.1)


JSONL_ROUTE = (
    '\n[destinations.archive]\nsink = "jsonl"\ntarget = "alerts.jsonl"\n\n'
    '[[routes]]\ndestination = "archive"\ntopics = ["news"]\n'
)


@dataclass
class Service:
    """One ``alerts run`` process (see the module docstring)."""

    root: Path
    config: Path
    database_url: str
    http_port: int | None = None
    proc: asyncio.subprocess.Process | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "alerts.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
        env.update(
            ALERTS_CONFIG_DIR=str(self.config),
            ALERTS_DATABASE_URL=self.database_url,
            ALERTS_DATA_DIR=str(self.root / "data"),
            ALERTS_HTTP_BIND=f"127.0.0.1:{self.http_port}" if self.http_port else "",
        )
        return env

    @property
    def archive(self) -> Path:
        return self.root / "data" / "alerts.jsonl"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alerts", "run", env=self.env, stdout=out, stderr=out
            )
        await self.wait_log("alerts running", 60)

    async def wait_log(self, text: str, timeout_s: float = 30.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"alerts run exited {self.proc.returncode}:\n{self.text()}")
            return text in self.text()

        try:
            await wait_for(seen, timeout_s, repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- log ---\n{self.text()[-4000:]}") from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def force_poll(self, *sources: str, in_s: float = 0.0) -> None:
        """Make sources due now, or in ``in_s`` seconds."""
        store = await open_store(self.database_url)
        try:
            for sid in sources:
                await store.set_next_due(sid, utcnow() + timedelta(seconds=in_s))
        finally:
            await store.close()

    async def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> float:
        """Send ``sig`` and wait for the exit; returns the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        await asyncio.wait_for(self.proc.wait(), timeout_s)
        return time.monotonic() - started

    async def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    async def command(self, *args: str, config: Path | None = None) -> tuple[int, str, str]:
        """Run another ``alerts`` command against the same store."""
        env = self.env
        if config is not None:
            env["ALERTS_CONFIG_DIR"] = str(config)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alerts",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def readyz(self) -> tuple[int, str]:
        assert self.http_port is not None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/readyz") as resp,
        ):
            return resp.status, await resp.text()


async def register_idle(database_url: str, *sources: str) -> None:
    """Register sources as not due for a day, so a service started on this store
    polls them only when a test makes them due (its own first polls are spread
    over up to 30 s, which would race the test)."""
    store = await open_store(database_url)
    try:
        await store.sync_sources({sid: utcnow() + timedelta(days=1) for sid in sources})
    finally:
        await store.close()


@asynccontextmanager
async def service(root: Path, config: Path, database_url: str, **kw: int) -> AsyncIterator[Service]:
    """A started ``Service``, killed at the end if the test left it running."""
    svc = Service(root, config, database_url, **kw)
    try:
        await svc.start()
        yield svc
    finally:
        await svc.kill()


@asynccontextmanager
async def hanging_server() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A TCP server that accepts connections and never answers (a hung source)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", held
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def set_service(config: Path, **keys: str) -> None:
    """Add ``[service]`` keys to a config written by ``tests.support.write_config``."""
    main = config / "alerts.toml"
    lines = "".join(f"{k} = {v}\n" for k, v in keys.items())
    main.write_text(main.read_text().replace("jitter = 0.0\n", "jitter = 0.0\n" + lines, 1))
