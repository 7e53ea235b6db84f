"""The ``sam`` adapter: contract notices from SAM.gov's Get Opportunities Public API v2."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.errors import FetchError, ParseError, SourceError
from alerts.keywords import Keywords, Text, any_found
from alerts.model import Item, Observation
from alerts.sources import SourceState
from alerts.sources._parse import public_url
from alerts.sources.http import HttpClient

DEFAULT_API = "https://api.sam.gov/opportunities/v2/search"
NoticeType = Literal["u", "p", "a", "r", "s", "o", "g", "k", "i"]
NOTICE_TYPES: Mapping[str, str] = {
    "u": "Justification (J&A)",
    "p": "Presolicitation",
    "a": "Award Notice",
    "r": "Sources Sought",
    "s": "Special Notice",
    "o": "Solicitation",
    "g": "Sale of Surplus Property",
    "k": "Combined Synopsis/Solicitation",
    "i": "Intent to Bundle Requirements (DoD-Funded)",
}


class SamSettings(BaseSettings):
    """Environment settings of the sam adapter: ``ALERTS_SAM_API_KEY`` (never logged)."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_SAM_", extra="ignore")

    api_key: SecretStr | None = None


def _justifications_and_awards() -> list[NoticeType]:
    return ["u", "a"]


class SamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notice_types: list[NoticeType] = Field(
        default_factory=_justifications_and_awards,
        min_length=1,
        description="ptype codes: u justification, a award, p presolicitation, o solicitation…",
    )
    organization_name: str | None = Field(
        default=None, description="organizationName (SAM's own search on the organisation path)"
    )
    organization_code: str | None = Field(default=None, description="organizationCode")
    title: str | None = Field(default=None, description="title: SAM's own search on titles")
    keywords: Keywords = Field(
        default=(), description="keep notices whose title or organisation has one (whole words)"
    )
    window_days: int = Field(default=30, ge=1, le=365, description="postedFrom = today - N days")
    page_size: int = Field(default=100, ge=1, le=1000, description="limit per request")
    max_pages: int = Field(default=5, ge=1, le=50, description="pages per notice type per poll")


class SamSource:
    """Contract notices from SAM.gov (Get Opportunities Public API v2).

    ``url`` is the search endpoint (default ``https://api.sam.gov/opportunities/v2/search``).
    Each poll asks, per notice type in ``notice_types`` (``ptype``: ``u`` justification
    (J&A), ``a`` award notice, ``p`` presolicitation, ``o`` solicitation, ``k`` combined
    synopsis/solicitation, ``r`` sources sought, ``s`` special notice, ``g`` surplus
    sale, ``i`` intent to bundle), for notices posted in the last ``window_days``
    (``postedFrom``/``postedTo``), optionally narrowed by ``organization_name`` /
    ``organization_code`` and ``title`` (SAM's own searches), ``page_size`` at a time
    (``limit``/``offset``, at most ``max_pages``). ``keywords`` keeps only notices whose
    title, organisation or awardee contains one of them (whole words, ``re:`` for RE2).

    The API key comes from ``ALERTS_SAM_API_KEY`` (a SAM.gov account's public API
    key). It is sent as the ``api_key`` parameter and never appears in logs, errors
    or links.

    Items are notices, keyed on solicitation number and notice type (plus the award
    number for award notices; the notice id when there is no solicitation number),
    linking to the notice's public page (``uiLink``). A new notice is ``new``; a notice
    SAM.gov shows in a new version (a new notice id, title, posted date, deadline or
    award amount) is ``updated``. Fields: ``notice_id``, ``solicitation_number``,
    ``type``, ``organization``, ``posted``, ``response_deadline``, ``awardee`` and
    ``amount`` (an award notice's amount, so routes' ``min_amount`` applies).
    """

    kind: ClassVar[str] = "sam"
    updates: ClassVar[str] = "reply"  # rooms edit the first alert and reply with the change
    Options: ClassVar[type[BaseModel]] = SamOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = (
        "notice_id",
        "title",
        "posted",
        "response_deadline",
        "amount",
    )
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "url", "summary", "published", "notice_id", "solicitation_number", "type"}
        | {"base_type", "organization", "posted", "response_deadline", "awardee"}
        | {"award_number", "amount", "active"}
    )
    default_url: ClassVar[str | None] = DEFAULT_API

    def __init__(
        self,
        *,
        source_id: str,
        url: str,
        options: SamOptions,
        http: HttpClient,
        today: date | None = None,
    ) -> None:
        self.source_id = source_id
        self.url = url or DEFAULT_API
        self.options = options
        self.http = http
        self._today = today

    async def fetch(self, state: SourceState) -> Observation:
        key = SamSettings().api_key
        if key is None or not key.get_secret_value():
            raise FetchError("ALERTS_SAM_API_KEY is not set: SAM.gov needs a public API key")
        secret = key.get_secret_value()
        try:
            rows = [
                row
                for ptype in self.options.notice_types
                for row in await self._search(ptype, secret)
            ]
        except SourceError as exc:
            raise _scrubbed(exc, secret) from None
        items = {i.key: i for i in (_item(row) for row in rows) if self._wanted(i)}
        return Observation(items=tuple(items.values()))

    async def _search(self, ptype: str, secret: str) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = []
        for page in range(self.options.max_pages):
            params = {**self._params(ptype), "offset": str(page), "api_key": secret}
            data = (await self.http.get(self.url, params=params)).json()
            found, total = _page(data)
            rows += found
            if not found or (page + 1) * self.options.page_size >= total:
                break
        return rows

    def _params(self, ptype: str) -> dict[str, str]:
        today = self._today or datetime.now(UTC).date()
        start = today - timedelta(days=self.options.window_days)
        params = {
            "postedFrom": start.strftime("%m/%d/%Y"),
            "postedTo": today.strftime("%m/%d/%Y"),
            "ptype": ptype,
            "limit": str(self.options.page_size),
        }
        optional = {
            "organizationName": self.options.organization_name,
            "organizationCode": self.options.organization_code,
            "title": self.options.title,
        }
        return params | {k: v for k, v in optional.items() if v}

    def _wanted(self, item: Item) -> bool:
        if not self.options.keywords:
            return True
        text = Text.of(item.title, item.fields.get("organization"), item.fields.get("awardee"))
        return any_found(self.options.keywords, text)


