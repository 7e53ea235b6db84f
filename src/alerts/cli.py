"""The ``alerts`` command.

Exit codes: 0 ok, 2 bad config or usage, 1 runtime failure. Global options work
before and after the command (``alerts --config DIR check`` and ``alerts check
--config DIR``). Output piped into a reader that stops early (``| head``) ends the
command quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from alerts import __version__
from alerts.config import Config, load_config
from alerts.errors import AlertsError, ConfigError
from alerts.logs import setup_logging
from alerts.model import DeliveryState, utcnow
from alerts.redact import redact_text
from alerts.settings import Settings, env_name, read_settings

log = logging.getLogger("alerts")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


# Global options: (option, settings field, metavar, help).
GLOBAL_OPTIONS = (
    ("--config", "config_dir", "DIR", "config directory (ALERTS_CONFIG_DIR, default config)"),
    ("--database-url", "database_url", "URL", "store URL (ALERTS_DATABASE_URL)"),
    ("--log-format", "log_format", "FORMAT", "text or json (ALERTS_LOG_FORMAT)"),
    ("--log-level", "log_level", "LEVEL", "DEBUG, INFO, WARNING or ERROR (ALERTS_LOG_LEVEL)"),
)


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the global options given."""
    overrides: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for option, name, _, _ in GLOBAL_OPTIONS:
        value = vars(args).get(name)
        if value is not None:
            overrides[name] = Path(value) if name == "config_dir" else value
            labels[name] = option
    return read_settings(Settings, overrides, labels=labels)


# --- commands ----------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service until SIGTERM or SIGINT; SIGHUP reloads the config."""
    from alerts.runtime import Runtime, tune_gc

    config = load_config(settings.config_dir)
    signals = _RunSignals(config.service.shutdown_grace)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.stop, sig)
    loop.add_signal_handler(signal.SIGHUP, signals.reload)
    try:
        # A store that cannot be opened at all is one line and exit 1 (a process
        # manager restarts the service); once open, store faults are waited out.
        runtime = await Runtime.open(settings, config, prepare=False)
        signals.attach(runtime)
        tune_gc()
        try:
            await _run_with_web(runtime)
        finally:
            await _close_within(runtime, signals.time_left(CLOSE_MIN_S))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped cleanly")
    return EXIT_OK


async def _close_within(runtime: Any, timeout_s: float) -> None:
    """Close the runtime; if that outlasts the grace (a store stuck on a lock, a
    hung thread), exit 0 now: everything committed is durable, and claims still
    held come back on the next start (or when their leases run out)."""
    closing = asyncio.ensure_future(runtime.close())
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)  # not wait_for: it would
    if not done:  # wait for the cancelled close, which may itself wait on the store
        log.warning("closing took longer than the shutdown grace; exiting without waiting")
        logging.shutdown()
        os._exit(EXIT_OK)
    closing.result()


CLOSE_MIN_S = 0.5
CLOSE_UNSIGNALLED_S = 30.0


class _RunSignals:
    """SIGTERM/SIGINT stop the service within the grace; a second one exits at once
    (status 128 + the signal's number, as a shell reports a death by signal).
    SIGHUP asks for a reload."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.runtime: Any = None
        self.stopped = asyncio.Event()
        self._deadline: float | None = None

    def stop(self, sig: signal.Signals) -> None:
        if self._deadline is not None:
            log.warning("second %s: exiting now, without waiting for work in flight", sig.name)
            logging.shutdown()
            os._exit(128 + sig.value)
        self._deadline = asyncio.get_running_loop().time() + self.grace_s
        log.info(
            "%s: stopping within %g s (shutdown_grace; a second signal exits at once)",
            sig.name,
            self.grace_s,
        )
        self.stopped.set()
        if self.runtime is not None:
            self.runtime.stop()

    def attach(self, runtime: Any) -> None:
        self.runtime = runtime
        if self.stopped.is_set():  # the signal came while it was opening
            runtime.stop()

    def reload(self) -> None:
        if self.runtime is None:
            log.warning("SIGHUP before the service started: ignored")
            return
        log.info("SIGHUP: reloading config from %s", self.runtime.settings.config_dir)
        self.runtime.request_reload()

    def time_left(self, at_least_s: float) -> float:
        """Seconds until the grace runs out (at least ``at_least_s``)."""
        if self._deadline is None:
            return CLOSE_UNSIGNALLED_S
        return max(at_least_s, self._deadline - asyncio.get_running_loop().time())


async def _run_with_web(runtime: Any) -> None:
    import importlib

    try:
        web = importlib.import_module("alerts.web")
    except ImportError:
        await runtime.run()
        return
    await web.run_with(runtime)


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the config and the settings, as ``run`` would, and exit (0 valid, 2 invalid).

    Checks every file, every value, the references between sections, each sink's
    ALERTS_* settings and each destination against its sink; reports every problem.
    """
    config = load_config(settings.config_dir)
    print(
        f"config OK: {len(config.sources)} sources, {len(config.topics)} topics, "
        f"{len(config.destinations)} destinations, {config.route_tables} routes "
        f"({', '.join(config.files)})"
    )
    return EXIT_OK


