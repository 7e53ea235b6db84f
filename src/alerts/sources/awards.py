"""The ``awards`` adapter: federal contract awards and modifications (USAspending)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.errors import ParseError
from alerts.keywords import has_words
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.sources import Derived, SourceState
from alerts.sources.http import HttpClient

DEFAULT_API = "https://api.usaspending.gov"
ICE = "U.S. Immigration and Customs Enforcement"
AWARD_PAGE = "https://www.usaspending.gov/award/"
_AWARD_FIELDS = [
    "Award ID",
    "Recipient Name",
    "Award Amount",
    "Awarding Agency",
    "Awarding Sub Agency",
    "Description",
    "Start Date",
    "Contract Award Type",
    "generated_internal_id",
]
_TX_FIELDS = [
    "Award ID",
    "Mod",
    "Recipient Name",
    "Action Date",
    "Transaction Amount",
    "Transaction Description",
    "Awarding Agency",
    "Awarding Sub Agency",
    "generated_internal_id",
]
_REMEMBER_MAX = 5000
_TYPE_GROUPS = {
    **dict.fromkeys(["A", "B", "C", "D"], "contracts"),
    **dict.fromkeys(
        ["IDV_A", "IDV_B", "IDV_B_A", "IDV_B_B", "IDV_B_C", "IDV_C", "IDV_D", "IDV_E"], "idvs"
    ),
    **dict.fromkeys(["02", "03", "04", "05"], "grants"),
    **dict.fromkeys(["06", "10"], "direct_payments"),
    **dict.fromkeys(["07", "08"], "loans"),
    **dict.fromkeys(["09", "11", "-1"], "other"),
}
_BASE_MODS = {"", "0", "00", "000", "0000", "00000", "P00000"}
_PARENTS_MAX = 1000  # award -> parent recipient lookups remembered (the newest)


class AwardsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency: str = Field(default=ICE, description="awarding agency name as USAspending spells it")
    agency_tier: str = Field(
        default="subtier", pattern="^(subtier|toptier)$", description="subtier or toptier"
    )
    agency_type: Literal["awarding", "funding"] = Field(
        default="awarding", description="awarding agency, or the funding agency"
    )
    award_type_codes: list[str] = Field(
        default_factory=lambda: ["A", "B", "C", "D"], description="one USAspending type group"
    )
    recipients: list[str] = Field(
        default_factory=list,
        description="recipient watchlist (recipient or parent name contains it); empty = all",
    )
    min_amount: float = Field(default=0.0, description="drop awards and modifications below")
    window_days: int = Field(default=30, ge=1, le=3650, description="sliding search window")
    page_size: int = Field(default=100, ge=1, le=100, description="results per request")
    max_pages: int = Field(default=10, ge=1, le=100, description="pages per search per poll")
    modifications: bool = Field(default=True, description="also search modifications")
    include_zero_modifications: bool = Field(
        default=False, description="also alert modifications that change no money"
    )
    follow: list[str] = Field(
        default_factory=list, description="generated_internal_ids of awards always read"
    )

    @field_validator("award_type_codes")
    @classmethod
    def _one_group(cls, codes: list[str]) -> list[str]:
        groups = {_TYPE_GROUPS.get(code) for code in codes}
        if None in groups:
            unknown = [c for c in codes if c not in _TYPE_GROUPS]
            raise ValueError(f"unknown award type codes {unknown}")
        if len(groups) != 1:
            raise ValueError("USAspending searches one group of award types at a time")
        return codes


@dataclass(frozen=True, slots=True)
class _Mod:
    award_key: str
    mod: str
    amount: float
    action_date: str
    row: Mapping[str, Any]
    matched: str = ""

    @property
    def key(self) -> str:
        return f"{self.award_key}#{self.mod}"


class AwardsSource:
    """Federal contract awards and their modifications, from the USAspending API v2.

    ``url`` is the API root (default ``https://api.usaspending.gov``; no key needed).
    Each poll asks, over a sliding window of ``window_days`` up to today:

    * ``POST /api/v2/search/spending_by_award/`` with ``date_type = "new_awards_only"``
      — awards signed in the window;
    * ``POST /api/v2/search/spending_by_transaction/`` — transactions in the window;
      those with a modification number (``Mod`` other than 0) are modifications.
      For a modified award, the obligated total is the sum of its transactions from
      ``POST /api/v2/transactions/`` (looked up once per new modification).

    Both searches are filtered by the agency (``agency``, at ``agency_tier``
    ``subtier`` by default: U.S. Immigration and Customs Enforcement) as the awarding
    agency, or as the funding agency with ``agency_type = "funding"`` (ICE-funded awards
    made by other DHS offices), and by ``award_type_codes`` (contracts A to D by
    default; one group per source, e.g. ``["IDV_A", "IDV_B", …]`` for
    indefinite-delivery vehicles); pages are followed while ``page_metadata.hasNext``
    (at most ``max_pages`` of ``page_size``). ``recipients`` is a watchlist of whole
    words (``Palantir`` matches "PALANTIR USG INC"; empty = everyone): an award whose
    recipient does not match is checked against its parent recipient
    (``recipient.parent_recipient_name`` of ``GET /api/v2/awards/<id>/``, read once per
    award), so a subsidiary under another legal name is kept, and the alert says the
    parent matched. ``min_amount`` drops smaller awards and modifications.
    Modifications that move no money ($0 administrative changes) are skipped unless
    ``include_zero_modifications = true``.
    ``follow`` lists ``generated_internal_id``s of awards to watch whatever the
    window: their transactions are read on every poll, and their recipient once
    from ``GET /api/v2/awards/<id>/``.

    Items are awards, keyed on ``generated_internal_id``, with fields ``recipient``,
    ``amount`` (obligated, USD), ``agency``, ``award_id``, ``description``, ``action``
    (``new award`` when signed in the window, else ``modification``),
    ``modification`` (the latest modification number seen, if any) and, with a
    watchlist, ``matched`` (``recipient`` or ``parent``, with ``parent_recipient``), linking to
    ``https://www.usaspending.gov/award/<id>``. The fingerprint is the amount, so a
    modification that changes it is an ``updated`` event with ``amount`` old → new and
    the ``delta``; a modification of an award never seen before (a contract signed
    years ago, like Palantir's ICE case-management award) is also reported as a
    modification, never as a new award.
    """

    kind: ClassVar[str] = "awards"
    updates: ClassVar[str] = "reply"  # rooms edit the first alert and reply with the change
    Options: ClassVar[type[BaseModel]] = AwardsOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("amount",)
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "url", "summary", "published", "recipient", "amount", "agency", "award_id"}
        | {"description", "action", "modification", "mod_amount", "matched", "parent_recipient"}
    )
    default_url: ClassVar[str | None] = DEFAULT_API

    def __init__(
        self,
        *,
        source_id: str,
        url: str,
        options: AwardsOptions,
        http: HttpClient,
        today: date | None = None,
    ) -> None:
        self.source_id = source_id
        self.api = (url or DEFAULT_API).rstrip("/")
        self.options = options
        self.http = http
        self._today = today

    async def fetch(self, state: SourceState) -> Observation:
        ledger: dict[str, Any] = dict(state.cursor.get("mods", {}))
        self._parents: dict[str, str] = dict(state.cursor.get("parents", {}))
        items = {i.key: i for i in await self._new_awards()}
        if self.options.modifications:
            for award_key, mods in _by_award(await self._modifications()).items():
                items[award_key] = await self._modified(
                    award_key, mods, items.get(award_key), ledger
                )
        for award_key in self.options.follow:
            if award_key not in items:
                items[award_key] = await self._followed(award_key, ledger)
        keep = {k: v for k, v in ledger.items() if k in items}
        parents = dict(list(self._parents.items())[-_PARENTS_MAX:])
        return Observation(items=tuple(items.values()), cursor={"mods": keep, "parents": parents})

    # --- requests ------------------------------------------------------------

    def _filters(self, date_type: str) -> dict[str, Any]:
        today = self._today or datetime.now(UTC).date()
        start = today - timedelta(days=self.options.window_days)
        filters: dict[str, Any] = {
            "award_type_codes": self.options.award_type_codes,
            "time_period": [
                {
                    "start_date": start.isoformat(),
                    "end_date": today.isoformat(),
                    "date_type": date_type,
                }
            ],
            "agencies": [
                {
                    "type": self.options.agency_type,
                    "tier": self.options.agency_tier,
                    "name": self.options.agency,
                }
            ],
        }
        if self.options.recipients:
            filters["recipient_search_text"] = self.options.recipients
        return filters

    async def _search(self, path: str, payload: dict[str, Any]) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = []
        for page in range(1, self.options.max_pages + 1):
            body = {**payload, "page": page, "limit": self.options.page_size}
            data = (await self.http.post_json(f"{self.api}{path}", body)).json()
            results, has_next = _page(data, path)
            rows += results
            if not has_next:
                break
        return rows

    async def _new_awards(self) -> list[Item]:
        filters = self._filters("new_awards_only")
        if self.options.min_amount > 0:
            filters["award_amounts"] = [{"lower_bound": self.options.min_amount}]
        payload = {
            "filters": filters,
            "fields": _AWARD_FIELDS,
            "sort": "Award Amount",
            "order": "desc",
            "subawards": False,
        }
        rows = await self._search("/api/v2/search/spending_by_award/", payload)
        items = []
        for row in rows:
            item = self._award_item(row)
            if float(item.fields["amount"]) < self.options.min_amount:
                continue
            matched = await self._match(item.key, item.fields["recipient"])
            if matched is not None:
                items.append(_with_match(item, matched, self._parents.get(item.key)))
        return items

    async def _modifications(self) -> list[_Mod]:
        payload = {
            "filters": self._filters("action_date"),
            "fields": _TX_FIELDS,
            "sort": "Action Date",
            "order": "desc",
        }
        rows = await self._search("/api/v2/search/spending_by_transaction/", payload)
        mods = []
        for row in rows:
            mod = str(row.get("Mod") or "").strip()
            if mod.upper() in _BASE_MODS:
                continue
            amount = _money(row.get("Transaction Amount"), "Transaction Amount")
            if amount == 0 and not self.options.include_zero_modifications:
                continue  # an administrative modification: no money moved
            if abs(amount) < self.options.min_amount:
                continue
            award_key = _required_str(row, "generated_internal_id")
            matched = await self._match(award_key, row.get("Recipient Name"))
            if matched is not None:
                date = str(row.get("Action Date") or "")
                mods.append(_Mod(award_key, mod, amount, date, row, matched))
        return mods

    async def _transactions(self, award_key: str) -> list[Mapping[str, Any]]:
        payload = {"award_id": award_key, "sort": "action_date", "order": "desc"}
        return await self._search("/api/v2/transactions/", payload)

    # --- assembling items ----------------------------------------------------

    def _award_item(self, row: Mapping[str, Any]) -> Item:
        key = _required_str(row, "generated_internal_id")
        amount = _money(row.get("Award Amount"), "Award Amount", want_number=True)
        return _item(
            key,
            award_id=str(row.get("Award ID") or key),
            recipient=str(row.get("Recipient Name") or ""),
            amount=amount,
            agency=str(row.get("Awarding Sub Agency") or row.get("Awarding Agency") or ""),
            description=str(row.get("Description") or ""),
            action="new award",
            modification=None,
            mod_amount=None,
            published=row.get("Start Date"),
        )

    async def _modified(
        self,
        award_key: str,
        mods: list[_Mod],
        known: Item | None,
        ledger: dict[str, Any],
    ) -> Item:
        latest = max(mods, key=lambda m: (m.action_date, m.mod))
        entry = ledger.get(award_key)
        seen = set(entry["mods"]) if entry else set()
        if known is not None:
            total = float(known.fields["amount"])
        elif entry and {m.mod for m in mods} <= seen:
            total = float(entry["amount"])
        else:
            total = _sum_obligations(await self._transactions(award_key))
        ledger[award_key] = {
            **(entry or {}),
            "amount": total,
            "mods": sorted(seen | {m.mod for m in mods}),
        }
        row = latest.row
        item = _item(
            award_key,
            award_id=str(row.get("Award ID") or award_key),
            recipient=str(row.get("Recipient Name") or ""),
            amount=total,
            agency=str(row.get("Awarding Sub Agency") or row.get("Awarding Agency") or ""),
            description=str(
                (known.fields.get("description") if known else None)
                or row.get("Transaction Description")
                or ""
            ),
            action="new award" if known is not None else "modification",
            modification=latest.mod,
            mod_amount=latest.amount,
            published=latest.action_date or None,
        )
        if known is not None and "matched" in known.fields:
            return _with_match(item, str(known.fields["matched"]), self._parents.get(award_key))
        return _with_match(item, latest.matched, self._parents.get(award_key))

    async def _followed(self, award_key: str, ledger: dict[str, Any]) -> Item:
        rows = await self._transactions(award_key)
        total = _sum_obligations(rows)
        mods = {str(r.get("modification_number") or "") for r in rows} - {""}
        latest = next((r for r in rows if str(r.get("modification_number") or "0") != "0"), None)
        about = ledger.get(award_key, {}).get("about") or await self._about(award_key)
        ledger[award_key] = {"amount": total, "mods": sorted(mods), "about": about}
        return _item(
            award_key,
            **about,
            amount=total,
            action="followed",
            modification=str(latest.get("modification_number")) if latest else None,
            mod_amount=_money(latest.get("federal_action_obligation"), "federal_action_obligation")
            if latest
            else None,
            published=str(rows[0].get("action_date")) if rows else None,
        )

    async def _about(self, award_key: str) -> dict[str, str]:
        """Who and what a followed award is, from ``GET /api/v2/awards/<id>/`` (once)."""
        resp = await self.http.get(f"{self.api}/api/v2/awards/{award_key}/")
        data = resp.json()
        recipient = data.get("recipient") if isinstance(data, dict) else None
        if not isinstance(recipient, dict) or "recipient_name" not in recipient:
            raise ParseError(f"USAspending award {award_key}: no recipient.recipient_name")
        agency = (data.get("awarding_agency") or {}).get("subtier_agency") or {}
        return {
            "award_id": str(data.get("piid") or data.get("fain") or award_key),
            "recipient": str(recipient.get("recipient_name") or ""),
            "agency": str(agency.get("name") or ""),
            "description": str(data.get("description") or ""),
        }

    async def _match(self, award_key: str, recipient: Any) -> str | None:
        """Why an award is wanted: ``recipient``, ``parent`` (or ``""``: no watchlist).

        USAspending's ``recipient_search_text`` also finds awards whose *parent*
        recipient matches, so a subsidiary under another legal name is checked
        against its parent (``recipient.parent_recipient_name`` of
        ``GET /api/v2/awards/<id>/``, read once per award) before it is dropped.
        """
        if not self.options.recipients:
            return ""
        if self._listed(recipient):
            return "recipient"
        parent = await self._parent(award_key)
        return "parent" if parent and self._listed(parent) else None

    def _listed(self, name: Any) -> bool:
        return any(has_words(name, r) for r in self.options.recipients)

    async def _parent(self, award_key: str) -> str:
        if award_key not in self._parents:
            data = (await self.http.get(f"{self.api}/api/v2/awards/{award_key}/")).json()
            recipient = data.get("recipient") if isinstance(data, dict) else None
            if not isinstance(recipient, dict):
                raise ParseError(f"USAspending award {award_key}: no recipient object")
            self._parents[award_key] = str(recipient.get("parent_recipient_name") or "")
        return self._parents[award_key]

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
        """Report modifications as such: ``updated`` with old → new and the delta."""
        amounts = {i.key: float(i.fields["amount"]) for i in observation.items}
        mods = {
            i.key: i.fields["modification"]
            for i in observation.items
            if i.fields.get("modification")
        }
        if baseline:
            return Derived(state={"amounts": amounts, "mods": mods})
        known: Mapping[str, Any] = state.get("amounts") or {}
        known_mods: Mapping[str, Any] = state.get("mods") or {}
        events: list[Event] = []
        folded: set[str] = set()
        for item in new_items:
            mod_amount = item.fields.get("mod_amount")
            if item.fields.get("action") == "modification" and mod_amount is not None:
                old = float(item.fields["amount"]) - float(mod_amount)
                events.append(self._mod_event(item, old, now))
                folded.add(item.key)
        for item, previous in updated_items:
            old_amount = known.get(item.key)
            if old_amount is None:
                old_amount = _previous_amount(previous)
            if old_amount is not None and old_amount != item.fields.get("amount"):
                events.append(self._mod_event(item, float(old_amount), now))
                folded.add(item.key)
        keep = {i.key for i in new_items} | {i.key for i, _ in updated_items}
        events += self._zero_modifications(observation, known_mods, keep | folded, now)
        return Derived(
            events=events,
            state={"amounts": _remember(known, amounts), "mods": _remember(known_mods, mods)},
            keep_item_events=frozenset(keep - folded),
        )

    def _zero_modifications(
        self, observation: Observation, known_mods: Mapping[str, Any], done: set[str], now: datetime
    ) -> list[Event]:
        """With ``include_zero_modifications``: a new $0 modification of a known award."""
        if not self.options.include_zero_modifications:
            return []
        return [
            self._mod_event(item, float(item.fields["amount"]), now)
            for item in observation.items
            if item.key not in done
            and item.fields.get("modification")
            and item.fields.get("modification") != known_mods.get(item.key)
            and item.fields.get("mod_amount") == 0
        ]

    def _mod_event(self, item: Item, old: float, now: datetime) -> Event:
        new = float(item.fields["amount"])
        delta = new - old
        mod = item.fields.get("modification") or "?"
        recipient = item.fields.get("recipient") or "award"
        sign = "+" if delta >= 0 else "-"
        return Event(
            source_id=self.source_id,
            kind=EventKind.UPDATED,
            key=f"{item.key}#{mod}",
            item_key=item.key,  # each modification edits the room's message of the award
            title=f"{recipient}: modification {mod} {sign}${abs(delta):,.0f} ({item.fields.get('award_id')})",
            url=item.url,
            summary=f"Obligated ${old:,.0f} → ${new:,.0f}. {item.summary}".strip(),
            fields={**_without(item.fields, "mod_amount"), "delta": delta},
            changes={"amount": (old, new)},
            occurred_at=item.published or now,
        )


def _item(
    key: str,
    *,
    award_id: str,
    recipient: str,
    amount: float,
    agency: str,
    description: str,
    action: str,
    modification: str | None,
    mod_amount: float | None,
    published: Any,
) -> Item:
    return Item(
        key=key,
        title=f"{recipient or 'Award'}: ${amount:,.0f} ({award_id})",
        url=AWARD_PAGE + key,
        summary=description,
        published=_date(published),
        fields={
            "recipient": recipient,
            "amount": amount,
            "agency": agency,
            "award_id": award_id,
            "description": description,
            "action": action,
            "modification": modification,
            "mod_amount": mod_amount,
        },
    )


def _with_match(item: Item, matched: str, parent: str | None) -> Item:
    """Say which name put the award on the watchlist (its recipient or its parent)."""
    if not matched:
        return item
    fields = {**item.fields, "matched": matched}
    summary = item.summary
    if matched == "parent" and parent:
        fields["parent_recipient"] = parent
        summary = f"{summary} (parent: {parent})".strip()
    return dataclasses.replace(item, fields=fields, summary=summary)


def _page(data: Any, path: str) -> tuple[list[Mapping[str, Any]], bool]:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ParseError(f"USAspending {path}: no 'results' list in the response")
    meta = data.get("page_metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("hasNext"), bool):
        raise ParseError(f"USAspending {path}: no page_metadata.hasNext in the response")
    rows = data["results"]
    if not all(isinstance(r, dict) for r in rows):
        raise ParseError(f"USAspending {path}: results are not objects")
    return rows, meta["hasNext"]


def _money(value: Any, name: str, *, want_number: bool = False) -> float:
    if isinstance(value, bool) or value is None:
        raise ParseError(f"USAspending field {name!r} is {value!r}, not an amount")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and not want_number:
        try:
            return float(value)
        except ValueError:
            pass
    raise ParseError(f"USAspending field {name!r} is {value!r}, not an amount")


def _required_str(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise ParseError(f"USAspending result without {name!r}: {str(dict(row))[:120]}")
    return value


def _by_award(mods: list[_Mod]) -> dict[str, list[_Mod]]:
    grouped: dict[str, list[_Mod]] = {}
    for mod in mods:
        grouped.setdefault(mod.award_key, []).append(mod)
    return grouped


def _sum_obligations(rows: list[Mapping[str, Any]]) -> float:
    return sum(
        _money(r.get("federal_action_obligation") or 0.0, "federal_action_obligation") for r in rows
    )


def _without(fields: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in names}


def _remember(known: Mapping[str, Any], current: dict[str, float]) -> dict[str, Any]:
    merged = {**known, **current}
    return merged if len(merged) <= _REMEMBER_MAX else current


def _previous_amount(previous: Mapping[str, JSON]) -> float | None:
    for candidate in (previous.get("amount"), (previous.get("fields") or {}).get("amount")):
        if isinstance(candidate, int | float) and not isinstance(candidate, bool):
            return float(candidate)
    return None


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC)
    except ValueError:
        return None
