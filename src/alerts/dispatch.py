"""The dispatcher: send what the outbox holds, exactly as often as it takes.

Why this loses nothing and shows nothing twice:

* Deliveries are created in the same transaction as the events and detector state
  that caused them (``Store.commit_poll``), so after a crash either the poll is
  redone from scratch or its deliveries exist and are pending.
* A delivery leaves ``pending`` only after the sink returned (``mark_sent``) or it was
  judged hopeless (``mark_dead``, surfaced by ``alerts deliveries``). A crash between
  the platform accepting a message and ``mark_sent`` leaves it pending, so it is sent
  again — with the same idempotency key, derived from the delivery id, which the
  platform uses to return the first message instead of posting a second one (Matrix
  transaction id on a persisted device, Discord ``nonce`` with ``enforce_nonce``, a key
  column in the JSON-lines file). Edits are deliveries too: what a delivery does to a
  room's earlier messages is planned, applied and recorded with the same guarantees
  (``alerts.edits``).
* Claims are leases, not locks: a dispatcher that dies mid-send stops renewing, its
  lease runs out, and another (or the restarted one) takes the delivery over.
* Per-destination order: a destination's deliveries are claimed only while no earlier
  one of the same destination is leased, and a claimed group is sent in id order;
  the first failure in a group blocks the destination (``blocked_until``) and gives
  the rest back untouched.
* Held deliveries (digests, quiet hours: ``alerts.schedule``) are never claimed; once
  their time has come, ``Store.release_held`` makes each room's one digest delivery
  and marks them in the same transaction, and the digest is sent like any other.
* Only failures of the delivery itself count towards ``max_attempts``. A rate limit
  (``RateLimitedError``) or an outage of the whole platform (``PlatformUnavailable``:
  unreachable, 502/503/504, credentials refused) is waited out, however long it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from alerts import metrics
from alerts.digest import digest_event
from alerts.edits import Messages
from alerts.errors import (
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
)
from alerts.model import Delivery, utcnow
from alerts.sinks import Sink
from alerts.store import Store
from alerts.supervise import Faults, Loop, retry_store, shielded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 5.0
    cap_s: float = 900.0
    missing_sink_s: float = 300.0
    outage_cap_s: float = 300.0  # longest wait between tries while a platform is down

    def backoff_s(self, attempts: int) -> float:
        delay = min(self.cap_s, self.base_s * (2 ** max(0, attempts - 1)))
        return float(delay * random.uniform(0.8, 1.2))


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        sinks: Mapping[str, Sink],
        owner: str,
        policy: RetryPolicy | None = None,
        concurrency: int = 50,
        lease_s: float = 120.0,
        idle_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
        faults: Faults | None = None,
        digest_check_s: float = 10.0,
    ) -> None:
        self.store = store
        self.digest_check_s = digest_check_s
        self._digest_due: datetime | None = None
        self.sinks = dict(sinks)
        self.owner = owner
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: set[asyncio.Task[None]] = set()
        self._outages: dict[str, datetime] = {}  # platform -> when it stopped answering
        self.faults = faults or Faults()
        self.messages = Messages(store, clock=clock)
        self.may_send: Callable[[str], bool] = lambda _kind: True
        self._loop = Loop("dispatcher", self._step, faults=self.faults)

    def wake(self) -> None:
        """New deliveries were committed: look now rather than at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled or ``stop`` is called, under supervision: a
        store that fails is waited out with backoff (``alerts.supervise``)."""
        try:
            await self._loop.run()
        finally:
            await self._finish()

    async def _step(self) -> None:
        claimed = await self._claim_and_start()
        if claimed == 0 or len(self._active) >= self.concurrency:
            await self._idle()

    def stop(self) -> None:
        """Finish the sends in flight, give the rest back, and return from ``run``."""
        self._stopping = True
        self._loop.stop()
        self._wake.set()

    async def drain(self, *, timeout_s: float = 30.0) -> None:
        """Send everything claimable now, then return (for one-shot commands and tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            claimed = await self._claim_and_start()
            if self._active:
                await asyncio.wait(self._active, timeout=max(0.0, deadline - loop.time()))
            elif claimed == 0:
                return

    async def _idle(self) -> None:
        self._wake.clear()
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        waiters.update(self._active)
        try:
            await asyncio.wait(waiters, timeout=self.idle_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                if w not in self._active:
                    w.cancel()

    async def _claim_and_start(self) -> int:
        capacity = self.concurrency - len(self._active)
        if capacity <= 0 or self._stopping:
            return 0
        await self._release_held()
        sendable = [kind for kind in self.sinks if self.may_send(kind)]
        if not sendable:
            return 0
        batch = await self.store.claim_deliveries(
            self.clock(),
            owner=self.owner,
            lease_s=self.lease_s,
            limit=capacity * 4,
            sinks=sendable,
        )
        groups: dict[str, list[Delivery]] = {}
        for delivery in batch:
            groups.setdefault(delivery.destination.id, []).append(delivery)
        for group in groups.values():
            task = asyncio.create_task(self._send_group(group))
            self._active.add(task)
            task.add_done_callback(self._active.discard)
        return len(batch)

    async def _release_held(self) -> None:
        """Every ``digest_check_s``: turn held deliveries whose time has come into
        their rooms' digests (``Store.release_held``)."""
        now = self.clock()
        if self._digest_due is not None and now < self._digest_due:
            return
        self._digest_due = now + timedelta(seconds=self.digest_check_s)
        made = await self.store.release_held(now, digest=partial(digest_event, now=now))
        if made:
            log.info("made %d digest(s) of held alerts: deliveries %s", len(made), made)

    async def _finish(self) -> None:
        self._stopping = True
        if self._active:
            await asyncio.gather(*self._active, return_exceptions=True)

    async def _send_group(self, group: list[Delivery]) -> None:
        """Send a destination's claimed deliveries in order; never raises.

        A store failure (say, ``mark_sent`` on a full disk) stops the group: the
        deliveries it did not record stay pending under their lease and are sent
        again once it runs out, with the same idempotency key.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, delivery in enumerate(group):
            rest = [d.id for d in group[index:]]
            try:
                platform = delivery.destination.sink
                sink_gone = platform not in self.sinks or not self.may_send(platform)
                if self._stopping or sink_gone or loop.time() - started > self.lease_s / 2:
                    await self.store.release_deliveries(rest)
                    return
                go_on = await self._send_one(delivery, group[index + 1 :])
                if not go_on:
                    await self._write(self.store.release_deliveries, rest[1:])
                    return
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await shielded(self.store.release_deliveries(rest))
                raise
            except Exception as exc:  # a write failed for longer than it was worth waiting
                self.faults.failed("send", exc)
                with contextlib.suppress(Exception):
                    await self.store.release_deliveries(rest)
                return
        self.faults.ok("send")

    async def _write(self, method: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> None:
        """A store write of the outbox, tried again while the store is unavailable
        (for up to half the lease): a message that was sent must be recorded as
        sent, or it is sent again when its lease runs out."""
        await retry_store(
            partial(method, *args, **kw),
            faults=self.faults,
            reporter="send",
            give_up_s=self.lease_s / 2,
        )

    async def _send_one(self, d: Delivery, later: Sequence[Delivery] = ()) -> bool:
        """Send one delivery and record the outcome; False stops the group. ``later``
        are the rest of the group (``alerts.edits`` folds a counter into a later one)."""
        platform = d.destination.sink
        now = self.clock()
        sink = self.sinks.get(platform)
        if sink is None:
            retry_at = now + timedelta(seconds=self.policy.missing_sink_s)
            await self._write(
                self.store.mark_retry,
                d.id,
                error=f"sink {platform!r} is not configured",
                retry_at=retry_at,
                count_attempt=False,
            )
            log.warning("delivery %s: sink %r not configured; waiting", d.id, platform)
            return False
        plan = await self.messages.plan(sink, d, later)  # a store fault stops the group
        try:
            outcome = await self.messages.apply(sink, plan)
        except RateLimitedError as exc:
            wait = max(0.05, exc.retry_after_s or 1.0)
            metrics.RATE_LIMIT_WAITS.labels(platform).inc()
            metrics.RATE_LIMIT_SECONDS.labels(platform).inc(wait)
            metrics.DELIVERIES.labels(platform, "rate_limited").inc()
            await self._write(
                self.store.mark_retry,
                d.id,
                error=str(exc),
                retry_at=now + timedelta(seconds=wait),
                count_attempt=False,
            )
            return False
        except PlatformUnavailable as exc:
            wait = self._outage_wait(platform, now, exc)
            metrics.DELIVERIES.labels(platform, "unavailable").inc()
            await self._write(
                self.store.mark_retry,
                d.id,
                error=str(exc),
                retry_at=now + timedelta(seconds=wait),
                count_attempt=False,
            )
            return False
        except RetryableSendError as exc:
            return await self._retry_or_die(d, exc, now)
        except DestinationUnavailable as exc:
            metrics.DELIVERIES.labels(platform, "parked").inc()
            log.error(
                "destination %s parked: %s (alerts deliveries shows it; "
                "`alerts destinations --unpark %s` resumes it)",
                d.destination.id,
                exc,
                d.destination.id,
            )
            await self.store.park_destination(d.destination.id, reason=str(exc), now=now)
            await self.store.release_deliveries([d.id])
            return False
        except RejectedError as exc:
            metrics.DELIVERIES.labels(platform, "dead").inc()
            log.error("delivery %s to %s rejected: %s", d.id, d.destination.id, exc)
            await self._write(self.store.mark_dead, d.id, error=str(exc), now=now)
            return True
        except Exception as exc:
            log.exception("delivery %s: sink %s failed unexpectedly", d.id, platform)
            return await self._retry_or_die(d, exc, now)
        metrics.DELIVERIES.labels(platform, "sent").inc()
        await self._write(self.messages.record, outcome, now=self.clock())
        down_since = self._outages.pop(platform, None)
        if down_since is not None:
            log.warning("%s takes messages again (it was down since %s)", platform, down_since)
        return True

    def _outage_wait(self, platform: str, now: datetime, exc: PlatformUnavailable) -> float:
        """Seconds until the next try while ``platform`` is down: about as long as it
        has been down so far (so tries thin out), from ``base_s`` to ``outage_cap_s``."""
        since = self._outages.setdefault(platform, now)
        if since == now:
            log.warning("%s is unavailable; deliveries wait (not counted): %s", platform, exc)
        down_s = (now - since).total_seconds()
        wait = min(self.policy.outage_cap_s, max(self.policy.base_s, down_s))
        wait *= random.uniform(0.8, 1.2)
        return max(wait, exc.retry_after_s or 0.0)

    async def _retry_or_die(self, d: Delivery, exc: Exception, now: datetime) -> bool:
        platform = d.destination.sink
        attempts = d.attempts + 1
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= self.policy.max_attempts:
            metrics.DELIVERIES.labels(platform, "dead").inc()
            log.error(
                "delivery %s to %s dead after %d attempts: %s",
                d.id,
                d.destination.id,
                attempts,
                error,
            )
            await self._write(self.store.mark_dead, d.id, error=error, now=now)
            return True
        wait = self.policy.backoff_s(attempts)
        hinted = getattr(exc, "retry_after_s", None)
        if isinstance(hinted, int | float):
            wait = max(wait, float(hinted))
        metrics.DELIVERIES.labels(platform, "retry").inc()
        log.warning(
            "delivery %s to %s failed (attempt %d), retry in %.0f s: %s",
            d.id,
            d.destination.id,
            attempts,
            wait,
            error,
        )
        await self._write(
            self.store.mark_retry,
            d.id,
            error=error,
            retry_at=now + timedelta(seconds=wait),
            count_attempt=True,
        )
        return False