async def cmd_poll(args: argparse.Namespace, settings: Settings) -> int:
    """Poll one source now; with --dry-run print what it would raise and change nothing."""
    from alerts.detect import detect, keys_to_load
    from alerts.render.text import render_text
    from alerts.runtime import build_adapters, http_limits
    from alerts.sources import SourceState
    from alerts.sources.http import HttpClient
    from alerts.store import open_store

    config = load_config(settings.config_dir)
    spec = config.sources.get(args.source)
    if spec is None:
        raise ConfigError(
            f"unknown source {args.source!r}; known: {', '.join(sorted(config.sources))}"
        )
    if not args.dry_run:
        return await _poll_for_real(settings, config, args.source)
    http = HttpClient(http_limits(config))
    store = await open_store(settings.database_url)
    try:
        adapter = build_adapters(_only(config, spec.id), http)[spec.id]
        row = await store.get_source(spec.id)
        observation = await adapter.fetch(SourceState(cursor=row.cursor if row else {}))
        known = await store.load_items(spec.id, keys_to_load(observation.items))
        found = detect(
            spec=spec,
            observation=observation,
            known=known,
            baselined=bool(row and row.baselined),
            detector_state=row.detector if row else {},
            adapter=adapter,
            now=utcnow(),
        )
    finally:
        await http.close()
        await store.close()
    print(f"{spec.id}: {len(observation.items)} items, values {dict(observation.values)}")
    if found.baseline:
        print(
            "first poll: this is the baseline (recorded, not alerted)"
            + (f"; backfill would alert on {len(found.events)}" if found.events else "")
        )
    print(f"{len(found.events)} event(s) would be raised (dry run, nothing stored):\n")
    for event in found.events:
        print(render_text(event, source_label=spec.label) + "\n")
    return EXIT_OK


def _only(config: Config, source_id: str) -> Config:
    from dataclasses import replace

    return replace(config, sources={source_id: config.sources[source_id]})


async def _poll_for_real(settings: Settings, config: Config, source_id: str) -> int:
    from alerts.runtime import Runtime

    # Not registered: the store's active set stays what a running service made it.
    runtime = await Runtime.open(settings, _only(config, source_id), register=False)
    try:
        report = await runtime.scheduler.poll_now(source_id)
    finally:
        await runtime.close()
    if not report.ok:
        print(f"{source_id}: failed: {redact_text(report.error or '')}", file=sys.stderr)
        return EXIT_RUNTIME
    state = (
        "not modified"
        if report.not_modified
        else ("baseline recorded" if report.baseline else "ok")
    )
    held = f"; {report.held} held by the flood breaker (alerts sources)" if report.held else ""
    print(f"{source_id}: {state}; {len(report.events)} event(s) queued for delivery{held}")
    return EXIT_OK


async def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    """Show each source's state: last success, last new item, failures, next due."""
    from alerts.flood import status as flood_status
    from alerts.store import open_store

    config = load_config(settings.config_dir)
    store = await open_store(settings.database_url)
    try:
        rows = {r.source_id: r for r in await store.list_sources()}
        for sid in config.sources.keys() - rows.keys():  # polled by hand, not yet by `run`
            row = await store.get_source(sid)
            if row is not None:
                rows[sid] = row
        added = [c for c in await store.list_chat_sources() if c.id not in config.sources]
    finally:
        await store.close()
    kinds = {sid: spec.kind for sid, spec in config.sources.items()}
    kinds |= {c.id: f"{c.kind} (chat)" for c in added}
    table = [
        (
            "SOURCE",
            "KIND",
            "LAST SUCCESS",
            "LAST NEW",
            "FAILURES",
            "NEXT DUE",
            "ITEMS",
            "FLOOD",
            "LAST ERROR",
        )
    ]
    for sid, kind in sorted(kinds.items()):
        r = rows.get(sid)
        if r is None:
            table.append((sid, kind, "never", "never", "0", "not yet scheduled", "0", "", ""))
            continue
        table.append(
            (
                sid,
                kind,
                _when(r.last_success_at),
                _when(r.last_new_at),
                str(r.failures),
                _when(r.next_due),
                str(r.item_count),
                flood_status(r.detector) or "",
                " ".join(redact_text(r.last_error or "").split()),
            )
        )
    _print_table(table, sys.stdout)
    if added:
        print("\nAdded from chat (alerts remove-source ID removes one):")
        chat = [("SOURCE", "ROOM", "ADDED BY", "ADDED", "TOPIC", "URL")]
        chat += [
            (c.id, c.destination_id, c.added_by, _when(c.added_at), c.topic, redact_text(c.url))
            for c in added
        ]
        _print_table(chat, sys.stdout)
    return EXIT_OK


