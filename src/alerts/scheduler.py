"""The scheduler: poll each source when it is due, detect, route, commit.

Due times live in the store, so they survive restarts and are shared by replicas:
the loop claims due sources with a lease, polls them concurrently (the HTTP client
limits each host), and commits each poll in one transaction that also releases the
lease and sets the next due time — the interval with jitter after a success, an
exponential backoff with jitter after a failure (never shorter than a server's
``Retry-After``, never longer than ``max_backoff``). A store that fails is waited
out (``alerts.supervise``): the loop backs off, a fetched poll's commit is tried
again, and nothing of a poll that could not be committed is kept.
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
from functools import partial

from alerts import flood, metrics
from alerts.config import SourceSpec
from alerts.detect import (
    Detection,
    detect,
    digest_salt,
    entries_to_read,
    keys_to_load,
    skips_known,
    stored_digest,
)
from alerts.errors import LeaseLostError, RetryAfterError, SourceError
from alerts.flood import Verdict
from alerts.model import JSON, Event, Item, Listing, Observation, utcnow
from alerts.notices import Notice, notice_event
from alerts.redact import redact_text
from alerts.route import Router
from alerts.sources import Source, SourceState
from alerts.store import NotModified, PollCommit, RoutedEvent, SourceRow, Store
from alerts.supervise import (
    Faults,
    Loop,
    describe,
    is_store_fault,
    is_transient,
    retry_store,
    shielded,
)

log = logging.getLogger(__name__)

UNCHANGED_BATCH = 256


@dataclass(frozen=True, slots=True)
class Timing:
    jitter: float = 0.1
    max_backoff_s: float = 6 * 3600.0
    first_retry_s: float = 60.0
    failure_jitter: float = 0.2
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

        The first retry comes after about ``first_retry_s`` or the interval, whichever
        is shorter (a blip should not cost an hourly source an hour); each further
        failure doubles the wait, up to ``max_backoff_s``. Every wait is spread by
        ± ``failure_jitter`` (never past ``max_backoff_s``), so sources that fail
        together do not retry together. A server's ``Retry-After`` is never cut
        short, but it is capped at ``max_backoff_s``: a server asking for a year does
        not silence a source for a year.
        """
        first = min(interval_s, self.first_retry_s)
        base = first * (2 ** min(failures, 20))
        spread = random.uniform(1 - self.failure_jitter, 1 + self.failure_jitter)
        cap = self.max_backoff_s * random.uniform(1 - self.failure_jitter, 1.0)
        delay = min(cap, base * spread)
        if retry_after_s is not None:
            asked = min(retry_after_s, self.max_backoff_s)
            delay = max(delay if failures else 0.0, asked)
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
    held: int = 0  # events held by the flood breaker


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
        faults: Faults | None = None,
        on_flood: Callable[[SourceSpec, Verdict], None] | None = None,
    ) -> None:
        self.store = store
        self.specs = dict(specs)
        self.adapters = dict(adapters)
        self.router = router
        self.owner = owner
        self.concurrency = concurrency
        self.timing = timing or Timing()
        self.on_committed = on_committed
        self.on_flood = on_flood  # a hook for telling an operator room (future work)
        self.clock = clock
        self._active: set[asyncio.Task[PollReport]] = set()
        self._stopping = False
        self._refill = max(1, concurrency // 2)  # free slots worth a claim at once
        self._wake_when_free = concurrency + 1  # _poll_done wakes the loop at this many
        self._wake = asyncio.Event()
        self._unchanged: list[tuple[int, NotModified]] = []
        self._claims = itertools.count()
        self._claim_of: dict[str, int] = {}
        self._claim_lock = asyncio.Lock()  # a claim never overlaps a flush of old claims
        self.faults = faults or Faults()
        self._loop = Loop("scheduler", self._step, faults=self.faults)

    def update(self, specs: Mapping[str, SourceSpec], adapters: Mapping[str, Source]) -> None:
        """Swap in a reloaded config; polls in flight finish with the old one."""
        self.specs = dict(specs)
        self.adapters = dict(adapters)

    async def register(self, specs: Mapping[str, SourceSpec] | None = None) -> None:
        """Make the configured sources (or ``specs``) the store's active set."""
        now = self.clock()
        await self.store.sync_sources(
            {
                sid: self.timing.first_due(now, spec.interval_s)
                for sid, spec in (self.specs if specs is None else specs).items()
            }
        )

    def stop(self) -> None:
        """Stop claiming; ``run`` cancels the polls in flight and returns."""
        self._stopping = True
        self._loop.stop()
        self._wake.set()

    async def run(self) -> None:
        """Claim due sources and poll them until ``stop``, under supervision: a store
        that fails is waited out with backoff (``alerts.supervise``), never fatal.

        Claims are batched: a claim is a store transaction, so while polls are in
        flight the loop does not claim for every slot that frees. Once a slot is free
        it waits up to ``claim_window_s`` for half of them to be, then claims what is
        free. Fast polls thus share a claim by dozens; slow ones lose a few
        milliseconds of a slot.
        """
        try:
            await self._loop.run()
        finally:
            await self._finish()

    async def _step(self) -> None:
        await self._flush_unchanged()
        capacity = self.concurrency - len(self._active)
        if capacity <= 0:
            await self._idle(self.timing.idle_s, wake_when_free=1)
            return
        if self._active and capacity < self._refill:
            await self._idle(self.timing.claim_window_s, wake_when_free=self._refill)
            capacity = self.concurrency - len(self._active)
            if capacity <= 0 or self._stopping:  # stop() may have come meanwhile
                return
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

    async def _finish(self) -> None:
        """Polls still in flight are cancelled (they give their leases back and are
        polled again later: nothing of theirs was committed); buffered unchanged
        polls are written."""
        self._stopping = True
        for task in list(self._active):
            task.cancel()
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
            except Exception as exc:
                self.faults.failed("poll", exc)
                if is_transient(exc):  # written with the next batch, once the store answers
                    self._unchanged[:0] = [
                        (c, nm) for c, nm in buffered if self._claim_of.get(nm.source_id) == c
                    ]
            else:
                self.faults.ok("poll")

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
        """Poll one source now, whatever its due time (``alerts poll``).

        The store's active set is left alone (``Store.claim_source``), so a service
        running on the same store keeps polling exactly what it polled before.
        """
        row = await self.store.claim_source(
            source_id, self.clock(), owner=self.owner, lease_s=self.timing.lease_s
        )
        if row is None:
            return PollReport(source_id, ok=False, error="source is being polled elsewhere")
        self._claim_of[source_id] = next(self._claims)
        report = await self.poll(row)
        await self._flush_unchanged()
        return report

    async def poll(self, row: SourceRow) -> PollReport:
        """Fetch, detect, route and commit one claimed source; never raises.

        A poll that is cancelled (shutdown) or whose commit fails (the store is
        unavailable) gives its lease back, best effort: nothing of it was committed,
        so it is simply polled again.
        """
        sid = row.source_id
        spec, adapter = self.specs.get(sid), self.adapters.get(sid)
        started = asyncio.get_running_loop().time()
        try:
            if spec is None or adapter is None:
                await self.store.release_source(sid, owner=self.owner)
                return PollReport(sid, ok=False, error="source no longer configured")
            report = await self._poll(spec, adapter, row)
        except LeaseLostError as exc:
            log.warning("source %s: %s", sid, exc)
            return PollReport(sid, ok=False, error=str(exc))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await shielded(self.store.release_source(sid, owner=self.owner))
            raise
        except Exception as exc:
            if spec is not None and not is_store_fault(exc):  # a bug: back off this source
                log.exception("source %s: internal error after fetching", sid)
                with contextlib.suppress(Exception):
                    return await self._failed(spec, row, f"internal error: {describe(exc)}", exc)
            self.faults.failed("poll", exc)
            with contextlib.suppress(Exception):
                await self.store.release_source(sid, owner=self.owner)
            return PollReport(sid, ok=False, error=f"not recorded: {describe(exc)}")
        finally:
            metrics.POLL_SECONDS.observe(asyncio.get_running_loop().time() - started)
        self.faults.ok("poll")
        return report

    async def _poll(self, spec: SourceSpec, adapter: Source, row: SourceRow) -> PollReport:
        claim = self._claim_of.get(spec.id, -1)
        try:
            observation = await self._fetch(adapter, SourceState(row.validators, row.cursor))
        except SourceError as exc:
            return await self._failed(spec, row, str(exc), exc)
        except Exception as exc:
            log.exception("source %s: adapter %s crashed", spec.id, spec.kind)
            return await self._failed(
                spec, row, redact_text(f"internal error: {type(exc).__name__}: {exc}"), exc
            )
        now = self.clock()
        if isinstance(observation, Listing):
            return await self._read_listing(spec, adapter, row, observation, now)
        if observation.not_modified and flood.status(row.detector) is not None:
            return await self._calm(spec, observation, row, now)
        if observation.not_modified and row.failures >= self.router.notices.after:
            unchanged = Detection(events=[], items={}, detector=dict(row.detector), saw_new=False)
            return await self._record(spec, observation, unchanged, now, cursor=None, row=row)
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
            metrics.SOURCES.poll(spec.id, "not_modified")
            return PollReport(spec.id, ok=True, not_modified=True)
        return await self._detect_and_commit(spec, adapter, row, observation, now)

    @staticmethod
    async def _fetch(adapter: Source, state: SourceState) -> Observation | Listing:
        """``fetch_entries`` where the adapter lists entries to read on demand (and
        derives no events of its own from every item), else ``fetch``."""
        lister = getattr(adapter, "fetch_entries", None)
        if lister is None or hasattr(adapter, "derive"):  # DerivesEvents, without the slow check
            return await adapter.fetch(state)
        found: Observation | Listing = await lister(state)
        return found

    async def _read_listing(
        self, spec: SourceSpec, adapter: Source, row: SourceRow, listing: Listing, now: datetime
    ) -> PollReport:
        """Read only the entries whose key or digest the store does not hold (one
        query for the digests of the listed keys), then detect as usual."""
        entries, salt = listing.entries, digest_salt(spec, adapter)
        stored: dict[str, str | None] | None = None
        chosen = list(entries)
        if entries and skips_known(row.baselined, row.detector, adapter):
            stored = await self.store.load_digests(spec.id, [e.key for e in entries])
            chosen = entries_to_read(entries, stored, salt)
        read = {id(e): e.read() for e in chosen}
        items = tuple(read.values())
        digests: dict[str, str] = {}
        for entry in chosen:
            digests.setdefault(entry.key, stored_digest(entry, salt))
        need = keys_to_load(items)
        if stored is not None and not any(k in stored for k in need):
            need = [k for it in items for k in it.former_keys]  # only new keys were read
        known = await self.store.load_items(spec.id, need) if need else {}
        listed = (
            None
            if stored is None
            else tuple(read.get(id(e)) or Item(key=e.key, url=e.url) for e in entries)
        )
        found = detect(
            spec=spec,
            observation=Observation(
                items=items, validators=listing.validators, cursor=listing.cursor
            ),
            known=known,
            baselined=row.baselined,
            detector_state=row.detector,
            adapter=adapter,
            now=now,
            digests=digests,
            listed=listed,
        )
        return await self._record(spec, listing, found, now, cursor=listing.cursor, row=row)

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
        return await self._record(spec, obs, found, now, cursor=obs.cursor, row=row)

    async def _calm(
        self, spec: SourceSpec, obs: Observation, row: SourceRow, now: datetime
    ) -> PollReport:
        """An unchanged poll of a source the flood breaker holds counts as a calm one
        (so a source that goes quiet settles); it is committed with the breaker's
        state, not batched like other unchanged polls."""
        verdict = flood.check(
            source_id=spec.id,
            label=spec.label,
            topics=spec.topics,
            items=(),
            new_items=(),
            events=(),
            state=row.detector.get("flood"),
            baselined=True,
            now=now,
        )
        found = Detection(
            events=[verdict.summary] if verdict.summary is not None else [],
            items={},
            detector={**row.detector, "flood": verdict.state},
            saw_new=False,
            flood=verdict,
        )
        return await self._record(spec, obs, found, now, cursor=None, row=row)

    async def _record(
        self,
        spec: SourceSpec,
        obs: Observation | Listing,
        found: Detection,
        now: datetime,
        *,
        cursor: Mapping[str, JSON] | None,
        row: SourceRow,
    ) -> PollReport:
        """Route and commit a detection (with the notices it makes: a source that
        failed recovers, the flood breaker holds or lets go), then count and tell
        what it did."""
        routed = await self._route(found, now) + await self._notices(spec, found, now, row)
        stored = await self._commit(
            PollCommit(
                source_id=spec.id,
                now=now,
                next_due=self.timing.next_success(now, spec.interval_s),
                validators=obs.validators,
                cursor=cursor,
                detector=found.detector,
                baselined=True,
                items=found.items,
                events=routed,
                saw_new=found.saw_new,
                digests=found.digests,
            ),
            owner=self.owner,
        )
        self._count(spec, found)
        if found.baseline:
            log.info("source %s: baseline of %d items recorded", spec.id, len(found.items))
        if found.flood is not None:
            self._flood(spec, found.flood)
        if stored and self.on_committed is not None:
            self.on_committed(stored)
        held = found.flood.held_now if found.flood is not None else 0
        return PollReport(
            spec.id, ok=True, events=tuple(stored), baseline=found.baseline, held=held
        )

    async def _commit(self, commit: PollCommit, *, owner: str) -> list[Event]:
        """``commit_poll``, tried again while the store is unavailable (up to half
        the lease), so a poll fetched during an outage is not fetched again; if the
        first try did commit, the next one finds the lease gone (``LeaseLostError``)."""
        return await retry_store(
            partial(self.store.commit_poll, commit, owner=owner),
            faults=self.faults,
            reporter="poll",
            give_up_s=self.timing.lease_s / 2,
        )

    def _flood(self, spec: SourceSpec, verdict: Verdict) -> None:
        """Tell the operator when the flood breaker starts or stops holding a source:
        one log line each, a gauge, a counter of held events, and ``on_flood``."""
        if verdict.held_now:
            metrics.SOURCES.held_events(spec.id, verdict.held_now)
        if verdict.started:
            metrics.SOURCES.flood_held[spec.id] = 1
            log.warning(
                "source %s: flood breaker tripped, holding its alerts until it settles "
                "(alerts sources shows how many): %s",
                spec.id,
                verdict.reason,
            )
        elif verdict.settled and verdict.summary is not None:
            metrics.SOURCES.flood_held[spec.id] = 0
            log.warning(
                "source %s: flood settled, alerts resume; one summary alert sent: %s",
                spec.id,
                verdict.summary.title,
            )
        if (verdict.started or verdict.settled) and self.on_flood is not None:
            self.on_flood(spec, verdict)

    async def _route(self, found: Detection, now: datetime) -> list[RoutedEvent]:
        if not found.events:
            return []
        await self._subscriptions()
        return [self.router.routed(e, now=now) for e in found.events]

    async def _subscriptions(self) -> None:
        version = await self.store.subscriptions_version()
        if version != self.router.version:
            self.router.set_dynamic(await self.store.list_subscriptions(), version)

    async def _notices(
        self, spec: SourceSpec, found: Detection, now: datetime, row: SourceRow
    ) -> list[RoutedEvent]:
        """The notices a successful poll makes (``alerts.notices``)."""
        made: list[tuple[Notice, int, str]] = []
        if row.failures >= self.router.notices.after:
            made.append((Notice.RECOVERED, row.failures, ""))
        verdict = found.flood
        if verdict is not None and verdict.started:
            made.append((Notice.FLOOD_HELD, 0, verdict.reason))
        elif verdict is not None and verdict.settled and verdict.summary is not None:
            made.append((Notice.FLOOD_RESUMED, 0, verdict.summary.title))
        routed = []
        for kind, failures, detail in made:
            routed += await self._notice(kind, spec, now, failures=failures, detail=detail)
        return routed

    async def _notice(
        self, kind: Notice, spec: SourceSpec, now: datetime, *, failures: int, detail: str
    ) -> list[RoutedEvent]:
        event = notice_event(
            kind,
            source_id=spec.id,
            label=spec.label,
            topics=spec.topics,
            now=now,
            failures=failures,
            detail=detail,
        )
        await self._subscriptions()
        routed = self.router.notice(event)
        if routed.destination_ids:
            log.info("source %s: %s notice to %s", spec.id, kind.value, routed.destination_ids)
        return [routed] if routed.destination_ids else []

    def _count(self, spec: SourceSpec, found: Detection) -> None:
        metrics.SOURCES.poll(spec.id, "ok")
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
        capped = ""
        if retry_after is not None and retry_after > self.timing.max_backoff_s:
            capped = f" (the server asked for {_span(retry_after)}; capped at max_backoff)"
        log.warning(
            "source %s failing (%d in a row), next try %s%s: %s",
            spec.id,
            row.failures + 1,
            when_text(next_due, now),
            capped,
            reason,
        )
        failures = row.failures + 1
        notices = []
        if failures == self.router.notices.after:  # only the poll that reaches it
            notices = await self._notice(
                Notice.FAILING, spec, now, failures=failures, detail=reason
            )
        stored = await self._commit(
            PollCommit(source_id=spec.id, now=now, next_due=next_due, error=reason, events=notices),
            owner=self.owner,
        )
        if stored and self.on_committed is not None:
            self.on_committed(stored)
        metrics.SOURCES.poll(spec.id, "error", failures=row.failures + 1)
        return PollReport(spec.id, ok=False, error=reason)


def when_text(when: datetime, now: datetime) -> str:
    """``HH:MM:SS`` when ``when`` is on ``now``'s day, else the full date and time
    (both in ``when``'s zone, UTC for store times)."""
    if when.date() == now.astimezone(when.tzinfo).date():
        return f"{when:%H:%M:%S}"
    return f"{when:%Y-%m-%d %H:%M:%S %Z}".rstrip()


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
