"""The running service: one supervisor that wires the pipeline and owns its tasks.

``Runtime.open`` builds everything from settings and config (store, HTTP client,
adapters, sinks, router, scheduler, dispatcher, command service); ``run`` starts the
scheduler, the dispatcher, the leader loop (chat listeners run only on the replica
that holds the ``chat`` lease) and the outbox gauges in one task group, and returns
after ``stop()``: polls and sends in flight finish, the rest is given back, and
everything opened is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from alerts import metrics
from alerts.chat.commands import CommandService
from alerts.config import Config, Settings, check_destinations, load_config
from alerts.dispatch import Dispatcher, RetryPolicy
from alerts.errors import ConfigError
from alerts.model import Destination, utcnow
from alerts.route import Router
from alerts.scheduler import Scheduler, Timing
from alerts.sinks import ChatListener, Sink, SinkContext
from alerts.sinks import registry as sink_registry
from alerts.sources import Source
from alerts.sources import registry as source_registry
from alerts.sources.http import HttpClient, HttpLimits
from alerts.store import Store, open_store

log = logging.getLogger(__name__)

GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Set the cyclic garbage collector up for a long-running service process.

    Called once by ``alerts run`` after start-up. Everything loaded so far (modules,
    config, adapters) lives as long as the process, so it is moved out of the
    collector's sight (``gc.freeze``) instead of being traversed again by every full
    collection. The youngest generation is collected every 10,000 allocations instead
    of 700: a poll allocates a few hundred objects that reference counting frees at
    once, and with 100 polls in flight each young collection walks their live state
    again for nothing. Measured in ``bench/``: about a fifth of the CPU of an
    unchanged poll. Frozen objects are still freed by reference counting when their
    last reference goes (a config replaced by a reload, say); only garbage cycles
    among them would stay.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


LEADER_LEASE_S = 30.0


def make_owner(settings: Settings) -> str:
    name = settings.instance_name or socket.gethostname()
    return f"{name}:{os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_owners(owners: set[str], me: str) -> list[str]:
    """Claim owners that were processes of this host and are gone (a crash, kill -9).

    An owner is ``name:pid:random``. Same name and a pid that no longer runs — or our
    own pid with another random part (a container restarted as pid 1) — is dead.
    Owners of other hosts are left to their leases' expiry.
    """
    name, pid, _ = me.rsplit(":", 2)
    dead = []
    for owner in owners:
        parts = owner.rsplit(":", 2)
        if owner == me or len(parts) != 3 or parts[0] != name or not parts[1].isdigit():
            continue
        if parts[1] == pid or not _pid_alive(int(parts[1])):
            dead.append(owner)
    return dead


def build_adapters(config: Config, http: HttpClient) -> dict[str, Source]:
    """One adapter instance per configured source, each with its view of ``http``
    carrying the source's ``allow_private_network`` (or ``[http]``'s, as read now:
    a reload applies a changed one)."""
    factories = source_registry()
    service_wide = config.http.allow_private_network
    return {
        sid: factories[spec.kind](
            source_id=sid,
            url=spec.url,
            options=spec.options,
            http=http.for_source(
                service_wide if spec.allow_private_network is None else spec.allow_private_network
            ),
        )
        for sid, spec in config.sources.items()
    }


def http_limits(config: Config) -> HttpLimits:
    return HttpLimits(
        timeout_s=config.http.timeout,
        max_bytes=config.http.max_bytes,
        max_redirects=config.http.max_redirects,
        per_host=config.http.per_host,
        total=max(config.service.poll_concurrency, 10),
        contact=config.service.contact,
        allow_private_network=config.http.allow_private_network,
    )


@dataclass
class Runtime:
    settings: Settings
    config: Config
    store: Store
    http: HttpClient
    owner: str
    router: Router
    scheduler: Scheduler
    dispatcher: Dispatcher
    commands: CommandService
    sinks: dict[str, Sink] = field(default_factory=dict)
    ready: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _listeners: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        timing: Timing | None = None,
        sink_overrides: Mapping[str, Sink] | None = None,
    ) -> Runtime:
        """Build the whole pipeline; sinks are started by ``run``."""
        await asyncio.to_thread(Path(settings.data_dir).mkdir, parents=True, exist_ok=True)
        store = await open_store(settings.database_url)
        http = HttpClient(http_limits(config))
        owner = make_owner(settings)
        router = Router(config.routes)
        dispatcher = Dispatcher(
            store=store,
            sinks={},
            owner=owner,
            policy=RetryPolicy(max_attempts=config.service.delivery_max_attempts),
            concurrency=config.service.delivery_concurrency,
            lease_s=config.service.delivery_lease,
            clock=clock,
        )
        scheduler = Scheduler(
            store=store,
            specs=config.sources,
            adapters=build_adapters(config, http),
            router=router,
            owner=owner,
            concurrency=config.service.poll_concurrency,
            timing=timing
            or Timing(
                jitter=config.service.jitter,
                max_backoff_s=config.service.max_backoff,
                lease_s=config.service.poll_lease,
            ),
            on_committed=lambda _events: dispatcher.wake(),
            clock=clock,
        )
        runtime = cls(
            settings=settings,
            config=config,
            store=store,
            http=http,
            owner=owner,
            router=router,
            scheduler=scheduler,
            dispatcher=dispatcher,
            commands=CommandService(store=store, topics=config.topic_descriptions),
        )
        runtime.commands._on_change = runtime._subscriptions_changed
        try:
            await runtime._prepare(sink_overrides or {})
        except BaseException:
            await runtime.close()
            raise
        return runtime

    async def reclaim_dead_claims(self) -> int:
        """Release what crashed processes of this host still hold, instead of waiting
        for their leases to run out."""
        released = 0
        for owner in dead_local_owners(await self.store.lease_owners(), self.owner):
            count = await self.store.release_owner(owner)
            released += count
            log.info("released %d claims of %s, a process of this host that is gone", count, owner)
        return released

    async def _prepare(self, overrides: Mapping[str, Sink]) -> None:
        await self.reclaim_dead_claims()
        for destination in self.config.destinations.values():
            await self.store.upsert_destination(destination)
        await self.scheduler.register()
        stored = {row.destination.sink for row in await self.store.list_destinations()}
        wanted = {d.sink for d in self.config.destinations.values()} | stored
        factories = sink_registry()
        for kind, factory in factories.items():
            if kind in overrides:
                self.sinks[kind] = overrides[kind]
            elif kind in wanted or factory.configured():
                self.sinks[kind] = factory(context=self._sink_context())
        check_destinations(self.config, self._validate_destination)

    def _validate_destination(self, destination: Destination) -> None:
        """The destination's sink instance accepts it (and that sink has started)."""
        sink = self.sinks.get(destination.sink)
        if sink is None:
            raise ConfigError(
                f"destinations.{destination.id}.sink: sink {destination.sink!r} "
                "is not running; it needs a restart to start"
            )
        sink.validate_destination(destination)

    def _sink_context(self) -> SinkContext:
        return SinkContext(
            settings=self.settings, store=self.store, data_dir=str(self.settings.data_dir)
        )

    async def _subscriptions_changed(self) -> None:
        version = await self.store.subscriptions_version()
        self.router.set_dynamic(await self.store.list_subscriptions(), version)

    # --- running ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to finish in-flight work and return."""
        self._stop.set()

    async def run(self) -> None:
        await self._start_sinks()
        self.ready = True
        log.info(
            "alerts running: %d sources, %d destinations, sinks: %s (owner %s)",
            len(self.config.sources),
            len(self.config.destinations),
            ", ".join(sorted(self.sinks)) or "none",
            self.owner,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [
                    tg.create_task(self.scheduler.run(), name="scheduler"),
                    tg.create_task(self.dispatcher.run(), name="dispatcher"),
                ]
                helpers = [
                    tg.create_task(self._leader_loop(), name="leader"),
                    tg.create_task(self._gauges_loop(), name="gauges"),
                ]
                await self._stop.wait()
                log.info("stopping: finishing polls and sends in flight")
                self.scheduler.stop()
                self.dispatcher.stop()
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        finally:
            self.ready = False
            await self._stop_listeners()
            with contextlib.suppress(Exception):
                await self.store.resign("chat", owner=self.owner)

    async def _start_sinks(self) -> None:
        started: dict[str, Sink] = {}
        for kind, sink in self.sinks.items():
            try:
                await sink.start()
            except Exception:
                log.exception("sink %s failed to start; its deliveries wait", kind)
                continue
            started[kind] = sink
        self.dispatcher.sinks = started

    async def _leader_loop(self) -> None:
        listeners = [
            (kind, s) for kind, s in self.dispatcher.sinks.items() if isinstance(s, ChatListener)
        ]
        if not listeners:
            return
        while True:
            try:
                leading = await self.store.try_lead(
                    "chat", owner=self.owner, lease_s=LEADER_LEASE_S, now=utcnow()
                )
            except Exception:
                log.exception("leader election failed")
                leading = False
            if leading and not self._listeners:
                log.info("leading: starting chat listeners %s", ", ".join(k for k, _ in listeners))
                self._listeners = [
                    asyncio.create_task(self._listen(kind, s), name=f"listen:{kind}")
                    for kind, s in listeners
                ]
            elif not leading and self._listeners:
                log.warning("lost chat leadership; stopping listeners")
                await self._stop_listeners()
            await asyncio.sleep(LEADER_LEASE_S / 3)

    async def _listen(self, kind: str, sink: ChatListener) -> None:
        while True:
            try:
                await sink.listen(self.commands)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat listener %s failed; restarting in 10 s", kind)
                await asyncio.sleep(10)

    async def _stop_listeners(self) -> None:
        for task in self._listeners:
            task.cancel()
        if self._listeners:
            await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners = []

    async def _gauges_loop(self) -> None:
        ticks = 0
        while True:
            ticks += 1
            try:
                if ticks % 12 == 0:
                    await self.reclaim_dead_claims()
                stats = await self.store.outbox_stats()
                metrics.OUTBOX_PENDING.set(stats.pending)
                metrics.OUTBOX_DEAD.set(stats.dead)
                metrics.PARKED_DESTINATIONS.set(stats.parked_destinations)
                oldest = stats.oldest_pending_at
                metrics.OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)
            except Exception:
                log.exception("outbox gauges failed")
            await asyncio.sleep(5)

    # --- reload and close ------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config; a bad one keeps the running config and says why."""
        try:
            config = load_config(self.settings.config_dir)
            adapters = build_adapters(config, self.http)
            check_destinations(config, self._validate_destination)
        except ConfigError as exc:
            log.error("reload failed; keeping the running config:\n%s", exc)
            return False
        for destination in config.destinations.values():
            await self.store.upsert_destination(destination)
        self.config = config
        self.scheduler.update(config.sources, adapters)
        await self.scheduler.register()
        self.router.set_static(config.routes)
        self.commands.topics = config.topic_descriptions
        log.info(
            "config reloaded: %d sources, %d destinations",
            len(config.sources),
            len(config.destinations),
        )
        return True

    async def close(self) -> None:
        for kind, sink in self.sinks.items():
            try:
                await sink.close()
            except Exception:
                log.exception("closing sink %s", kind)
        await self.http.close()
        await self.store.close()
