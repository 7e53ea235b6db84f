"""The ``petition`` adapter: a signature count and named signatories."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from selectolax.lexbor import LexborHTMLParser, LexborNode

from alerts.errors import ParseError
from alerts.keywords import check_keywords, has_words
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.options import DurationS
from alerts.sources import Derived, SourceState
from alerts.sources._parse import check_selector, json_path, normalise, parse_count, public_url
from alerts.sources.http import HttpClient, HttpResponse
from alerts.sources.osdi import OsdiReader

_JSON_SCRIPTS = 'script[type="application/ld+json"], script[type="application/json"]'
_PENDING_MAX = 500  # named signatories kept for the next delta; beyond, only counted
_LD_COUNT_PATHS = ("interactionStatistic.userInteractionCount", "userInteractionCount")
ANONYMOUS_NAMES = frozenset(
    {"", "anonymous", "anon", "anonymous signer", "anonymous signatory", "name withheld"}
)
NO_COMPANY = "(no company)"


class PetitionSettings(BaseSettings):
    """Environment settings of the petition adapter (``ALERTS_PETITION_*``)."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_PETITION_", extra="ignore")

    osdi_token: SecretStr | None = None


class Signatory(BaseModel):
    """One row of the signatory list. A row without a name is an anonymous signer."""

    name: str = ""
    title: str = ""
    company: str = ""
    row_id: str = ""  # what the page offers beyond name|company (a row or signature id)

    @property
    def anonymous(self) -> bool:
        return normalise(self.name) in ANONYMOUS_NAMES

    @property
    def base_key(self) -> str:
        if self.row_id:
            return f"id:{self.row_id}"
        who = "anonymous" if self.anonymous else normalise(self.name)
        return f"{who}|{normalise(self.company)}"

    def item(self, key: str, url: str | None) -> Item:
        role = ", ".join(p for p in (self.title, self.company) if p)
        name = "Anonymous" if self.anonymous else self.name
        return Item(
            key=key,
            title=name,
            url=url,
            summary=role,
            fields={
                "name": name,
                "title": self.title,
                "company": self.company,
                "anonymous": self.anonymous,
            },
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
    id_key: str = Field(default="id", description="key of a row id in JSON signatories, if any")
    osdi_title_field: str = Field(default="title", description="OSDI person custom field")
    osdi_company_field: str = Field(default="company", description="OSDI person custom field")
    max_pages: int = Field(default=10, ge=1, le=200, description="OSDI signature pages per poll")
    max_person_lookups: int = Field(
        default=200, ge=1, le=5000, description="OSDI person links followed per poll"
    )
    milestones: list[int] = Field(
        default_factory=list, description="signature counts that each alert once (increasing)"
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

    @field_validator(
        "count_selector",
        "signatory_selector",
        "name_selector",
        "title_selector",
        "company_selector",
    )
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        return None if value is None else check_selector(value)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError("milestones must be positive signature counts")
        if any(b <= a for a, b in pairwise(values)):
            raise ValueError(f"milestones must be listed in increasing order, each once: {values}")
        return values

    @field_validator("watch_companies", "watch_titles")
    @classmethod
    def _keywords(cls, values: list[str]) -> list[str]:
        return list(check_keywords(values))


class PetitionSource:
    """Petition: a signature count and, where the page lists them, its signatories.

    Modes (``mode = …``):

    * ``html`` (default) — fetch a page. The count comes from embedded JSON when
      ``count_path`` is set (searched in every ``application/ld+json`` and
      ``application/json`` script, e.g. ``__NEXT_DATA__``), else from the text of
      ``count_selector`` (``1,234``, ``1.234``, ``1 234``, ``12k``; anything that could
      be read two ways, like ``1e3`` or ``-5``, is an error, never a guess), else from
      schema.org ``interactionStatistic.userInteractionCount`` in JSON-LD.
      Signatories: ``signatory_selector`` (one element per person) with
      ``name_selector``, ``title_selector``, ``company_selector`` inside it; or
      ``signatories_path`` in the embedded JSON with ``name_key``/``title_key``/
      ``company_key`` (and ``id_key`` when rows carry an id).
    * ``json`` — ``url`` is a JSON endpoint; ``count_path`` (required) and
      ``signatories_path`` are dotted paths (``data.petition.count``, ``items[0]``).
    * ``osdi`` — Action Network's OSDI API: ``url`` is the petition resource
      (``https://actionnetwork.org/api/v2/petitions/<id>``). The count is
      ``total_signatures``; signatures are read from the paged ``osdi:signatures``
      collection, newest pages first (at most ``max_pages`` per poll, stopping at the
      first page with nothing new), and each new signature's person is read from its
      ``osdi:person`` link (at most ``max_person_lookups`` per poll, concurrently
      within the per-host limit; people already read are remembered). Title and
      company come from the person's custom fields ``osdi_title_field`` /
      ``osdi_company_field``. The API key comes from ``ALERTS_PETITION_OSDI_TOKEN``
      and is sent only to the origin of ``url``: never across a redirect or to a link
      on another host.

    A row without a name, or named "Anonymous", is an anonymous signer: counted, in
    the breakdown by company, never dropped. Rows are told apart by their id where
    the page gives one (JSON ``id_key``, an HTML row's ``id``/``data-id``, an OSDI
    signature identifier), else by name, company and how many such rows there are.

    Events: ``delta`` — how far the count rose since the last delta ("+61 signatures
    (1,295 total)"), with the new rows by company (anonymous ones included) and the
    new names, at most one per ``delta_period`` (default 1h) and only when the rise
    is at least ``delta_min``. ``milestone`` — each of ``milestones`` (increasing)
    fires once when the count reaches it (never at the baseline; a jump over several
    fires the highest). ``new`` — a named signatory whose company contains one of
    ``watch_companies`` or whose title one of ``watch_titles`` (whole words:
    "Palantir" matches "Palantir Technologies"; "CTO" does not match "Director"), and
    one alert per watched company for its new anonymous signers. A count that goes
    down is recorded, not alerted. A page whose count can no longer be found, or
    whose signatory list vanished while the count is positive, is an error, never a
    zero. Links in alerts never carry the page URL's secrets (``?key=``, ``token``,
    ``user:pass@``…). Pages are fetched in full on every poll (no conditional GET) so
    that a pending delta goes out when its period ends.
    """

    kind: ClassVar[str] = "petition"
    stories: ClassVar[bool] = False  # its alerts are no news that other sources report
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
        self.link = public_url(url)

    async def fetch(self, state: SourceState) -> Observation:
        if self.options.mode == "osdi":
            return await self._fetch_osdi(state)
        # No conditional GET: every poll reaches ``derive``, so a delta that waited
        # for its period goes out on time even when the page has not changed.
        resp = await self.http.get(self.url)
        if self.options.mode == "json":
            count, people = self._from_json(resp.json(), self.link or "the JSON endpoint")
        else:
            count, people = self._from_html(resp)
        return _observation(count, people, self.link)

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
        return [self._json_person(row) for row in rows]

    def _json_person(self, row: Any) -> Signatory:
        opts = self.options
        if not isinstance(row, dict):
            raise ParseError(f"signatory is not an object: {str(row)[:80]}")
        row_id = row.get(opts.id_key)
        return Signatory(
            name=_text(row.get(opts.name_key)),
            title=_text(row.get(opts.title_key)),
            company=_text(row.get(opts.company_key)),
            row_id=_text(row_id) if isinstance(row_id, str | int) else "",
        )

    def _from_html(self, resp: HttpResponse) -> tuple[int, list[Signatory]]:
        tree = LexborHTMLParser(resp.text())
        blobs = _embedded_json(tree)
        opts = self.options
        where = self.link or "the page"
        if opts.count_path:
            data = _first_with(blobs, opts.count_path, where)
            count = _as_count(json_path(data, opts.count_path), where)
        elif opts.count_selector:
            node = tree.css_first(opts.count_selector)
            if node is None:
                raise ParseError(f"count_selector {opts.count_selector!r} matches nothing")
            count = parse_count(node.text(separator=" "))
        else:
            count = _jsonld_count(blobs, where)
        if opts.signatories_path:
            people = self._json_people(_first_with(blobs, opts.signatories_path, where))
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
        opts = self.options
        return [
            Signatory(
                name=_node_text(row, opts.name_selector),
                title=_node_text(row, opts.title_selector),
                company=_node_text(row, opts.company_selector),
                row_id=row.attributes.get("data-id") or row.attributes.get("id") or "",
            )
            for row in tree.css(selector)
        ]

    # --- Action Network OSDI -----------------------------------------------

    async def _fetch_osdi(self, state: SourceState) -> Observation:
        token = PetitionSettings().osdi_token
        reader = OsdiReader(
            self.http,
            api_url=self.url,
            token=token.get_secret_value() if token else None,
            max_pages=self.options.max_pages,
            max_lookups=self.options.max_person_lookups,
            title_field=self.options.osdi_title_field,
            company_field=self.options.osdi_company_field,
        )
        result = await reader.read(state.cursor)
        people = [Signatory(**row) for row in result.rows]
        obs = _observation(result.count, people, public_url(result.browser_url))
        return dataclasses.replace(obs, cursor=result.cursor)

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
        tally.add_pending(new_items)
        events = [*self._milestones(tally, int(count), now)]
        delta = self._delta(tally, int(count), now)
        if delta is not None:
            events.append(delta)
        events += self._anonymous_watched(new_items, now)
        watched = frozenset(
            i.key for i in new_items if not i.fields.get("anonymous") and self._watched(i)
        )
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
        fields: dict[str, JSON] = {"count": count, "threshold": top}
        summary = f"{count:,} signatures now."
        if tally.anonymous:  # anonymous signers count as much as named ones
            fields["anonymous"] = tally.anonymous
            summary += f" {tally.anonymous:,} of the newest signed anonymously."
        return [
            self._event(
                EventKind.MILESTONE,
                f"milestone:{top}",
                f"{top:,} signatures reached",
                summary,
                fields,
                now,
            )
        ]

    def _delta(self, tally: _Tally, count: int, now: datetime) -> Event | None:
        period = timedelta(seconds=self.options.delta_period)
        if tally.last_delta_at is not None and now - tally.last_delta_at < period:
            return None
        n = count - tally.delta_base
        if n < self.options.delta_min:
            return None
        names = [p["name"] for p in tally.pending[:10]]
        fields: dict[str, JSON] = {
            "count": count,
            "delta": n,
            "by_company": dict(Counter(tally.by_company).most_common()),
            "names": names,
            "anonymous": tally.anonymous,
            "unit": "signatures",  # what a room's live count message counts (alerts.counters)
        }
        summary = _delta_summary(names, len(tally.pending) + tally.more, tally)
        tally.reset(count)
        return self._event(
            EventKind.DELTA,
            f"delta:{now.isoformat()}",
            f"+{n:,} signatures ({count:,} total)",
            summary or f"{count:,} signatures now.",
            fields,
            now,
        )

    def _anonymous_watched(self, new_items: Sequence[Item], now: datetime) -> list[Event]:
        """One ``new`` per watched company for its new anonymous signers."""
        by_company = Counter(
            str(i.fields.get("company") or "")
            for i in new_items
            if i.fields.get("anonymous") and self._watched(i)
        )
        return [
            self._event(
                EventKind.NEW,
                f"anonymous:{normalise(company)}:{now.isoformat()}",
                f"{n:,} anonymous signer{'s' if n != 1 else ''} from {company}",
                f"{n:,} people from {company} signed without giving their name.",
                {"company": company, "anonymous": n},
                now,
            )
            for company, n in by_company.most_common()
        ]

    def _watched(self, item: Item) -> bool:
        company = item.fields.get("company")
        title = item.fields.get("title")
        return any(has_words(company, c) for c in self.options.watch_companies) or any(
            has_words(title, t) for t in self.options.watch_titles
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
            url=self.link if self.options.mode != "osdi" else None,
            summary=summary,
            fields=fields,
            occurred_at=now,
        )


def _delta_summary(names: list[str], named: int, tally: _Tally) -> str:
    parts = []
    if names:
        parts.append(
            ", ".join(names) + (f" and {named - len(names):,} more" if named > len(names) else "")
        )
    if tally.anonymous:
        parts.append(f"{tally.anonymous:,} anonymous")
    companies = Counter(tally.by_company).most_common(5)
    if companies:
        parts.append("by company: " + ", ".join(f"{c} {n:,}" for c, n in companies))
    return "; ".join(parts)


@dataclasses.dataclass
class _Tally:
    """The petition's detector state, kept between polls in ``Derived.state``.

    ``pending`` are the named signatories since the last delta (at most
    ``_PENDING_MAX``; ``more`` counts the rest); ``by_company`` counts every new row
    since then, anonymous ones included, and ``anonymous`` those without a name.
    """

    fired: set[int]
    pending: list[dict[str, str]]
    last_delta_at: datetime | None
    delta_base: int
    last_count: int | None
    more: int = 0
    by_company: dict[str, int] = dataclasses.field(default_factory=dict)
    anonymous: int = 0

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
            by_company=dict(state.get("by_company") or {}),
            anonymous=int(state.get("anonymous", 0)),
        )

    def add_pending(self, items: Sequence[Item]) -> None:
        known = {p["key"] for p in self.pending}
        for item in items:
            company = str(item.fields.get("company") or "") or NO_COMPANY
            self.by_company[company] = self.by_company.get(company, 0) + 1
            if item.fields.get("anonymous"):
                self.anonymous += 1
            elif len(self.pending) >= _PENDING_MAX:
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

    def reset(self, count: int) -> None:
        self.pending, self.more, self.by_company, self.anonymous = [], 0, {}, 0
        self.delta_base = count

    def dump(self, count: int, *, now: datetime | None) -> dict[str, JSON]:
        return {
            "fired": sorted(self.fired),
            "pending": self.pending,
            "more": self.more,
            "by_company": self.by_company,
            "anonymous": self.anonymous,
            "last_delta_at": now.isoformat() if now else None,
            "delta_base": min(self.delta_base, count),
            "last_count": count,
        }


def _observation(count: int, people: list[Signatory], url: str | None) -> Observation:
    """Items keyed so that rows sharing name|company (anonymous ones) stay distinct."""
    seen: Counter[str] = Counter()
    items = []
    for person in people:
        base = person.base_key
        seen[base] += 1
        key = base if seen[base] == 1 else f"{base}#{seen[base]}"
        items.append(person.item(key, url))
    return Observation(items=tuple(items), values={"signatures": float(count)})


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _as_count(value: Any, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ParseError(f"signature count at {where} is {value!r}, not a number")
    if isinstance(value, int | float):
        if value < 0 or value != int(value):
            raise ParseError(f"signature count at {where} is {value!r}, not a count")
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
