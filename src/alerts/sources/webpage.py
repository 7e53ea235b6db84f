"""The ``webpage`` adapter: a CSS-selected region of any page, diffed as text."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from selectolax.lexbor import LexborHTMLParser

from alerts.errors import ParseError
from alerts.keywords import Regexes, compile_regex
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.sources import Derived, SourceState
from alerts.sources._parse import check_selector, public_url, squash
from alerts.sources.http import HttpClient

_SUMMARY_CHARS = 1500


class WebpageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    selector: str = Field(description="CSS selector of the region to watch")
    title: str | None = Field(default=None, description="name in alerts (default: <title>)")
    noise: Regexes = Field(
        default_factory=list, description="regular expressions (RE2) removed before comparing"
    )
    max_diff_lines: int = Field(default=20, ge=1, le=500, description="longest diff in alerts")
    max_chars: int = Field(default=100_000, ge=100, description="longest region text kept")

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str) -> str:
        return check_selector(selector)


class WebpageSource:
    """A region of a web page (a company's statement page, a press-release list).

    ``selector`` is a CSS selector (selectolax); the text of every matching element
    is the region (a selector that cannot be parsed is a config error). Whitespace is
    normalised and each ``noise`` regular expression is removed before comparing, so
    dates, view counters or session tokens do not count as changes (e.g.
    ``noise = ['\\d+ views', 'Updated \\w+ \\d+, \\d{4}']``). Noise patterns run on
    RE2 (linear time, multiline: ``^``/``$`` match at line ends; no look-behind or
    back-references), checked when the config is loaded.
    One item per page, keyed on the URL and selector; its fingerprint is that
    cleaned text. When it changes, an ``updated`` event carries a unified diff of at
    most ``max_diff_lines`` lines. A selector that matches nothing is an error (the
    page was redesigned), never an empty region. ``title`` names the page in alerts
    (default: the page's ``<title>``).
    """

    kind: ClassVar[str] = "webpage"
    updates: ClassVar[str] = "reply"  # rooms edit the first alert and reply with the change
    Options: ClassVar[type[BaseModel]] = WebpageOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("text",)
    item_fields: ClassVar[frozenset[str]] = frozenset({"title", "url", "summary", "text"})
    default_url: ClassVar[str | None] = None

    def __init__(
        self, *, source_id: str, url: str, options: WebpageOptions, http: HttpClient
    ) -> None:
        self.source_id = source_id
        self.url = url
        self.options = options
        self.http = http
        self._noise = [compile_regex(p, multiline=True) for p in options.noise]
        self.link = public_url(url)

    async def fetch(self, state: SourceState) -> Observation:
        resp = await self.http.get(self.url, validators=state.validators)
        if resp.not_modified:
            return Observation(not_modified=True, validators=resp.validators)
        tree = LexborHTMLParser(resp.text())
        nodes = tree.css(self.options.selector)
        if not nodes:
            raise ParseError(f"selector {self.options.selector!r} matches nothing at {self.link}")
        text = self.clean("\n".join(n.text(separator="\n") for n in nodes))
        if not text:
            raise ParseError(
                f"selector {self.options.selector!r} matches only empty elements at {self.link} "
                "(is the region filled in by JavaScript?)"
            )
        page_title = tree.css_first("title")
        title = self.options.title or (page_title.text(strip=True) if page_title else "")
        first_line = text.splitlines()[0] if text else ""
        item = Item(
            key=f"{self.url}#{self.options.selector}",
            title=title or self.link or self.options.selector,
            url=self.link,
            summary=first_line[:300],
            fields={"text": text[: self.options.max_chars]},
        )
        return Observation(items=(item,), validators=resp.validators)

    def clean(self, raw: str) -> str:
        text = squash(raw)
        for pattern in self._noise:
            text = pattern.sub("", text)
        return squash(text)

    def derive(
        self,
        *,
        observation: Observation,
        new_items: Sequence[Item],
        updated_items: Sequence[tuple[Item, Mapping[str, JSON]]],
        state: Mapping[str, JSON],
        now: datetime,
        baseline: bool,
    ) -> Derived:
        """Replace the generic ``updated`` event with one carrying a text diff."""
        texts: dict[str, Any] = dict(state.get("texts") or {})
        events = []
        folded = set()
        for item, _previous in updated_items:
            old = texts.get(item.key)
            if isinstance(old, str) and not baseline:
                events.append(self._diff_event(item, old, now))
                folded.add(item.key)
        for item in observation.items:
            texts[item.key] = item.fields.get("text", "")
        if baseline:
            return Derived(state={"texts": texts})
        keep = {i.key for i in new_items} | {i.key for i, _ in updated_items}
        return Derived(
            events=events, state={"texts": texts}, keep_item_events=frozenset(keep - folded)
        )

    def _diff_event(self, item: Item, old: str, now: datetime) -> Event:
        new = str(item.fields.get("text", ""))
        diff = unified_diff(old, new, self.options.max_diff_lines)
        added = [line[2:] for line in diff.splitlines() if line.startswith("+ ")]
        removed = [line[2:] for line in diff.splitlines() if line.startswith("- ")]
        return Event(
            source_id=self.source_id,
            kind=EventKind.UPDATED,
            key=f"{item.key}@{now.isoformat()}",
            title=f"{item.title}: page changed",
            url=item.url,
            summary=diff[:_SUMMARY_CHARS],
            fields={"diff": diff, "added": added[:5], "removed": removed[:5]},
            occurred_at=now,
        )


def unified_diff(old: str, new: str, max_lines: int) -> str:
    """A short unified diff (no file headers), cut to ``max_lines``."""
    lines = [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
        if not line.startswith(("---", "+++"))
    ]
    lines = [f"{line[0]} {line[1:]}" if line[:1] in "+- " and line else line for line in lines]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"… {len(lines) - max_lines} more lines"]
    return "\n".join(lines)
