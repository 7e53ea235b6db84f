"""A farm of N RSS feeds on loopback, with ground truth.

Feed ``i`` is served at ``/feed/<i>.xml``: an RSS 2.0 document of the newest
``items_per_feed`` items (about 60 KB for 50 items). Time advances in *rounds*,
set by the harness through shared memory. In round ``r >= 1`` a deterministic,
known fraction of the feeds gains ``new_per_change`` items; everything else is
unchanged. Item ``k`` of feed ``i`` has the guid ``farm:<i>:<k>`` and never changes
once published, so the truth is a pure function of (feed, round):
``count(i, r)`` items exist, numbered ``0 .. count-1``, and a reader that polled
round ``a`` and then round ``b`` must report exactly the keys numbered
``count(i, a) .. count(i, b) - 1`` as new.

Responses carry ``ETag: "<i>-<count>"`` and a matching ``Last-Modified``; a
conditional request that matches gets ``304 Not Modified``. In the rounds listed in
``FarmSpec.plain`` the farm acts like the many real servers that send no validators:
no ``ETag``, no ``Last-Modified``, never a 304, always the whole body. The farm records, per
feed, the last round it served, so the harness knows when every feed has been seen.

The farm runs in its own process (``FarmProcess``) so that its CPU is never counted
against the client being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_WORDS = [
    *("contract", "award", "agency", "vendor", "statement", "workers", "letter"),
    *("signatories", "campaign", "modification", "amount", "recipient", "federal"),
    *("immigration", "data", "platform", "policy", "press"),
]


@dataclass(frozen=True, slots=True)
class FarmSpec:
    """What the farm serves and how it changes; ``fractions[r]`` is round r's change rate.

    Rounds 0-3: baseline, then three unchanged rounds (304s); rounds 4-6: nothing
    changes, served without validators (``plain``); round 7: every feed changes;
    round 8 and later: 10 %.
    """

    n_feeds: int
    fractions: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.1)
    plain: tuple[int, ...] = (4, 5, 6)
    items_per_feed: int = 50
    new_per_change: int = 2
    paragraph_words: int = 68

    def changed(self, feed: int, round_: int) -> bool:
        """Whether ``feed`` gains items when the farm enters ``round_`` (never in round 0)."""
        if round_ <= 0:
            return False
        fraction = self.fraction(round_)
        return _bucket(feed, round_) < fraction

    def fraction(self, round_: int) -> float:
        return self.fractions[min(round_, len(self.fractions) - 1)] if round_ > 0 else 0.0

    def count(self, feed: int, round_: int) -> int:
        """How many items feed ``feed`` has published by round ``round_``."""
        changes = sum(1 for r in range(1, round_ + 1) if self.changed(feed, r))
        return self.items_per_feed + self.new_per_change * changes

    def key(self, feed: int, number: int) -> str:
        return f"farm:{feed}:{number}"

    def keys(self, feed: int, round_: int) -> list[str]:
        """The keys the feed shows in ``round_``, newest first."""
        top = self.count(feed, round_)
        return [
            self.key(feed, k) for k in range(top - 1, max(-1, top - 1 - self.items_per_feed), -1)
        ]

    def new_keys(self, feed: int, before: int, after: int) -> set[str]:
        """Keys a reader that saw round ``before`` and then ``after`` must report as new."""
        low, high = self.count(feed, before), self.count(feed, after)
        return {self.key(feed, k) for k in range(low, high)}

    def etag(self, feed: int, round_: int) -> str:
        return f'"{feed}-{self.count(feed, round_)}"'

    def last_modified(self, feed: int, round_: int) -> str:
        stamp = EPOCH + timedelta(hours=self.count(feed, round_))
        return format_datetime(stamp, usegmt=True)

    def validators(self, round_: int) -> bool:
        """Whether responses carry ``ETag`` / ``Last-Modified`` (and 304s) in ``round_``."""
        return round_ not in self.plain

    def changed_feeds(self, round_: int) -> list[int]:
        return [i for i in range(self.n_feeds) if self.changed(i, round_)]


def _bucket(feed: int, round_: int) -> float:
    """A deterministic, well-spread number in [0, 1) for (feed, round)."""
    x = (feed * 0x9E3779B1 + round_ * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    x = (x * 0x297A2D39) & 0xFFFFFFFF
    x ^= x >> 15
    return x / 2**32


def render_feed(spec: FarmSpec, feed: int, round_: int) -> bytes:
    """The RSS 2.0 document of ``feed`` in ``round_``."""
    top = spec.count(feed, round_)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0">\n<channel>\n'
        f"<title>Farm feed {feed}</title>\n<link>https://farm.example/{feed}/</link>\n"
        f"<description>Benchmark feed {feed}</description>\n"
        f"<lastBuildDate>{spec.last_modified(feed, round_)}</lastBuildDate>\n"
    ]
    for number in range(top - 1, max(-1, top - 1 - spec.items_per_feed), -1):
        parts.append(_render_item(spec, feed, number))
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode()


def _render_item(spec: FarmSpec, feed: int, number: int) -> str:
    words = [_WORDS[(feed + number * 7 + j * 3) % len(_WORDS)] for j in range(spec.paragraph_words)]
    text = " ".join(words)
    body = escape(f"<p>Item {number} of feed {feed}: {text}.</p><p>{text[:300]}</p>")
    published = format_datetime(EPOCH + timedelta(hours=number), usegmt=True)
    return (
        f"<item>\n<title>Feed {feed} item {number}: {' '.join(words[:8])}</title>\n"
        f"<link>https://farm.example/{feed}/{number}</link>\n"
        f'<guid isPermaLink="false">{spec.key(feed, number)}</guid>\n'
        f"<pubDate>{published}</pubDate>\n<category>farm</category>\n"
        f"<description>{body}</description>\n</item>\n"
    )


class FarmState:
    """The farm's shared memory: the current round and, per feed, the last round served."""

    def __init__(self, spec: FarmSpec, ctx: Any = None) -> None:
        ctx = ctx or mp.get_context("spawn")
        self.spec = spec
        self.round: Synchronized[int] = ctx.Value("i", 0, lock=False)
        self.served: SynchronizedArray[int] = ctx.Array("i", [-1] * spec.n_feeds, lock=False)
        self.hits: Synchronized[int] = ctx.Value("q", 0)

    def set_round(self, round_: int) -> None:
        self.round.value = round_

    def all_served(self, round_: int, feeds: Sequence[int] | None = None) -> bool:
        served = self.served
        indexes = range(self.spec.n_feeds) if feeds is None else feeds
        return all(served[i] >= round_ for i in indexes)

    def unserved(self, round_: int) -> int:
        return sum(1 for i in range(self.spec.n_feeds) if self.served[i] < round_)

    def hit_count(self) -> int:
        return int(self.hits.value)