def _scrubbed(exc: SourceError, secret: str) -> SourceError:
    """The same error with the key cut out of its message, whatever put it there."""
    exc.args = tuple(str(a).replace(secret, "***") if isinstance(a, str) else a for a in exc.args)
    return exc


def _page(data: Any) -> tuple[list[Mapping[str, Any]], int]:
    if not isinstance(data, dict) or not isinstance(data.get("opportunitiesData"), list):
        raise ParseError("SAM.gov search: no 'opportunitiesData' list in the response")
    total = data.get("totalRecords")
    if isinstance(total, bool) or not isinstance(total, int):
        raise ParseError("SAM.gov search: no 'totalRecords' number in the response")
    rows = data["opportunitiesData"]
    if not all(isinstance(r, dict) for r in rows):
        raise ParseError("SAM.gov search: opportunitiesData holds something else than notices")
    return rows, total


def _item(row: Mapping[str, Any]) -> Item:
    notice_id = _text(row.get("noticeId"))
    if not notice_id:
        raise ParseError(f"SAM.gov notice without noticeId: {str(dict(row))[:120]}")
    kind = _text(row.get("type")) or _text(row.get("baseType")) or "Notice"
    award = _object(row.get("award"))
    awardee = _object(award.get("awardee"))
    amount = _amount(award.get("amount"))
    organization = _text(row.get("fullParentPathName")) or " / ".join(
        p for p in (_text(row.get(k)) for k in ("department", "subTier", "office")) if p
    )
    solnum = _text(row.get("solicitationNumber"))
    key = f"{solnum}|{kind}|{_text(award.get('number'))}" if solnum else notice_id
    who = _text(awardee.get("name"))
    summary = " · ".join(
        p for p in (organization, f"awarded to {who}" if who else "", _money(amount)) if p
    )
    return Item(
        key=key.lower(),
        title=f"{kind}: {_text(row.get('title')) or solnum or notice_id}",
        url=public_url(_text(row.get("uiLink"))),
        summary=summary,
        published=_posted(row.get("postedDate")),
        fields={
            "notice_id": notice_id,
            "solicitation_number": solnum,
            "type": kind,
            "base_type": _text(row.get("baseType")),
            "organization": organization,
            "posted": _text(row.get("postedDate")),
            "response_deadline": _text(row.get("responseDeadLine")),
            "awardee": who,
            "award_number": _text(award.get("number")),
            "amount": amount,
            "active": _text(row.get("active")),
        },
    )


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str | int | float) else ""


def _amount(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParseError(f"SAM.gov award amount {value!r} is not a number") from None


def _money(amount: float | None) -> str:
    return f"${amount:,.0f}" if amount is not None else ""


def _posted(value: Any) -> datetime | None:
    """``2018-05-09`` or ``2018-05-09 23:45:22+00`` (both appear in the documentation)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace(" ", "T").replace("+00", "+00:00"))
    except ValueError:
        try:
            when = datetime.fromisoformat(value[:10])
        except ValueError:
            return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
