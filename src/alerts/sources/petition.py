"""The ``petition`` adapter: a signature count and named signatories."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from selectolax.lexbor import LexborHTMLParser, LexborNode

from alerts.errors import ParseError
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.options import DurationS
from alerts.sources import Derived, SourceState
from alerts.sources._parse import json_path, normalise, parse_count
from alerts.sources.http import HttpClient, HttpResponse

_JSON_SCRIPTS = 'script[type="application/ld+json"], script[type="application/json"]'
_PENDING_MAX = 500  # named signatories kept for the next delta; beyond, only counted
_LD_COUNT_PATHS = ("interactionStatistic.userInteractionCount", "userInteractionCount")


class PetitionSettings(BaseSettings):
    """Environment settings of the petition adapter (``ALERTS_PETITION_*``)."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_PETITION_", extra="ignore")

    osdi_token: SecretStr | None = None


class Signatory(BaseModel):
    name: str
    title: str = ""
    company: str = ""

    @property
    def key(self) -> str:
        return f"{normalise(self.name)}|{normalise(self.company)}"

    def item(self, url: str) -> Item:
        role = ", ".join(p for p in (self.title, self.company) if p)
        return Item(
            key=self.key,
            title=self.name,
            url=url,
            summary=role,
            fields={"name": self.name, "title": self.title, "company": self.company},
        )


class PetitionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["html", "json", "osdi"] = Field(
        default="html", description="html page, JSON endpoint, or Action Network OSDI API"
    )
    count_path: str | None = Field(
        default=None, description="dotted path to the count in embedded JSON / the JSON body"
    )
    count_selector: str | None = Field(
        default=None, description="CSS selector of the element whose text holds the count"
    )
    signatories_path: str | None = Field(
        default=None, description="dotted path to the list of signatories in JSON"
    )
    signatory_selector: str | None = Field(
        default=None, description="CSS selector matching one element per signatory"
    )
    name_selector: str = Field(default=".name", description="name, inside a signatory element")
    title_selector: str | None = Field(
        default=".title", description="job title, inside a signatory element"
    )
    company_selector: str | None = Field(
        default=".company", description="company, inside a signatory element"
    )
    name_key: str = Field(default="name", description="key of the name in JSON signatories")
    title_key: str = Field(default="title", description="key of the title in JSON signatories")
    company_key: str = Field(
        default="company", description="key of the company in JSON signatories"
    )
    osdi_title_field: str = Field(default="title", description="OSDI person custom field")
    osdi_company_field: str = Field(default="company", description="OSDI person custom field")
    max_pages: int = Field(default=10, ge=1, le=200, description="OSDI signature pages per poll")
    milestones: list[int] = Field(
        default_factory=list, description="signature counts that each alert once"
    )
    delta_period: DurationS = Field(
        default=3600.0, description="at most one delta alert per period (90, 15m, 1h)"
    )
    delta_min: int = Field(default=1, ge=1, description="smallest delta worth an alert")
    watch_companies: list[str] = Field(
        default_factory=list, description="a signatory from one of these gets its own alert"
    )
    watch_titles: list[str] = Field(
        default_factory=list, description="…as does one whose title contains one of these"
    )

    @model_validator(mode="after")
    def _json_needs_a_path(self) -> PetitionOptions:
        if self.mode == "json" and not self.count_path:
            raise ValueError("mode 'json' needs count_path")
        return self


