"""What the status page shows, read from the config and the store in one pass.

``snapshot`` returns plain frozen data (``Snapshot``); the HTML template and the
JSON view both render it, so they never show different facts. Nothing here writes.
Every string in it comes from operators or strangers (feed titles, error texts): the
renderers escape it, and the URLs among it are redacted here (``redact``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from alerts import flood
from alerts.config import Config
from alerts.model import DeliveryState, Event
from alerts.records import DeliveryRow, DestinationRow, OutboxStats, SourceRow
from alerts.status.redact import redact_text, redact_url, without_userinfo
from alerts.store import Store

RECENT_DELIVERIES = 500
RECENT_ALERTS = 30
LISTED_DELIVERIES = 50
LISTED_SOURCES = 500


class SourceState(StrEnum):
    """A source's state, worst first (the order the page lists them in)."""

    FAILING = "failing"
    HELD = "held"
    WAITING = "not polled yet"
    OK = "ok"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SourceView:
    id: str
    label: str
    kind: str
    url: str
    topics: tuple[str, ...]
    state: SourceState
    state_note: str = ""
    last_success: datetime | None = None
    last_new: datetime | None = None
    failures: int = 0
    last_error: str = ""
    next_poll: datetime | None = None
    items: int = 0


@dataclass(frozen=True, slots=True)
class RoomView:
    destination: str
    state: DeliveryState


@dataclass(frozen=True, slots=True)
class AlertView:
    event_id: int | None
    when: datetime
    source: str
    kind: str
    title: str
    link: str | None
    rooms: tuple[RoomView, ...]


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    destination: str
    attempts: int
    created: datetime
    alert: str
    source: str
    last_error: str
    until: datetime | None = None  # a held delivery: when it is released


@dataclass(frozen=True, slots=True)
class ParkedView:
    id: str
    sink: str
    target: str
    since: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the status page shows, as of ``generated_at``."""

    generated_at: datetime
    instance: str
    sources: tuple[SourceView, ...]
    source_counts: Mapping[SourceState, int]
    sources_total: int
    alerts: tuple[AlertView, ...]
    outbox: OutboxStats
    pending: tuple[DeliveryView, ...]
    dead: tuple[DeliveryView, ...]
    parked: tuple[ParkedView, ...]
    held: tuple[DeliveryView, ...] = ()  # waiting for a digest or the end of quiet hours

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601, states as their names)."""
        data = dataclasses.asdict(self)
        data["source_counts"] = {s.value: n for s, n in self.source_counts.items()}
        return _jsonable(data)  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def snapshot(
    *,
    store: Store,
    config: Config,
    now: datetime,
    instance: str = "",
    holds: Mapping[str, str] | None = None,
    only: SourceState | None = None,
) -> Snapshot:
    """Read the store once and build the page's data.

    ``holds`` maps a source id to why the flood breaker holds its alerts; sources
    the breaker holds according to their stored detector state are added to it.
    ``only`` keeps the sources in one state (the counts still cover all of them).
    """
    rows = {r.source_id: r for r in await store.list_sources()}
    held = {sid: why for sid, r in rows.items() if (why := flood.status(r.detector))}
    sources = source_views(config, rows, held | dict(holds or {}))
    counts = {state: sum(1 for s in sources if s.state is state) for state in SourceState}
    shown = [s for s in sources if only is None or s.state is only]
    recent = await store.list_deliveries(limit=RECENT_DELIVERIES)
    pending = await store.list_deliveries(state=DeliveryState.PENDING, limit=LISTED_DELIVERIES)
    dead = await store.list_deliveries(state=DeliveryState.DEAD, limit=LISTED_DELIVERIES)
    waiting = await store.list_deliveries(state=DeliveryState.HELD, limit=LISTED_DELIVERIES)
    return Snapshot(
        generated_at=now,
        instance=instance,
        sources=tuple(shown[:LISTED_SOURCES]),
        source_counts=counts,
        sources_total=len(shown),
        alerts=alert_views(recent, config),
        outbox=await store.outbox_stats(),
        pending=tuple(_delivery_view(d, config) for d in pending),
        dead=tuple(_delivery_view(d, config) for d in dead),
        parked=parked_views(await store.list_destinations()),
        held=tuple(_delivery_view(d, config) for d in waiting),
    )