async def cmd_remove_source(args: argparse.Namespace, settings: Settings) -> int:
    """Remove a source a room added from chat (add-feed), with its room's subscription.

    The room's pending alerts of it become dead deliveries (alerts deliveries shows
    them). A running service stops polling it within seconds. Sources of the config
    files are removed by editing the files.
    """
    from alerts.store import open_store

    config = load_config(settings.config_dir)
    if args.source in config.sources:
        raise ConfigError(
            f"{args.source} is defined in {config.sources[args.source].origin}: "
            "remove it from the config files"
        )
    store = await open_store(settings.database_url)
    try:
        removed = await store.remove_chat_source(args.source, reason="removed by the operator")
    finally:
        await store.close()
    if removed is None:
        print(f"alerts: no source {args.source!r} was added from chat", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"removed {removed.id} ({redact_text(removed.url)}), added in {removed.destination_id}")
    return EXIT_OK


async def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    """Show pending and dead deliveries and parked destinations; requeue dead ones."""
    from alerts.store import open_store

    store = await open_store(settings.database_url)
    try:
        if args.requeue_dead is not None:
            count = await store.requeue_dead([int(i) for i in args.requeue_dead] or None)
            print(f"requeued {count} dead deliveries")
            return EXIT_OK
        states: list[DeliveryState | None]
        if args.state == "default":
            states = [DeliveryState.PENDING, DeliveryState.DEAD]
        elif args.state == "all":
            states = [None]
        else:
            states = [DeliveryState(args.state)]
        stats = await store.outbox_stats()
        print(
            f"pending {stats.pending}, dead {stats.dead}, parked destinations {stats.parked_destinations}"
            + (f", held for digests {stats.held}" if stats.held else "")
            + (
                f", oldest pending since {_when(stats.oldest_pending_at)}"
                if stats.oldest_pending_at
                else ""
            )
        )
        table = [("ID", "STATE", "DESTINATION", "ATTEMPTS", "CREATED", "EVENT", "LAST ERROR")]
        for st in states:
            for d in await store.list_deliveries(state=st, limit=args.limit):
                table.append(
                    (
                        str(d.id),
                        d.state.value,
                        d.destination_id,
                        str(d.attempts),
                        _when(d.created_at),
                        f"{d.event.kind.value}: {d.event.title}"[:60],
                        redact_text(d.last_error or "")[:80],
                    )
                )
        _print_table(table, sys.stdout)
        parked = [r for r in await store.list_destinations() if r.parked_at]
        for row in parked:
            reason = redact_text(row.parked_reason or "")
            print(f"parked: {row.destination.id} since {_when(row.parked_at)}: {reason}")
    finally:
        await store.close()
    return EXIT_OK


async def cmd_destinations(args: argparse.Namespace, settings: Settings) -> int:
    """List destinations (config and chat-subscribed); --unpark resumes a parked one."""
    from alerts.store import open_store

    store = await open_store(settings.database_url)
    try:
        if args.unpark:
            ok = await store.unpark_destination(args.unpark)
            print(f"{args.unpark}: {'unparked' if ok else 'was not parked'}")
            return EXIT_OK if ok else EXIT_RUNTIME
        subs = await store.list_subscriptions()
        table = [("DESTINATION", "SINK", "TARGET", "SUBSCRIPTIONS", "STATE")]
        for row in await store.list_destinations():
            d = row.destination
            n = sum(1 for s in subs if s.destination_id == d.id)
            state = f"parked: {row.parked_reason}" if row.parked_at else "ok"
            table.append((d.id, d.sink, redact_text(d.target), str(n), redact_text(state)))
        _print_table(table, sys.stdout)
    finally:
        await store.close()
    return EXIT_OK


