"""The operations endpoint against a real runtime: liveness, readiness (store, config,
sinks) and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from alerts import web
from alerts.config import Settings, load_config
from alerts.errors import ConfigError
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from .support import FeedServer, RecordingSink, feed_server, write_config

ISSUE_METRICS = (
    "alerts_polls_total",
    "alerts_poll_duration_seconds",
    "alerts_items_total",
    "alerts_events_total",
    "alerts_deliveries_total",
    "alerts_outbox_pending",
    "alerts_outbox_oldest_pending_age_seconds",
    "alerts_rate_limit_waits_total",
    "alerts_source_failure_streak",
)


class BrokenLoginSink(RecordingSink):
    async def start(self) -> None:
        raise RuntimeError("login refused")


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


async def _runtime(tmp_path: Path, server: FeedServer, sink: RecordingSink, bind: str) -> Runtime:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b")})
    settings = Settings(
        config_dir=config,
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
        http_bind=bind,
    )
    return await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": sink},
        timing=Timing(jitter=0.0, first_spread_s=3600.0, idle_s=0.05),
    )


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def _wait_ready(runtime: Runtime) -> None:
    for _ in range(200):
        if runtime.ready:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("runtime never became ready")


async def test_health_readiness_and_metrics(tmp_path: Path, server: FeedServer) -> None:
    runtime = await _runtime(tmp_path, server, RecordingSink(), "")
    runner, port = await web.start(runtime, "127.0.0.1", 0)
    task: asyncio.Task[None] | None = None
    try:
        assert (await _get(port, "/healthz"))[0] == 200
        status, body = await _get(port, "/readyz")
        assert status == 503 and '"sinks": "starting"' in body
        task = asyncio.create_task(runtime.run())
        await _wait_ready(runtime)
        status, body = await _get(port, "/readyz")
        assert status == 200, body
        assert (await runtime.scheduler.poll_now("wire")).ok
        status, text = await _get(port, "/metrics")
        assert status == 200
        assert 'alerts_polls_total{outcome="ok",source="wire"}' in text
        for name in ISSUE_METRICS:
            assert f"# TYPE {name} " in text, name
        await runtime.store.close()  # the store goes away
        status, body = await _get(port, "/readyz")
        assert status == 503 and '"store": "unreachable' in body
    finally:
        runtime.stop()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        await runtime.http.close()


async def test_a_sink_that_failed_to_log_in_is_not_ready(
    tmp_path: Path, server: FeedServer
) -> None:
    runtime = await _runtime(tmp_path, server, BrokenLoginSink(), "")
    runner, port = await web.start(runtime, "127.0.0.1", 0)
    task = asyncio.create_task(runtime.run())
    try:
        await _wait_ready(runtime)
        status, body = await _get(port, "/readyz")
        assert status == 503 and "not started: console" in body
        assert (await _get(port, "/healthz"))[0] == 200  # alive all the same
    finally:
        runtime.stop()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        await runtime.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_run_with_serves_while_running_and_stops_after(
    tmp_path: Path, server: FeedServer
) -> None:
    port = _free_port()
    runtime = await _runtime(tmp_path, server, RecordingSink(), f"127.0.0.1:{port}")
    task = asyncio.create_task(web.run_with(runtime))
    try:
        await _wait_ready(runtime)
        assert (await _get(port, "/healthz"))[0] == 200
        runtime.stop()
        await asyncio.wait_for(task, 20)
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(port, "/healthz")
    finally:
        runtime.stop()
        await asyncio.gather(task, return_exceptions=True)
        await runtime.close()


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        pytest.param("", None, id="off"),
        pytest.param("127.0.0.1:9464", ("127.0.0.1", 9464), id="loopback"),
        pytest.param("0.0.0.0:8080", ("0.0.0.0", 8080), id="all-interfaces"),
        pytest.param("[::1]:9464", ("::1", 9464), id="ipv6"),
        pytest.param(":9464", ("127.0.0.1", 9464), id="port-only-stays-local"),
    ],
)
def test_parse_bind(bind: str, expected: tuple[str, int] | None) -> None:
    assert web.parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["9464", "localhost", "host:port"])
def test_a_bad_bind_is_a_config_error(bind: str) -> None:
    with pytest.raises(ConfigError, match="ALERTS_HTTP_BIND"):
        web.parse_bind(bind)


def test_per_source_metrics_are_exposed_as_prometheus_samples() -> None:
    """Polls by source and outcome, the failure streak and the flood breaker's figures
    come from plain counts, exposed with the names and labels of the metrics they were."""
    from prometheus_client import CollectorRegistry, generate_latest

    from alerts.metrics import SourceMetrics

    registry = CollectorRegistry()
    sources = SourceMetrics()
    registry.register(sources)
    sources.poll("wire", "ok")
    sources.poll("wire", "not_modified")
    sources.poll("wire", "not_modified")
    sources.poll("gov", "error", failures=3)
    sources.flood_held["wire"] = 1
    sources.held_events("wire", 48)
    value = registry.get_sample_value
    assert value("alerts_polls_total", {"source": "wire", "outcome": "not_modified"}) == 2
    assert value("alerts_polls_total", {"source": "gov", "outcome": "error"}) == 1
    assert value("alerts_source_failure_streak", {"source": "gov"}) == 3
    assert value("alerts_source_failure_streak", {"source": "wire"}) == 0
    assert value("alerts_source_flood_held", {"source": "wire"}) == 1
    assert value("alerts_flood_held_events_total", {"source": "wire"}) == 48
    text = generate_latest(registry).decode()
    assert "# TYPE alerts_polls_total counter" in text
    assert 'alerts_polls_total{outcome="ok",source="wire"} 1.0' in text
