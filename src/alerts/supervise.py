"""Supervised loops: no loop of the service dies of a fault, and none floods the log.

Every long-running loop of the service (scheduler, dispatcher, chat leadership,
outbox gauges, config reload, chat listeners) is a *step* that ``Loop`` runs over
and over, the one way periodic work is written here:

* ``CancelledError`` is re-raised at once: cancelling is how shutdown stops a loop.
* Any other exception is a *fault*: it is reported to ``Faults``, which logs it once
  per distinct failure (and once when it is over, not once per tick), and the step
  is tried again after an exponential backoff with jitter (``Backoff``), so a store
  outage is waited out rather than hammered, and loops that fail together do not
  retry together.
* A periodic loop (``every_s``) sleeps its period minus the time the step took.

``Faults`` is also what ``/readyz`` reads: while a fault is current the service
says it is not ready and why. Store faults are one subject (``store``) whoever
sees them, so a full disk seen by the scheduler, the dispatcher and every poll is
one log line, not one per caller. Which exceptions are store faults is decided by
one table, ``STORE_ERRORS``: our ``StoreError`` tree, plus the raw driver errors
the store does not translate yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from alerts.errors import StoreCorrupt, StoreError, StoreUnavailable
from alerts.model import utcnow

log = logging.getLogger(__name__)

STORE = "store"


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Driver exceptions that mean "the database did not answer" (until the store
    layer raises ``StoreUnavailable`` / ``StoreCorrupt`` for all of them)."""
    import asyncpg

    return (
        sqlite3.OperationalError,  # disk full, locked, I/O error
        asyncpg.PostgresConnectionError,  # SQLSTATE class 08
        asyncpg.InsufficientResourcesError,  # class 53 (disk full, too many connections)
        asyncpg.OperatorInterventionError,  # 57P01-57P03: shutdown, restart, not yet up
        asyncpg.ReadOnlySQLTransactionError,  # a standby during failover
        asyncpg.InterfaceError,  # connection closed, pool closing
        ConnectionError,  # refused or reset while (re)connecting
    )


TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, *_driver_errors())
STORE_ERRORS: tuple[type[BaseException], ...] = (StoreError, sqlite3.Error, *TRANSIENT_STORE_ERRORS)