def source_views(
    config: Config, rows: Mapping[str, SourceRow], holds: Mapping[str, str]
) -> list[SourceView]:
    """Every configured source (disabled ones included), worst state first."""
    views = [
        _source_view(spec.id, config, rows.get(spec.id), holds) for spec in config.sources.values()
    ]
    views += [_disabled_view(sid) for sid in config.disabled if sid not in config.sources]
    order = list(SourceState)
    return sorted(views, key=lambda v: (order.index(v.state), v.id))


def _source_view(
    source_id: str, config: Config, row: SourceRow | None, holds: Mapping[str, str]
) -> SourceView:
    spec = config.sources[source_id]
    common: dict[str, Any] = {
        "id": spec.id,
        "label": spec.label,
        "kind": spec.kind,
        "url": redact_url(spec.url) if spec.url else "",
        "topics": spec.topics,
    }
    if row is None:
        return SourceView(state=SourceState.WAITING, **common)
    state, note = _state(row, holds.get(source_id))
    return SourceView(
        state=state,
        state_note=note,
        last_success=row.last_success_at,
        last_new=row.last_new_at,
        failures=row.failures,
        last_error=redact_text(row.last_error or ""),
        next_poll=row.next_due,
        items=row.item_count,
        **common,
    )


def _state(row: SourceRow, hold: str | None) -> tuple[SourceState, str]:
    if hold is not None:
        return SourceState.HELD, hold
    if row.failures > 0:
        return SourceState.FAILING, f"{row.failures} failed poll{'s' if row.failures > 1 else ''}"
    if row.last_attempt_at is None:
        return SourceState.WAITING, ""
    return SourceState.OK, ""


def _disabled_view(source_id: str) -> SourceView:
    return SourceView(
        id=source_id,
        label=source_id,
        kind="",
        url="",
        topics=(),
        state=SourceState.DISABLED,
        state_note="enabled = false",
    )


def alert_views(rows: Sequence[DeliveryRow], config: Config) -> tuple[AlertView, ...]:
    """The most recent events that went to rooms, each with its rooms, newest first
    (``rows`` come newest first, as the store lists them)."""
    grouped: dict[object, tuple[Event, list[RoomView]]] = {}
    for row in rows:
        _, rooms = grouped.setdefault(_identity(row.event), (row.event, []))
        rooms.append(RoomView(row.destination_id, row.state))
    return tuple(
        AlertView(
            event_id=event.id,
            when=event.detected_at,
            source=_source_label(event, config),
            kind=event.kind.value,
            title=event.title,
            link=safe_link(event.url),
            rooms=tuple(sorted(rooms, key=lambda r: r.destination)),
        )
        for event, rooms in list(grouped.values())[:RECENT_ALERTS]
    )


def _identity(event: Event) -> object:
    """One event, whether or not the store handed back its id."""
    if event.id is not None:
        return event.id
    return (event.source_id, event.kind, event.key, event.detected_at)


def safe_link(url: str | None) -> str | None:
    """An http(s) link without user information, or None: a ``javascript:`` or
    ``data:`` URL from a feed never becomes a link on the page."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        _ = parts.port  # a bad port raises ValueError
        return without_userinfo(url)
    except ValueError:
        return None


def _source_label(event: Event, config: Config) -> str:
    spec = config.sources.get(event.source_id)
    return spec.label if spec is not None else event.source_label


def _delivery_view(row: DeliveryRow, config: Config) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        destination=row.destination_id,
        attempts=row.attempts,
        created=row.created_at,
        alert=f"{row.event.kind.value}: {row.event.title}",
        source=_source_label(row.event, config),
        last_error=redact_text(row.last_error or ""),
        until=row.hold_until,
    )


def parked_views(rows: Sequence[DestinationRow]) -> tuple[ParkedView, ...]:
    return tuple(
        ParkedView(
            id=r.destination.id,
            sink=r.destination.sink,
            target=redact_text(r.destination.target),
            since=r.parked_at,
            reason=redact_text(r.parked_reason or ""),
        )
        for r in rows
        if r.parked_at is not None
    )
