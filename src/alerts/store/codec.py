"""Row <-> model conversions shared by every store backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from alerts.model import JSON, EventKind, Subscription


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dumps(value: JSON) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


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
        created_by=row["created_by"],
    )