def is_store_fault(exc: BaseException) -> bool:
    """True when ``exc`` says the store could not be used (see ``STORE_ERRORS``)."""
    return isinstance(exc, STORE_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """A store fault that may go away by itself (worth waiting for at start-up).

    Not: a damaged file (``StoreCorrupt``, sqlite's bare ``DatabaseError``) or a
    database file that cannot be opened at all (a wrong path or permissions).
    """
    if type(exc) is StoreError and exc.__cause__ is not None:  # a driver error, wrapped
        return is_transient(exc.__cause__)
    if not isinstance(exc, TRANSIENT_STORE_ERRORS):
        return False
    return not str(exc).startswith("unable to open database file")


def is_corrupt(exc: BaseException) -> bool:
    """The database file is damaged or is not a database (sqlite says so with a
    bare ``DatabaseError``: "file is not a database", "database disk image is
    malformed")."""
    return isinstance(exc, StoreCorrupt) or type(exc) is sqlite3.DatabaseError


def describe(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits after consecutive failures: ``first_s`` doubling up to ``cap_s``, each
    spread by ± ``jitter`` (never past ``cap_s``)."""

    first_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.2

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1 for the first)."""
        base = self.first_s * 2 ** min(max(failures - 1, 0), 30)
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(self.cap_s * random.uniform(1 - self.jitter, 1.0), base * spread))


@dataclass(slots=True)
class Fault:
    """A failure that is going on now: every distinct message seen since it began
    (each logged once), the latest, and who is still seeing it."""

    subject: str
    message: str
    since: datetime
    reporters: set[str] = field(default_factory=set)
    count: int = 1
    seen: set[str] = field(default_factory=set)


class Faults:
    """What is failing now, logged once per distinct failure and once on recovery."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._reporting: set[str] = set()  # reporters with a fault outstanding

    def failed(self, reporter: str, exc: BaseException) -> None:
        """``reporter`` (a loop, ``poll``, ``send``) hit ``exc``."""
        store = is_store_fault(exc)
        subject = STORE if store else reporter
        message = describe(exc)
        self._reporting.add(reporter)
        fault = self._faults.setdefault(subject, Fault(subject, message, utcnow(), count=0))
        fault.count += 1
        fault.message = message
        fault.reporters.add(reporter)
        if message in fault.seen:
            return
        fault.seen.add(message)
        if store:
            log.error(
                "store unavailable (seen by %s): %s; waiting it out with backoff, "
                "/readyz says not ready",
                reporter,
                message,
            )
        else:
            log.error("%s failed: %s; retrying with backoff", reporter, message, exc_info=exc)

    def ok(self, reporter: str) -> None:
        """``reporter`` just succeeded: the faults it reported are over for it."""
        if reporter not in self._reporting:
            return
        self._reporting.discard(reporter)
        for subject, fault in list(self._faults.items()):
            fault.reporters.discard(reporter)
            if fault.reporters:
                continue
            del self._faults[subject]
            took = (utcnow() - fault.since).total_seconds()
            log.warning(
                "%s recovered after %d failure(s) in %.0f s (last: %s)",
                "store" if subject == STORE else subject,
                fault.count,
                took,
                fault.message,
            )

    def current(self) -> dict[str, str]:
        """Each subject failing now, with since when and why (for ``/readyz``)."""
        return {
            s: f"failing since {f.since:%Y-%m-%d %H:%M:%S} UTC ({f.count}x): {f.message}"
            for s, f in self._faults.items()
        }

    def __contains__(self, subject: str) -> bool:
        return subject in self._faults


Step = Callable[[], Awaitable[None]]


class Loop:
    """Run ``step`` until ``stop``: the supervised loop (see the module docstring)."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        faults: Faults,
        every_s: float = 0.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.faults = faults
        self.every_s = every_s
        self.backoff = backoff or Backoff()
        self.failures = 0
        self._stopping = False
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Return from ``run`` after the current step (a wait is cut short)."""
        self._stopping = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.faults.failed(self.name, exc)
                await self._sleep(self.backoff.delay_s(self.failures))
                continue
            if self.failures:
                self.failures = 0
                self.faults.ok(self.name)
            if self.every_s:
                await self._sleep(self.every_s - (loop.time() - started))
            else:
                await asyncio.sleep(0)  # a step that did not wait must not starve the rest

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


T = TypeVar("T")


async def retry_store(
    call: Callable[[], Awaitable[T]],
    *,
    faults: Faults,
    reporter: str,
    give_up_s: float,
    backoff: Backoff | None = None,
) -> T:
    """``call()``, tried again while the store is unavailable (a transient fault, see
    ``is_transient``) for up to ``give_up_s``; then, or on any other error, raises.

    For writes that must not be redone from scratch: recording a message that was
    sent, committing a poll that was fetched, giving a claim back. Each is
    idempotent or guarded by its lease, so trying again is safe.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    backoff, failures = backoff or Backoff(), 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            failures += 1
            wait = backoff.delay_s(failures)
            if not is_transient(exc) or loop.time() + wait > deadline:
                raise
            faults.failed(reporter, exc)
            await asyncio.sleep(wait)
            continue
        if failures:
            faults.ok(reporter)
        return result


async def shielded(aw: Awaitable[object]) -> None:
    """Await ``aw`` so that cancelling the caller does not cancel it (the lease
    releases of a cancelled poll or send); its failure, if it comes after the
    caller is gone, is noted in the debug log instead of "never retrieved"."""
    task = asyncio.ensure_future(aw)
    task.add_done_callback(_retrieve)
    await asyncio.shield(task)


def _retrieve(task: asyncio.Future[object]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("a shielded store call failed after its caller was gone: %s", describe(exc))


class Tasks:
    """Task handles of everything a runtime starts, so shutdown can cancel them and
    no exception goes unretrieved."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Awaitable[None], *, name: str) -> asyncio.Task[None]:
        async def wrapped() -> None:
            await coro

        task = asyncio.create_task(wrapped(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s ended: %s", task.get_name(), describe(exc), exc_info=exc)

    async def cancel(self, prefix: str = "") -> None:
        """Cancel the tasks (whose name starts with ``prefix``) and wait for them."""
        tasks = [t for t in self._tasks if t.get_name().startswith(prefix)]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
