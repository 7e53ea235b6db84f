"""A source's live count in a room: one message, edited as the count moves.

A ``delta`` event says how far a count rose since the last one (a petition's
signatures): ``count`` (the total), ``delta`` (the rise) and, when the adapter knows
them, ``by_company`` (new rows per company), ``names`` (new named signatories),
``anonymous`` and ``unit`` (what is counted, e.g. "signatures"). The tally folds the
deltas a message has shown: the latest total, the rise since the message was
posted, the companies and anonymous signers added up, the newest names. ``view``
turns it back into one ``delta`` event, which every renderer already shows.

Pure functions over JSON-friendly state (kept in the post, ``alerts.edits``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from alerts.model import JSON, Event

NAMES_KEPT = 10
COMPANIES_SHOWN = 5


def start(event: Event) -> dict[str, JSON]:
    """The tally of a counter message that shows ``event`` first."""
    return add({}, event)


def add(tally: Mapping[str, Any], event: Event) -> dict[str, JSON]:
    """``tally`` with one more ``delta`` event folded in."""
    fields = event.fields
    companies: Counter[str] = Counter(_counts(tally.get("by_company")))
    companies.update(_counts(fields.get("by_company")))
    new_names = [str(n) for n in fields.get("names") or () if isinstance(n, str)]
    names = [*new_names, *(tally.get("names") or ())]
    return {
        "event": event.to_json(),
        "count": _number(fields.get("count")),
        "delta": _number(tally.get("delta")) + _number(fields.get("delta")),
        "deltas": int(_number(tally.get("deltas"))) + 1,
        "since": tally.get("since") or (event.occurred_at or event.detected_at).isoformat(),
        "by_company": dict(companies.most_common()),
        "anonymous": _number(tally.get("anonymous")) + _number(fields.get("anonymous")),
        "names": names[:NAMES_KEPT],
        "named": int(_number(tally.get("named"))) + len(new_names),
    }


def view(tally: Mapping[str, Any]) -> Event:
    """One ``delta`` event that shows the whole tally."""
    latest = Event.from_json(tally["event"])
    count, rise = tally.get("count"), _number(tally.get("delta"))
    unit = latest.fields.get("unit")
    title = latest.title
    if isinstance(count, int | float):
        title = f"+{rise:,.0f}{' ' + str(unit) if unit else ''} ({count:,.0f} total)"
    fields = {
        **latest.fields,
        "delta": rise,
        "by_company": dict(tally.get("by_company") or {}),
        "anonymous": tally.get("anonymous") or 0,
        "names": list(tally.get("names") or ()),
    }
    return dataclasses.replace(latest, title=title, summary=_summary(tally), fields=fields)


def _summary(tally: Mapping[str, Any]) -> str:
    names = list(tally.get("names") or ())
    more = max(0, int(_number(tally.get("named"))) - len(names))
    parts = []
    if names:
        parts.append(", ".join(names) + (f" and {more:,} more" if more else ""))
    if tally.get("anonymous"):
        parts.append(f"{_number(tally['anonymous']):,.0f} anonymous")
    companies = list((tally.get("by_company") or {}).items())[:COMPANIES_SHOWN]
    if companies:
        parts.append("by company: " + ", ".join(f"{c} {_number(n):,.0f}" for c, n in companies))
    deltas = int(_number(tally.get("deltas")))
    since = datetime.fromisoformat(str(tally["since"])).astimezone(UTC)
    parts.append(f"{deltas} update{'s' if deltas != 1 else ''} since {since:%Y-%m-%d %H:%M} UTC")
    return "; ".join(parts)


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(_number(v)) for k, v in value.items()}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value
