"""Failure notices: the operator's room hears when a source starts failing, when it
recovers, and when the flood breaker holds or releases it.

Why each notice is sent once (not once per failed poll, per restart or per replica):
a notice is decided by the poll that changes the source's state, from the state it
claimed under its lease, and is written by that poll's own commit (``commit_poll``)
as an event with its deliveries, in the transaction that writes the new state.

* **Failing**: the poll whose failure makes ``failures`` reach ``after`` (the
  ``[service] failure_notice_after``) and only that one; the next failure finds
  ``failures`` already past it.
* **Recovered**: the first successful poll (a 304 included) of a source whose
  ``failures`` had reached ``after``; the same commit resets ``failures`` to 0.
* **Flood held / resumed**: the poll whose verdict starts or ends a hold
  (``alerts.flood``), committed with the breaker's state.

A commit that loses its lease (another replica took the source) writes nothing, the
notice included; a crash before the commit loses nothing either, because the source's
state is unchanged and the next poll decides again. Notices then go through the
outbox like alerts (a delivery per room, idempotency keys, retries).

Who gets them: the ``[service] operator_room`` destination, and every room with a
subscription that opted in (``notify_failures=yes``) and matches the source (its
topic, the source itself, or everything). A notice is a ``summary`` event whose text
goes through ``alerts.redact`` here and ``alerts.render.facts`` like every event, so
an error message quoting a URL with a token, or a stranger's text, shows neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from alerts.model import Event, EventKind, Subscription
from alerts.redact import redact_text

DEFAULT_AFTER = 3
ERROR_MAX = 1_000


class Notice(StrEnum):
    FAILING = "failing"
    RECOVERED = "recovered"
    FLOOD_HELD = "flood_held"
    FLOOD_RESUMED = "flood_resumed"


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    """Where notices go and when a source counts as failing."""

    operator_room: str | None = None
    after: int = DEFAULT_AFTER


def notice_event(
    kind: Notice,
    *,
    source_id: str,
    label: str,
    topics: tuple[str, ...],
    now: datetime,
    failures: int = 0,
    detail: str = "",
) -> Event:
    """The event of one notice; ``detail`` (an error, the breaker's reason) is redacted."""
    text = redact_text(detail)[:ERROR_MAX]
    titles = {
        Notice.FAILING: f"Source failing: {label} ({failures} failed polls in a row)",
        Notice.RECOVERED: f"Source recovered: {label} (after {failures} failed polls)",
        Notice.FLOOD_HELD: f"Flood breaker holding {label}'s alerts",
        Notice.FLOOD_RESUMED: f"Flood breaker released {label}: alerts resume",
    }
    fields: dict[str, object] = {"notice": kind.value}
    if failures:
        fields["failures"] = failures
    return Event(
        source_id=source_id,
        source_name=label if label != source_id else None,
        kind=EventKind.SUMMARY,
        key=f"notice:{kind.value}:{now.isoformat()}",
        title=titles[kind],
        summary=text,
        topics=topics,
        fields=fields,
        occurred_at=now,
        detected_at=now,
    )


def notice_rooms(
    event: Event, policy: NoticePolicy, subscriptions: Iterable[Subscription]
) -> tuple[str, ...]:
    """The operator room, then each room that opted in for the event's source."""
    rooms: dict[str, None] = {}
    if policy.operator_room:
        rooms[policy.operator_room] = None
    for sub in subscriptions:
        if not sub.notify_failures:
            continue
        if sub.source is not None and sub.source != event.source_id:
            continue
        if sub.topic is not None and sub.topic not in event.topics:
            continue
        rooms[sub.destination_id] = None
    return tuple(rooms)
