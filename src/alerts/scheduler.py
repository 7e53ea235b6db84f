"""The scheduler: poll each source when it is due, detect, route, commit.

Due times live in the store, so they survive restarts and are shared by replicas:
the loop claims due sources with a lease, polls them concurrently (the HTTP client
limits each host), and commits each poll in one transaction that also releases the
lease and sets the next due time — the interval with jitter after a success, an
exponential backoff (never shorter than a server's ``Retry-After``) after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts import metrics
from alerts.config import SourceSpec
from alerts.detect import Detection, detect, keys_to_load
from alerts.errors import LeaseLostError, RetryAfterError, SourceError
from alerts.model import Event, Observation, utcnow
from alerts.route import Router
from alerts.sources import Source, SourceState
from alerts.store import NotModified, PollCommit, RoutedEvent, SourceRow, Store

log = logging.getLogger(__name__)

UNCHANGED_BATCH = 256


@dataclass(frozen=True, slots=True)
class Timing:
    jitter: float = 0.1
    max_backoff_s: float = 6 * 3600.0
    first_retry_s: float = 60.0
    lease_s: float = 300.0
    idle_s: float = 0.5
    claim_window_s: float = 0.05
    first_spread_s: float = 30.0

    def next_success(self, now: datetime, interval_s: float) -> datetime:
        spread = 1.0 + random.uniform(-self.jitter, self.jitter)
        return now + timedelta(seconds=interval_s * spread)

    def next_failure(
        self, now: datetime, interval_s: float, failures: int, retry_after_s: float | None
    ) -> datetime:
        """When to try a failing source again (``failures``: how many before this one).

        The first retry comes after ``first_retry_s`` or the interval, whichever is
        shorter (a blip should not cost an hourly source an hour); each further
        failure doubles the wait, up to ``max_backoff_s``. A server's ``Retry-After``
        is never cut short.
        """
        first = min(interval_s, self.first_retry_s)
        delay = min(self.max_backoff_s, first * (2 ** min(failures, 20)))
        if retry_after_s is not None:
            delay = max(delay if failures else 0.0, retry_after_s)
        return now + timedelta(seconds=max(delay, 1.0))

    def first_due(self, now: datetime, interval_s: float) -> datetime:
        return now + timedelta(seconds=random.uniform(0, min(interval_s, self.first_spread_s)))


@dataclass(frozen=True, slots=True)
class PollReport:
    source_id: str
    ok: bool
    events: tuple[Event, ...] = ()
    error: str | None = None
    not_modified: bool = False
    baseline: bool = False


class Scheduler:
    def __init__(
        self,
        *,
        store: Store,
        specs: Mapping[str, SourceSpec],
        adapters: Mapping[str, Source],
        router: Router,
        owner: str,
        concurrency: int = 100,
        timing: Timing | None = None,
        on_committed: Callable[[list[Event]], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.specs = dict(specs)
        self.adapters = dict(adapters)
        self.router = router
        self.owner = owner
        self.concurrency = concurrency
        self.timing = timing or Timing()
        self.on_committed = on_committed
        self.clock = clock
        self._active: set[asyncio.Task[PollReport]] = set()
        self._stopping = False
        self._refill = max(1, concurrency // 2)  # free slots worth a claim at once
        self._wake_when_free = concurrency + 1  # _poll_done wakes the loop at this many
        self._wake = asyncio.Event()
        self._unchanged: list[tuple[int, NotModified]] = []
        self._claims = itertools.count()
        self._claim_of: dict[str, int] = {}
        self._metric_children: dict[str, tuple[Any, Any]] = {}  # POLLS, FAILURE_STREAK
        self._claim_lock = asyncio.Lock()  # a claim never overlaps a flush of old claims

    def update(self, specs: Mapping[str, SourceSpec], adapters: Mapping[str, Source]) -> None:
        """Swap in a reloaded config; polls in flight finish with the old one."""
        self.specs = dict(specs)
        self.adapters = dict(adapters)

    async def register(self) -> None:
        """Make the configured sources the store's active set."""
        now = self.clock()
        await self.store.sync_sources(
            {sid: self.timing.first_due(now, spec.interval_s) for sid, spec in self.specs.items()}
        )

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Claim due sources and poll them until ``stop``.

        Claims are batched: a claim is a store transaction, so while polls are in
        flight the loop does not claim for every slot that frees. Once a slot is free
        it waits up to ``claim_window_s`` for half of them to be, then claims what is
        free. Fast polls thus share a claim by dozens; slow ones lose a few
        milliseconds of a slot.
        """
        try:
            while not self._stopping:
                await self._flush_unchanged()
                capacity = self.concurrency - len(self._active)
                if capacity <= 0:
                    await self._idle(self.timing.idle_s, wake_when_free=1)
                    continue
                if self._active and capacity < self._refill:
                    await self._idle(self.timing.claim_window_s, wake_when_free=self._refill)
                    capacity = self.concurrency - len(self._active)
                    if capacity <= 0 or self._stopping:  # stop() may have come meanwhile
                        continue
                async with self._claim_lock:
                    claimed = await self.store.claim_due_sources(
                        self.clock(),
                        owner=self.owner,
                        lease_s=self.timing.lease_s,
                        limit=capacity,
                    )
                    for row in claimed:
                        self._start(row)
                if len(claimed) < capacity:  # nothing else is due: look again later
                    await self._idle(self.timing.idle_s, wake_when_free=self.concurrency + 1)
        finally:
            self._stopping = True
            if self._active:
                await asyncio.gather(*self._active, return_exceptions=True)
            await self._flush_unchanged()

    async def flush(self) -> None:
        """Write what is buffered now (unchanged polls are recorded in batches)."""
        await self._flush_unchanged()

    async def _flush_unchanged(self) -> None:
        """Commit buffered unchanged polls in one transaction (see ``NotModified``)."""
        if not self._unchanged:
            return
        async with self._claim_lock:
            buffered, self._unchanged = self._unchanged, []
            # An entry of an older claim of a source this process has claimed again
            # since (its lease ran out while buffered) must not clear the newer claim.
            batch = [nm for claim, nm in buffered if self._claim_of.get(nm.source_id) == claim]
            try:
                await self.store.commit_not_modified(batch)
            except Exception:
                log.exception(
                    "recording %d unchanged polls failed; they will be polled again", len(batch)
                )

    def _start(self, row: SourceRow) -> None:
        self._claim_of[row.source_id] = next(self._claims)
        task = asyncio.create_task(self.poll(row), name=f"poll:{row.source_id}")
        self._active.add(task)
        task.add_done_callback(self._active.discard)
        task.add_done_callback(self._poll_done)

    def _poll_done(self, _task: asyncio.Task[PollReport]) -> None:
        if self._stopping or self.concurrency - len(self._active) >= self._wake_when_free:
            self._wake.set()

    async def _idle(self, timeout_s: float, *, wake_when_free: int) -> None:
        """Sleep ``timeout_s``, or until ``stop`` or until that many slots are free."""
        self._wake.clear()
        self._wake_when_free = wake_when_free
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout_s)
        self._wake_when_free = self.concurrency + 1

    async def poll_now(self, source_id: str) -> PollReport:
        """Claim one source regardless of its due time and poll it (``alerts poll``)."""
        await self.store.set_next_due(source_id, self.clock())
        rows = await self.store.claim_due_sources(
            self.clock(), owner=self.owner, lease_s=self.timing.lease_s, limit=1, only=[source_id]
        )
        if not rows:
            return PollReport(source_id, ok=False, error="source is being polled elsewhere")
        self._claim_of[source_id] = next(self._claims)
        report = await self.poll(rows[0])
        await self._flush_unchanged()
        return report

    async def poll(self, row: SourceRow) -> PollReport:
        """Fetch, detect, route and commit one claimed source; never raises."""
        spec = self.specs.get(row.source_id)
        adapter = self.adapters.get(row.source_id)
        if spec is None or adapter is None:
            await self.store.release_source(row.source_id, owner=self.owner)
            return PollReport(row.source_id, ok=False, error="source no longer configured")
        started = asyncio.get_running_loop().time()
        try:
            return await self._poll(spec, adapter, row)
        except LeaseLostError as exc:
            log.warning("source %s: %s", spec.id, exc)
            return PollReport(spec.id, ok=False, error=str(exc))
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release_source(spec.id, owner=self.owner))
            raise
        finally:
            metrics.POLL_SECONDS.observe(asyncio.get_running_loop().time() - started)

    async def _poll(self, spec: SourceSpec, adapter: Source, row: SourceRow) -> PollReport:
        claim = self._claim_of.get(spec.id, -1)
        try:
            observation = await adapter.fetch(SourceState(row.validators, row.cursor))
        except SourceError as exc:
            return await self._failed(spec, row, str(exc), exc)
        except Exception as exc:
            log.exception("source %s: adapter %s crashed", spec.id, spec.kind)
            return await self._failed(
                spec, row, f"internal error: {type(exc).__name__}: {exc}", exc
            )
        now = self.clock()
        if observation.not_modified:
            self._unchanged.append(
                (
                    claim,
                    NotModified(
                        source_id=spec.id,
                        owner=self.owner,
                        now=now,
                        next_due=self.timing.next_success(now, spec.interval_s),
                        validators=observation.validators,
                    ),
                )
            )
            if len(self._unchanged) >= UNCHANGED_BATCH:
                await self._flush_unchanged()
            self._unchanged_metrics(spec.id)
            return PollReport(spec.id, ok=True, not_modified=True)
        return await self._detect_and_commit(spec, adapter, row, observation, now)

    def _unchanged_metrics(self, source_id: str) -> None:
        """Count a 304 (the labelled children are looked up once per source)."""
        children = self._metric_children.get(source_id)
        if children is None:
            children = self._metric_children[source_id] = (
                metrics.POLLS.labels(source_id, "not_modified"),
                metrics.FAILURE_STREAK.labels(source_id),
            )
        polls, streak = children
        polls.inc()
        streak.set(0)

    async def _detect_and_commit(
        self, spec: SourceSpec, adapter: Source, row: SourceRow, obs: Observation, now: datetime
    ) -> PollReport:
        known = await self.store.load_items(spec.id, keys_to_load(obs.items))
        found = detect(
            spec=spec,
            observation=obs,
            known=known,
            baselined=row.baselined,
            detector_state=row.detector,
            adapter=adapter,
            now=now,
        )
        routed = await self._route(found)
        stored = await self.store.commit_poll(
            PollCommit(
                source_id=spec.id,
                now=now,
                next_due=self.timing.next_success(now, spec.interval_s),
                validators=obs.validators,
                cursor=obs.cursor,
                detector=found.detector,
                baselined=True,
                items=found.items,
                events=routed,
                saw_new=found.saw_new,
            ),
            owner=self.owner,
        )
        self._count(spec, found)
        if found.baseline:
            log.info("source %s: baseline of %d items recorded", spec.id, len(found.items))
        if stored and self.on_committed is not None:
            self.on_committed(stored)
        return PollReport(spec.id, ok=True, events=tuple(stored), baseline=found.baseline)

    async def _route(self, found: Detection) -> list[RoutedEvent]:
        if not found.events:
            return []
        version = await self.store.subscriptions_version()
        if version != self.router.version:
            self.router.set_dynamic(await self.store.list_subscriptions(), version)
        return [RoutedEvent(e, self.router.route(e)) for e in found.events]

    def _count(self, spec: SourceSpec, found: Detection) -> None:
        metrics.POLLS.labels(spec.id, "ok").inc()
        metrics.FAILURE_STREAK.labels(spec.id).set(0)
        for change, n in found.counts.items():
            if n:
                metrics.ITEMS.labels(change).inc(n)
        for event in found.events:
            metrics.EVENTS.labels(event.kind.value).inc()

    async def _failed(
        self, spec: SourceSpec, row: SourceRow, reason: str, exc: Exception
    ) -> PollReport:
        now = self.clock()
        retry_after = exc.retry_after_s if isinstance(exc, RetryAfterError) else None
        next_due = self.timing.next_failure(now, spec.interval_s, row.failures, retry_after)
        log.warning(
            "source %s failing (%d in a row), next try %s: %s",
            spec.id,
            row.failures + 1,
            f"{next_due:%H:%M:%S}",
            reason,
        )
        await self.store.commit_poll(
            PollCommit(source_id=spec.id, now=now, next_due=next_due, error=reason),
            owner=self.owner,
        )
        metrics.POLLS.labels(spec.id, "error").inc()
        metrics.FAILURE_STREAK.labels(spec.id).set(row.failures + 1)
        return PollReport(spec.id, ok=False, error=reason)
