"""Test peers owned by the project: a programmable feed server and a recording sink."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from xml.sax.saxutils import escape

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from alerts.model import Delivery, Destination
from alerts.sources.http import HttpClient, HttpLimits

if TYPE_CHECKING:
    from alerts.runtime import Runtime

# The line a source table needs to poll a fixture server on loopback: the SSRF guard
# refuses loopback unless the source opts in.
LOOPBACK_OPT_IN = "allow_private_network = true\n"


def loopback_http(**limits: Any) -> HttpClient:
    """The real ``HttpClient``, opted in (service-wide) to the loopback fixture
    servers the tests poll."""
    return HttpClient(HttpLimits(allow_private_network=True, **limits))


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass
class FeedState:
    items: list[tuple[str, str]] = field(default_factory=list)  # (guid, title), oldest first
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # overrides the generated feed
    validators: bool = True  # False: no ETag, never a 304 (as many real servers)

    def rss(self, name: str) -> bytes:
        if self.body is not None:
            return self.body
        entries = []
        for n, (guid, title) in enumerate(reversed(self.items)):
            when = format_datetime(T0 - timedelta(minutes=n))
            entries.append(
                f"<item><guid>{escape(guid)}</guid><title>{escape(title)}</title>"
                f"<link>https://example.org/{escape(guid)}</link><pubDate>{when}</pubDate>"
                f"<description>About {escape(title)}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>{name}</title><link>https://example.org/</link><description>x</description>"
            + "".join(entries)
            + "</channel></rss>"
        ).encode()


class FeedServer:
    """Serves /feeds/<name>.xml from programmable state, with ETags and a request log."""

    def __init__(self) -> None:
        self.feeds: dict[str, FeedState] = {}
        self.hits: Counter[str] = Counter()
        self.conditional: Counter[str] = Counter()
        self.base = ""

    def feed(self, name: str, *items: str) -> str:
        self.feeds[name] = FeedState([(i, f"Item {i}") for i in items])
        return self.url(name)

    def add(self, name: str, *items: str) -> None:
        self.feeds[name].items.extend((i, f"Item {i}") for i in items)

    def url(self, name: str) -> str:
        return f"{self.base}/feeds/{name}.xml"

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        state = self.feeds.get(name)
        if state is None:
            return web.Response(status=404)
        if state.status != 200:
            return web.Response(status=state.status, headers=state.headers)
        body = state.rss(name)
        if not state.validators:
            return web.Response(body=body, headers={"Content-Type": "application/rss+xml"})
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.conditional[name] += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body, headers={"ETag": etag, "Content-Type": "application/rss+xml"}
        )


S = TypeVar("S", bound=FeedServer)


@asynccontextmanager
async def serving(server: S, *, backlog: int = 128) -> AsyncIterator[S]:
    """Serve ``server``'s feeds on a free loopback port until the block ends."""
    app = web.Application()
    app.router.add_get("/feeds/{name}.xml", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def feed_server() -> AbstractAsyncContextManager[FeedServer]:
    return serving(FeedServer())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a jsonl sink's file; a torn last line (SIGKILL) is skipped, its
    delivery stays pending."""
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordingSink:
    """A sink that records what it is given; ``fail`` scripts errors per destination."""

    kind: ClassVar[str] = "console"
    Options: ClassVar[type[BaseModel]] = _NoOptions

    def __init__(self) -> None:
        self.sent: list[Delivery] = []
        self.fail: dict[str, list[Exception]] = {}
        self.keys: set[str] = set()
        self.duplicates = 0
        self.delay_s = 0.0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def validate_destination(self, destination: Destination) -> None:
        return None

    async def send(self, delivery: Delivery) -> str | None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        script = self.fail.get(delivery.destination.id)
        if script:
            raise script.pop(0)
        if delivery.idempotency_key in self.keys:
            self.duplicates += 1
        else:
            self.keys.add(delivery.idempotency_key)
            self.sent.append(delivery)
        return f"msg-{delivery.id}"

    def titles(self, destination: str | None = None) -> list[str]:
        return [
            d.event.title
            for d in self.sent
            if destination is None or d.destination.id == destination
        ]


def write_config(
    root: Path,
    feeds: dict[str, str],
    *,
    extra: str = "",
    interval: str = "30s",
    destination: str = "",
) -> Path:
    """A config dir with topic ``news``, destination ``console`` (with the keys in
    ``destination``) and one source per feed (each opted in to loopback, where the
    feed servers of the tests are)."""
    config = root / "config"
    (config / "sources.d").mkdir(parents=True, exist_ok=True)
    (config / "alerts.toml").write_text(
        '[service]\ncontact = "tests@example.org"\njitter = 0.0\n\n'
        '[topics.news]\ndescription = "News"\n\n'
        f'[destinations.console]\nsink = "console"\n{destination}\n'
        '[[routes]]\ndestination = "console"\ntopics = ["news"]\n' + extra
    )
    sources = "".join(
        f'[[sources]]\nid = "{sid}"\nkind = "feed"\nurl = "{url}"\ninterval = "{interval}"\n'
        f'topics = ["news"]\n{LOOPBACK_OPT_IN}\n'
        for sid, url in feeds.items()
    )
    (config / "sources.d" / "feeds.toml").write_text(sources)
    return config


@asynccontextmanager
async def runtime_on(tmp_path: Path, config: Path) -> AsyncIterator[Runtime]:
    """The real runtime on ``config``: SQLite under ``tmp_path``, a recording console
    sink, no jitter; closed when the block ends."""
    from alerts.config import Settings, load_config
    from alerts.runtime import Runtime
    from alerts.scheduler import Timing

    settings = Settings(
        config_dir=config,
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
    )
    runtime = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": RecordingSink()},
        timing=Timing(jitter=0.0, first_spread_s=0.0),
    )
    try:
        yield runtime
    finally:
        await runtime.close()
