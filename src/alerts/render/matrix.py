"""Render an ``Event`` as a Matrix ``m.notice``.

The content has a plain ``body`` and an ``org.matrix.custom.html``
``formatted_body``: the title linked to the item, the source and event kind, the
key facts (``recipient``, ``amount`` and its old → new change for an award,
``count`` and ``delta`` for a petition…), the summary and the time.

Nothing a source writes can reach anyone: summary HTML is sanitised with nh3 to
the tags the Matrix spec recommends (no images, no ``data-mx-*`` colours, links
only to http(s)); ``matrix.to`` links — the pills clients turn into mentions — are
dropped to their text; ``@room`` and user ids are broken with a zero-width joiner
in both bodies; and every message carries ``"m.mentions": {}`` so clients that
implement intentional mentions notify no one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import Any

import nh3

from alerts.model import JSON, Event, EventKind

BODY_MAX = 16_000
SUMMARY_MAX = 4_000
URL_MAX = 2048
ZWJ = "\u2060"  # word joiner: invisible, but no longer "@room" to a client

KIND_LABELS: Mapping[EventKind, str] = {
    EventKind.NEW: "New",
    EventKind.UPDATED: "Updated",
    EventKind.MILESTONE: "Milestone",
    EventKind.DELTA: "More",
    EventKind.SUMMARY: "Summary",
}

# Key facts first, in this order; any other scalar field follows.
KEY_FIELDS = ("recipient", "amount", "count", "delta", "threshold", "agency", "award_id")

# The spec's recommended subset (client-server API, "m.room.message msgtypes"),
# minus img (it would fetch a source-chosen mxc URL) and span/font colours.
ALLOWED_TAGS = frozenset(
    {
        "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol",
        "sup", "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br",
        "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "details",
        "summary",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "code": {"class"}}
URL_SCHEMES = frozenset({"http", "https"})

_URL = re.compile(r"^https?://[^\s<>\"']+$")
_MENTION = re.compile(r"@(room\b|[a-z0-9._=/+-]+:[a-z0-9.-]+)", re.IGNORECASE)
_PILL = re.compile(r"<a\s[^>]*href=\"https?://matrix\.to/[^\"]*\"[^>]*>(.*?)</a>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def render(event: Event, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """The ``m.room.message`` content for one event."""
    return {
        "msgtype": msgtype,
        "body": _cut(plain_body(event), BODY_MAX),
        "format": "org.matrix.custom.html",
        "formatted_body": html_body(event),
        "m.mentions": {},
    }


def defuse(text: str) -> str:
    """``@room`` and ``@user:server`` made inert for clients that scan bodies."""
    return _MENTION.sub(lambda m: "@" + ZWJ + m.group(1), text)


def sanitize_html(fragment: str) -> str:
    """Source HTML reduced to the spec's safe subset, with pills dropped to text."""
    cleaned = nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
    )
    cleaned = _PILL.sub(lambda m: m.group(1), cleaned)
    return defuse(cleaned)


def html_to_text(fragment: str) -> str:
    """Plain text of a source summary (which may be HTML)."""
    text = _TAGS.sub(" ", nh3.clean(fragment, tags={"p", "br", "li"}))
    return " ".join(html.unescape(text).split())


def safe_url(url: str | None) -> str | None:
    if url and len(url) <= URL_MAX and _URL.match(url) and "matrix.to/" not in url:
        return url
    return None


def format_value(name: str, value: JSON) -> str:
    """A field value for humans: money for amounts, signs on deltas, separators."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int | float):
        if "amount" in name or name in ("obligation", "value", "total"):
            return f"${value:,.0f}" if float(value).is_integer() else f"${value:,.2f}"
        if name == "delta":
            return f"{value:+,}" if isinstance(value, int) else f"{value:+,.2f}"
        return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return str(value)


def facts(event: Event) -> Iterator[tuple[str, str]]:
    """(label, value) pairs: key fields first, then changes, then other scalars."""
    names = [k for k in KEY_FIELDS if k in event.fields or k in event.changes]
    names += [k for k in event.changes if k not in names]
    names += [k for k in event.fields if k not in names]
    for name in names:
        if name in event.changes:
            old, new = event.changes[name]
            yield _label(name), f"{format_value(name, old)} → {format_value(name, new)}"
        elif not isinstance(event.fields[name], dict | list | tuple):
            yield _label(name), format_value(name, event.fields[name])


def plain_body(event: Event) -> str:
    lines = [defuse(_headline(event))]
    url = safe_url(event.url)
    if url:
        lines.append(url)
    lines.append(defuse(f"{event.source_label} · {event.kind.value}"))
    lines += [defuse(f"{name}: {value}") for name, value in facts(event)]
    summary = _cut(html_to_text(event.summary), SUMMARY_MAX)
    if summary:
        lines.append(defuse(summary))
    lines.append(_when(event))
    return "\n".join(lines)


def html_body(event: Event) -> str:
    esc = _esc
    title = esc(_headline(event))
    url = safe_url(event.url)
    head = f'<a href="{html.escape(url, quote=True)}">{title}</a>' if url else title
    parts = [
        f"<p><strong>{head}</strong><br><em>{esc(event.source_label)} · {esc(event.kind.value)}</em></p>"
    ]
    rows = [f"<li><strong>{esc(n)}:</strong> {esc(v)}</li>" for n, v in facts(event)]
    if rows:
        parts.append("<ul>" + "".join(rows) + "</ul>")
    if event.summary.strip():
        parts.append(f"<blockquote>{sanitize_html(_cut(event.summary, SUMMARY_MAX))}</blockquote>")
    parts.append(f"<p><sub>{esc(_when(event))}</sub></p>")
    return "".join(parts)


def _headline(event: Event) -> str:
    prefix = "" if event.kind is EventKind.NEW else f"{KIND_LABELS[event.kind]}: "
    return prefix + " ".join((event.title or event.key).split())


def _when(event: Event) -> str:
    moment = event.occurred_at or event.detected_at
    if moment.utcoffset() is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _esc(text: str) -> str:
    return defuse(html.escape(text, quote=True))


def _label(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or "?"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
