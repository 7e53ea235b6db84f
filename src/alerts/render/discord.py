"""Render an ``Event`` as a Discord embed.

The embed carries the title (linked to the item), the summary, one field per key
fact (``alerts.render.text.facts``, shared with every platform: recipient, amount
and its old → new change for an award, count and delta for a petition…), a colour
per event kind, the event's time and the
source in the footer. Every text that comes from a source is markdown-escaped and
has its mentions defused, and every Discord limit is respected: title 256,
description 4096, 25 fields of name 256 / value 1024, footer 2048 and 6000
characters in total. Long text is cut on a word boundary and ends with "…".
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from alerts.model import Event, EventKind
from alerts.render.text import facts

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
TOTAL_MAX = 6000
URL_MAX = 2048
THREAD_NAME_MAX = 100
ELLIPSIS = "…"

COLOURS: Mapping[EventKind, int] = {
    EventKind.NEW: 0x2ECC71,
    EventKind.UPDATED: 0xE67E22,
    EventKind.MILESTONE: 0xF1C40F,
    EventKind.DELTA: 0x3498DB,
    EventKind.SUMMARY: 0x95A5A6,
}

_URL = re.compile(r"^https?://[^\s<>]+$")


def escape(text: str) -> str:
    """Source text made inert: markdown escaped, mentions defused."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut on a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(ELLIPSIS), 0)]
    space = head.rfind(" ")
    if space >= len(head) * 4 // 5:
        head = head[:space]
    trailing = len(head) - len(head.rstrip("\\"))
    if trailing % 2:
        head = head[:-1]
    return head.rstrip() + ELLIPSIS


def safe_url(url: str | None) -> str | None:
    if url and len(url) <= URL_MAX and _URL.match(url):
        return url
    return None


def render_title(event: Event) -> str:
    prefix = "Updated: " if event.kind is EventKind.UPDATED else ""
    return cut(prefix + escape(event.title or event.key), TITLE_MAX)


def thread_name(event: Event) -> str:
    """The title of a forum post: plain text (thread names render no markdown)."""
    name = " ".join((event.title or event.key).split())
    return cut(name, THREAD_NAME_MAX) or "alert"


def render_embed(event: Event) -> discord.Embed:
    """The embed for one event, within every Discord limit."""
    embed = discord.Embed(
        title=render_title(event),
        url=safe_url(event.url),
        description=cut(escape(event.summary), DESCRIPTION_MAX) or None,
        colour=COLOURS[event.kind],
        timestamp=event.occurred_at or event.detected_at,
    )
    for name, value in facts(event, limit=FIELDS_MAX):
        embed.add_field(
            name=cut(escape(name), FIELD_NAME_MAX),
            value=cut(escape(value), FIELD_VALUE_MAX) or "—",
            inline=len(value) <= 40,
        )
    embed.set_footer(text=cut(escape(f"{event.source_label} · {event.kind.value}"), FOOTER_MAX))
    _fit_total(embed)
    return embed


def _fit_total(embed: discord.Embed) -> None:
    """Shrink the description, then drop trailing fields, until 6000 characters."""
    excess = len(embed) - TOTAL_MAX
    if excess > 0 and embed.description:
        keep = max(len(embed.description) - excess, 200)
        embed.description = cut(embed.description, keep)
    while len(embed) > TOTAL_MAX and embed.fields:
        embed.remove_field(len(embed.fields) - 1)


def embed_payload(event: Event) -> dict[str, Any]:
    """The embed as the JSON Discord receives (for tests and the console)."""
    return dict(embed_to_dict(render_embed(event)))


def embed_to_dict(embed: discord.Embed) -> Mapping[str, Any]:
    return embed.to_dict()


def allowed_mentions() -> discord.AllowedMentions:
    """Nothing a source writes may ping anyone."""
    return discord.AllowedMentions.none()