def make_app(state: FarmState) -> web.Application:
    """The farm's aiohttp application (also used in-process by the tests)."""
    spec = state.spec

    async def feed(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            index = int(name)
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= index < spec.n_feeds:
            raise web.HTTPNotFound()
        round_ = state.round.value
        state.served[index] = round_
        with state.hits.get_lock():
            state.hits.value += 1
        headers: dict[str, str] = {}
        if spec.validators(round_):
            etag = spec.etag(index, round_)
            headers = {"ETag": etag, "Last-Modified": spec.last_modified(index, round_)}
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers=headers)
        return web.Response(
            body=render_feed(spec, index, round_),
            headers={**headers, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    app = web.Application()
    app.router.add_get("/feed/{name}.xml", feed)
    return app


def _serve(state: FarmState, sock: socket.socket, ready: Any) -> None:
    async def main() -> None:
        runner = web.AppRunner(make_app(state), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=4096)
        await site.start()
        ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class FarmProcess:
    """Runs the farm in a child process on 127.0.0.1 (a free port)."""

    def __init__(self, spec: FarmSpec) -> None:
        self.ctx = mp.get_context("spawn")
        self.state = FarmState(spec, self.ctx)
        self.spec = spec
        self._proc: Any = None
        self.base_url = ""

    def feed_url(self, feed: int) -> str:
        return f"{self.base_url}/feed/{feed}.xml"

    def __enter__(self) -> FarmProcess:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        port = sock.getsockname()[1]
        ready = self.ctx.Event()
        self._proc = self.ctx.Process(
            target=_serve, args=(self.state, sock, ready), name="bench-farm", daemon=True
        )
        self._proc.start()
        sock.close()
        if not ready.wait(30):
            self.__exit__(None, None, None)
            raise RuntimeError("the feed farm did not start within 30 s")
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None


def iter_rounds(spec: FarmSpec) -> Iterator[int]:
    return iter(range(len(spec.fractions)))
