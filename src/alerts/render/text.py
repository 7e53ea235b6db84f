"""The plain-text alert of the console and ``alerts poll --dry-run``.

It builds on ``alerts.render.facts`` like every platform renderer, so the console
shows the same headline, facts and neutralised text as Discord and Matrix.
"""

from __future__ import annotations

from dataclasses import replace

from alerts.model import Event, EventKind, MessageView
from alerts.render.facts import Facts, cut, facts_of, facts_of_view, neutral_line

KIND_LABEL = {
    EventKind.NEW: "New",
    EventKind.UPDATED: "Updated",
    EventKind.MILESTONE: "Milestone",
    EventKind.DELTA: "New signatures",
    EventKind.SUMMARY: "More items",
}


def render_text(event: Event, *, source_label: str | None = None, summary_chars: int = 400) -> str:
    """A plain-text alert: ``Kind · Source: title``, the link, the summary on one
    line, the facts and the time."""
    if source_label is not None:
        event = replace(event, source_name=source_label)
    title = neutral_line(event.title) or neutral_line(event.key)
    return _text(event.kind, facts_of(event), title, summary_chars)


def _text(kind: EventKind, facts: Facts, title: str, summary_chars: int = 400) -> str:
    lines = [f"{KIND_LABEL.get(kind, kind.value)} · {facts.source}: {title}"]
    if facts.link:
        lines.append(f"  {facts.link}")
    summary = cut(" ".join(facts.summary.split()), summary_chars)
    if summary:
        lines.append(f"  {summary}")
    lines.extend(f"  {fact.label}: {fact.value}" for fact in facts.facts)
    lines.extend(digest_lines(facts, indent="  "))
    topics = f" [{', '.join(facts.topics)}]" if facts.topics else ""
    lines.append(f"  {facts.when:%Y-%m-%d %H:%M} UTC{topics}")
    return "\n".join(lines)


def render_view_text(view: MessageView) -> str:
    """``render_text`` of the view's event (with its template's wording, if any), and
    the other sources that reported it."""
    facts = facts_of_view(view)
    if view.template is None:
        text = render_text(view.event)
    else:
        text = _text(view.event.kind, facts, facts.headline)
    also = facts.also
    if not also:
        return text
    reports = ", ".join(f"{r.source} {r.link}" if r.link else r.source for r in also)
    head, _, when = text.rpartition("\n")
    return f"{head}\n  Also reported by: {reports}\n{when}"


def digest_lines(facts: Facts, *, indent: str = "") -> list[str]:
    """A digest's groups as plain lines: ``topic · source (3)``, then each title and
    its link, then how many more (none for any other event)."""
    lines = []
    for group in facts.digest:
        lines.append(f"{indent}{group.label} ({group.count}):")
        for title, link in group.entries:
            lines.append(f"{indent}  - {title}" + (f" {link}" if link else ""))
        if group.more:
            lines.append(f"{indent}  … and {group.more} more")
    if facts.digest_more:
        lines.append(f"{indent}… and {facts.digest_more} more sources")
    return lines
