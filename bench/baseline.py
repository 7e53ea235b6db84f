"""The clients the service is compared with, and the round driver they share.

Every client polls all N farm feeds once per farm round, ``concurrency`` requests
at a time, with conditional GET (it remembers each feed's ETag):

* ``bare``: a bare aiohttp request loop. Reads the body, parses nothing. This is
  the floor: what one conditional GET costs in Python at all.
* ``feedparser``: the same fetch, then ``feedparser.parse`` of every changed body,
  and new keys found with an in-memory ``seen`` set. The plain loop most feed
  bots are.
* ``adapter``: alerts' own ``FeedSource.fetch`` through the shared ``HttpClient``
  (its lxml reader, plain-text items), with the same in-memory ``seen`` set: the
  service's fetch + parse path without the scheduler, detector and store.

Each client runs in its own process (``run_client``) so that its CPU time
(``time.process_time``) and peak RSS (``ru_maxrss``) are its own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp

from alerts.model import Validators
from alerts.sources import SourceState
from alerts.sources.feed import FeedSource
from alerts.sources.http import HttpClient, HttpLimits
from bench.farm import FarmSpec, FarmState


def round_kind(spec: FarmSpec, round_: int) -> str:
    if round_ == 0:
        return "baseline"
    if not spec.validators(round_):
        return "no-etag"
    fraction = spec.fraction(round_)
    if fraction == 0:
        return "unchanged"
    if fraction >= 1:
        return "changed"
    return "mixed"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread of this process, with the
    thread's role: ``main`` (the event loop), ``store`` (the SQLite connection's
    thread, named ``alerts-sqlite:…``) or ``other`` (``asyncio.to_thread`` workers and
    the like). Empty where ``/proc`` is missing."""
    roles = {t.native_id: _role(t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
                stat = fh.read()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(tid)] = (roles.get(int(tid), "other"), (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each role spent between two ``thread_cpu`` readings (a thread that
    ended in between is not counted: the parts may sum to less than the process)."""
    spent: dict[str, float] = {}
    for tid, (role, cpu) in after.items():
        spent[role] = spent.get(role, 0.0) + cpu - before.get(tid, (role, 0.0))[1]
    return spent


def _role(name: str) -> str:
    if name == "MainThread":
        return "main"
    return "store" if name.startswith("alerts-sqlite") else "other"


@dataclass
class RoundResult:
    """One round of polls: how long it took, what it cost, and what was found."""

    round: int
    kind: str
    polls: int
    status_200: int
    status_304: int
    errors: int
    wall_s: float
    cpu_s: float
    events: int = 0
    expected: int = 0
    missed: int = 0
    duplicates: int = 0
    unexpected: int = 0
    checked: bool = False
    first_error: str = ""
    threads: dict[str, float] = field(default_factory=dict)  # CPU s by thread (service)

    @property
    def polls_per_s(self) -> float:
        return self.polls / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_poll(self) -> float:
        return 1000.0 * self.cpu_s / self.polls if self.polls else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            polls_per_s=self.polls_per_s,
            cpu_ms_per_poll=self.cpu_ms_per_poll,
            events_per_s=self.events_per_s,
        )
        return out


@dataclass
class Poll:
    status: int
    new_keys: list[str] | None = None  # None: this client does not detect


class Poller(Protocol):
    name: str

    async def poll(self, feed: int) -> Poll: ...

    async def close(self) -> None: ...


@dataclass
class Truth:
    """Checks reported new keys against the farm's ground truth, across rounds."""

    spec: FarmSpec
    reported: set[str] = field(default_factory=set)

    def check(self, result: RoundResult, found: dict[int, list[str]]) -> None:
        if result.round == 0:
            return
        expected: set[str] = set()
        for feed in self.spec.changed_feeds(result.round):
            expected |= self.spec.new_keys(feed, result.round - 1, result.round)
        got: list[str] = [k for keys in found.values() for k in keys]
        dupes = sum(1 for k in got if k in self.reported) + (len(got) - len(set(got)))
        fresh = set(got) - self.reported
        result.checked = True
        result.events = len(got)
        result.expected = len(expected)
        result.missed = len(expected - fresh)
        result.unexpected = len(fresh - expected)
        result.duplicates = dupes
        self.reported |= fresh


@dataclass
class Tally:
    """What the workers of one round saw."""

    found: dict[int, list[str]]
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    first_error: str = ""

    async def work(self, poller: Poller, feeds: Iterator[int]) -> None:
        for feed in feeds:
            try:
                done = await poller.poll(feed)
            except Exception as exc:
                self.errors += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                continue
            self.statuses[done.status] = self.statuses.get(done.status, 0) + 1
            if done.new_keys:
                self.found[feed] = done.new_keys


async def drive(
    poller: Poller, state: FarmState, *, concurrency: int, rounds: Iterable[int]
) -> list[RoundResult]:
    """Poll every feed once per round; measure each round; check new keys."""
    spec = state.spec
    truth = Truth(spec)
    results = []
    for round_ in rounds:
        state.set_round(round_)
        gc.collect()
        tally = Tally(found={})
        feeds = iter(range(spec.n_feeds))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(tally.work(poller, feeds) for _ in range(concurrency)))
        result = RoundResult(
            round=round_,
            kind=round_kind(spec, round_),
            polls=spec.n_feeds,
            status_200=tally.statuses.get(200, 0),
            status_304=tally.statuses.get(304, 0),
            errors=tally.errors,
            first_error=tally.first_error,
            wall_s=time.perf_counter() - wall0,
            cpu_s=time.process_time() - cpu0,
        )
        if getattr(poller, "detects", False):
            truth.check(result, tally.found)
        results.append(result)
    return results


class BarePoller:
    """A bare aiohttp conditional-GET loop: the cost floor of a poll."""

    name = "bare"
    detects = False

    def __init__(self, urls: Callable[[int], str], concurrency: int) -> None:
        self.urls = urls
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        self.etags: dict[int, str] = {}

    async def fetch(self, feed: int) -> tuple[int, bytes]:
        etag = self.etags.get(feed)
        headers = {"If-None-Match": etag} if etag else None
        async with self.session.get(self.urls(feed), headers=headers) as resp:
            body = await resp.read()
            if resp.status == 200 and "ETag" in resp.headers:
                self.etags[feed] = resp.headers["ETag"]
            return resp.status, body

    async def poll(self, feed: int) -> Poll:
        status, _body = await self.fetch(feed)
        return Poll(status)

    async def close(self) -> None:
        await self.session.close()


class SeenSet:
    """In-memory detection: keys not seen before (the first round is a baseline)."""

    def __init__(self) -> None:
        self.seen: dict[int, set[str]] = {}

    def diff(self, feed: int, keys: Iterable[str]) -> list[str]:
        known = self.seen.get(feed)
        if known is None:
            self.seen[feed] = set(keys)
            return []
        new = [k for k in keys if k not in known]
        known.update(new)
        return new


class FeedparserPoller(BarePoller):
    """The same fetch, then ``feedparser.parse``: the plain feed-bot loop."""

    name = "feedparser"
    detects = True

    def __init__(self, urls: Callable[[int], str], concurrency: int) -> None:
        super().__init__(urls, concurrency)
        import feedparser

        self.parse = feedparser.parse
        self.detector = SeenSet()

    async def poll(self, feed: int) -> Poll:
        status, body = await self.fetch(feed)
        if status != 200:
            return Poll(status)
        parsed = self.parse(body, response_headers={"content-type": "application/rss+xml"})
        keys = [str(e.get("id") or e.get("link")) for e in parsed.entries]
        return Poll(status, self.detector.diff(feed, keys))


class AdapterPoller:
    """alerts' ``FeedSource.fetch`` through ``HttpClient``, with in-memory detection."""

    name = "adapter"
    detects = True

    def __init__(self, urls: Callable[[int], str], concurrency: int) -> None:
        self.http = HttpClient(
            HttpLimits(per_host=concurrency, total=concurrency, allow_private_network=True)
        )
        self.urls = urls
        self.options = FeedSource.Options()
        self.states: dict[int, SourceState] = {}
        self.detector = SeenSet()

    async def poll(self, feed: int) -> Poll:
        source = FeedSource(
            source_id=f"farm-{feed}", url=self.urls(feed), options=self.options, http=self.http
        )
        state = self.states.get(feed) or SourceState(Validators())
        observation = await source.fetch(state)
        if observation.not_modified:  # a 304, or the body it last read (its cursor)
            self.states[feed] = SourceState(observation.validators, state.cursor)
            return Poll(304)
        self.states[feed] = SourceState(observation.validators, observation.cursor)
        return Poll(200, self.detector.diff(feed, [it.key for it in observation.items]))

    async def close(self) -> None:
        await self.http.close()


CLIENTS: dict[str, Callable[[Callable[[int], str], int], Poller]] = {
    "bare": BarePoller,
    "feedparser": FeedparserPoller,
    "adapter": AdapterPoller,
}


def run_client(name: str, state: FarmState, base_url: str, concurrency: int, out: Any) -> None:
    """Process entry point: run one client through every round, send results to ``out``."""

    def url(feed: int) -> str:
        return f"{base_url}/feed/{feed}.xml"

    async def main() -> list[RoundResult]:
        poller = CLIENTS[name](url, concurrency)
        try:
            return await drive(
                poller, state, concurrency=concurrency, rounds=range(len(state.spec.fractions))
            )
        finally:
            await poller.close()

    try:
        rounds = asyncio.run(main())
        out.put(
            {
                "client": name,
                "rounds": [r.as_dict() for r in rounds],
                "peak_rss_mb": peak_rss_mb(),
                "end_rss_mb": current_rss_mb(),
            }
        )
    except BaseException as exc:
        out.put({"client": name, "error": f"{type(exc).__name__}: {exc}"})
        raise


def parse_speed(seconds: float = 2.0) -> dict[str, float]:
    """Feeds per second per core parsing one 60 KB / 50-item farm feed."""
    import fastfeedparser
    import feedparser

    from alerts.sources.feed import parse_feed
    from bench.farm import render_feed

    spec = FarmSpec(n_feeds=1)
    body = render_feed(spec, 0, 0)
    parsers: dict[str, Callable[[], Any]] = {
        "feedparser": lambda: feedparser.parse(body),
        "fastfeedparser": lambda: fastfeedparser.parse(body),
        "alerts parse_feed": lambda: parse_feed(body, base_url="http://127.0.0.1/feed/0.xml"),
    }
    rates: dict[str, float] = {"feed_bytes": float(len(body))}
    for name, parse in parsers.items():
        parse()
        count, start = 0, time.process_time()
        while (spent := time.process_time() - start) < seconds:
            parse()
            count += 1
        rates[name] = count / spent
    return rates
