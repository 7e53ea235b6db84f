"""The flood breaker: a source that suddenly raises far more alerts than it should
is held, the operator is told, and it resumes once it settles.

Two signs of a flood, checked on every poll after the baseline, for every adapter:

* **Look-alikes.** Most of a poll's "new" items look like items already seen: the
  same canonical link (``alerts.canonical.canonical_url``), or the same title and
  date, under a key never seen before. That is a source rotating its item ids
  (guids that change on every poll), not news.
* **A rate jump.** The poll raises far more events than the source's own history
  predicts for the time since its last poll (an exponentially weighted rate with a
  time constant of a week, learnt for a day before it is trusted).

While a source is held its events are not routed anywhere: they are counted, and
the titles of those that were not look-alikes are kept (the first
``FloodPolicy.held_titles``). When the source has been calm for ``settle_polls``
polls in a row the hold ends, and one ``summary`` event tells its rooms how many
alerts were held and lists the real new items among them. So nothing is silently
lost: the operator sees the hold in the log (one line when it starts, one when it
ends), in ``alerts sources`` (``held since …, N alerts``) and in the metrics
``alerts_source_flood_held`` and ``alerts_flood_held_events_total``; the rooms get
the summary.

Rows stay bounded under identity rotation: a look-alike item is recorded only when
its new key comes back on the next poll (a source that changed its ids once, for
good); ids that change on every poll are never written.

The breaker is pure, like the detector that calls it: its memory (short hashes of
the identities of recent items, the rate, the hold) lives in the detector state
under ``"flood"`` and is committed with the poll.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.canonical import canonical_url
from alerts.model import JSON, Event, EventKind, Item

_HASH_CHARS = 8  # 32 bits: with 5,000 identities, a false match once in ~850,000 items


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """When the breaker trips and when it lets go."""

    min_items: int = 5  # a poll with fewer new items never looks like rotation
    lookalike_share: float = 0.5  # ... unless more than this share of them are look-alikes
    rate_min_events: int = 20  # a poll with fewer events never looks like a rate jump
    rate_factor: float = 10.0  # ... unless it has this many times the expected events
    rate_learn_s: float = 86400.0  # history needed before the rate is trusted
    rate_memory_s: float = 7 * 86400.0  # time constant of the rate's average
    settle_polls: int = 2  # calm polls in a row that end a hold
    memory_items: int = 200  # identities remembered (at least 4 per item of a poll:
    # two polls' worth of a link and a title each); the packed memory is read with
    # every claim of the source, so it is kept small
    memory_cap: int = 5000
    held_titles: int = 20


DEFAULT_POLICY = FloodPolicy()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the breaker decided for one poll."""

    holding: bool  # this poll's events are held
    started: bool = False  # the hold began with this poll
    settled: bool = False  # the hold ended with this poll (``summary`` says so)
    held_now: int = 0  # events held in this poll
    reason: str = ""
    skip_keys: frozenset[str] = frozenset()  # look-alike items not to record
    summary: Event | None = None
    state: dict[str, JSON] = field(default_factory=dict)