class PetitionSource:
    """Petition: a signature count and, where the page lists them, named signatories.

    Modes (``mode = …``):

    * ``html`` (default) — fetch a page. The count comes from embedded JSON when
      ``count_path`` is set (searched in every ``application/ld+json`` and
      ``application/json`` script, e.g. ``__NEXT_DATA__``), else from the text of
      ``count_selector`` (locale-aware: ``1,234``, ``1.234``, ``1 234``, ``12k``),
      else from schema.org ``interactionStatistic.userInteractionCount`` in JSON-LD.
      Signatories: ``signatory_selector`` (one element per person) with
      ``name_selector``, ``title_selector``, ``company_selector`` inside it; or
      ``signatories_path`` in the embedded JSON with ``name_key``/``title_key``/
      ``company_key``.
    * ``json`` — ``url`` is a JSON endpoint; ``count_path`` (required) and
      ``signatories_path`` are dotted paths (``data.petition.count``, ``items[0]``).
    * ``osdi`` — Action Network's OSDI API: ``url`` is the petition resource
      (``https://actionnetwork.org/api/v2/petitions/<id>``). The count is
      ``total_signatures``; signatories are read from the paged ``osdi:signatures``
      collection (up to ``max_pages``) where the person is embedded, with title and
      company from the custom fields ``osdi_title_field`` / ``osdi_company_field``.
      After the first poll only signatures created since the newest one seen are
      asked for (``filter=created_date gt '…'``). The API key comes from
      ``ALERTS_PETITION_OSDI_TOKEN``; verify on a live petition that signatures
      embed their person (else only the count is tracked).

    Events: ``delta`` — N new signatories (or N more signatures when the page names
    nobody) since the last delta, with a breakdown by company, at most one per
    ``delta_period`` (default 1h; pending signatories accumulate in between) and
    only when N ≥ ``delta_min``. ``milestone`` — each of ``milestones`` fires once
    when the count reaches it (never at the baseline; a jump over several fires the
    highest). ``new`` — only for signatories whose company contains one
    of ``watch_companies`` or whose title one of ``watch_titles``, as whole words
    ("Palantir" matches "Palantir Technologies"; "CTO" does not match "Director"). A count that
    goes down is recorded, not alerted. A page whose count can no longer be found,
    or whose signatory list vanished while the count is positive, is an error, never
    a zero. Pages are fetched in full on every poll (no conditional GET) so that a
    pending delta goes out when its period ends.
    """

    kind: ClassVar[str] = "petition"
    Options: ClassVar[type[BaseModel]] = PetitionOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("title", "summary")
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "summary", "url", "name", "company"}
    )
    default_url: ClassVar[str | None] = None

    def __init__(
        self, *, source_id: str, url: str, options: PetitionOptions, http: HttpClient
    ) -> None:
        self.source_id = source_id
        self.url = url
        self.options = options
        self.http = http

    async def fetch(self, state: SourceState) -> Observation:
        if self.options.mode == "osdi":
            return await self._fetch_osdi(state)
        # No conditional GET: every poll reaches ``derive``, so a delta that waited
        # for its period goes out on time even when the page has not changed.
        resp = await self.http.get(self.url)
        if self.options.mode == "json":
            count, people = self._from_json(resp.json(), resp.url)
        else:
            count, people = self._from_html(resp)
        return _observation(count, people, self.url, resp)

    # --- html / json -------------------------------------------------------

    def _from_json(self, data: Any, where: str) -> tuple[int, list[Signatory]]:
        assert self.options.count_path is not None
        count = _as_count(json_path(data, self.options.count_path), where)
        return count, self._json_people(data)

    def _json_people(self, data: Any) -> list[Signatory]:
        if not self.options.signatories_path:
            return []
        rows = json_path(data, self.options.signatories_path)
        if not isinstance(rows, list):
            raise ParseError(f"{self.options.signatories_path} is not a list")
        opts = self.options
        people = []
        for row in rows:
            if not isinstance(row, dict) or not row.get(opts.name_key):
                raise ParseError(f"signatory without {opts.name_key!r}: {str(row)[:80]}")
            people.append(
                Signatory(
                    name=str(row[opts.name_key]).strip(),
                    title=str(row.get(opts.title_key) or "").strip(),
                    company=str(row.get(opts.company_key) or "").strip(),
                )
            )
        return people

    def _from_html(self, resp: HttpResponse) -> tuple[int, list[Signatory]]:
        tree = LexborHTMLParser(resp.text())
        blobs = _embedded_json(tree)
        opts = self.options
        if opts.count_path:
            data = _first_with(blobs, opts.count_path, resp.url)
            count = _as_count(json_path(data, opts.count_path), resp.url)
        elif opts.count_selector:
            node = tree.css_first(opts.count_selector)
            if node is None:
                raise ParseError(f"count_selector {opts.count_selector!r} matches nothing")
            count = parse_count(node.text(separator=" "))
        else:
            count = _jsonld_count(blobs, resp.url)
        if opts.signatories_path:
            people = self._json_people(_first_with(blobs, opts.signatories_path, resp.url))
        elif opts.signatory_selector:
            people = self._html_people(tree, opts.signatory_selector)
            if not people and count > 0:
                raise ParseError(
                    f"signatory_selector {opts.signatory_selector!r} matches nothing "
                    f"although the page counts {count:,} signatures"
                )
        else:
            people = []
        return count, people

    def _html_people(self, tree: LexborHTMLParser, selector: str) -> list[Signatory]:
        people = []
        for row in tree.css(selector):
            name = _node_text(row, self.options.name_selector)
            if not name:
                raise ParseError(f"signatory without name ({self.options.name_selector!r})")
            people.append(
                Signatory(
                    name=name,
                    title=_node_text(row, self.options.title_selector),
                    company=_node_text(row, self.options.company_selector),
                )
            )
        return people

    # --- Action Network OSDI -----------------------------------------------

    async def _fetch_osdi(self, state: SourceState) -> Observation:
        token = PetitionSettings().osdi_token
        headers = {"OSDI-API-Token": token.get_secret_value()} if token else {}
        resp = await self.http.get(self.url, headers=headers)
        petition = resp.json()
        if not isinstance(petition, dict) or "total_signatures" not in petition:
            raise ParseError(f"no total_signatures in the OSDI petition at {resp.url}")
        count = _as_count(petition["total_signatures"], resp.url)
        since = state.cursor.get("since")
        link = _href(petition, "osdi:signatures") or self.url.rstrip("/") + "/signatures"
        people: list[Signatory] = []
        newest = since if isinstance(since, str) else ""
        page_url: str | None = _since(link, newest)
        for _ in range(self.options.max_pages):
            if page_url is None:
                break
            page = (await self.http.get(page_url, headers=headers)).json()
            people += self._osdi_people(page, page_url)
            newest = max([newest, *_created_dates(page)])
            page_url = _href(page, "next")
        browser = petition.get("browser_url")
        obs = _observation(count, people, browser if isinstance(browser, str) else None, resp)
        return dataclasses.replace(obs, cursor={"since": newest} if newest else {})

    def _osdi_people(self, page: Any, where: str) -> list[Signatory]:
        embedded = page.get("_embedded") if isinstance(page, dict) else None
        signatures = embedded.get("osdi:signatures") if isinstance(embedded, dict) else None
        if not isinstance(signatures, list):
            raise ParseError(f"no _embedded.osdi:signatures list at {where}")
        people = []
        for sig in signatures:
            person = (
                (sig.get("_embedded") or {}).get("osdi:person") if isinstance(sig, dict) else None
            )
            if not isinstance(person, dict):
                continue
            name = " ".join(
                str(person.get(k) or "").strip() for k in ("given_name", "family_name")
            ).strip()
            if not name:
                continue
            custom = person.get("custom_fields") or {}
            people.append(
                Signatory(
                    name=name,
                    title=str(custom.get(self.options.osdi_title_field) or "").strip(),
                    company=str(custom.get(self.options.osdi_company_field) or "").strip(),
                )
            )
        return people

    # --- events --------------------------------------------------------------

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
        """Milestones, periodic deltas and watched signatories (see the class doc)."""
        count = observation.values.get("signatures")
        if observation.not_modified or count is None:
            return Derived(state=dict(state), keep_item_events=frozenset())
        tally = _Tally.load(state, int(count))
        if baseline:
            tally.fired |= {t for t in self.options.milestones if t <= count}
            return Derived(state=tally.dump(int(count), now=None))
        events = [*self._milestones(tally, int(count), now)]
        tally.add_pending(new_items)
        delta = self._delta(tally, int(count), now)
        if delta is not None:
            events.append(delta)
        watched = frozenset(i.key for i in new_items if self._watched(i))
        return Derived(
            events=events,
            state=tally.dump(int(count), now=now if delta else tally.last_delta_at),
            keep_item_events=watched,
        )

    def _milestones(self, tally: _Tally, count: int, now: datetime) -> list[Event]:
        crossed = [t for t in self.options.milestones if t <= count and t not in tally.fired]
        tally.fired |= set(crossed)
        if not crossed:
            return []
        top = max(crossed)
        return [
            self._event(
                EventKind.MILESTONE,
                f"milestone:{top}",
                f"{top:,} signatures reached",
                f"{count:,} signatures now.",
                {"count": count, "threshold": top},
                now,
            )
        ]

    def _delta(self, tally: _Tally, count: int, now: datetime) -> Event | None:
        period = timedelta(seconds=self.options.delta_period)
        if tally.last_delta_at is not None and now - tally.last_delta_at < period:
            return None
        named = tally.pending
        n = len(named) + tally.more if named else max(0, count - tally.delta_base)
        if n < self.options.delta_min:
            return None
        by_company = Counter(p.get("company") or "(no company)" for p in named)
        names = [p["name"] for p in named[:10]]
        summary = ", ".join(names) + (f" and {n - len(names)} more" if n > len(names) else "")
        fields: dict[str, JSON] = {
            "count": count,
            "delta": n,
            "by_company": dict(by_company.most_common()),
            "names": names,
        }
        tally.pending, tally.more = [], 0
        tally.delta_base = count
        noun = "new signatories" if named else "more signatures"
        return self._event(
            EventKind.DELTA,
            f"delta:{now.isoformat()}",
            f"+{n:,} {noun} ({count:,} total)",
            summary or f"{count:,} signatures now.",
            fields,
            now,
        )

    def _watched(self, item: Item) -> bool:
        company = item.fields.get("company")
        title = item.fields.get("title")
        return any(_has_words(company, c) for c in self.options.watch_companies) or any(
            _has_words(title, t) for t in self.options.watch_titles
        )

    def _event(
        self,
        kind: EventKind,
        key: str,
        title: str,
        summary: str,
        fields: dict[str, JSON],
        now: datetime,
    ) -> Event:
        return Event(
            source_id=self.source_id,
            kind=kind,
            key=key,
            title=title,
            url=self.url if self.options.mode != "osdi" else None,
            summary=summary,
            fields=fields,
            occurred_at=now,
        )


