"""The ``alerts`` command.

Exit codes: 0 ok, 2 bad config or usage, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from alerts import __version__
from alerts.config import Config, Settings, load_config
from alerts.errors import AlertsError, ConfigError
from alerts.logs import setup_logging
from alerts.model import DeliveryState, utcnow

log = logging.getLogger("alerts")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.config is not None:
        overrides["config_dir"] = Path(args.config)
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    if args.log_format is not None:
        overrides["log_format"] = args.log_format
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            f"environment: ALERTS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError(problems) from exc


# --- commands ----------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service until SIGTERM or SIGINT; SIGHUP reloads the config."""
    from alerts.runtime import Runtime, tune_gc

    config = load_config(settings.config_dir)
    runtime = await Runtime.open(settings, config)
    tune_gc()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading config from %s", settings.config_dir)
        task = loop.create_task(runtime.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await _run_with_web(runtime)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runtime.close()
    log.info("stopped cleanly")
    return EXIT_OK


async def _run_with_web(runtime: Any) -> None:
    import importlib

    try:
        web = importlib.import_module("alerts.web")
    except ImportError:
        await runtime.run()
        return
    await web.run_with(runtime)


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the config files and exit (0 valid, 2 invalid)."""
    config = load_config(settings.config_dir)
    _validate_destinations(config, settings)
    print(
        f"config OK: {len(config.sources)} sources, {len(config.topics)} topics, "
        f"{len(config.destinations)} destinations, {len(config.routes)} routes "
        f"({', '.join(config.files)})"
    )
    return EXIT_OK


def _validate_destinations(config: Config, settings: Settings) -> None:
    from alerts.sinks import registry

    factories = registry()
    problems = []
    for dest in config.destinations.values():
        factory = factories[dest.sink]
        check = getattr(factory, "check_destination", None)
        if callable(check):
            try:
                check(dest)
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)


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

    runtime = await Runtime.open(settings, _only(config, source_id))
    try:
        report = await runtime.scheduler.poll_now(source_id)
    finally:
        await runtime.close()
    if not report.ok:
        print(f"{source_id}: failed: {report.error}", file=sys.stderr)
        return EXIT_RUNTIME
    state = (
        "not modified"
        if report.not_modified
        else ("baseline recorded" if report.baseline else "ok")
    )
    print(f"{source_id}: {state}; {len(report.events)} event(s) queued for delivery")
    return EXIT_OK


async def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    """Show each source's state: last success, last new item, failures, next due."""
    from alerts.store import open_store

    config = load_config(settings.config_dir)
    store = await open_store(settings.database_url)
    try:
        rows = {r.source_id: r for r in await store.list_sources()}
    finally:
        await store.close()
    table = [
        (
            "SOURCE",
            "KIND",
            "LAST SUCCESS",
            "LAST NEW",
            "FAILURES",
            "NEXT DUE",
            "ITEMS",
            "LAST ERROR",
        )
    ]
    for sid, spec in sorted(config.sources.items()):
        r = rows.get(sid)
        if r is None:
            table.append((sid, spec.kind, "never", "never", "0", "not yet scheduled", "0", ""))
            continue
        table.append(
            (
                sid,
                spec.kind,
                _when(r.last_success_at),
                _when(r.last_new_at),
                str(r.failures),
                _when(r.next_due),
                str(r.item_count),
                (r.last_error or "")[:100],
            )
        )
    _print_table(table, sys.stdout)
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
                        (d.last_error or "")[:80],
                    )
                )
        _print_table(table, sys.stdout)
        parked = [r for r in await store.list_destinations() if r.parked_at]
        for row in parked:
            print(f"parked: {row.destination.id} since {_when(row.parked_at)}: {row.parked_reason}")
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
            table.append((d.id, d.sink, d.target, str(n), state))
        _print_table(table, sys.stdout)
    finally:
        await store.close()
    return EXIT_OK


async def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    """Print the documentation of every source adapter and sink, with their options."""
    from alerts.sinks import registry as sinks
    from alerts.sources import registry as sources

    registries: list[tuple[str, dict[str, Any]]] = [
        ("Source adapters", dict(sources())),
        ("Sinks", dict(sinks())),
    ]
    for title, reg in registries:
        print(f"# {title}\n")
        for kind, factory in sorted(reg.items()):
            print(f"## {kind}\n")
            print(_dedent(factory.__doc__ or "(undocumented)") + "\n")
            fields = factory.Options.model_fields
            if fields:
                print("Options:")
                for name, f in fields.items():
                    default = "required" if f.is_required() else f"default {f.default!r}"
                    desc = f" — {f.description}" if f.description else ""
                    print(f"  {name} ({default}){desc}")
                print()
    return EXIT_OK


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Show (status) or apply (migrate) the store's schema migrations."""
    from alerts.store import migrations

    url = settings.database_url
    if args.action == "migrate":
        applied = await migrations.migrate(url)
        print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.name}" for m in applied))
    state = await migrations.status(url)
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
    from alerts.demo import run_demo

    result = await run_demo(step_s=args.step)
    print(f"demo finished: {len(result.delivered)} alerts delivered to the console")
    for source_id, kind in sorted(result.missing):
        print(f"missing: {kind.value} from {source_id}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_RUNTIME


# --- helpers -------------------------------------------------------------------------


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
    "deliveries": cmd_deliveries,
    "destinations": cmd_destinations,
    "adapters": cmd_adapters,
    "db": cmd_db,
    "migrate-store": cmd_migrate_store,
    "demo": cmd_demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alerts",
        description="Watch public sources and post new developments to Discord and Matrix.",
        epilog="Settings come from ALERTS_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"alerts {__version__}")
    parser.add_argument(
        "--config", metavar="DIR", help="config directory (ALERTS_CONFIG_DIR, default config)"
    )
    parser.add_argument("--database-url", metavar="URL", help="store URL (ALERTS_DATABASE_URL)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log line format")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, handler in COMMANDS.items():
        doc = (handler.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc)
        if name == "poll":
            p.add_argument("source", help="source id")
            p.add_argument("--dry-run", action="store_true", help="fetch and detect, store nothing")
        elif name == "deliveries":
            p.add_argument(
                "--state", choices=["default", "pending", "dead", "sent", "all"], default="default"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"alerts: configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(level=settings.log_level, fmt=settings.log_format)
    handler = COMMANDS[args.command]
    try:
        return asyncio.run(handler(args, settings))
    except ConfigError as exc:
        print(
            "alerts: configuration error:\n" + "\n".join(f"  {p}" for p in exc.problems),
            file=sys.stderr,
        )
        return EXIT_USAGE
    except AlertsError as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except Exception as exc:
        log.exception("alerts %s failed", args.command)
        print(f"alerts: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
