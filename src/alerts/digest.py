"""Digests: a room's held alerts shown as one message.

Alerts held for a digest or quiet hours (``alerts.schedule``) stay in the outbox as
``held`` deliveries. When their time comes, ``Store.release_held`` hands a room's
held events to ``digest_event``, which makes one ``summary`` event of them: grouped
by topic and source, with each group's count and its first few titles and links.
That event becomes an ordinary delivery, written in the transaction that marks the
held rows ``digested``: it is claimed, leased, sent with its idempotency key and
recorded like any alert, so a restart at any point shows the digest once and
loses none of what it holds. Its text is the events' own strings; the renderers
take them through ``alerts.render.facts`` (``Facts.digest``) like any event's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from alerts.model import Event, EventKind, utcnow

DIGEST_SOURCE = "alerts:digest"
"""The source id of digest events (no configured source can have a colon in its id)."""
TITLES_SHOWN = 5
"""How many titles a group lists; the rest are counted."""
GROUPS_SHOWN = 20
"""How many groups a digest lists; the rest are counted."""

_TITLES = {"hourly": "Hourly digest", "quiet": "Held during quiet hours"}


def digest_title(keys: Sequence[str], count: int) -> str:
    """``Daily digest: 12 alerts``: named after what held them (the first key)."""
    key = next((k for k in keys if k), "quiet")
    name = "Daily digest" if key.startswith("daily") else _TITLES.get(key, "Digest")
    return f"{name}: {count} alert{'s' if count != 1 else ''}"


def digest_event(
    destination_id: str, held: Sequence[tuple[Event, str]], *, now: datetime | None = None
) -> Event:
    """One ``summary`` event showing ``held`` (events and the keys that held them)."""
    groups: dict[tuple[str, str], list[Event]] = {}
    for event, _ in held:
        topic = event.topics[0] if event.topics else ""
        groups.setdefault((topic, event.source_label), []).append(event)
    listed = [
        {
            "topic": topic,
            "source": source,
            "count": len(events),
            "items": [
                {"title": e.title or e.key, "url": e.url, "kind": e.kind.value}
                for e in events[:TITLES_SHOWN]
            ],
        }
        for (topic, source), events in sorted(groups.items())
    ]
    at = now or utcnow()
    topics = sorted({t for e, _ in held for t in e.topics})
    return Event(
        source_id=DIGEST_SOURCE,
        source_name="alerts",
        kind=EventKind.SUMMARY,
        key=f"digest:{destination_id}:{at.isoformat()}",
        title=digest_title([k for _, k in held], len(held)),
        topics=tuple(topics),
        fields={
            "count": len(held),
            "digest": listed[:GROUPS_SHOWN],
            "more_groups": max(0, len(listed) - GROUPS_SHOWN),
        },
        detected_at=at,
    )
