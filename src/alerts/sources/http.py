"""The one HTTP stack of the service (aiohttp), with the limits every fetch obeys.

Bounded: response size (``max_bytes``, counted after decompression so a zip bomb is
cut too), total time, redirects. Polite: a User-Agent naming the project and the
operator's contact, a per-host concurrency limit, conditional GET. Honest: 429/503
with ``Retry-After`` becomes ``RetryAfterError`` so the scheduler waits as asked.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from alerts import __version__
from alerts.errors import (
    FetchError,
    HttpStatusError,
    ParseError,
    ResponseTooLarge,
    RetryAfterError,
    TooManyRedirects,
)
from alerts.model import Validators

DEFAULT_RETRY_AFTER_S = 60.0
_UNASKED_304 = (
    "the request sent no validators (If-None-Match, If-Modified-Since), so "
    "'not modified' means nothing: the server or a cache in front of it is misbehaving"
)
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    per_host: int = 4
    total: int = 200
    contact: str = ""

    @property
    def user_agent(self) -> str:
        contact = f" (+{self.contact})" if self.contact else ""
        return f"alerts/{__version__}{contact}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What came back. ``headers`` look up case-insensitively."""

    status: int
    url: str
    headers: Mapping[str, str]
    body: bytes
    validators: Validators

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def charset(self) -> str | None:
        ctype = self.headers.get("content-type", "")
        for part in ctype.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip("\"'")
        return None

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except ValueError as exc:
            raise ParseError(f"invalid JSON from {self.url}: {exc}") from exc


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpClient:
    """Shared by every source adapter; create once per process, ``close()`` at exit."""

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self.limits = limits or HttpLimits()
        self._session: aiohttp.ClientSession | None = None
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._timeout = aiohttp.ClientTimeout(
            total=self.limits.timeout_s, sock_connect=self.limits.connect_timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limits.total, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.limits.user_agent},
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _host_slot(self, url: str | URL) -> asyncio.Semaphore:
        host = url.raw_authority.lower() if isinstance(url, URL) else urlsplit(url).netloc.lower()
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = asyncio.Semaphore(self.limits.per_host)
        return slot

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        validators: Validators | None = None,
        max_bytes: int | None = None,
        accept_statuses: tuple[int, ...] = (),
    ) -> HttpResponse:
        """Fetch ``url``; raise a ``FetchError`` subclass for anything but success.

        ``validators`` turns the request conditional; a 304 comes back as a response
        whose ``not_modified`` is true. Statuses in ``accept_statuses`` are returned
        instead of raised.
        """
        send_headers = dict(headers or {})
        if validators is not None:
            if validators.etag:
                send_headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                send_headers["If-Modified-Since"] = validators.last_modified
        limit = max_bytes or self.limits.max_bytes
        async with self._host_slot(url):
            try:
                async with self.session.request(
                    method,
                    url,
                    headers=send_headers,
                    json=json,
                    params=params,
                    timeout=self._timeout,
                    max_redirects=self.limits.max_redirects,
                ) as resp:
                    return await self._finish(resp, url, limit, accept_statuses, validators)
            except aiohttp.TooManyRedirects as exc:
                raise TooManyRedirects(str(url), self.limits.max_redirects) from exc
            except TimeoutError as exc:
                raise FetchError(f"timed out after {self.limits.timeout_s:g} s: {url}") from exc
            except aiohttp.ClientError as exc:
                raise FetchError(f"{type(exc).__name__} fetching {url}: {exc}") from exc

    async def get(self, url: str | URL, **kwargs: Any) -> HttpResponse:
        return await self.request("GET", url, **kwargs)

    async def post_json(self, url: str, payload: Any, **kwargs: Any) -> HttpResponse:
        return await self.request("POST", url, json=payload, **kwargs)

    async def _finish(
        self,
        resp: aiohttp.ClientResponse,
        url: str | URL,
        limit: int,
        accept_statuses: tuple[int, ...],
        sent: Validators | None,
    ) -> HttpResponse:
        headers = resp.headers
        if resp.status == 304:
            if sent is None or not (sent.etag or sent.last_modified):
                raise HttpStatusError(304, str(url), _UNASKED_304)
            return HttpResponse(304, str(resp.url), headers, b"", sent)
        if resp.status in (429, 503):
            wait = parse_retry_after(headers.get("retry-after"))
            if wait is not None or resp.status == 429:
                raise RetryAfterError(resp.status, str(url), wait or DEFAULT_RETRY_AFTER_S)
        if resp.status >= 400 and resp.status not in accept_statuses:
            raise HttpStatusError(resp.status, str(url))
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise ResponseTooLarge(str(url), limit)
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise ResponseTooLarge(str(url), limit)
        validators = Validators(
            etag=headers.get("etag"), last_modified=headers.get("last-modified")
        )
        return HttpResponse(resp.status, str(resp.url), headers, bytes(body), validators)
