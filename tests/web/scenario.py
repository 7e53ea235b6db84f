"""A service with something in every section of the status page, built through the
real pipeline: a loopback feed server, the feed adapter, scheduler, SQLite store and
dispatcher, with a recording sink that refuses what the scenario scripts.

Sources: ``wire`` (ok; its name is a script tag), ``broken`` (HTTP 500), ``private``
(HTTP 500 on a URL with credentials and a token), ``fresh`` (never polled),
``paused`` (``enabled = false``). Rooms: ``console`` (the first alert is rejected:
dead) and ``gone`` (refuses us with a reason holding markup: parked, so its alerts
stay pending).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web as aioweb
from pydantic import SecretStr

from alerts import web
from alerts.config import Settings, load_config
from alerts.errors import DestinationUnavailable, RejectedError
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from ..support import FeedServer, RecordingSink, feed_server

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_REASON = "<img src=x onerror=alert(2)> removed the bot"
LONG_TITLE = (
    "Award modified: 70CDCR24FR0000012-P00004-ImmigrationOS-obligation-increase-to-$30,000,000"
)
URL_PASSWORD = "hunter2-pw"
URL_TOKEN = "tok-s3cr3t"


@dataclass
class Scenario:
    runtime: Runtime
    server: FeedServer
    sink: RecordingSink


def _config(root: Path, server: FeedServer) -> Path:
    private = (
        server.url("private").replace("http://", f"http://reader:{URL_PASSWORD}@")
        + f"?token={URL_TOKEN}"
    )
    config = root / "config"
    (config / "sources.d").mkdir(parents=True)
    (config / "alerts.toml").write_text(
        f"""
[service]
contact = "tests@example.org"
jitter = 0.0

[http]
allow_private_network = true  # every source here is a loopback fixture

[topics.news]
description = "News"

[destinations.console]
sink = "console"

[destinations.gone]
sink = "console"
target = "room-gone"

[[routes]]
destination = "console"
topics = ["news"]

[[routes]]
destination = "gone"
sources = ["wire"]

[[sources]]
id = "wire"
name = "{HOSTILE_NAME}"
kind = "feed"
url = "{server.url("wire")}"
topics = ["news"]

[[sources]]
id = "broken"
kind = "feed"
url = "{server.url("broken")}"
topics = ["news"]

[[sources]]
id = "private"
name = "Members' feed"
kind = "feed"
url = "{private}"

[[sources]]
id = "fresh"
kind = "feed"
url = "{server.url("fresh")}"

[[sources]]
id = "paused"
kind = "feed"
url = "{server.url("paused")}"
enabled = false
"""
    )
    return config


async def _play(rt: Runtime, server: FeedServer, sink: RecordingSink) -> None:
    for source in ("wire", "broken", "private"):
        await rt.scheduler.poll_now(source)  # wire: the baseline; the others fail
    server.feeds["wire"].items += [("m", LONG_TITLE), ("n", "Council votes on the contract")]
    sink.fail["console"] = [RejectedError("message too long")]
    sink.fail["gone"] = [DestinationUnavailable(HOSTILE_REASON)]
    report = await rt.scheduler.poll_now("wire")
    assert report.ok and len(report.events) == 2, report
    await rt.dispatcher.drain()


@asynccontextmanager
async def scenario(
    tmp_path: Path, *, bind: str = "127.0.0.1", token: str | None = None
) -> AsyncIterator[Scenario]:
    """The scenario's runtime, its sources polled and its deliveries sent."""
    async with feed_server() as server:
        server.feed("wire", "a", "b")
        server.feed("broken")
        server.feeds["broken"].status = 500
        server.feed("private")
        server.feeds["private"].status = 500
        server.feed("fresh", "x")
        config = _config(tmp_path, server)
        settings = Settings(
            config_dir=config,
            database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
            data_dir=tmp_path / "data",
            http_bind=f"{bind}:0",
            instance_name="alerts-1",
            api_token=SecretStr(token) if token is not None else None,
        )
        sink = RecordingSink()
        rt = await Runtime.open(
            settings,
            load_config(config),
            sink_overrides={"console": sink},
            timing=Timing(jitter=0.0, first_spread_s=3600.0, idle_s=0.05),
        )
        try:
            await rt._start_sinks()
            await _play(rt, server, sink)
            yield Scenario(rt, server, sink)
        finally:
            await rt.close()


@asynccontextmanager
async def endpoint(rt: Runtime, *, bind_host: str = "127.0.0.1") -> AsyncIterator[str]:
    """The operations endpoint as it is built for ``bind_host``, served on a loopback
    port (so a test of a public bind never listens beyond this machine): its base URL."""
    runner = aioweb.AppRunner(web.make_app(rt, bind_host), access_log=None)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
