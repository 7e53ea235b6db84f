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

Entries not read (``alerts.model.Listing``): an adapter may list a fetch's entries
with a digest of what each is read from, so that only entries whose key or digest
the store does not hold are read (``entries_to_read``); the others are items already
recorded exactly as they are. Every item written stores its digest; a known item
read again and found unchanged gets its digest refreshed (``Detection.digests``).
A baseline, the first poll after a format change, and a flood breaker without its
memory read every entry.

Upgrades that change how items are identified or read never alert (``_carried``):
* An item whose key is unseen but which an older version stored under one of its
  ``former_keys`` is that stored item: its state moves to the new key, silently.
  When several items of a poll claim one former key (entries that shared a link),
  it goes to the one whose fingerprint (else title) matches, else the first.
* The detector state records the format items were read in: ``FINGERPRINT_VERSION``
  (how fingerprints are computed) and the adapter's ``item_format``. On the first
  poll after either changes, a known item whose fingerprint differs only because of
  that change is recorded again, not alerted: always when the adapter's format
  changed (its text is read differently), else when the item's fingerprint computed
  the old way still matches or no field a reader sees differs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from alerts import flood
from alerts.canonical import canonical_url
from alerts.config import SourceSpec
from alerts.flood import Verdict
from alerts.model import JSON, Entry, Event, EventKind, Item, Observation
from alerts.route import source_admits
from alerts.sources import DerivesEvents
from alerts.store import ItemState

SNAPSHOT_TEXT_CHARS = 2000
_FAR_PAST = datetime.min.replace(tzinfo=UTC)
FINGERPRINT_VERSION = 2  # 2: links compared in canonical form (alerts.canonical)
_FORMAT_KEY = "item_format"
_LEGACY_FORMAT = [1, 1]  # sources polled before formats were recorded


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
    digests: dict[str, str] = field(default_factory=dict)  # known items read, unchanged


# ``json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)``, its encoder
# built once: stored fingerprints depend on these exact bytes
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False)


def fingerprint(item: Item, fields: Sequence[str], *, version: int = FINGERPRINT_VERSION) -> str:
    """What a reader sees of ``fields``: text without layout, links without URL noise."""
    values = [_normalise(item.value(name), name if version >= 2 else "") for name in fields]
    blob = _FINGERPRINT_JSON.encode(values)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _normalise(value: Any, name: str = "") -> Any:
    if isinstance(value, str):
        return canonical_url(value) if name == "url" else " ".join(value.split())
    return value


def keys_to_load(items: Sequence[Item]) -> list[str]:
    """The stored item states a poll of ``items`` needs: their keys and former keys."""
    keys = [it.key for it in items]
    former = [key for it in items for key in it.former_keys]
    return keys + list(dict.fromkeys(former)) if former else keys


def digest_salt(spec: SourceSpec, adapter: object) -> str:
    """What stored digests are only valid with: how fingerprints are computed and
    over which fields, and the adapter's item format."""
    blob = (
        f"{FINGERPRINT_VERSION}/{getattr(adapter, 'item_format', 1)}/{'/'.join(spec.fingerprint)}"
    )
    return hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()


def stored_digest(entry: Entry, salt: str) -> str:
    return f"{entry.digest}.{salt}"


def skips_known(baselined: bool, detector_state: Mapping[str, JSON], adapter: object) -> bool:
    """Whether a poll may leave unread the entries whose digest the store holds:
    not a baseline, nor the first poll after a format change (``_reformatted``),
    nor one whose flood breaker lacks its memory (it learns it from every item)."""
    item_format = [FINGERPRINT_VERSION, getattr(adapter, "item_format", 1)]
    flood_state = detector_state.get("flood")
    return (
        baselined
        and detector_state.get(_FORMAT_KEY) == item_format
        and isinstance(flood_state, dict)
        and "seen" in flood_state
    )