@dataclasses.dataclass
class _Tally:
    """The petition's detector state, kept between polls in ``Derived.state``."""

    fired: set[int]
    pending: list[dict[str, str]]
    last_delta_at: datetime | None
    delta_base: int
    last_count: int | None
    more: int = 0

    @classmethod
    def load(cls, state: Mapping[str, JSON], count: int) -> _Tally:
        at = state.get("last_delta_at")
        return cls(
            fired={int(t) for t in state.get("fired", [])},
            pending=list(state.get("pending", [])),
            last_delta_at=datetime.fromisoformat(at) if at else None,
            delta_base=int(state.get("delta_base", count)),
            last_count=state.get("last_count"),
            more=int(state.get("more", 0)),
        )

    def add_pending(self, items: Sequence[Item]) -> None:
        known = {p["key"] for p in self.pending}
        for item in items:
            if len(self.pending) >= _PENDING_MAX:
                self.more += 1
            elif item.key not in known:
                known.add(item.key)
                self.pending.append(
                    {
                        "key": item.key,
                        "name": item.title,
                        "title": str(item.fields.get("title") or ""),
                        "company": str(item.fields.get("company") or ""),
                    }
                )

    def dump(self, count: int, *, now: datetime | None) -> dict[str, JSON]:
        return {
            "fired": sorted(self.fired),
            "pending": self.pending,
            "more": self.more,
            "last_delta_at": now.isoformat() if now else None,
            "delta_base": min(self.delta_base, count),
            "last_count": count,
        }


