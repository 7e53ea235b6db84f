"""The detector: compare what a source shows now with what the store remembers.

Pure functions, no I/O: given an observation and the stored item states, return the
events to raise and the states to write. The scheduler commits both in one
transaction (see ``alerts.store``), which is why nothing here may have side effects:
if the commit fails, the same poll is simply detected again next time.

Rules:
* The first successful poll of a source is its baseline: everything is recorded and
  nothing is alerted, except the newest ``backfill`` items if the operator asks.
* An unseen key is ``new``; a known key whose fingerprint changed is ``updated``
  (with old → new of each fingerprint field that changed). Items are never
  forgotten, so one that drops out of a feed and comes back is not new.
* An adapter with a ``derive`` hook adds its own events (milestones, deltas) and may
  fold item events into them.
* At most ``max_events`` events per poll; the excess becomes one ``summary`` event
  that names how many more there were, so nothing is silently lost.
* The flood breaker (``alerts.flood``) holds the events of a source whose new items
  mostly look like items already seen, or whose event rate jumps far beyond its
  history, and summarises them once it settles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from alerts import flood
from alerts.config import SourceSpec
from alerts.flood import Verdict
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.route import source_admits
from alerts.sources import DerivesEvents
from alerts.store import ItemState

SNAPSHOT_TEXT_CHARS = 2000
_FAR_PAST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Detection:
    events: list[Event]
    items: dict[str, ItemState]
    detector: dict[str, JSON]
    saw_new: bool
    dropped: int = 0
    baseline: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    flood: Verdict | None = None


def fingerprint(item: Item, fields: Sequence[str]) -> str:
    values = [_normalise(item.value(name)) for name in fields]
    blob = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    return value


def snapshot(item: Item, fields: Sequence[str]) -> dict[str, JSON]:
    snap: dict[str, JSON] = {"title": _trim(item.title)}
    for name in fields:
        value = item.value(name)
        snap[name] = _trim(value) if isinstance(value, str) else value
    return snap


def _trim(text: str) -> str:
    return text if len(text) <= SNAPSHOT_TEXT_CHARS else text[:SNAPSHOT_TEXT_CHARS]


def item_event(spec: SourceSpec, kind: EventKind, item: Item, **extra: Any) -> Event:
    fields = dict(item.fields)
    if item.author and "author" not in fields:
        fields["author"] = item.author
    return Event(
        source_id=spec.id,
        source_name=spec.name or None,
        kind=kind,
        key=item.key,
        title=item.title or item.url or item.key,
        url=item.url,
        summary=item.summary,
        topics=spec.topics,
        fields=fields,
        occurred_at=item.published,
        **extra,
    )


def detect(
    *,
    spec: SourceSpec,
    observation: Observation,
    known: Mapping[str, ItemState],
    baselined: bool,
    detector_state: Mapping[str, JSON],
    adapter: object = None,
    now: datetime,
) -> Detection:
    """Events and state writes for one successful, modified poll."""
    fields = spec.fingerprint
    writes: dict[str, ItemState] = {}
    new_items: list[Item] = []
    updated: list[tuple[Item, Mapping[str, JSON]]] = []
    for item in observation.items:
        if item.key in writes:
            continue  # a duplicate key within one fetch: the first one wins
        fp = fingerprint(item, fields)
        previous = known.get(item.key)
        if previous is None:
            new_items.append(item)
        elif previous.fingerprint != fp:
            updated.append((item, previous.snapshot))
        else:
            continue
        writes[item.key] = ItemState(fp, snapshot(item, fields))

    events: list[Event] = []
    if baselined:
        events += [item_event(spec, EventKind.NEW, it) for it in new_items]
        events += [
            item_event(spec, EventKind.UPDATED, it, changes=_changes(it, old, fields))
            for it, old in updated
        ]
    elif spec.backfill:
        events += [item_event(spec, EventKind.NEW, it) for it in _newest(new_items, spec.backfill)]

    state: dict[str, JSON] = dict(detector_state)
    if isinstance(adapter, DerivesEvents):
        derived = adapter.derive(
            observation=observation,
            new_items=new_items,
            updated_items=updated,
            state=detector_state.get("adapter", {}),
            now=now,
            baseline=not baselined,
        )
        if derived.keep_item_events is not None:
            events = [e for e in events if e.key in derived.keep_item_events]
        events += [_with_topics(e, spec) for e in derived.events]
        state["adapter"] = dict(derived.state)

    events = [e for e in events if source_admits(spec.include, spec.exclude, e)]
    verdict = flood.check(
        source_id=spec.id,
        label=spec.label,
        topics=spec.topics,
        items=observation.items,
        new_items=new_items,
        events=events,
        state=detector_state.get("flood"),
        baselined=baselined,
        now=now,
    )
    state["flood"] = verdict.state
    if verdict.holding:
        events = []
        writes = {k: v for k, v in writes.items() if k not in verdict.skip_keys}
    events.sort(key=lambda e: e.occurred_at or _FAR_PAST)
    events, dropped = _cap(spec, events, now)
    if verdict.summary is not None:
        events.append(verdict.summary)
    return Detection(
        events=events,
        items=writes,
        detector=state,
        saw_new=bool(new_items) and baselined,
        dropped=dropped,
        baseline=not baselined,
        counts={"new": len(new_items), "updated": len(updated)},
        flood=verdict,
    )


def _with_topics(event: Event, spec: SourceSpec) -> Event:
    """An adapter's own event, stamped with the source's id, name and topics."""
    if event.topics:
        return event
    return replace(event, topics=spec.topics, source_id=spec.id, source_name=spec.name or None)


def _changes(
    item: Item, old: Mapping[str, JSON], fields: Sequence[str]
) -> dict[str, tuple[JSON, JSON]]:
    out: dict[str, tuple[JSON, JSON]] = {}
    for name in fields:
        before, after = old.get(name), item.value(name)
        if _normalise(before) != _normalise(after):
            out[name] = (before, after)
    return out


def _newest(items: list[Item], n: int) -> list[Item]:
    if all(it.published for it in items):
        return sorted(items, key=lambda it: it.published or _FAR_PAST, reverse=True)[:n]
    return items[:n]


def _cap(spec: SourceSpec, events: list[Event], now: datetime) -> tuple[list[Event], int]:
    if len(events) <= spec.max_events:
        return events, 0
    keep, rest = events[: spec.max_events - 1], events[spec.max_events - 1 :]
    titles = [e.title for e in rest]
    summary = Event(
        source_id=spec.id,
        source_name=spec.name or None,
        kind=EventKind.SUMMARY,
        key=f"summary:{now.isoformat()}",
        title=f"{len(rest)} more updates from {spec.label}",
        url=None,
        summary="; ".join(titles[:10]) + ("; …" if len(titles) > 10 else ""),
        topics=spec.topics,
        fields={"count": len(rest), "titles": titles[:50]},
        occurred_at=now,
    )
    return [*keep, summary], len(rest)