async def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    """Print the documentation of every source adapter and sink, with their options."""
    from alerts.sinks import registry as sinks
    from alerts.sources import registry as sources

    print("# Source adapters\n")
    for kind, source in sorted(sources().items()):
        _document(kind, source.__doc__, source.Options.model_fields, "Options")
        url = source.default_url or "required"
        print(f"URL: {url}; fingerprint fields: {', '.join(source.fingerprint_fields)}\n")
    print("# Sinks\n")
    for kind, sink in sorted(sinks().items()):
        _document(kind, sink.__doc__, sink.Options.model_fields, "Options")
        if sink.Settings is not None:
            fields = {env_name(sink.Settings, n): f for n, f in sink.Settings.model_fields.items()}
            _fields("Environment", fields)
    return EXIT_OK


def _document(kind: str, doc: str | None, fields: dict[str, FieldInfo], title: str) -> None:
    print(f"## {kind}\n")
    print(_dedent(doc or "(undocumented)") + "\n")
    _fields(title, fields)


def _fields(title: str, fields: dict[str, FieldInfo]) -> None:
    if not fields:
        return
    print(f"{title}:")
    for name, info in fields.items():
        desc = f" — {info.description}" if info.description else ""
        print(f"  {name} ({_default(info)}){desc}")
    print()


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is PydanticUndefined or value is None:
        return "optional"
    return f"default {_plain(value)}"


def _plain(value: Any) -> str:
    """A default as an operator writes it (``[]``, ``"text"``, ``30.0``)."""
    if isinstance(value, str | int | float | bool | list | dict | tuple):
        return repr(value)
    return str(value)


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Show (status) or apply (migrate) the store's schema migrations."""
    from alerts.store import migrate, migration_status

    url = settings.database_url
    if args.action == "migrate":
        applied = await migrate(url)
        print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.name}" for m in applied))
    state = await migration_status(url)
    print(f"{state.backend} schema version {state.current}; {len(state.pending)} pending")
    for m in state.bundled:
        print(f"  {m.name}  {'applied' if m.version in state.applied else 'pending'}")
    return EXIT_OK


