"""Rows to models and back, for every backend: what a column holds is decoded
here, with the backend's ``Dialect`` for times (the one per-backend conversion)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from alerts.errors import StoreError
from alerts.model import (
    DEFAULT_MERGE_WINDOW_S,
    JSON,
    Delivery,
    DeliveryState,
    Destination,
    Event,
    EventKind,
    Subscription,
    UpdateStyle,
    Validators,
    View,
)
from alerts.records import (
    ChatSource,
    DeliveryRow,
    DestinationRow,
    Hold,
    Post,
    PostKind,
    SourceRow,
)
from alerts.schedule import Schedule
from alerts.store.dialect import Dialect
from alerts.templates import Template

# what ``json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)``
# writes, without building an encoder at every call (one per item written)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(value: JSON) -> str:
    return _ENCODER.encode(value)


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


SUBSCRIPTION_COLUMNS = (
    "destination_id, topic, source, kinds, include, exclude, min_amount, min_change, "
    "created_by, updates, schedule, template, notify_failures"
)


def subscription_insert(conflict: str) -> str:
    """``INSERT INTO subscriptions`` of ``subscription_row``'s columns then created_at,
    with ``conflict`` (an ``ON CONFLICT`` clause) after it."""
    count = SUBSCRIPTION_COLUMNS.count(",") + 2
    values = ", ".join(f"${n}" for n in range(1, count + 1))
    return (
        f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}, created_at) VALUES ({values}) "
        + conflict
    )


def subscription_row(sub: Subscription) -> tuple[Any, ...]:
    """Columns destination_id, topic, source, kinds, include, exclude, min_amount,
    min_change, created_by, updates, schedule, template, notify_failures."""
    return (
        sub.destination_id,
        sub.topic or "",
        sub.source or "",
        dumps(sorted(k.value for k in sub.kinds)),
        dumps(list(sub.include)),
        dumps(list(sub.exclude)),
        sub.min_amount,
        sub.min_change,
        sub.created_by,
        sub.updates.value if sub.updates else None,
        dumps(sub.schedule.to_json()) if sub.schedule else None,
        sub.template,
        sub.notify_failures,
    )


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
        updates=_style(row["updates"]),
        schedule=Schedule.from_json(loads(row["schedule"])),
        template=row["template"],
        notify_failures=bool(row["notify_failures"]),
    )


def _style(value: str | None) -> UpdateStyle | None:
    return UpdateStyle(value) if value else None


def view_columns(view: View) -> tuple[str | None, float]:
    """Columns updates, merge_window_s of a delivery."""
    return (view.updates.value if view.updates else None, view.merge_window_s)


def template_column(view: View) -> str | None:
    """Column template of a delivery (``alerts.templates``)."""
    return dumps(view.template.to_json()) if view.template else None


def hold_columns(hold: Hold | None, d: Dialect) -> tuple[str, Any, str | None]:
    """Columns state, hold_until, digest_key of a new delivery."""
    if hold is None:
        return ("pending", None, None)
    return ("held", d.time(hold.until), hold.key)


def view_from_row(r: Any) -> View:
    window = r["merge_window_s"]
    return View(
        _style(r["updates"]),
        DEFAULT_MERGE_WINDOW_S if window is None else float(window),
        Template.from_json(loads(r["template"])),
    )


def _must(value: datetime | None) -> datetime:
    if value is None:
        raise StoreError("missing timestamp")
    return value


def source_from_row(r: Any, d: Dialect) -> SourceRow:
    return SourceRow(
        source_id=r["id"],
        next_due=_must(d.when(r["next_due"])),
        validators=Validators(r["etag"], r["last_modified"]),
        cursor=loads(r["cursor"]),
        detector=loads(r["detector"]),
        baselined=bool(r["baselined"]),
        failures=r["failures"],
        last_error=r["last_error"],
        last_attempt_at=d.when(r["last_attempt_at"]),
        last_success_at=d.when(r["last_success_at"]),
        last_new_at=d.when(r["last_new_at"]),
        item_count=r["item_count"],
    )


def destination_from_row(r: Any, d: Dialect) -> DestinationRow:
    return DestinationRow(
        destination=Destination(r["id"], r["sink"], r["target"], loads(r["options"])),
        parked_reason=r["parked_reason"],
        parked_at=d.when(r["parked_at"]),
        blocked_until=d.when(r["blocked_until"]),
    )


def delivery_from_row(r: Any, install_id: str, d: Dialect, claimed_at: datetime) -> Delivery:
    """A delivery claimed at ``claimed_at``: columns id, attempts, tried_at, payload,
    dest_id, sink, target, options, updates, merge_window_s, template. ``tried_at`` is
    kept only when an earlier claim set it (this claim sets it to ``claimed_at``
    otherwise)."""
    tried_at = d.when(r["tried_at"])
    if tried_at == d.when(d.time(claimed_at)):
        tried_at = None
    return Delivery(
        id=r["id"],
        event=Event.from_json(loads(r["payload"])),
        destination=Destination(r["dest_id"], r["sink"], r["target"], loads(r["options"])),
        attempts=r["attempts"],
        idempotency_key=idempotency_key(install_id, r["id"]),
        view=view_from_row(r),
        tried_at=tried_at,
    )


def post_from_row(r: Any, d: Dialect) -> Post:
    return Post(
        id=r["id"],
        destination_id=r["destination_id"],
        kind=PostKind(r["kind"]),
        source_id=r["source_id"],
        item_key=r["item_key"],
        remote_id=r["remote_id"],
        room=r["room"],
        target=r["target"],
        delivery_id=r["delivery_id"],
        detected_at=_must(d.when(r["detected_at"])),
        state=loads(r["state"]),
        edits=r["edits"],
        edited_at=d.when(r["edited_at"]),
        closed=bool(r["closed"]),
    )


def delivery_row_from_row(r: Any, d: Dialect) -> DeliveryRow:
    return DeliveryRow(
        id=r["id"],
        event=Event.from_json(loads(r["payload"])),
        destination_id=r["destination_id"],
        state=DeliveryState(r["state"]),
        attempts=r["attempts"],
        created_at=_must(d.when(r["created_at"])),
        last_error=r["last_error"],
        sent_at=d.when(r["sent_at"]),
        remote_id=r["remote_id"],
        hold_until=d.when(r["hold_until"]),
    )


def chat_source_from_row(r: Any, d: Dialect) -> ChatSource:
    return ChatSource(
        id=r["id"],
        destination_id=r["destination_id"],
        url=r["url"],
        added_by=r["added_by"],
        added_at=_must(d.when(r["added_at"])),
        kind=r["kind"],
        topic=r["topic"],
    )
