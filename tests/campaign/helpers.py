"""Helpers for the campaign adapter tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from alerts.config import SourceSpec
from alerts.detect import detect
from alerts.model import JSON, Event, Item, Observation
from alerts.sources import SourceState
from alerts.store import ItemState

FIXTURES = Path(__file__).parent / "fixtures"


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def data(name: str, **replace: str) -> Any:
    raw = text(name)
    for old, new in replace.items():
        raw = raw.replace(old, new)
    return json.loads(raw)


def spec(source: Any, *, backfill: int = 0, max_events: int = 50) -> SourceSpec:
    return SourceSpec(
        id=source.source_id,
        kind=source.kind,
        url=getattr(source, "url", ""),
        interval_s=60.0,
        topics=("test",),
        options=source.options,
        fingerprint=source.fingerprint_fields,
        backfill=backfill,
        max_events=max_events,
        name="",
        origin="test",
    )


class Polls:
    """Drive an adapter poll after poll through the real detector, as the scheduler does."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.spec = spec(source)
        self.state = SourceState()
        self.known: dict[str, ItemState] = {}
        self.detector: dict[str, JSON] = {}
        self.baselined = False
        self.items: dict[str, Item] = {}

    @property
    def derived(self) -> Mapping[str, JSON]:
        return self.detector.get("adapter", {})

    async def poll(self, now: datetime) -> list[Event]:
        obs: Observation = await self.source.fetch(self.state)
        if obs.not_modified:
            self.state = SourceState(obs.validators, self.state.cursor)
            return []
        self.state = SourceState(obs.validators, obs.cursor)
        found = detect(
            spec=self.spec,
            observation=obs,
            known=self.known,
            baselined=self.baselined,
            detector_state=self.detector,
            adapter=self.source,
            now=now,
        )
        self.known.update(found.items)
        self.detector = found.detector
        self.baselined = True
        self.items.update({i.key: i for i in obs.items})
        return found.events
