"""Reading a petition's signatures from an OSDI API (Action Network's API v2).

What the documents say, and what this follows:

* OSDI v1.1 "Signature" (opensupporter/osdi-docs, ``signatures.md``) and Action
  Network's "Signatures" page (actionnetwork.org/docs/v2/signatures): a signatures
  collection is HAL+JSON with ``total_pages``, ``page``, ``_links.next`` and
  ``_embedded["osdi:signatures"]``; each signature carries ``identifiers``,
  ``created_date`` and ``_links["osdi:person"].href``: it *links* to its person,
  it does not embed it. So each new signature's person is read from that link.
* Neither page documents a ``created_date`` filter on signatures, so no filter is
  sent: pages are read newest first (the order is taken from the ``created_date``s of
  the first page; oldest-first collections are read from their last page back) until
  a page holds nothing new.
* The key travels in the ``OSDI-API-Token`` header, and only to the origin of the
  configured petition URL: redirects are followed one hop at a time, and the header
  is dropped on any hop, or any ``_links`` href, to another origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from alerts.errors import ParseError, TooManyRedirects
from alerts.model import JSON
from alerts.sources._parse import parse_count, public_url
from alerts.sources.http import HttpClient, HttpResponse

TOKEN_HEADER = "OSDI-API-Token"
SEEN_MAX = 1000  # signature ids remembered (the newest; more than max_pages of 25 cover)
PERSONS_MAX = 500  # person links remembered with what they said
_REDIRECTS = (301, 302, 303, 307, 308)


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what decides whether a credential may go there."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


@dataclass
class OsdiResult:
    count: int
    browser_url: str | None
    rows: list[dict[str, str]]
    cursor: dict[str, JSON] = field(default_factory=dict)


class OsdiReader:
    """One poll of one OSDI petition: its count and the signatures not seen before."""

    def __init__(
        self,
        http: HttpClient,
        *,
        api_url: str,
        token: str | None,
        max_pages: int,
        max_lookups: int,
        title_field: str,
        company_field: str,
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.api_origin = origin(api_url)
        self.token = token
        self.max_pages = max_pages
        self.max_lookups = max_lookups
        self.fields = (title_field, company_field)
        self.where = public_url(api_url) or "the OSDI petition"

    async def read(self, cursor: Mapping[str, JSON]) -> OsdiResult:
        petition = await self.get_json(self.api_url)
        if not isinstance(petition, dict) or "total_signatures" not in petition:
            raise ParseError(f"no total_signatures in the OSDI petition at {self.where}")
        count = _count(petition["total_signatures"], self.where)
        seen = list(cursor.get("seen") or [])
        persons: dict[str, Any] = dict(cursor.get("persons") or {})
        link = _href(petition, "osdi:signatures") or self.api_url.rstrip("/") + "/signatures"
        signatures = (await self._new_signatures(link, set(seen)))[: self.max_lookups]
        rows = await self._people(signatures, persons)
        done = [sig_id for sig_id, _ in signatures]
        browser = petition.get("browser_url")
        return OsdiResult(
            count=count,
            browser_url=browser if isinstance(browser, str) else None,
            rows=rows,
            cursor={
                "seen": (seen + done)[-SEEN_MAX:],
                "persons": dict(list(persons.items())[-PERSONS_MAX:]),
            },
        )

    # --- requests --------------------------------------------------------------

    async def get_json(self, url: str) -> Any:
        return (await self.get(url)).json()

    async def get(self, url: str) -> HttpResponse:
        """GET with the token only where it belongs, one redirect hop at a time."""
        for _ in range(self.http.limits.max_redirects + 1):
            headers = {TOKEN_HEADER: self.token} if self.token and self._ours(url) else {}
            resp = await self.http.get(url, headers=headers, follow_redirects=False)
            location = resp.headers.get("location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            url = urljoin(url, location)
        raise TooManyRedirects(public_url(url) or "an OSDI URL", self.http.limits.max_redirects)

    def _ours(self, url: str) -> bool:
        return origin(url) == self.api_origin

    # --- signatures ------------------------------------------------------------

    async def _new_signatures(self, link: str, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """Unseen signatures, oldest first, from the newest pages until one has nothing new."""
        first = await self.get_json(link)
        found = self._unseen(first, link, seen)
        dates, total = _dates(first), first.get("total_pages") if isinstance(first, dict) else None
        if len(dates) > 1 and dates[0] < dates[-1] and isinstance(total, int) and total > 1:
            # oldest first: the newest signatures are on the last pages
            pages = [_with_page(link, n) for n in range(total, 1, -1)]
            found += await self._walk(pages[: self.max_pages - 1], seen)
        elif found:
            found += await self._follow_next(first, seen)
        return sorted(found, key=lambda s: str(s[1].get("created_date") or ""))

    async def _walk(self, pages: list[str], seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        for url in pages:
            more = self._unseen(await self.get_json(url), url, seen)
            if not more:
                break
            found += more
        return found

    async def _follow_next(self, page: Any, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        url = _href(page, "next")
        for _ in range(self.max_pages - 1):
            if url is None:
                break
            page = await self.get_json(url)
            more = self._unseen(page, url, seen)
            if not more:
                break
            found += more
            url = _href(page, "next")
        return found

    def _unseen(self, page: Any, where: str, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
        embedded = page.get("_embedded") if isinstance(page, dict) else None
        signatures = embedded.get("osdi:signatures") if isinstance(embedded, dict) else None
        if not isinstance(signatures, list):
            raise ParseError(
                f"no _embedded.osdi:signatures list at {public_url(where) or 'a signatures page'}"
            )
        out = []
        for sig in signatures:
            if not isinstance(sig, dict):
                continue
            sig_id = _signature_id(sig)
            if sig_id and sig_id not in seen:
                out.append((sig_id, sig))
        return out

    async def _people(
        self, signatures: list[tuple[str, dict[str, Any]]], persons: dict[str, Any]
    ) -> list[dict[str, str]]:
        """One row per signature, its person read from the link (once per person)."""
        links = sorted(
            {h for _, sig in signatures if (h := _href(sig, "osdi:person"))} - set(persons)
        )
        fetched = await asyncio.gather(*(self._person(href) for href in links))
        persons.update(zip(links, fetched, strict=True))
        rows = []
        for sig_id, sig in signatures:
            href = _href(sig, "osdi:person")
            name, title, company = persons.get(href or "", ("", "", ""))
            rows.append({"name": name, "title": title, "company": company, "row_id": sig_id})
        return rows

    async def _person(self, href: str) -> tuple[str, str, str]:
        person = await self.get_json(href)
        if not isinstance(person, dict):
            raise ParseError(
                f"OSDI person at {public_url(href) or 'a person link'} is not an object"
            )
        name = " ".join(
            str(person.get(k) or "").strip() for k in ("given_name", "family_name")
        ).strip()
        custom = person.get("custom_fields")
        custom = custom if isinstance(custom, dict) else {}
        title, company = (" ".join(str(custom.get(f) or "").split()) for f in self.fields)
        return name, title, company


def _count(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        return parse_count(value)
    raise ParseError(f"total_signatures at {where} is {value!r}, not a count")


def _signature_id(sig: Mapping[str, Any]) -> str:
    identifiers = sig.get("identifiers")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], str):
        return identifiers[0]
    return _href(sig, "self") or ""


def _dates(page: Any) -> list[str]:
    signatures = ((page.get("_embedded") or {}) if isinstance(page, dict) else {}).get(
        "osdi:signatures"
    ) or []
    return [
        s["created_date"]
        for s in signatures
        if isinstance(s, dict) and isinstance(s.get("created_date"), str)
    ]


def _with_page(link: str, page: int) -> str:
    parts = urlsplit(link)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "page"] + [("page", str(page))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _href(doc: Any, rel: str) -> str | None:
    links = doc.get("_links") if isinstance(doc, dict) else None
    link = links.get(rel) if isinstance(links, dict) else None
    href = link.get("href") if isinstance(link, dict) else None
    return href if isinstance(href, str) else None
