"""Render an ``Event`` as a Discord embed: formatting only.

The facts come from ``alerts.render.facts`` (neutralised there); the embed carries
the headline as its title (linked to the event's ``safe_link``), the summary as its
description, one field per key fact, a colour per event kind, the time, and the
source and kind in the footer.

No markdown from strangers: in every part Discord renders as markdown (title,
description, field names and values) each character that can open or close a
construct is escaped with a backslash, which Discord's markdown reads as "this
character, literally" (any ASCII punctuation may be escaped):
``\\ * _ ~ ` | [ ] ( ) < > # :`` everywhere, and ``-``, ``+`` and ``1.`` at the
start of a line. So no bold, italics, underline, strike-through, spoilers, code,
headings, ``-#`` subtext, lists, block quotes, masked links (``[text](url)``),
autolinks (``<https://…>``, or ``https://…`` which needs its ``:``), timestamps
(``<t:0:R>``), channel, user and role mentions (``<#id>``, ``<@id>``, ``<@!id>``,
``<@&id>``), custom emoji (``<:name:id>``) or command mentions (``</name:id>``)
survive; ``@everyone`` and ``@here`` get a zero-width space after the ``@``. Parts
Discord shows as plain text (the footer, a forum post's name) get only that
mention break. On top of it all, every payload carries ``allowed_mentions`` that
parses nothing, so no text can ping anyone.

A message that shows one story reported by several sources has a field "Also
reported by" listing them as masked links the renderer writes itself: each name
escaped like any source text, each URL a ``safe_link`` with its parentheses
percent-encoded, so neither can end the link early.

Every Discord limit is respected, counted in UTF-16 code units (never fewer than
Discord's characters): title 256, description 4096, 25 fields of name 256 / value
1024, footer 2048, 6000 in all, forum post names 100. Cuts fall between grapheme
clusters and never split an escape from the character it escapes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import regex

from alerts.model import Event, EventKind, MessageView
from alerts.render.facts import (
    DigestGroup,
    Facts,
    Report,
    cut,
    facts_of,
    facts_of_view,
    utf16_len,
)

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
THREAD_NAME_MAX = 100
ZWSP = "\u200b"

COLOURS: Mapping[EventKind, int] = {
    EventKind.NEW: 0x2ECC71,
    EventKind.UPDATED: 0xE67E22,
    EventKind.MILESTONE: 0xF1C40F,
    EventKind.DELTA: 0x3498DB,
    EventKind.SUMMARY: 0x95A5A6,
}

_SPECIAL = re.compile(r"[\\*_~`|\[\]()<>#:]")
_LIST_MARK = re.compile(r"^(?=[-+])|^(\d+)(?=\.)", re.MULTILINE)
_EVERYONE = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_UNIT = regex.compile(r"\\\X|\X")  # an escape and what it escapes, or one grapheme


def escape(text: str) -> str:
    """Neutral text made literal for Discord's markdown, mentions broken."""
    text = _SPECIAL.sub(r"\\\g<0>", text)
    text = _LIST_MARK.sub(lambda m: (m.group(1) or "") + "\\", text)
    return plain(text)


def plain(text: str) -> str:
    """Neutral text for parts Discord does not read as markdown: mentions broken."""
    return _EVERYONE.sub("@" + ZWSP, text)


def fit(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-16 units, cut between escapes and graphemes."""
    return cut(text, limit, size=utf16_len, unit=_UNIT)


def render_embed(event: Event) -> discord.Embed:
    """The embed for one event, within every Discord limit."""
    return embed_for(facts_of(event, limit=FIELDS_MAX))


def render_view_embed(view: MessageView, *, ref: str | None = None) -> discord.Embed:
    """The embed of a message that shows ``view`` (an event and its other reports);
    ``ref``, the delivery's key, ends its footer (the alert's marker)."""
    return embed_for(facts_of_view(view, limit=FIELDS_MAX - 1), ref=ref)


def marker(ref: str) -> str:
    """How a footer ends when the message carries the marker ``ref``: a short
    reference operators can look up, and what a retry looks for in the channel's
    history once Discord may have forgotten the message's nonce."""
    return f" · ref {ref}"