def _has_words(text: Any, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words ("CTO" is not in "Director")."""
    words, wanted = normalise(str(text or "")), normalise(phrase)
    return bool(wanted) and f" {wanted} " in f" {words} "


def _observation(
    count: int, people: list[Signatory], url: str | None, resp: HttpResponse
) -> Observation:
    items = {p.key: p.item(url or resp.url) for p in people}
    return Observation(
        items=tuple(items.values()),
        values={"signatures": float(count)},
    )


def _as_count(value: Any, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ParseError(f"signature count at {where} is {value!r}, not a number")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        return parse_count(value)
    raise ParseError(f"signature count at {where} is {type(value).__name__}, not a number")


def _embedded_json(tree: LexborHTMLParser) -> list[Any]:
    blobs = []
    for node in tree.css(_JSON_SCRIPTS):
        try:
            blobs.append(json.loads(node.text()))
        except ValueError:
            continue
    return blobs


def _first_with(blobs: list[Any], path: str, where: str) -> Any:
    for blob in blobs:
        for candidate in blob if isinstance(blob, list) else [blob]:
            try:
                json_path(candidate, path)
            except ParseError:
                continue
            return candidate
    raise ParseError(f"no embedded JSON at {where} has {path!r}")


def _jsonld_count(blobs: list[Any], where: str) -> int:
    for path in _LD_COUNT_PATHS:
        try:
            data = _first_with(blobs, path, where)
        except ParseError:
            continue
        return _as_count(json_path(data, path), where)
    raise ParseError(
        f"no signature count at {where}: set count_selector or count_path "
        "(no JSON-LD interactionStatistic found)"
    )


def _node_text(row: LexborNode, selector: str | None) -> str:
    if not selector:
        return ""
    node = row.css_first(selector)
    return " ".join(node.text(separator=" ").split()) if node is not None else ""


def _since(link: str, since: str) -> str:
    """Only signatures created after ``since`` (Action Network's OData filter)."""
    if not since:
        return link
    sep = "&" if "?" in link else "?"
    query = urlencode({"filter": f"created_date gt '{since}'"})
    return f"{link}{sep}{query}"


def _created_dates(page: Any) -> list[str]:
    signatures = (page.get("_embedded") or {}).get("osdi:signatures") or []
    return [
        s["created_date"]
        for s in signatures
        if isinstance(s, dict) and isinstance(s.get("created_date"), str)
    ]


def _href(doc: Any, rel: str) -> str | None:
    link = doc.get("_links", {}).get(rel) if isinstance(doc, dict) else None
    href = link.get("href") if isinstance(link, dict) else None
    return href if isinstance(href, str) else None
