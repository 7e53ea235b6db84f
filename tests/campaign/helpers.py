"""Helpers for the campaign adapter tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.sources import DerivesEvents, SourceState

FIXTURES = Path(__file__).parent / "fixtures"


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def data(name: str, **replace: str) -> Any:
    raw = text(name)
    for old, new in replace.items():
        raw = raw.replace(old, new)
    return json.loads(raw)


class Polls:
    """Drive an adapter poll after poll the way the detector does.

    The item diff is the generic one (unseen key: ``new``; changed fingerprint:
    ``updated``), then the adapter's ``derive`` hook; the first poll is the baseline.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.state = SourceState()
        self.items: dict[str, Item] = {}
        self.derived: Mapping[str, JSON] = {}
        self.baseline = True

    def fingerprint(self, item: Item) -> tuple[JSON, ...]:
        return tuple(item.value(f) for f in self.source.fingerprint_fields)

    async def poll(self, now: datetime) -> list[Event]:
        obs: Observation = await self.source.fetch(self.state)
        self.state = SourceState(
            validators=obs.validators,
            cursor=obs.cursor if not obs.not_modified else self.state.cursor,
        )
        new = [i for i in obs.items if i.key not in self.items]
        updated = [
            (i, _snapshot(self.items[i.key]))
            for i in obs.items
            if i.key in self.items and self.fingerprint(i) != self.fingerprint(self.items[i.key])
        ]
        events = [] if self.baseline else self._generic(new, updated)
        if isinstance(self.source, DerivesEvents):
            derived = self.source.derive(
                observation=obs,
                new_items=new,
                updated_items=updated,
                state=self.derived,
                now=now,
                baseline=self.baseline,
            )
            if derived.keep_item_events is not None:
                events = [e for e in events if e.key in derived.keep_item_events]
            events += derived.events
            self.derived = derived.state
        self.items.update({i.key: i for i in obs.items})
        self.baseline = self.baseline and obs.not_modified
        return events

    def _generic(self, new: list[Item], updated: list[tuple[Item, Any]]) -> list[Event]:
        sid = "test"
        events = [Event(sid, EventKind.NEW, i.key, i.title, i.url, fields=i.fields) for i in new]
        for item, old in updated:
            changes = {
                f: (old.get(f), item.value(f))
                for f in self.source.fingerprint_fields
                if old.get(f) != item.value(f)
            }
            events.append(
                Event(sid, EventKind.UPDATED, item.key, item.title, item.url, changes=changes)
            )
        return events


def _snapshot(item: Item) -> dict[str, JSON]:
    return {"title": item.title, "summary": item.summary, **item.fields}
