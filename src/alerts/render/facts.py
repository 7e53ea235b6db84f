"""The facts of an event, and the neutralisation of strangers' text.

Every renderer (the console, Discord, Matrix) builds on ``facts_of``: the same
headline, link, source, summary and key facts (recipient, amount and its signed
change for an award; count, change and the by-company breakdown for a petition…),
in the same order, with the same labels. A platform renderer only formats them.

Anyone can publish a feed item, sign a petition or post on Bluesky, so every string
an event carries is a stranger's. It is neutralised here, once:

* **Controls.** NUL, the other C0 controls, DEL and the C1 controls are removed. A
  line break (CR LF, CR, LF, VT, FF, NEL, U+2028, U+2029) becomes a space in a
  single-line field (title, author, names, labels, values, source) and ``\\n`` in a
  multi-line one (the summary); a tab becomes a space; runs of spaces collapse.
* **Bidi.** Embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069) are
  removed, and so are the implicit marks LRM, RLM and ALM (U+200E, U+200F,
  U+061C): they exist to move neutral characters (digits, punctuation, a URL's
  dots) to the other side of a run, which is what a spoofer wants. Right-to-left
  text displays correctly without them: the Unicode bidi algorithm orders it by its
  own letters, one field at a time.
* **Invisible debris.** Lone surrogates, noncharacters, the BOM (U+FEFF) and the
  interlinear annotation characters (U+FFF9 to U+FFFB) are removed. Joiners and
  variation selectors stay: emoji sequences and many scripts need them.
* **Lengths.** Text is cut on extended grapheme cluster boundaries (UAX #29), so a
  combining sequence, an emoji ZWJ sequence or a flag is never split; a cut text
  ends with "…" and prefers a word boundary near the end.
* **Links.** ``safe_link`` allows only an absolute http(s) URL that it has parsed
  and re-serialised: no credentials, no controls, no backslashes, a host that is a
  valid IDNA name (emitted in its ASCII form) or an IP literal, a default port
  dropped, everything else percent-encoded, at most 2,048 characters.

A room may show its alerts with an operator's template (``alerts.templates``):
``templated`` fills it with these neutral facts and neutralises what it renders
again, so the headline and summary stay neutral lines the renderers escape.

A message that shows one story reported by several sources (``alerts.edits``) lists
the others under ``also``: each name neutralised like the source's, each link a
``safe_link``.

Event text is text: nothing here parses HTML or markdown. Adapters hand over text
(the feed adapter turns a feed's HTML into text; JSON APIs and CSS-selected page
regions are text already), and each renderer escapes for its platform.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import idna
import regex

from alerts.model import Event, EventKind, MessageView
from alerts.templates import Template, fill

TITLE_MAX = 256
SUMMARY_MAX = 4_000
SOURCE_MAX = 200
LABEL_MAX = 100
VALUE_MAX = 1_000
URL_MAX = 2_048
FACTS_MAX = 25
ALSO_MAX = 10
ELLIPSIS = "…"

GRAPHEME = regex.compile(r"\X")

# --- neutralising text --------------------------------------------------------------

BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_LINE_BREAKS = (0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029)
_REMOVED = frozenset(
    [
        *range(0x00, 0x20),
        0x7F,
        *range(0x80, 0xA0),
        *BIDI_CONTROLS,
        0xFEFF,
        *range(0xFFF9, 0xFFFC),
        *range(0xD800, 0xE000),  # lone surrogates (from JSON "\\ud800")
        *range(0xFDD0, 0xFDF0),
        *(plane * 0x10000 + low for plane in range(17) for low in (0xFFFE, 0xFFFF)),
    ]
)
_SINGLE_LINE: Mapping[int, str | None] = {
    **dict.fromkeys(_REMOVED),
    0x09: " ",
    **dict.fromkeys(_LINE_BREAKS, " "),
}
_MULTI_LINE: Mapping[int, str | None] = {
    **dict.fromkeys(_REMOVED),
    0x09: " ",
    **dict.fromkeys(_LINE_BREAKS, "\n"),
}
_BLANK_LINES = re.compile(r"\n{3,}")


def neutral_line(text: object, limit: int = TITLE_MAX) -> str:
    """``text`` as one neutral line (controls, bidi and breaks gone), cut to ``limit``."""
    value = str(text).translate(_SINGLE_LINE)
    return cut(" ".join(value.split()), limit)


def neutral_text(text: object, limit: int = SUMMARY_MAX) -> str:
    """``text`` as neutral lines: like ``neutral_line`` but line breaks stay (as
    ``\\n``, at most one blank line in a row), cut to ``limit``."""
    value = str(text).replace("\r\n", "\n").translate(_MULTI_LINE)
    lines = (" ".join(part.split()) for part in value.split("\n"))
    return cut(_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n"), limit)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what JavaScript counts): never less than ``len``."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def cut(
    text: str,
    limit: int,
    *,
    size: Callable[[str], int] = len,
    unit: regex.Pattern[str] = GRAPHEME,
) -> str:
    """``text`` within ``limit`` (as ``size`` measures it), cut between two ``unit``
    matches (grapheme clusters by default), ending with "…" and preferring a space
    near the end. A cluster longer than the whole budget is dropped, never split."""
    if size(text) <= limit:
        return text
    budget = limit - size(ELLIPSIS)
    head: list[str] = []
    used = 0
    for match in unit.finditer(text):
        piece = match.group()
        used += size(piece)
        if used > budget:
            break
        head.append(piece)
    kept = "".join(head)
    space = kept.rfind(" ")
    if space > 0 and space >= len(kept) * 4 // 5:
        kept = kept[:space]
    return kept.rstrip() + ELLIPSIS


# --- links --------------------------------------------------------------------------

_PCHAR = "-._~!$&'()*+,;=:@/"  # RFC 3986 pchar and "/", besides unreserved letters/digits
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_link(url: object) -> str | None:
    """The link to show for ``url``, or None: an absolute http(s) URL, parsed and
    re-serialised (see the module docstring). Anything unusual gives None."""
    if not isinstance(url, str):
        return None
    raw = url.strip(" \t\n\r\f")
    if not raw or len(raw) > URL_MAX or "\\" in raw or _has_controls(raw):
        return None
    try:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or "@" in parts.netloc:
            return None
        authority = _authority(parts.netloc, scheme)
    except ValueError:
        return None
    if authority is None:
        return None
    path = _encode(parts.path, _PCHAR) or "/"
    query = "?" + _encode(parts.query, _PCHAR + "?") if parts.query else ""
    fragment = "#" + _encode(parts.fragment, _PCHAR + "?") if parts.fragment else ""
    link = f"{scheme}://{authority}{path}{query}{fragment}"
    return link if len(link) <= URL_MAX else None


def link_host(link: str) -> str:
    """The host of a link ``safe_link`` returned (lower case, ASCII, no trailing dot)."""
    return (urlsplit(link).hostname or "").rstrip(".")


def _has_controls(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") or ord(ch) in BIDI_CONTROLS for ch in text)


def _encode(part: str, safe: str) -> str:
    return quote(_STRAY_PERCENT.sub("%25", part), safe=safe + "%")


def _authority(netloc: str, scheme: str) -> str | None:
    host, port = _split_port(netloc)
    name = _host(host)
    if name is None:
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return name
    return f"{name}:{port}"


def _split_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
    else:
        host, colon, port_text = netloc.partition(":")
        rest = colon + port_text
    if not rest:
        return host, None
    digits = rest.removeprefix(":")
    if not rest.startswith(":") or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"bad port in {netloc!r}")
    port = int(digits)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {netloc!r}")
    return host, port


def _host(host: str) -> str | None:
    """A host in canonical ASCII form, or None when it is not a plain DNS name or IP."""
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:  # a zone id means nothing outside the machine that wrote it
            return None
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        mapped = idna.uts46_remap(host, std3_rules=True, transitional=False).rstrip(".")
        if not mapped:
            return None
        if _NUMERIC_LABEL.match(mapped.rsplit(".", 1)[-1]):  # an IPv4 address, or a trap
            return str(ipaddress.IPv4Address(mapped))
        return idna.encode(mapped, uts46=False, std3_rules=True).decode("ascii")
    except (idna.IDNAError, ValueError, UnicodeError):
        return None


# --- facts --------------------------------------------------------------------------

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
# Never shown: long texts repeated elsewhere (the summary), lists, adapter internals.
_HIDDEN = frozenset(
    {"categories", "titles", "diff", "raw", "text", "description", "names", "links", "unit"}
    | {"digest", "more_groups"}  # a digest's groups: ``Facts.digest``
)
_MONEY = ("amount", "obligation", "value")
_EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled value, both neutral single lines."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Report:
    """Another source that reported the same story: its name (a neutral line) and its
    link (a ``safe_link`` or None)."""

    source: str
    link: str | None


@dataclass(frozen=True, slots=True)
class DigestGroup:
    """One group of a digest (``alerts.digest``): its label (``topic · source``, a
    neutral line), how many alerts it holds and the first few (title, ``safe_link``)."""

    label: str
    count: int
    entries: tuple[tuple[str, str | None], ...]

    @property
    def more(self) -> int:
        return max(0, self.count - len(self.entries))


@dataclass(frozen=True, slots=True)
class Facts:
    """What every renderer shows of an event, every string neutralised.

    ``headline`` is the title (with "Updated: " before an update), one line;
    ``link`` is a ``safe_link`` or None; ``summary`` may have line breaks; ``also``
    the other sources that reported the same story.
    """

    kind: EventKind
    headline: str
    link: str | None
    source: str
    summary: str
    facts: tuple[Fact, ...]
    when: datetime
    topics: tuple[str, ...]
    also: tuple[Report, ...] = ()
    digest: tuple[DigestGroup, ...] = ()
    digest_more: int = 0  # groups not listed

    @property
    def byline(self) -> str:
        """The source and the kind of event, e.g. ``Wired · new``."""
        return f"{self.source} · {self.kind.value}"

    @property
    def when_text(self) -> str:
        return self.when.strftime("%Y-%m-%d %H:%M UTC")


def facts_of(event: Event, *, limit: int = FACTS_MAX) -> Facts:
    """The neutralised facts of ``event``."""
    when = event.occurred_at or event.detected_at
    if when.utcoffset() is not None:
        when = when.astimezone(UTC)
    return Facts(
        kind=event.kind,
        headline=headline(event),
        link=safe_link(event.url),
        source=neutral_line(event.source_label, SOURCE_MAX) or neutral_line(event.source_id),
        summary=neutral_text(event.summary, SUMMARY_MAX),
        facts=tuple(key_facts(event))[:limit],
        when=when.replace(tzinfo=UTC) if when.tzinfo is None else when,
        topics=tuple(neutral_line(t, LABEL_MAX) for t in event.topics),
        digest=digest_groups(event),
        digest_more=_count(event.fields.get("more_groups")),
    )


def digest_groups(event: Event) -> tuple[DigestGroup, ...]:
    """The groups of a digest event (none for any other event), every string neutral."""
    listed = event.fields.get("digest") if event.kind is EventKind.SUMMARY else None
    if not isinstance(listed, list):
        return ()
    groups = []
    for group in listed:
        if not isinstance(group, Mapping):
            continue
        label = " · ".join(
            neutral_line(group.get(name) or "", SOURCE_MAX)
            for name in ("topic", "source")
            if group.get(name)
        )
        entries = tuple(
            (neutral_line(e.get("title") or "", TITLE_MAX) or "(untitled)", safe_link(e.get("url")))
            for e in group.get("items") or ()
            if isinstance(e, Mapping)
        )
        groups.append(DigestGroup(label or "?", _count(group.get("count")), entries))
    return tuple(groups)


def _count(value: Any) -> int:
    return int(value) if _is_number(value) and value >= 0 else 0


def facts_of_view(view: MessageView, *, limit: int = FACTS_MAX) -> Facts:
    """The neutralised facts of what one message shows: its event, and the other
    sources that reported the same story (at most ``ALSO_MAX``)."""
    facts = templated(facts_of(view.event, limit=limit), view.template)
    also = tuple(
        Report(neutral_line(a.source, SOURCE_MAX) or "?", safe_link(a.url))
        for a in view.also[:ALSO_MAX]
    )
    return replace(facts, also=also) if also else facts


def headline(event: Event) -> str:
    """The title as one neutral line, "Updated: " before an update."""
    title = neutral_line(event.title, TITLE_MAX) or neutral_line(event.key, TITLE_MAX)
    prefix = "Updated: " if event.kind is EventKind.UPDATED else ""
    return cut(prefix + (title or "(untitled)"), TITLE_MAX)


def key_facts(event: Event) -> Iterator[Fact]:
    """Known fields first (with their changes), then other changes, then other scalars."""
    changed = dict(event.changes)
    for name, label in _KNOWN.items():
        if name in changed:
            old, new = changed.pop(name)
            yield _fact(label, change(name, old, new))
        elif name in event.fields and event.fields[name] not in _EMPTY:
            yield _fact(label, _known_value(event, name))
    for name, (old, new) in changed.items():
        if name not in _HIDDEN and name != "summary":
            yield _fact(_label(name), change(name, old, new))
    for name, value in event.fields.items():
        if name in _KNOWN or name in _HIDDEN or value in _EMPTY:
            continue
        if isinstance(value, str | int | float | bool):
            yield _fact(_label(name), format_value(name, value))


def _fact(label: str, value: str) -> Fact:
    return Fact(neutral_line(label, LABEL_MAX), neutral_line(value, VALUE_MAX) or "—")


def _known_value(event: Event, name: str) -> str:
    value = event.fields[name]
    if name == "delta" and _is_number(value):
        money = "amount" in event.fields or "amount" in event.changes
        return signed(name, value, money=money)
    return format_value(name, value)


def _label(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or "?"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_money(name: str) -> bool:
    return any(m in name for m in _MONEY)


def format_value(name: str, value: Any, *, money: bool = False) -> str:
    """A value for people: money as ``$1,500,000.50``, counts with separators,
    mappings as ``key: value, …`` and lists comma-separated."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value) and (money or _is_money(name)):
        sign = "-" if value < 0 else ""
        return f"{sign}${abs(value):,.2f}".replace(".00", "")
    if _is_number(value):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if isinstance(value, Mapping):
        return ", ".join(
            f"{neutral_line(k, LABEL_MAX)}: {format_value(name, v)}" for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ", ".join(neutral_line(v, VALUE_MAX) for v in value)
    return neutral_line(value, VALUE_MAX)


def signed(name: str, value: Any, *, money: bool = False) -> str:
    """A number with its sign: ``+3``, ``-$500,000.50``."""
    sign = "+" if value >= 0 else "-"
    return sign + format_value(name, abs(value), money=money)


def change(name: str, old: Any, new: Any) -> str:
    """``old → new``, with the signed difference when both are numbers:
    ``$1,000,000 → $1,500,000.50 (+$500,000.50)``."""
    text = f"{format_value(name, old)} → {format_value(name, new)}"
    if _is_number(old) and _is_number(new):
        text += f" ({signed(name, new - old, money=_is_money(name))})"
    return text


# --- templates (alerts.templates) ---------------------------------------------------

_FIELD_OF_LABEL = {label: "change" if name == "delta" else name for name, label in _KNOWN.items()}


def template_values(facts: Facts) -> dict[str, str]:
    """The fields a template may use (``alerts.templates.FIELDS``), all neutral."""
    values = {
        "title": facts.headline,
        "source": facts.source,
        "kind": facts.kind.value,
        "topic": ", ".join(facts.topics),
        "link": facts.link or "",
        "summary": facts.summary,
        "when": facts.when_text,
        "facts": "\n".join(f"{f.label}: {f.value}" for f in facts.facts),
    }
    for fact in facts.facts:
        name = _FIELD_OF_LABEL.get(fact.label)
        if name is not None:
            values.setdefault(name, fact.value)
    return values


def templated(facts: Facts, template: Template | None) -> Facts:
    """``facts`` shown with ``template``: its title as the headline, its body as the
    summary (each neutralised again; an empty result keeps the default), the key
    facts kept unless the template drops them. A digest keeps its own wording."""
    if template is None or facts.digest:
        return facts
    values = template_values(facts)
    one_line = {name: " ".join(value.split()) for name, value in values.items()}
    title = neutral_line(fill(template.title, one_line), TITLE_MAX) if template.title else ""
    body = neutral_text(fill(template.body, values), SUMMARY_MAX) if template.body else ""
    return replace(
        facts,
        headline=title or facts.headline,
        summary=body if template.body else facts.summary,
        facts=facts.facts if template.show_facts else (),
    )
