"""Row <-> model conversions shared by every store backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from alerts.errors import StoreError
from alerts.model import (
    JSON,
    Delivery,
    DeliveryState,
    Destination,
    Event,
    EventKind,
    Subscription,
    Validators,
)
from alerts.store import DeliveryRow, DestinationRow, SourceRow


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dumps(value: JSON) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def loads(text: str | None) -> Any:
    if not text or text == "{}":  # most sources' cursor and detector state: skip the parser
        return {}
    return json.loads(text)


def idempotency_key(install_id: str, delivery_id: int) -> str:
    """At most 25 characters (Discord's nonce limit): 8 hex + '-' + base-36 id."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    n, out = delivery_id, ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            break
    return f"{install_id[:8]}-{out}"


def subscription_row(sub: Subscription) -> dict[str, Any]:
    return {
        "destination_id": sub.destination_id,
        "topic": sub.topic or "",
        "source": sub.source or "",
        "kinds": dumps(sorted(k.value for k in sub.kinds)),
        "include": dumps(list(sub.include)),
        "exclude": dumps(list(sub.exclude)),
        "min_amount": sub.min_amount,
        "min_change": sub.min_change,
        "created_by": sub.created_by,
    }


def subscription_from_row(row: Any) -> Subscription:
    return Subscription(
        id=row["id"],
        destination_id=row["destination_id"],
        topic=row["topic"] or None,
        source=row["source"] or None,
        kinds=frozenset(EventKind(k) for k in json.loads(row["kinds"])),
        include=tuple(json.loads(row["include"])),
        exclude=tuple(json.loads(row["exclude"])),
        min_amount=row["min_amount"],
        min_change=row["min_change"],
        created_by=row["created_by"],
    )


# Row -> model conversions. ``when`` turns a stored time into an aware datetime:
# ``dt`` for SQLite's UNIX seconds, ``same`` for PostgreSQL's timestamptz.
When = Callable[[Any], datetime | None]


def same(value: datetime | None) -> datetime | None:
    return value


def _must(value: datetime | None) -> datetime:
    if value is None:
        raise StoreError("missing timestamp")
    return value


def source_from_row(r: Any, when: When) -> SourceRow:
    return SourceRow(
        source_id=r["id"],
        next_due=_must(when(r["next_due"])),
        validators=Validators(r["etag"], r["last_modified"]),
        cursor=loads(r["cursor"]),
        detector=loads(r["detector"]),
        baselined=bool(r["baselined"]),
        failures=r["failures"],
        last_error=r["last_error"],
        last_attempt_at=when(r["last_attempt_at"]),
        last_success_at=when(r["last_success_at"]),
        last_new_at=when(r["last_new_at"]),
        item_count=r["item_count"],
    )


def destination_from_row(r: Any, when: When) -> DestinationRow:
    return DestinationRow(
        destination=Destination(r["id"], r["sink"], r["target"], loads(r["options"])),
        parked_reason=r["parked_reason"],
        parked_at=when(r["parked_at"]),
        blocked_until=when(r["blocked_until"]),
    )


def delivery_from_row(r: Any, install_id: str) -> Delivery:
    """A claimed delivery: columns id, attempts, payload, dest_id, sink, target, options."""
    return Delivery(
        id=r["id"],
        event=Event.from_json(loads(r["payload"])),
        destination=Destination(r["dest_id"], r["sink"], r["target"], loads(r["options"])),
        attempts=r["attempts"],
        idempotency_key=idempotency_key(install_id, r["id"]),
    )


def delivery_row_from_row(r: Any, when: When) -> DeliveryRow:
    return DeliveryRow(
        id=r["id"],
        event=Event.from_json(loads(r["payload"])),
        destination_id=r["destination_id"],
        state=DeliveryState(r["state"]),
        attempts=r["attempts"],
        created_at=_must(when(r["created_at"])),
        last_error=r["last_error"],
        sent_at=when(r["sent_at"]),
        remote_id=r["remote_id"],
    )
