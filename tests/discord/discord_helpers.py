"""Events and deliveries for the Discord tests."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from alerts.model import Delivery, Destination, Event, EventKind

TOPICS = {
    "contracts": "Federal contract awards and modifications to ICE vendors",
    "letter": "The ICEout.tech open letter and its signatories",
}
MEMBER = 1 << 10  # View Channel only
EPHEMERAL = 1 << 6


def make_event(**overrides: object) -> Event:
    values: dict[str, object] = {
        "source_id": "usaspending-ice",
        "kind": EventKind.UPDATED,
        "key": "CONT_AWD_70CDCR22C00000001",
        "title": "Palantir Technologies: ImmigrationOS modification",
        "url": "https://www.usaspending.gov/award/CONT_AWD_70CDCR22C00000001",
        "summary": "Modification P00012 adds ImmigrationOS to the 2022 contract.",
        "fields": {"recipient": "Palantir Technologies Inc.", "amount": 30_000_000},
        "changes": {"amount": (95_900_000, 125_900_000)},
        "occurred_at": datetime(2025, 4, 10, 12, 0, tzinfo=UTC),
        "id": 1,
    }
    values.update(overrides)
    return Event(**values)  # type: ignore[arg-type]


def make_delivery(
    channel_id: int | str,
    *,
    delivery_id: int = 1,
    event: Event | None = None,
    sink: str = "discord",
    options: dict[str, object] | None = None,
) -> Delivery:
    destination = Destination(f"{sink}:{channel_id}", sink, str(channel_id), options or {})
    return Delivery(
        id=delivery_id,
        event=event or make_event(),
        destination=destination,
        attempts=0,
        idempotency_key=f"alerts-{delivery_id:x}-abc",
    )


def shown(text: str) -> str:
    """What Discord displays of rendered text: escapes gone (Discord's markdown reads
    a backslash before punctuation as "this character, literally"), zero-width
    spaces invisible."""
    return re.sub(r"\\([^0-9A-Za-z\s])", r"\1", text).replace("\u200b", "")