async def cmd_migrate_store(args: argparse.Namespace, settings: Settings) -> int:
    """Copy a whole installation (state, outbox, subscriptions) into a new, empty store."""
    from alerts.store.transfer import copy_store

    copied = await copy_store(args.source_url, args.target_url)
    print("copied " + ", ".join(f"{n} {table}" for table, n in copied.items()))
    print("point ALERTS_DATABASE_URL at the new store before starting the service again")
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Play a short offline campaign timeline through the real service (no network)."""
    from alerts.demo import DemoSettings, run_demo

    read_settings(DemoSettings)
    result = await run_demo(step_s=args.step)
    print(f"demo finished: {len(result.delivered)} alerts delivered to the console")
    for source_id, kind in sorted(result.missing):
        print(f"missing: {kind.value} from {source_id}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_RUNTIME


async def cmd_import_opml(args: argparse.Namespace, settings: Settings) -> int:
    """Write a sources.d/ drop-in of feed sources from an OPML file (Feedly, Inoreader…)."""
    from alerts.opml import import_opml, slug

    source = Path(args.file)
    name = f"{slug(source.stem) or 'imported'}.toml"
    out = Path(args.out) if args.out else settings.config_dir / "sources.d" / name
    result = import_opml(
        source,
        config_dir=settings.config_dir,
        out=out,
        topic=args.topic,
        force=args.force,
        now=utcnow(),
    )
    topics = f"; new topics: {', '.join(result.topics)}" if result.topics else ""
    if result.sources:
        print(f"wrote {result.out}: {result.sources} feed source(s){topics}")
    else:
        print(f"nothing to import from {source}; {result.out} not written")
    for note in result.notes:
        print(f"  note: {note}")
    return EXIT_OK


async def cmd_export_opml(args: argparse.Namespace, settings: Settings) -> int:
    """Write the configured feed sources as OPML 2.0 (to stdout, or --out FILE)."""
    from alerts.opml import export_opml

    data = export_opml(load_config(settings.config_dir), now=utcnow())
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        await asyncio.to_thread(Path(args.out).write_bytes, data)
        print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


def _import_opml_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="an OPML 1.0/2.0 subscription list")
    p.add_argument("--topic", metavar="T", help="also put every imported feed in topic T")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the drop-in to write (default: <config>/sources.d/<FILE's name>.toml)",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def _export_opml_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")


OPML_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "import-opml": _import_opml_arguments,
    "export-opml": _export_opml_arguments,
}


# --- helpers -------------------------------------------------------------------------


def _store_urls(args: argparse.Namespace, settings: Settings) -> list[str]:
    if args.command == "migrate-store":
        return [args.source_url, args.target_url]
    return [settings.database_url]


def _store_problem(exc: BaseException, urls: Sequence[str]) -> str | None:
    """One line for a raw driver error the store has not translated (a damaged
    SQLite file, a store that does not answer); None for anything else."""
    from alerts.supervise import describe, is_corrupt, is_transient

    files = [_sqlite_path(u) for u in urls if u.startswith("sqlite:")]
    where = " or ".join(files) if files else "the database"
    if is_corrupt(exc):
        return (
            f"{where}: {exc}: the database file is damaged or is not an alerts database; "
            "restore it from a backup, or move it aside to start with an empty one"
        )
    if is_transient(exc):
        return f"{where}: the store did not answer ({describe(exc)}); try again once it does"
    return None


def _sqlite_path(url: str) -> str:
    from alerts.store.sqlite import path_from_url

    return path_from_url(url)


def _dedent(text: str) -> str:
    import inspect

    return inspect.cleandoc(text)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    delta = (value - utcnow()).total_seconds()
    rel = f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"
    return f"{value:%Y-%m-%d %H:%M:%S} ({rel})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _print_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


COMMANDS: dict[str, Handler] = {
    "run": cmd_run,
    "check": cmd_check,
    "poll": cmd_poll,
    "sources": cmd_sources,
    "remove-source": cmd_remove_source,
    "deliveries": cmd_deliveries,
    "destinations": cmd_destinations,
    "adapters": cmd_adapters,
    "db": cmd_db,
    "migrate-store": cmd_migrate_store,
    "demo": cmd_demo,
    "import-opml": cmd_import_opml,
    "export-opml": cmd_export_opml,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alerts",
        description="Watch public sources and post new developments to Discord and Matrix.",
        epilog="Settings come from ALERTS_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"alerts {__version__}")
    _add_global_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, handler in COMMANDS.items():
        doc = (handler.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc)
        _add_command_options(name, p)
        # Given after the command, a global option wins; not given, it leaves the
        # value given before the command alone.
        _add_global_options(p, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    group = parser.add_argument_group("global options (before or after the command)")
    for option, name, metavar, text in GLOBAL_OPTIONS:
        choices = ["text", "json"] if name == "log_format" else None
        group.add_argument(
            option, dest=name, metavar=metavar, default=default, choices=choices, help=text
        )


def _add_command_options(name: str, p: argparse.ArgumentParser) -> None:
    if name == "poll":
        p.add_argument("source", help="source id")
        p.add_argument("--dry-run", action="store_true", help="fetch and detect, store nothing")
    elif name == "remove-source":
        p.add_argument("source", help="id of a source added from chat (alerts sources)")
    elif name == "deliveries":
        p.add_argument(
            "--state",
            choices=["default", "pending", "dead", "sent", "held", "digested", "all"],
            default="default",
        )
        p.add_argument("--limit", type=int, default=50)
        p.add_argument(
            "--requeue-dead",
            nargs="*",
            metavar="ID",
            help="make dead deliveries pending again (all without ids)",
        )
    elif name == "demo":
        p.add_argument("--step", type=float, default=4.0, help="seconds between steps")
    elif name == "destinations":
        p.add_argument("--unpark", metavar="ID", help="resume a parked destination")
    elif name == "db":
        p.add_argument("action", choices=["status", "migrate"])
    elif name == "migrate-store":
        p.add_argument("--from", dest="source_url", metavar="URL", required=True)
        p.add_argument("--to", dest="target_url", metavar="URL", required=True)
    elif name in OPML_ARGUMENTS:
        OPML_ARGUMENTS[name](p)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader of our output went away (``alerts adapters | head``): stop
        # quietly, and keep Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_USAGE
    setup_logging(level=settings.log_level, fmt=settings.log_format)
    handler = COMMANDS[args.command]
    try:
        return asyncio.run(handler(args, settings))
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_USAGE
    except AlertsError as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except BrokenPipeError:
        raise
    except Exception as exc:
        problem = _store_problem(exc, _store_urls(args, settings))
        if problem is not None:
            print(f"alerts: {problem}", file=sys.stderr)
            return EXIT_RUNTIME
        log.exception("alerts %s failed", args.command)
        print(
            f"alerts: {args.command} failed: {type(exc).__name__}: {redact_text(str(exc))}",
            file=sys.stderr,
        )
        return EXIT_RUNTIME


def _print_config_error(exc: ConfigError) -> None:
    print(
        "alerts: configuration error:\n" + "\n".join(f"  {p}" for p in exc.problems),
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
