"""Platform-neutral rendering: the facts of an event, and a plain-text alert.

Discord and Matrix renderers build on ``facts`` so that every platform shows the
same key facts (recipient, amount and change for an award; count and delta for a
petition) in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerts.model import Event, EventKind

KIND_LABEL = {
    EventKind.NEW: "New",
    EventKind.UPDATED: "Updated",
    EventKind.MILESTONE: "Milestone",
    EventKind.DELTA: "New signatures",
    EventKind.SUMMARY: "More items",
}

# Fields shown first, in this order, with these labels; other scalar fields follow.
_KNOWN = {
    "recipient": "Recipient",
    "amount": "Amount",
    "agency": "Agency",
    "award_id": "Award",
    "count": "Count",
    "delta": "Change",
    "threshold": "Milestone",
    "by_company": "By company",
    "document_type": "Type",
    "author": "Author",
}
_HIDDEN = {"categories", "titles", "diff", "raw"}
_MONEY = ("amount", "obligation", "value")


def _is_money(name: str) -> bool:
    return any(m in name for m in _MONEY)


def format_value(name: str, value: Any, *, money: bool = False) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and (money or _is_money(name)):
        sign = "-" if value < 0 else ""
        return f"{sign}${abs(value):,.2f}".replace(".00", "")
    if isinstance(value, int | float):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(name, v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _change(name: str, old: Any, new: Any) -> str:
    text = f"{format_value(name, old)} → {format_value(name, new)}"
    if isinstance(old, int | float) and isinstance(new, int | float):
        diff = new - old
        sign = "+" if diff >= 0 else "-"
        text += f" ({sign}{format_value(name, abs(diff))})"
    return text


def facts(event: Event, *, limit: int = 20) -> list[tuple[str, str]]:
    """(label, value) pairs: known fields first, then changes, then other scalars."""
    out: list[tuple[str, str]] = []
    changed = dict(event.changes)
    for name, label in _KNOWN.items():
        if name in changed:
            old, new = changed.pop(name)
            out.append((label, _change(name, old, new)))
        elif name in event.fields and event.fields[name] not in (None, "", [], {}):
            value = event.fields[name]
            if name == "delta" and isinstance(value, int | float):
                money = "amount" in event.fields or "amount" in event.changes
                sign = "+" if value >= 0 else "-"
                out.append((label, sign + format_value(name, abs(value), money=money)))
                continue
            out.append((label, format_value(name, value)))
    for name, (old, new) in changed.items():
        if name in ("summary",):
            continue
        out.append((name.replace("_", " ").capitalize(), _change(name, old, new)))
    for name, value in event.fields.items():
        if name in _KNOWN or name in _HIDDEN or value in (None, "", [], {}):
            continue
        if isinstance(value, str | int | float | bool):
            out.append((name.replace("_", " ").capitalize(), format_value(name, value)))
    return out[:limit]


def headline(event: Event, source_label: str | None = None) -> str:
    label = KIND_LABEL.get(event.kind, event.kind.value)
    return f"{label} · {source_label or event.source_label}: {event.title}"


def render_text(event: Event, *, source_label: str | None = None, summary_chars: int = 400) -> str:
    """A plain-text alert (console, Matrix ``body``)."""
    lines = [headline(event, source_label)]
    if event.url:
        lines.append(f"  {event.url}")
    summary = " ".join(event.summary.split())
    if summary:
        if len(summary) > summary_chars:
            summary = summary[: summary_chars - 1].rsplit(" ", 1)[0] + "…"
        lines.append(f"  {summary}")
    lines.extend(f"  {label}: {value}" for label, value in facts(event))
    when = event.occurred_at or event.detected_at
    topics = f" [{', '.join(event.topics)}]" if event.topics else ""
    lines.append(f"  {when:%Y-%m-%d %H:%M} UTC{topics}")
    return "\n".join(lines)