def has_marker(message: Mapping[str, Any], ref: str) -> bool:
    """True when a message (Discord's JSON) carries the marker ``ref``."""
    for embed in message.get("embeds") or ():
        footer = (embed.get("footer") or {}).get("text") or ""
        if footer.endswith(marker(ref)):
            return True
    return False


def embed_for(facts: Facts, *, ref: str | None = None) -> discord.Embed:
    """The embed of already neutralised facts."""
    embed = discord.Embed(
        title=fit(escape(facts.headline), TITLE_MAX),
        url=facts.link,
        description=fit(escape(facts.summary), DESCRIPTION_MAX) or None,
        colour=COLOURS[facts.kind],
        timestamp=facts.when,
    )
    for fact in facts.facts[:FIELDS_MAX]:
        embed.add_field(
            name=fit(escape(fact.label), FIELD_NAME_MAX) or "—",
            value=fit(escape(fact.value), FIELD_VALUE_MAX) or "—",
            inline=len(fact.value) <= 40,
        )
    for group in facts.digest[: FIELDS_MAX - len(embed.fields)]:
        embed.add_field(
            name=fit(escape(f"{group.label} ({group.count})"), FIELD_NAME_MAX),
            value=_digest_entries(group),
            inline=False,
        )
    if facts.also:
        embed.insert_field_at(0, name="Also reported by", value=_reports(facts.also), inline=False)
        while len(embed.fields) > FIELDS_MAX:
            embed.remove_field(len(embed.fields) - 1)
    tail = marker(ref) if ref else ""
    embed.set_footer(text=fit(plain(facts.byline), FOOTER_MAX - len(tail)) + tail)
    _fit_total(embed)
    return embed


def _reports(reports: tuple[Report, ...]) -> str:
    """``[name](url), …`` within a field value's limit: whole entries only."""
    shown: list[str] = []
    for report in reports:
        entry = fit(escape(report.source), 200)
        if report.link:
            entry = f"[{entry}]({report.link.replace('(', '%28').replace(')', '%29')})"
        if utf16_len(", ".join([*shown, entry])) > FIELD_VALUE_MAX:
            break
        shown.append(entry)
    return ", ".join(shown) or "—"


def _digest_entries(group: DigestGroup) -> str:
    """``• [title](url)`` lines within a field value's limit: whole entries only."""
    shown: list[str] = []
    for title, link in group.entries:
        entry = fit(escape(title), 200)
        if link:
            entry = f"[{entry}]({link.replace('(', '%28').replace(')', '%29')})"
        if utf16_len("\n".join([*shown, "• " + entry])) > FIELD_VALUE_MAX - 40:
            break
        shown.append("• " + entry)
    more = group.count - len(shown)
    if more > 0:
        shown.append(f"… and {more} more")
    return "\n".join(shown) or "—"


def thread_name(event: Event) -> str:
    """The name of a forum post: plain text (Discord renders no markdown there)."""
    return fit(plain(facts_of(event).headline), THREAD_NAME_MAX) or "alert"


def embed_size(embed: discord.Embed) -> int:
    """What counts against the 6,000 limit, in UTF-16 units."""
    parts = [embed.title or "", embed.description or "", embed.footer.text or ""]
    parts += [f"{f.name or ''}{f.value or ''}" for f in embed.fields]
    return sum(utf16_len(p) for p in parts)


def _fit_total(embed: discord.Embed) -> None:
    """Shrink the description, then drop trailing fields, until 6000 units."""
    excess = embed_size(embed) - TOTAL_MAX
    if excess > 0 and embed.description:
        keep = max(utf16_len(embed.description) - excess, 200)
        embed.description = fit(embed.description, keep)
    while embed_size(embed) > TOTAL_MAX and embed.fields:
        embed.remove_field(len(embed.fields) - 1)


def embed_payload(event: Event) -> dict[str, Any]:
    """The embed as the JSON Discord receives (for tests and the console)."""
    return dict(render_embed(event).to_dict())


def allowed_mentions() -> discord.AllowedMentions:
    """Nothing a source writes may ping anyone."""
    return discord.AllowedMentions.none()
