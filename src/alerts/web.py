"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` (aiohttp).

Bound to ``ALERTS_HTTP_BIND`` (``host:port``, default ``127.0.0.1:9464``: loopback
only unless the operator says otherwise; empty turns it off).

* ``/healthz`` — 200 while the process serves requests (liveness).
* ``/readyz`` — 200 when the store answers, the config is loaded, every sink
  started (logged in) and no loop is failing; 503 with the failing checks otherwise.
  A store that answers reads but fails writes (a full disk) is not ready: the loops
  that hit the fault say so (``alerts.supervise.Faults``) until it is over.
* ``/metrics`` — Prometheus text format from ``alerts.metrics.REGISTRY``.
* ``/status`` and ``/status.json`` — the status page (``alerts.status``): on loopback
  open, elsewhere only with ``ALERTS_API_TOKEN``. The three above stay open.

Nothing here echoes settings, so no secret can leak through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerts import metrics, status
from alerts.errors import ConfigError

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 3.0
RUNTIME_KEY = web.AppKey("runtime", Any)


def parse_bind(bind: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:9464`` for IPv6) or ``None`` when empty."""
    bind = bind.strip()
    if not bind:
        return None
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"ALERTS_HTTP_BIND: expected host:port, not {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def readiness(runtime: Any) -> dict[str, str]:
    """Each check's verdict, ``ok`` or why not."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(runtime.store.subscriptions_version(), STORE_TIMEOUT_S)
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
    for subject, why in runtime.faults.current().items():
        if checks.get(subject, "ok") == "ok":  # "store": a write failed, reads work
            checks[subject] = why
    checks["config"] = "ok" if getattr(runtime, "config", None) is not None else "not loaded"
    started = set(getattr(runtime.dispatcher, "sinks", {}))
    missing = sorted(set(runtime.sinks) - started)
    if not runtime.ready:
        checks["sinks"] = "starting"
    elif missing:
        checks["sinks"] = "not started: " + ", ".join(missing)
    else:
        checks["sinks"] = "ok"
    return checks


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app[RUNTIME_KEY])
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(runtime: Any, bind_host: str = "127.0.0.1") -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    status.add_routes(app, runtime=runtime, bind_host=bind_host)
    return app


async def start(runtime: Any, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(make_app(runtime, host), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # (host, port, …) of every bound socket
    bound = addresses[0][1] if addresses else port
    return runner, int(bound)


async def run_with(runtime: Any) -> None:
    """Serve the endpoint while ``runtime.run()`` runs; stop serving after it returns."""
    bind = parse_bind(runtime.settings.http_bind)
    if bind is None:
        await runtime.run()
        return
    runner, port = await start(runtime, *bind)
    log.info("serving /healthz, /readyz, /metrics and /status on %s:%d", bind[0], port)
    try:
        await runtime.run()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
