"""The supervised-loop helper: a failing step is retried with backoff, logged once per
distinct failure and once on recovery; cancelling stops it; store faults are one
subject whoever sees them, and readiness reports them while they last."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3

import pytest

from alerts.errors import StoreCorrupt, StoreError, StoreUnavailable
from alerts.supervise import (
    Backoff,
    Faults,
    Loop,
    Tasks,
    is_corrupt,
    is_store_fault,
    is_transient,
    retry_store,
)

FAST = Backoff(first_s=0.01, cap_s=0.02)


class Flaky:
    """A step that raises the scripted exceptions, then succeeds."""

    def __init__(self, *script: BaseException) -> None:
        self.script = list(script)
        self.calls = 0
        self.called = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()
        if self.script:
            raise self.script.pop(0)
        self.done.set()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_failing_loop_logs_once_per_distinct_failure_and_once_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    locked = sqlite3.OperationalError("database is locked")
    step = Flaky(full, full, full, full, locked, locked)
    faults = Faults()
    loop = Loop("scheduler", step, faults=faults, backoff=FAST)
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(step.done.wait(), 5)
    loop.stop()
    await task
    assert step.calls >= 7  # retried, not dead
    assert len(_lines(caplog, "database or disk is full")) == 1
    assert len(_lines(caplog, "database is locked")) == 2  # the failure, then the recovery
    [recovered] = _lines(caplog, "recovered")
    assert recovered.startswith("store recovered after 6 failure(s)")
    assert faults.current() == {}


async def test_messages_that_alternate_during_one_outage_are_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = Faults()
    for _ in range(5):
        faults.failed("scheduler", sqlite3.OperationalError("database or disk is full"))
        faults.failed("poll", sqlite3.OperationalError("cannot rollback - no transaction"))
    assert len(_lines(caplog, "store unavailable")) == 2
    assert "(10x): OperationalError: cannot rollback" in faults.current()["store"]


async def test_readiness_sees_a_store_fault_until_every_loop_that_saw_it_recovers() -> None:
    faults = Faults()
    faults.failed("scheduler", StoreUnavailable("database or disk is full"))
    faults.failed("dispatcher", StoreUnavailable("database or disk is full"))
    assert list(faults.current()) == ["store"]
    assert "database or disk is full" in faults.current()["store"]
    faults.ok("scheduler")
    assert "store" in faults  # the dispatcher has not written since
    faults.ok("dispatcher")
    assert faults.current() == {}


async def test_a_bug_in_a_loop_is_its_own_fault_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = Faults()
    faults.failed("gauges", KeyError("pending"))
    faults.failed("gauges", KeyError("pending"))
    assert list(faults.current()) == ["gauges"]
    [record] = [r for r in caplog.records if "gauges failed" in r.getMessage()]
    assert record.exc_info is not None


async def test_cancelling_a_loop_stops_it_at_once_even_in_its_backoff() -> None:
    step = Flaky(*[StoreUnavailable("down")] * 100)
    loop = Loop("dispatcher", step, faults=Faults(), backoff=Backoff(first_s=60, cap_s=60))
    task = asyncio.create_task(loop.run())
    await step.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)


async def test_a_periodic_loop_subtracts_the_work_time_from_its_sleep() -> None:
    starts: list[float] = []
    four = asyncio.Event()

    async def step() -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) == 4:
            four.set()
        await asyncio.sleep(0.15)

    loop = Loop("gauges", step, faults=Faults(), every_s=0.2)
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(four.wait(), 5)
    loop.stop()
    await task
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.18 < g < 0.3 for g in gaps), gaps  # 0.2 apart, not 0.35


@pytest.mark.parametrize("failures", range(1, 12))
def test_backoff_doubles_with_jitter_up_to_its_cap(failures: int) -> None:
    backoff = Backoff(first_s=1.0, cap_s=60.0, jitter=0.2)
    waits = [backoff.delay_s(failures) for _ in range(200)]
    base = min(60.0, 2.0 ** (failures - 1))
    assert min(waits) >= 0.8 * base and max(waits) <= min(60.0, 1.2 * base)
    assert max(waits) - min(waits) > 0.1 * base  # spread, so loops do not retry in step


async def test_retry_store_waits_out_a_transient_fault_but_not_a_bug() -> None:
    faults = Faults()
    step = Flaky(StoreUnavailable("down"), StoreUnavailable("down"))
    await retry_store(step, faults=faults, reporter="send", give_up_s=5, backoff=FAST)
    assert step.calls == 3 and faults.current() == {}
    with pytest.raises(ValueError, match="bug"):
        await retry_store(Flaky(ValueError("bug")), faults=faults, reporter="send", give_up_s=5)
    with pytest.raises(StoreUnavailable):  # gives up after give_up_s
        await retry_store(
            Flaky(*[StoreUnavailable("down")] * 50),
            faults=faults,
            reporter="send",
            give_up_s=0.05,
            backoff=FAST,
        )


def _wrapped(cause: BaseException) -> StoreError:
    """What the PostgreSQL store raises today when it cannot connect at start-up."""
    exc = StoreError(f"cannot connect: {cause}")
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "store", "transient", "corrupt"),
    [
        pytest.param(StoreUnavailable("x"), True, True, False, id="StoreUnavailable"),
        pytest.param(StoreCorrupt("x"), True, False, True, id="StoreCorrupt"),
        pytest.param(
            sqlite3.OperationalError("database is locked"), True, True, False, id="locked"
        ),
        pytest.param(
            sqlite3.DatabaseError("file is not a database"), True, False, True, id="sqlite-corrupt"
        ),
        pytest.param(
            sqlite3.OperationalError("unable to open database file"),
            True,
            False,
            False,
            id="bad-path",
        ),
        pytest.param(ConnectionRefusedError(111, "refused"), True, True, False, id="refused"),
        pytest.param(KeyError("x"), False, False, False, id="a-bug"),
        pytest.param(
            _wrapped(ConnectionRefusedError(111, "refused")), True, True, False, id="wrapped"
        ),
        pytest.param(_wrapped(ValueError("bad url")), True, False, False, id="wrapped-bug"),
    ],
)
def test_which_errors_are_store_faults(
    exc: BaseException, store: bool, transient: bool, corrupt: bool
) -> None:
    assert (is_store_fault(exc), is_transient(exc), is_corrupt(exc)) == (store, transient, corrupt)


async def test_tasks_never_leave_an_exception_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    tasks = Tasks()

    async def boom() -> None:
        raise RuntimeError("boom")

    tasks.start(boom(), name="boom")
    forever = tasks.start(asyncio.sleep(3600), name="sleeper")
    await asyncio.sleep(0.01)
    assert any("task boom ended: RuntimeError: boom" in r.getMessage() for r in caplog.records)
    await tasks.cancel()
    assert forever.cancelled() and len(tasks) == 0