def _h(*parts: str) -> str:
    blob = "\x1f".join(parts).encode()
    return hashlib.blake2b(blob, digest_size=_HASH_CHARS // 2).hexdigest()


def _unpack(packed: JSON) -> list[str]:
    if not isinstance(packed, str):
        return []
    return [packed[i : i + _HASH_CHARS] for i in range(0, len(packed), _HASH_CHARS)]


def identities(item: Item, shared_links: Iterable[str] = ()) -> list[str]:
    """Short hashes naming what an item *is*, whatever its key: its canonical link
    (unless several items of the poll share it) and its title with its date."""
    out = []
    if item.url and item.url not in shared_links:
        out.append(_h("link", canonical_url(item.url)))
    if item.title and item.published is not None:
        title = " ".join(item.title.casefold().split())
        out.append(_h("title", title, item.published.date().isoformat()))
    return out


def _shared_links(items: Sequence[Item]) -> set[str]:
    counts = Counter(it.url for it in items if it.url)
    return {url for url, n in counts.items() if n > 1}


class _Memory:
    """Identities of recent items, oldest first, bounded."""

    def __init__(self, packed: JSON, limit: int) -> None:
        self.order: dict[str, None] = dict.fromkeys(_unpack(packed))
        self.limit = limit

    def knows(self, ids: Sequence[str]) -> bool:
        return any(i in self.order for i in ids)

    def add(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.order.pop(i, None)
            self.order[i] = None

    def pack(self) -> str:
        kept = list(self.order)[-self.limit :]
        return "".join(kept)


def check(
    *,
    source_id: str,
    label: str,
    topics: tuple[str, ...],
    items: Sequence[Item],
    new_items: Sequence[Item],
    events: Sequence[Event],
    state: JSON,
    baselined: bool,
    now: datetime,
    policy: FloodPolicy = DEFAULT_POLICY,
) -> Verdict:
    """Judge one poll. ``state`` is what the previous verdict returned (or nothing)."""
    old: dict[str, JSON] = dict(state) if isinstance(state, dict) else {}
    limit = min(policy.memory_cap, max(policy.memory_items, 4 * len(items)))
    memory = _Memory(old.get("seen"), limit)
    shared = _shared_links(items)
    new_keys = {it.key for it in new_items}
    if not baselined or "seen" not in old:  # first poll, or a store from before
        memory.add(i for it in items if it.key not in new_keys for i in identities(it, shared))
    if not baselined:
        memory.add(i for it in items for i in identities(it, shared))
        fresh_rate = _rate(None, 0, now, policy)
        return Verdict(holding=False, state={"seen": memory.pack(), "rate": fresh_rate})

    lookalikes = []
    for it in new_items:
        ids = identities(it, shared)
        if memory.knows(ids):
            lookalikes.append(it)
        memory.add(ids)
    rate = old.get("rate")
    reason = _trip_reason(policy, len(new_items), len(lookalikes), len(events), rate, now)
    previous = set(_unpack(old.get("rekeyed")))
    rekeyed = {it.key: _h("key", it.key) for it in lookalikes}
    new_state: dict[str, JSON] = {
        "seen": memory.pack(),
        "rate": _rate(rate, len(events), now, policy),
        "rekeyed": "".join(list(rekeyed.values())[: policy.memory_cap]),
    }
    skip = frozenset(k for k, h in rekeyed.items() if h not in previous) if reason else frozenset()
    hold = old.get("hold")
    return _decide(
        policy,
        hold if isinstance(hold, dict) else None,
        reason,
        events,
        {it.key for it in lookalikes},
        skip,
        new_state,
        now,
        (source_id, label, topics),
    )


def _trip_reason(
    policy: FloodPolicy, new: int, alike: int, events: int, rate: JSON, now: datetime
) -> str:
    if new >= policy.min_items and alike > policy.lookalike_share * new:
        return (
            f"{alike} of {new} new items look like items already seen "
            "(same link, or same title and date): item ids rotating?"
        )
    expected = _expected(policy, rate, now)
    if expected is None or events < max(policy.rate_min_events, policy.rate_factor * expected):
        return ""
    return f"{events} alerts in one poll where its history predicts {expected:.1f}"


def _expected(policy: FloodPolicy, rate: JSON, now: datetime) -> float | None:
    """Events the source's history predicts since its last poll (None: not learnt)."""
    if not isinstance(rate, dict) or float(rate.get("span", 0.0)) < policy.rate_learn_s:
        return None
    elapsed = max(0.0, now.timestamp() - float(rate.get("at", now.timestamp())))
    return float(rate["events"]) / float(rate["span"]) * elapsed


def _rate(rate: JSON, events: int, now: datetime, policy: FloodPolicy) -> dict[str, JSON]:
    """The decayed event count and span after this poll (a weighted average rate)."""
    t = now.timestamp()
    if not isinstance(rate, dict):
        return {"events": 0.0, "span": 0.0, "at": t}
    elapsed = max(0.0, t - float(rate.get("at", t)))
    fade = math.exp(-elapsed / policy.rate_memory_s)
    return {
        "events": float(rate.get("events", 0.0)) * fade + events,
        "span": float(rate.get("span", 0.0)) * fade + elapsed,
        "at": t,
    }


def _decide(
    policy: FloodPolicy,
    hold: dict[str, JSON] | None,
    reason: str,
    events: Sequence[Event],
    lookalike_keys: set[str],
    skip: frozenset[str],
    state: dict[str, JSON],
    now: datetime,
    source: tuple[str, str, tuple[str, ...]],
) -> Verdict:
    if not reason and hold is None:
        return Verdict(holding=False, state=state)
    if not reason and hold is not None and int(hold["calm"]) + 1 >= policy.settle_polls:
        return Verdict(
            holding=False, settled=True, summary=_summary(hold, now, source), state=state
        )
    started = hold is None
    hold = dict(hold or {"since": now.isoformat(), "reason": reason, "held": 0, "repeats": 0})
    hold["calm"] = 0 if reason else int(hold.get("calm", 0)) + 1
    hold["held"] = int(hold["held"]) + len(events)
    hold["repeats"] = int(hold["repeats"]) + sum(1 for e in events if e.key in lookalike_keys)
    titles = list(hold.get("titles", []))
    for e in events:
        if e.key not in lookalike_keys and len(titles) < policy.held_titles:
            titles.append(e.title)
    hold["titles"] = titles
    state["hold"] = hold
    return Verdict(
        holding=True,
        started=started,
        held_now=len(events),
        reason=str(hold["reason"]),
        skip_keys=skip,
        state=state,
    )


def _summary(
    hold: dict[str, JSON], now: datetime, source: tuple[str, str, tuple[str, ...]]
) -> Event:
    source_id, label, topics = source
    held, repeats = int(hold.get("held", 0)), int(hold.get("repeats", 0))
    titles = [str(t) for t in hold.get("titles", [])]
    since = str(hold.get("since", ""))
    others = held - repeats
    listed = "; ".join(titles) + ("; …" if others > len(titles) else "")
    return Event(
        source_id=source_id,
        source_name=label if label != source_id else None,
        kind=EventKind.SUMMARY,
        key=f"flood:{since}",
        title=f"{held} alerts from {label} were held as a flood; it has settled",
        url=None,
        summary=(
            f"Held since {since[:16].replace('T', ' ')} UTC: {hold.get('reason', '')}. "
            f"{repeats} repeated items already seen"
            + (f"; {others} new: {listed}" if others else "; nothing new among them")
        ),
        topics=topics,
        fields={"count": held, "repeats": repeats, "titles": titles},
        occurred_at=now,
    )


def status(detector_state: JSON) -> str | None:
    """``held since …: N alerts (reason)`` while a source is held, else None (for
    ``alerts sources``)."""
    if not isinstance(detector_state, dict):
        return None
    flood = detector_state.get("flood")
    hold = flood.get("hold") if isinstance(flood, dict) else None
    if not isinstance(hold, dict):
        return None
    since = str(hold.get("since", ""))[:19].replace("T", " ")
    return f"held since {since}: {hold.get('held', 0)} alerts ({hold.get('reason', '')})"
