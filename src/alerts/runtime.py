"""The running service: one supervisor that wires the pipeline and owns its tasks.

``Runtime.open`` builds everything from settings and config (store, HTTP client,
adapters, sinks, router, scheduler, dispatcher, command service); ``run`` starts the
scheduler, the dispatcher, the accounts loop (a sink that sends as a bot account
runs, and listens for commands, only while this process holds that account's lease:
``alerts.accounts``), the leader loop (other chat listeners run only on the replica
that holds the ``chat`` lease), the outbox gauges and the reload loop, each a
supervised loop (``alerts.supervise``): no fault of one ends the others or the
process, and ``faults`` is what ``/readyz`` reports. ``stop()`` shuts it down
within ``[service] shutdown_grace``: polls in flight are cancelled (they give their
leases back), sends may finish, whatever is left when the grace runs out is
cancelled, and everything opened is closed.
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
from functools import partial
from pathlib import Path

from alerts import metrics
from alerts.accounts import AccountKeeper, AccountSink, account_of
from alerts.chat.commands import CommandService
from alerts.chat.feeds import ChatFeeds
from alerts.config import Config, Settings, SourceSpec, check_destinations, load_config
from alerts.dispatch import Dispatcher, RetryPolicy
from alerts.errors import ConfigError
from alerts.model import Destination, UpdateStyle, utcnow
from alerts.records import ChatSource
from alerts.route import Router
from alerts.scheduler import Scheduler, Timing
from alerts.sinks import ChatListener, Sink, SinkContext
from alerts.sinks import registry as sink_registry
from alerts.sources import Source
from alerts.sources import registry as source_registry
from alerts.sources.http import HttpClient, HttpLimits
from alerts.store import Store, open_store
from alerts.supervise import Backoff, Faults, Loop, Tasks, describe, is_transient

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
GAUGES_EVERY_S = 5.0
RESIGN_TIMEOUT_S = 0.5
CLOSE_RESERVE_S = 1.0
SHUTTING_DOWN = "shutting down"


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


def chat_source_specs(rows: list[ChatSource], config: Config) -> dict[str, SourceSpec]:
    """The sources rooms added (``add-feed``), as the scheduler polls them: each feeds
    no topic (its room's subscription to it routes its alerts), polled every
    ``[chat] add_source_interval`` and guarded by ``[chat] allow_private_network``."""
    factories = source_registry()
    specs = {}
    for row in rows:
        factory = factories.get(row.kind)
        if factory is None or row.id in config.sources:
            continue
        specs[row.id] = SourceSpec(
            id=row.id,
            kind=row.kind,
            url=row.url,
            interval_s=config.chat.add_source_interval or config.service.default_interval,
            topics=(),
            options=factory.Options.model_validate({}),
            fingerprint=tuple(factory.fingerprint_fields),
            backfill=0,
            max_events=config.service.max_events_per_poll,
            name=row.url,
            origin=f"added from chat in {row.destination_id} by {row.added_by}",
            allow_private_network=config.chat.allow_private_network,
            updates=UpdateStyle.EDIT,
        )
    return specs


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
    faults: Faults
    sinks: dict[str, Sink] = field(default_factory=dict)
    ready: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _reload_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: Tasks = field(default_factory=Tasks)
    _listeners: list[Loop] = field(default_factory=list)
    _overrides: Mapping[str, Sink] = field(default_factory=dict)
    _prepared: bool = False
    _register: bool = True
    _gauge_ticks: int = 0
    _leased: dict[str, str] = field(default_factory=dict)  # sink kind -> account it sends as
    _owned: dict[str, AccountKeeper] = field(default_factory=dict)
    _account_listeners: dict[str, Loop] = field(default_factory=dict)
    _closed: set[str] = field(default_factory=set)
    _start_errors: dict[str, str] = field(default_factory=dict)
    _serving: bool = False  # ``run`` is running: owned chat accounts listen too
    _chat_specs: dict[str, SourceSpec] = field(default_factory=dict)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        timing: Timing | None = None,
        sink_overrides: Mapping[str, Sink] | None = None,
        prepare: bool = True,
        register: bool = True,
    ) -> Runtime:
        """Build the whole pipeline; sinks are started by ``run``.

        ``prepare`` writes the config to the store now (destinations, and the active
        set of sources unless ``register`` is false, as for a one-off ``alerts
        poll``); ``alerts run`` leaves it to ``run``, which waits out a store that
        does not answer.
        """
        await asyncio.to_thread(Path(settings.data_dir).mkdir, parents=True, exist_ok=True)
        store = await open_store(settings.database_url)
        http = HttpClient(http_limits(config))
        owner = make_owner(settings)
        router = Router(config.routes)
        router.set_views(config.views, config.source_updates, config.not_stories)
        router.set_schedules(config.schedules)
        router.set_templates(config.templates)
        router.set_notices(config.service.notices)
        faults = Faults()
        dispatcher = Dispatcher(
            store=store,
            sinks={},
            owner=owner,
            policy=RetryPolicy(max_attempts=config.service.delivery_max_attempts),
            concurrency=config.service.delivery_concurrency,
            lease_s=config.service.delivery_lease,
            clock=clock,
            faults=faults,
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
            faults=faults,
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
            commands=CommandService(
                store=store,
                topics=config.topic_descriptions,
                feeds=ChatFeeds(store=store, http=http, chat=config.chat),
                templates=config.templates,
            ),
            faults=faults,
            _overrides=dict(sink_overrides or {}),
            _register=register,
        )
        runtime.commands._on_change = runtime._subscriptions_changed
        dispatcher.may_send = runtime.may_send
        assert runtime.commands.feeds is not None
        runtime.commands.feeds._on_change = runtime._subscriptions_changed
        if prepare:
            try:
                await runtime._prepare(runtime._overrides)
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
        if self._register:
            await self.refresh_chat_sources(register=False)
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
        self._prepared = True

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
        await self.refresh_chat_sources()

    async def refresh_chat_sources(self, *, register: bool = True) -> bool:
        """Poll the sources rooms added, as the store holds them now (another replica
        may have added some): the scheduler gets them without a restart. True when
        they changed."""
        specs = chat_source_specs(await self.store.list_chat_sources(), self.config)
        if specs == self._chat_specs:
            return False
        self._chat_specs = specs
        merged = {**specs, **self.config.sources}
        self.scheduler.update(merged, self._adapters(self.config, specs))
        if register and self._register:
            await self.scheduler.register(merged)
        return True

    @property
    def polled_config(self) -> Config:
        """The config with the sources rooms added (as the status page shows them)."""
        from dataclasses import replace

        return replace(self.config, sources={**self._chat_specs, **self.config.sources})

    def _adapters(self, config: Config, chat: Mapping[str, SourceSpec]) -> dict[str, Source]:
        """The configured sources' adapters and the chat sources'."""
        from dataclasses import replace

        added = build_adapters(replace(config, sources=chat), self.http) if chat else {}
        return {**added, **build_adapters(config, self.http)}

    # --- running ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to shut down (within ``[service] shutdown_grace``) and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_reload(self) -> None:
        """Reload the config soon (SIGHUP); the reload loop does it."""
        self._reload_wanted.set()

    async def run(self) -> None:
        """Run every loop under supervision until ``stop``, then shut down.

        A runtime opened with ``prepare=False`` first writes its config to the store,
        waiting out a store that does not answer (``/readyz`` says why meanwhile).
        """
        if not self._prepared and not await self._prepare_waiting():
            return
        self._serving = True
        await self._start_sinks()
        self.ready = True
        log.info(
            "alerts running: %d sources, %d destinations, sinks: %s (owner %s)",
            len(self.config.sources),
            len(self.config.destinations),
            ", ".join(sorted(self.sinks)) or "none",
            self.owner,
        )
        workers = [
            self._tasks.start(self.scheduler.run(), name="scheduler"),
            self._tasks.start(self.dispatcher.run(), name="dispatcher"),
        ]
        for loop in self._helper_loops():
            self._tasks.start(loop.run(), name=loop.name)
        try:
            await self._stop.wait()
        finally:
            self.ready = False
            await self._shutdown(workers)

    def _helper_loops(self) -> list[Loop]:
        loops = [
            Loop("gauges", self._gauges_step, faults=self.faults, every_s=GAUGES_EVERY_S),
            Loop("reload", self._reload_step, faults=self.faults),
        ]
        if self._chat_sinks():
            loops.append(
                Loop("leader", self._lead_step, faults=self.faults, every_s=LEADER_LEASE_S / 3)
            )
        if self._leased:
            every_s = self.config.service.account_lease / 3
            loops.append(Loop("accounts", self._accounts_step, faults=self.faults, every_s=every_s))
        return loops

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        """Stop within the grace: polls in flight are cancelled (they give their
        leases back and are polled again later), sends in flight may finish, the rest
        is released; whatever is still running when the grace runs out is cancelled."""
        grace = self.config.service.shutdown_grace
        log.info("stopping: cancelling polls in flight, finishing sends (grace %g s)", grace)
        self.scheduler.stop()
        self.dispatcher.stop()
        # Part of the grace is kept for closing sinks, the HTTP client and the store.
        wait_s = max(0.0, grace - min(CLOSE_RESERVE_S, grace / 2))
        _done, pending = await asyncio.wait(workers, timeout=wait_s)
        if pending:
            log.warning(
                "shutdown grace of %g s ran out; cancelling %s (claims are given back)",
                grace,
                ", ".join(t.get_name() for t in pending),
            )
        await self._tasks.cancel()
        await self._stop_listeners()
        await self._release_accounts()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.resign("chat", owner=self.owner), RESIGN_TIMEOUT_S)

    async def _prepare_waiting(self) -> bool:
        """``_prepare``, retried with backoff while the store is unavailable; False if
        ``stop`` came first."""
        backoff, failures = Backoff(), 0
        while not self.stopping:
            try:
                await self._prepare(self._overrides)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                self.faults.failed("start-up", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff.delay_s(failures))
                continue
            self.faults.ok("start-up")
            return True
        return False

    async def _start_sinks(self) -> None:
        """Start the sinks that need no account lease now; the ``accounts`` loop starts
        the others when (and while) this process owns their account."""
        started: dict[str, Sink] = {}
        for kind, sink in self.sinks.items():
            name = account_of(sink)
            if name is not None:
                self._leased[kind] = name
                continue
            try:
                await sink.start()
            except Exception:
                log.exception("sink %s failed to start; its deliveries wait", kind)
                continue
            started[kind] = sink
        self.dispatcher.sinks = started
        if self._leased:
            try:
                await self._accounts_step()
            except Exception as exc:  # the accounts loop tries again
                self.faults.failed("accounts", exc)

    def _chat_sinks(self) -> list[tuple[str, ChatListener]]:
        """Chat listeners the ``chat`` leader runs: those of sinks without an account
        (a leased sink listens where its account is owned)."""
        return [
            (k, s)
            for k, s in self.dispatcher.sinks.items()
            if isinstance(s, ChatListener) and k not in self._leased
        ]

    def may_send(self, kind: str) -> bool:
        """False once the lease of the account ``kind`` sends as may have run out."""
        keeper = self._owned.get(kind)
        return kind not in self._leased or (keeper is not None and keeper.valid())

    async def _accounts_step(self) -> None:
        """Take or renew the lease of every account a sink sends as; start the sink
        (and its chat listener) on taking it, stop it on losing it."""
        lease_s = self.config.service.account_lease
        for kind, name in self._leased.items():
            keeper = self._owned.get(kind)
            try:
                lease = await self.store.try_account(
                    name, owner=self.owner, lease_s=lease_s, now=utcnow()
                )
            except Exception:
                if keeper is not None and not keeper.valid():
                    await self._drop_account(kind, "its lease could not be renewed")
                raise
            if lease is None:
                if keeper is not None:
                    await self._drop_account(kind, "another replica holds its lease")
                continue
            if keeper is not None:
                keeper.renewed(lease)
                continue
            await self._take_account(kind, AccountKeeper(self.store, lease, lease_s=lease_s))

    async def _take_account(self, kind: str, keeper: AccountKeeper) -> None:
        sink = self.sinks[kind]
        assert isinstance(sink, AccountSink)
        sink.hand_over(keeper)
        try:
            await sink.start()
        except Exception as exc:
            message = describe(exc)
            if self._start_errors.get(kind) != message:  # once, not every renewal
                log.error(
                    "sink %s failed to start; its deliveries wait, tried again every %g s: %s",
                    kind,
                    keeper.lease_s / 3,
                    message,
                )
            self._start_errors[kind] = message
            with contextlib.suppress(Exception):
                await sink.close()
            await keeper.release()
            return
        self._start_errors.pop(kind, None)
        self._owned[kind] = keeper
        self.dispatcher.sinks[kind] = sink
        self.dispatcher.wake()
        log.info("owning account %s: sink %s sends and syncs here", keeper.name, kind)
        if isinstance(sink, ChatListener) and self._serving:
            loop = Loop(f"listen:{kind}", partial(sink.listen, self.commands), faults=self.faults)
            self._account_listeners[kind] = loop
            self._tasks.start(loop.run(), name=f"account-listen:{kind}")

    async def _drop_account(self, kind: str, why: str) -> None:
        keeper = self._owned.pop(kind)
        self.dispatcher.sinks.pop(kind, None)
        level = logging.INFO if why == SHUTTING_DOWN else logging.WARNING
        log.log(level, "no longer owning account %s (%s): sink %s stops", keeper.name, why, kind)
        loop = self._account_listeners.pop(kind, None)
        if loop is not None:
            loop.stop()
            await self._tasks.cancel(f"account-listen:{kind}")
        with contextlib.suppress(Exception):
            await self.sinks[kind].close()

    async def _release_accounts(self) -> None:
        """At shutdown: stop the owned sinks (saving their sessions), then give their
        leases back so another replica takes over at once."""
        for kind in list(self._owned):
            keeper = self._owned[kind]
            await self._drop_account(kind, SHUTTING_DOWN)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(keeper.release(), RESIGN_TIMEOUT_S)
            self._closed.add(kind)

    async def _lead_step(self) -> None:
        """Hold (or try to take) the chat leadership; run the listeners while held."""
        try:
            leading = await self.store.try_lead(
                "chat", owner=self.owner, lease_s=LEADER_LEASE_S, now=utcnow()
            )
        except Exception:
            await self._stop_listeners()  # we cannot know whether we still lead
            raise
        if leading and not self._listeners:
            listeners = self._chat_sinks()
            log.info("leading: starting chat listeners %s", ", ".join(k for k, _ in listeners))
            self._listeners = [
                Loop(f"listen:{kind}", partial(sink.listen, self.commands), faults=self.faults)
                for kind, sink in listeners
            ]
            for loop in self._listeners:
                self._tasks.start(loop.run(), name=loop.name)
        elif not leading and self._listeners:
            log.warning("lost chat leadership; stopping listeners")
            await self._stop_listeners()

    async def _stop_listeners(self) -> None:
        for loop in self._listeners:
            loop.stop()
        self._listeners = []
        await self._tasks.cancel("listen:")

    async def _gauges_step(self) -> None:
        self._gauge_ticks += 1
        if self._gauge_ticks % 12 == 0:
            await self.reclaim_dead_claims()
        await self.refresh_chat_sources()
        stats = await self.store.outbox_stats()
        metrics.OUTBOX_PENDING.set(stats.pending)
        metrics.OUTBOX_DEAD.set(stats.dead)
        metrics.PARKED_DESTINATIONS.set(stats.parked_destinations)
        oldest = stats.oldest_pending_at
        metrics.OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)

    # --- reload and close ------------------------------------------------------------

    async def _reload_step(self) -> None:
        await self._reload_wanted.wait()
        self._reload_wanted.clear()
        try:
            await self.reload()
        except Exception:
            self._reload_wanted.set()  # the store failed: tried again after a backoff
            raise

    async def reload(self) -> bool:
        """Re-read the config; a bad one keeps the running config and says why, in
        one line. Raises only when the store failed (nothing was changed then)."""
        try:
            config = load_config(self.settings.config_dir)
            chat = chat_source_specs(await self.store.list_chat_sources(), config)
            adapters = self._adapters(config, chat)
            check_destinations(config, self._validate_destination)
        except Exception as exc:  # a config error, or whatever a hostile file causes
            log.error("reload failed; keeping the running config: %s", _one_line(exc))
            return False
        try:
            for destination in config.destinations.values():
                await self.store.upsert_destination(destination)
            await self.scheduler.register({**chat, **config.sources})
        except Exception as exc:
            log.error(
                "reload failed; keeping the running config: the store failed (%s); trying again",
                describe(exc),
            )
            raise
        self.config = config
        self._chat_specs = chat
        self.scheduler.update({**chat, **config.sources}, adapters)
        self.router.set_static(config.routes)
        self.router.set_views(config.views, config.source_updates, config.not_stories)
        self.router.set_schedules(config.schedules)
        self.router.set_templates(config.templates)
        self.router.set_notices(config.service.notices)
        self.commands.topics = config.topic_descriptions
        self.commands.templates = frozenset(config.templates)
        if self.commands.feeds is not None:
            self.commands.feeds.chat = config.chat
        log.info(
            "config reloaded: %d sources, %d destinations",
            len(config.sources),
            len(config.destinations),
        )
        return True

    async def close(self) -> None:
        await self._release_accounts()
        for kind, sink in self.sinks.items():
            if kind in self._closed or (kind in self._leased and kind not in self._owned):
                continue
            try:
                await sink.close()
            except Exception:
                log.exception("closing sink %s", kind)
        await self.http.close()
        await self.store.close()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    return f"cannot use the config: {describe(exc)}"