def entries_to_read(
    entries: Sequence[Entry], stored: Mapping[str, str | None], salt: str
) -> list[Entry]:
    """The entries a poll must read: unknown keys, changed digests, and every entry
    of a key listed more than once (the detector keeps the first, as it always did)."""
    keys = [e.key for e in entries]
    repeated = {k for k, n in Counter(keys).items() if n > 1} if len(set(keys)) < len(keys) else ()
    return [e for e in entries if e.key in repeated or stored.get(e.key) != stored_digest(e, salt)]


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
    digests: Mapping[str, str] | None = None,
    listed: Sequence[Item] | None = None,
) -> Detection:
    """Events and state writes for one successful, modified poll.

    From a ``Listing``: ``observation.items`` are the entries read, ``digests``
    their stored digests by key, and ``listed`` every entry in order (those not
    read as bare items: key and url), which the flood breaker counts.
    """
    fields = spec.fingerprint
    item_format = [FINGERPRINT_VERSION, getattr(adapter, "item_format", 1)]
    stored_format = detector_state.get(_FORMAT_KEY, _LEGACY_FORMAT)
    writes, new_items, updated, refresh = _compare(
        observation.items, known, fields, (stored_format, item_format), digests or {}
    )

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
    state[_FORMAT_KEY] = item_format
    if hasattr(adapter, "derive") and isinstance(adapter, DerivesEvents):  # hasattr: cheap
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
        items=observation.items if listed is None else listed,
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
        digests=refresh,
    )


def _compare(
    items: Sequence[Item],
    known: Mapping[str, ItemState],
    fields: Sequence[str],
    formats: tuple[Any, list[int]],
    digests: Mapping[str, str],
) -> tuple[dict[str, ItemState], list[Item], list[tuple[Item, Mapping[str, JSON]]], dict[str, str]]:
    """State writes, new items, updated items (with their old snapshot) and digests
    to refresh (known items read again, unchanged) of one poll."""
    writes: dict[str, ItemState] = {}
    new_items: list[Item] = []
    updated: list[tuple[Item, Mapping[str, JSON]]] = []
    refresh: dict[str, str] = {}
    carried = _carried(items, known, fields, transition=formats[0] != formats[1])
    for item in items:
        if item.key in writes:
            continue  # a duplicate key within one fetch: the first one wins
        fp = fingerprint(item, fields)
        previous = known.get(item.key) or carried.get(id(item))
        digest = digests.get(item.key)
        if previous is None:
            new_items.append(item)
        elif previous.fingerprint == fp:
            if item.key in known:
                if digest is not None and previous.digest != digest:
                    refresh[item.key] = digest
                continue
        elif item.key in known and not _reformatted(item, previous, fields, formats):
            updated.append((item, previous.snapshot))
        writes[item.key] = ItemState(fp, snapshot(item, fields), digest)
    return writes, new_items, updated, refresh


def _carried(
    items: Sequence[Item],
    known: Mapping[str, ItemState],
    fields: Sequence[str],
    *,
    transition: bool,
) -> dict[int, ItemState]:
    """States found under former keys, by ``id()`` of the item they carry over to."""
    claims: dict[str, list[Item]] = {}
    for item in items:
        if item.key not in known:
            former = next((k for k in item.former_keys if k in known), None)
            if former is not None:
                claims.setdefault(former, []).append(item)
    carried: dict[int, ItemState] = {}
    for key, claimants in claims.items():
        state = known[key]
        heirs = claimants if transition else [_heir(claimants, state, fields)]
        carried.update((id(item), state) for item in heirs)
    return carried


def _heir(claimants: list[Item], state: ItemState, fields: Sequence[str]) -> Item:
    """Which of the items claiming one stored state it belongs to."""
    for item in claimants:
        if fingerprint(item, fields) == state.fingerprint:
            return item
    title = state.snapshot.get("title")
    return next((item for item in claimants if item.title == title), claimants[0])


def _reformatted(
    item: Item, previous: ItemState, fields: Sequence[str], formats: tuple[Any, list[int]]
) -> bool:
    """Whether a fingerprint differs only because items are now read differently."""
    stored, current = formats
    if stored == current:
        return False
    if not isinstance(stored, list) or len(stored) != 2 or stored[1] != current[1]:
        return True  # the adapter reads items differently: record them again
    if fingerprint(item, fields, version=int(stored[0])) == previous.fingerprint:
        return True
    return not _changes(item, previous.snapshot, fields)  # nothing a reader sees changed


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
        if _normalise(before, name) != _normalise(after, name):
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
