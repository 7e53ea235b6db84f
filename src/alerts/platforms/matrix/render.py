"""Render an ``Event`` as a Matrix ``m.notice``: formatting only.

The facts come from ``alerts.render.facts`` (neutralised there); this module lays
them out. The content has a plain ``body`` and an ``org.matrix.custom.html``
``formatted_body``::

    <p><strong><a href="LINK">HEADLINE</a></strong><br><em>SOURCE · KIND</em></p>
    <ul><li><strong>LABEL:</strong> VALUE</li>…</ul>
    <blockquote>SUMMARY, line<br>by line</blockquote>
    <p>Also reported by <a href="LINK">SOURCE</a>, …</p>
    <p><sub>WHEN</sub></p>

Source text is text: ``formatted_body`` is escaped text inside that markup, which
this module writes alone, so it uses only tags and attributes of the spec's
allow-list (client-server API, ``m.room.message`` msgtypes) and is nested three
deep. The links are the event's ``safe_link`` and those of the other sources that
reported the same story, and none whose host is ``matrix.to`` (clients turn those
into pills). In both bodies, text that clients
would turn into a mention or a link is broken with an invisible word joiner
(U+2060): ``@`` before anything (``@room``, ``@user:server``), the sigil of
``#alias:server``, ``!room:server`` and ``+group:server``, ``://`` and
``matrix.to``; in the body's link line ``@`` is percent-encoded instead, so the
link still works. Every message carries ``"m.mentions": {}``: clients that
implement intentional mentions notify no one. A content stays under
``CONTENT_MAX_BYTES`` (events are limited to 65,536 bytes): the summary shrinks,
then trailing facts go.

An edit (``edit_content``) is an ``m.replace`` event whose ``m.new_content`` is the
whole new content (spec: client-server API, "Event replacements"); a thread reply
(``thread_content``) relates to the message with ``m.thread`` and falls back to a
reply for clients without threads (spec: "Threading").
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from typing import Any

from alerts.model import Event, MessageView
from alerts.render.facts import DigestGroup, Facts, Report, cut, facts_of, facts_of_view, link_host

MARKER = "org.alerts.ref"
"""A key of every event's content the sink sends: the delivery's transaction id (an
alert's marker; clients ignore keys they do not know). A retry after Synapse may have
forgotten the transaction id looks for it in the room's history first."""
WJ = "\u2060"  # word joiner: invisible, but no longer "@room" to a client
CONTENT_MAX_BYTES = 48_000
EDIT_FALLBACK_CHARS = 1_000
PILL_HOSTS = ("matrix.to",)

_DEFUSE = re.compile(
    r"@(?=\S)"  # @room, @user:server
    r"|[#!+](?=[^\s:]*:\S)"  # #alias:server, !room:server, +group:server
    r"|:(?=//)"  # scheme://
    r"|(?i:matrix(?=\.to))",  # bare matrix.to links
)


def render(event: Event, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """The ``m.room.message`` content for one event."""
    return render_facts(facts_of(event), msgtype=msgtype)


def render_view(view: MessageView, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """The content of a message that shows ``view`` (an event and its other reports)."""
    return render_facts(facts_of_view(view), msgtype=msgtype)


def edit_content(content: dict[str, Any], original_event_id: str) -> dict[str, Any]:
    """An edit of ``original_event_id`` to ``content``: the new content in
    ``m.new_content`` (mentions included: none), a short ``* `` plain fallback for
    clients without edits (so the event stays within the size limit), and no new
    mentions for this revision."""
    return {
        "msgtype": content["msgtype"],
        "body": "* " + cut(content["body"], EDIT_FALLBACK_CHARS),
        "m.new_content": content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
        "m.mentions": {},
    }


def thread_content(content: dict[str, Any], root_event_id: str) -> dict[str, Any]:
    """``content`` as a message in the thread of ``root_event_id`` (a reply to it for
    clients that do not show threads)."""
    return {
        **content,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root_event_id,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root_event_id},
        },
    }


def marked(content: dict[str, Any], ref: str) -> dict[str, Any]:
    """``content`` carrying the marker ``ref`` (``MARKER``)."""
    return {**content, MARKER: ref}


def render_facts(facts: Facts, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """The content for already neutralised facts, within ``CONTENT_MAX_BYTES``."""
    while True:
        content = {
            "msgtype": msgtype,
            "body": plain_body(facts),
            "format": "org.matrix.custom.html",
            "formatted_body": html_body(facts),
            "m.mentions": {},
        }
        if _size(content) <= CONTENT_MAX_BYTES or not (facts.summary or facts.facts):
            return content
        facts = _smaller(facts)


def defuse(text: str) -> str:
    """Text made inert for clients that scan it for mentions, pills and links."""
    return _DEFUSE.sub(lambda m: m.group() + WJ, text)


def room_link(facts: Facts) -> str | None:
    """The link to show, unless it is none or one clients would turn into a pill."""
    return shown_link(facts.link)


def shown_link(link: str | None) -> str | None:
    """A ``safe_link`` to show, unless it is none or one clients would make a pill."""
    if link is None:
        return None
    host = link_host(link)
    if any(host == h or host.endswith("." + h) for h in PILL_HOSTS):
        return None
    return link


def plain_body(facts: Facts) -> str:
    lines = [defuse(facts.headline)]
    link = room_link(facts)
    if link:
        lines.append(link.replace("@", "%40"))
    lines.append(defuse(facts.byline))
    lines += [defuse(f"{fact.label}: {fact.value}") for fact in facts.facts]
    if facts.summary:
        lines.append(defuse(facts.summary))
    if facts.also:
        lines.append("Also reported by: " + ", ".join(_plain_report(r) for r in facts.also))
    lines += _plain_digest(facts)
    lines.append(facts.when_text)
    return "\n".join(lines)


def _plain_report(report: Report) -> str:
    link = shown_link(report.link)
    name = defuse(report.source)
    return f"{name} {link.replace('@', '%40')}" if link else name


def html_body(facts: Facts) -> str:
    link = room_link(facts)
    head = _esc(facts.headline)
    if link:
        head = f'<a href="{html.escape(link, quote=True)}">{head}</a>'
    parts = [f"<p><strong>{head}</strong><br><em>{_esc(facts.byline)}</em></p>"]
    if facts.facts:
        rows = "".join(
            f"<li><strong>{_esc(f.label)}:</strong> {_esc(f.value)}</li>" for f in facts.facts
        )
        parts.append(f"<ul>{rows}</ul>")
    if facts.summary:
        lines = "<br>".join(_esc(line) for line in facts.summary.split("\n"))
        parts.append(f"<blockquote>{lines}</blockquote>")
    if facts.also:
        parts.append(f"<p>Also reported by {', '.join(_html_report(r) for r in facts.also)}</p>")
    parts += [_html_group(group) for group in facts.digest]
    if facts.digest_more:
        parts.append(f"<p>… and {facts.digest_more} more sources</p>")
    parts.append(f"<p><sub>{_esc(facts.when_text)}</sub></p>")
    return "".join(parts)


def _html_report(report: Report) -> str:
    link = shown_link(report.link)
    name = _esc(report.source)
    return f'<a href="{html.escape(link, quote=True)}">{name}</a>' if link else name


def _plain_digest(facts: Facts) -> list[str]:
    """A digest's groups as lines: titles defused, links as the headline's."""
    lines = []
    for group in facts.digest:
        lines.append(defuse(f"{group.label} ({group.count}):"))
        for title, link in group.entries:
            shown = shown_link(link)
            lines.append(
                f"  - {defuse(title)}" + (f" {shown.replace('@', '%40')}" if shown else "")
            )
        if group.more:
            lines.append(f"  … and {group.more} more")
    if facts.digest_more:
        lines.append(f"… and {facts.digest_more} more sources")
    return lines


def _html_group(group: DigestGroup) -> str:
    items = []
    for title, link in group.entries:
        shown = shown_link(link)
        text = _esc(title)
        items.append(
            f'<li><a href="{html.escape(shown, quote=True)}">{text}</a></li>'
            if shown
            else f"<li>{text}</li>"
        )
    if group.more:
        items.append(f"<li>… and {group.more} more</li>")
    return f"<p><strong>{_esc(group.label)}</strong> ({group.count})</p><ul>{''.join(items)}</ul>"


def _esc(text: str) -> str:
    return html.escape(defuse(text), quote=True)


def _size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def _smaller(facts: Facts) -> Facts:
    if len(facts.digest) > 1:
        half = len(facts.digest) // 2
        more = facts.digest_more + len(facts.digest) - half
        return replace(facts, digest=facts.digest[:half], digest_more=more)
    if len(facts.also) > 3:
        return replace(facts, also=facts.also[:3])
    if len(facts.summary) > 200:
        return replace(facts, summary=cut(facts.summary, len(facts.summary) // 2))
    if facts.facts:
        return replace(facts, facts=facts.facts[:-1])
    return replace(facts, summary="")
