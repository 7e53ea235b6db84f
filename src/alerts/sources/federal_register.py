"""The ``federal_register`` adapter: documents of an agency in the Federal Register."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from alerts.errors import ParseError
from alerts.model import Item, Observation
from alerts.sources import SourceState
from alerts.sources.http import HttpClient

DEFAULT_URL = "https://www.federalregister.gov/api/v1/documents.json"
_FIELDS = (
    "document_number",
    "title",
    "type",
    "abstract",
    "html_url",
    "publication_date",
    "agencies",
)
_REQUIRED = ("document_number", "title", "type", "publication_date", "html_url")


class FederalRegisterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency: str = Field(
        default="u-s-immigration-and-customs-enforcement", description="agency slug"
    )
    document_types: list[str] = Field(
        default_factory=list, description="RULE, PRORULE, NOTICE, PRESDOCU; empty = all"
    )
    per_page: int = Field(default=20, ge=1, le=1000, description="newest documents per page")
    max_pages: int = Field(default=1, ge=1, le=20, description="pages per poll")


class FederalRegisterSource:
    """Federal Register documents published by an agency.

    ``url`` is the documents endpoint of the Federal Register API (default
    ``https://www.federalregister.gov/api/v1/documents.json``; no key). ``agency`` is
    the agency slug (default ``u-s-immigration-and-customs-enforcement``);
    ``document_types`` narrows to ``RULE``, ``PRORULE``, ``NOTICE`` or ``PRESDOCU``.
    The newest ``per_page`` documents are read (``max_pages`` pages, following
    ``next_page_url``), with a conditional GET.

    Items are keyed on ``document_number``; fields ``type``, ``publication_date`` and
    ``agencies`` (names), linking to the document's ``html_url``.
    """

    kind: ClassVar[str] = "federal_register"
    Options: ClassVar[type[BaseModel]] = FederalRegisterOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("title",)
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "url", "summary", "published"}
        | {"type", "publication_date", "agencies", "document_number"}
    )
    default_url: ClassVar[str | None] = DEFAULT_URL

    def __init__(
        self, *, source_id: str, url: str, options: FederalRegisterOptions, http: HttpClient
    ) -> None:
        self.source_id = source_id
        self.url = url or DEFAULT_URL
        self.options = options
        self.http = http

    def first_page_url(self) -> str:
        query: list[tuple[str, str | int]] = [
            ("conditions[agencies][]", self.options.agency),
            ("order", "newest"),
            ("per_page", self.options.per_page),
        ]
        query += [("conditions[type][]", t) for t in self.options.document_types]
        query += [("fields[]", f) for f in _FIELDS]
        return f"{self.url}?{urlencode(query)}"

    async def fetch(self, state: SourceState) -> Observation:
        first = await self.http.get(self.first_page_url(), validators=state.validators)
        if first.not_modified:
            return Observation(not_modified=True, validators=first.validators)
        items: dict[str, Item] = {}
        page: Any = first.json()
        for number in range(1, self.options.max_pages + 1):
            for doc in _results(page):
                item = _item(doc)
                items.setdefault(item.key, item)
            next_url = page.get("next_page_url")
            if number == self.options.max_pages or not isinstance(next_url, str):
                break
            page = (await self.http.get(next_url)).json()
        return Observation(items=tuple(items.values()), validators=first.validators)


def _results(page: Any) -> list[dict[str, Any]]:
    if not isinstance(page, dict) or not isinstance(page.get("count"), int):
        raise ParseError("Federal Register: response has no integer 'count'")
    if page["count"] == 0 and "results" not in page:
        return []
    results = page.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ParseError("Federal Register: 'results' is not a list of documents")
    return results


def _item(doc: dict[str, Any]) -> Item:
    missing = [name for name in _REQUIRED if not doc.get(name)]
    if missing:
        raise ParseError(f"Federal Register document without {', '.join(missing)}")
    agencies = [
        str(a.get("name") or a.get("raw_name"))
        for a in doc.get("agencies") or []
        if isinstance(a, dict) and (a.get("name") or a.get("raw_name"))
    ]
    published = _date(doc["publication_date"])
    return Item(
        key=str(doc["document_number"]),
        title=str(doc["title"]),
        url=str(doc["html_url"]),
        summary=str(doc.get("abstract") or ""),
        published=published,
        fields={
            "type": str(doc["type"]),
            "publication_date": str(doc["publication_date"]),
            "agencies": agencies,
            "document_number": str(doc["document_number"]),
        },
    )


def _date(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ParseError(f"Federal Register publication_date {value!r} is not a date") from exc
