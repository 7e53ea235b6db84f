"""Message templates: an operator's wording for a room's alerts.

An operator defines named templates in TOML (``[templates.NAME]`` with ``title``
and ``body``) and chooses one per destination (``template = "NAME"``) or per
subscription (``subscribe … template=NAME``). A template is a safe placeholder
format: literal text and ``{field}`` placeholders, ``{{`` and ``}}`` for braces.
Nothing else: no attribute or index access (``{title.upper}``, ``{x[0]}``), no
conversions or format specs (``{amount!r}``, ``{amount:>9}``), no code. A template
naming a field that is not in ``FIELDS`` is refused where it is defined (``alerts
check`` names the file and key) and a template name nobody defined is refused in
chat.

The fields are the event's facts as ``alerts.render.facts`` neutralised them (every
value is a neutral line, the summary neutral lines); ``apply`` in that module fills
them in. What a template renders is text like any source text: each platform's
renderer escapes it afterwards, exactly as it escapes a feed's title, so neither a
template nor the text it quotes can mention ``@everyone`` or write markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

TEMPLATE_MAX = 2_000

FIELDS: Mapping[str, str] = {
    "title": "the headline (with 'Updated: ' before an update)",
    "source": "the source's name",
    "kind": "new, updated, milestone, delta or summary",
    "topic": "the event's topics, comma-separated",
    "link": "the item's link (a checked http(s) URL), or empty",
    "summary": "the summary (several lines in a body, one line in a title)",
    "when": "when it happened, e.g. 2026-01-05 14:00 UTC",
    "recipient": "an award's recipient",
    "amount": "an award's amount ('$1,000 → $1,500 (+$500)' after a change)",
    "agency": "an award's agency",
    "award_id": "an award's id",
    "count": "a petition's or counter's count",
    "change": "the signed change since the last alert (e.g. +1,204)",
    "threshold": "the milestone crossed",
    "by_company": "a petition's breakdown by company",
    "document_type": "a Federal Register document's type",
    "author": "the item's author",
    "facts": "every key fact, one 'Label: value' per line (one line in a title)",
}


class TemplateError(ValueError):
    """A template's text is not a valid placeholder format."""


@dataclass(frozen=True, slots=True)
class Template:
    """A named template: ``title`` replaces the headline and ``body`` the summary
    (empty: the default one); ``show_facts`` keeps the key facts under the body."""

    name: str
    title: str = ""
    body: str = ""
    show_facts: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "body": self.body, "facts": self.show_facts}

    @classmethod
    def from_json(cls, data: Any) -> Template | None:
        if not isinstance(data, Mapping) or not data.get("name"):
            return None
        return cls(
            str(data.get("name", "")),
            str(data.get("title", "")),
            str(data.get("body", "")),
            data.get("facts") is not False,
        )


def parse(text: str) -> list[tuple[str, str | None]]:
    """``text`` as (literal, field or None) pieces; raises ``TemplateError``."""
    if len(text) > TEMPLATE_MAX:
        raise TemplateError(f"longer than {TEMPLATE_MAX} characters")
    try:
        parts = list(Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None:
            _check_field(name, spec, conversion)
        pieces.append((literal, name))
    return pieces


def _check_field(name: str, spec: str | None, conversion: str | None) -> None:
    if conversion or spec:
        raise TemplateError(f"{{{name}}}: no conversions or format specs, only {{field}}")
    if not name.isidentifier():
        raise TemplateError(
            f"{{{name}}}: only plain {{field}} names (no attribute or index access)"
        )
    if name not in FIELDS:
        raise TemplateError(f"unknown field {{{name}}}; fields: {', '.join(FIELDS)}")


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each placeholder replaced by its value (a missing one: empty)."""
    return "".join(
        literal + (values.get(name, "") if name else "") for literal, name in parse(text)
    )


def checked(name: str, *, title: str = "", body: str = "", show_facts: bool = True) -> Template:
    """A template whose title and body parse; raises ``TemplateError`` naming which."""
    for part, text in (("title", title), ("body", body)):
        try:
            parse(text)
        except TemplateError as exc:
            raise TemplateError(f"{part}: {exc}") from None
    return Template(name, title, body, show_facts)
