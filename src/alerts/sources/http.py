"""The one HTTP stack of the service (aiohttp), with the limits every fetch obeys.

Bounded: response size (``max_bytes``, counted after decompression so a zip bomb is
cut too), total time, redirects. Polite: a User-Agent naming the project and the
operator's contact, a per-host concurrency limit, conditional GET. Honest: 429/503
with ``Retry-After`` becomes ``RetryAfterError`` so the scheduler waits as asked.
Outside: every connection, redirect hops included, goes through the SSRF guard
(``alerts.netguard``); a refused address is an ``AddressRefused`` error. Each source
gets a view of the one client (``for_source``) carrying its own opt-in; views share
the limits, the per-host slots and one connection pool per policy (a connection
opened for a source that may reach a private address is never handed to one that
may not). Errors never carry a URL's secrets (``alerts.redact``).
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from alerts import __version__
from alerts.errors import (
    AddressRefused,
    FetchError,
    HttpStatusError,
    ParseError,
    ResponseTooLarge,
    RetryAfterError,
    TooManyRedirects,
)
from alerts.model import Validators
from alerts.netguard import (
    AllowPrivateNetwork,
    GuardedResolver,
    NetworkPolicy,
    Refused,
    guarded_socket_factory,
)

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
    allow_private_network: AllowPrivateNetwork = False

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


class _Pools:
    """What every view of one ``HttpClient`` shares: a session (connection pool) per
    network policy, the per-host slots and the DNS resolver under the guard."""

    def __init__(self, limits: HttpLimits, resolver: AbstractResolver | None) -> None:
        self.limits = limits
        self.sessions: dict[NetworkPolicy, aiohttp.ClientSession] = {}
        self.hosts: dict[str, asyncio.Semaphore] = {}
        self._resolver = resolver
        self._own_resolver: AbstractResolver | None = None

    def session(self, policy: NetworkPolicy) -> aiohttp.ClientSession:
        session = self.sessions.get(policy)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limits.total,
                limit_per_host=0,
                ttl_dns_cache=300,
                resolver=GuardedResolver(self._inner_resolver(), policy),
                socket_factory=guarded_socket_factory(policy),
            )
            session = self.sessions[policy] = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.limits.user_agent},
                auto_decompress=True,
            )
        return session

    def _inner_resolver(self) -> AbstractResolver:
        if self._resolver is not None:
            return self._resolver
        if self._own_resolver is None:
            self._own_resolver = DefaultResolver()
        return self._own_resolver

    async def close(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            await session.close()
        if self._own_resolver is not None:
            await self._own_resolver.close()
            self._own_resolver = None


class HttpClient:
    """Shared by every source adapter; create once per process, ``close()`` at exit.

    ``limits.allow_private_network`` is the service-wide opt-in of the SSRF guard;
    ``for_source`` gives one source its own. ``resolver`` is the DNS resolver the
    guard checks the answers of (aiohttp's default when ``None``).
    """

    def __init__(
        self, limits: HttpLimits | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        self.limits = limits or HttpLimits()
        self.policy = NetworkPolicy(self.limits.allow_private_network)
        self._pools = _Pools(self.limits, resolver)
        self._timeout = aiohttp.ClientTimeout(
            total=self.limits.timeout_s, sock_connect=self.limits.connect_timeout_s
        )

    def for_source(self, allow_private_network: AllowPrivateNetwork | None) -> HttpClient:
        """A view of this client for one source: the same pools and limits, with the
        source's own ``allow_private_network`` (``None``: the service-wide one)."""
        if allow_private_network is None:
            return self
        view = copy.copy(self)
        view.policy = NetworkPolicy(allow_private_network)
        return view

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._pools.session(self.policy)

    async def close(self) -> None:
        """Close every view's connections (the owner of the client calls this)."""
        await self._pools.close()

    def _host_slot(self, url: str | URL) -> asyncio.Semaphore:
        host = url.raw_authority.lower() if isinstance(url, URL) else urlsplit(url).netloc.lower()
        slot = self._pools.hosts.get(host)
        if slot is None:
            slot = self._pools.hosts[host] = asyncio.Semaphore(self.limits.per_host)
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
        follow_redirects: bool = True,
    ) -> HttpResponse:
        """Fetch ``url``; raise a ``FetchError`` subclass for anything but success.

        ``validators`` turns the request conditional; a 304 comes back as a response
        whose ``not_modified`` is true. Statuses in ``accept_statuses`` are returned
        instead of raised. ``follow_redirects=False`` returns a 3xx as it came (for a
        caller that must decide per hop, e.g. which origin may see a credential).
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
                    allow_redirects=follow_redirects,
                ) as resp:
                    return await self._finish(resp, url, limit, accept_statuses, validators)
            except aiohttp.TooManyRedirects as exc:
                raise TooManyRedirects(str(url), self.limits.max_redirects) from exc
            except TimeoutError as exc:
                raise FetchError(f"timed out after {self.limits.timeout_s:g} s: {url}") from exc
            except aiohttp.ClientError as exc:
                raise _fetch_error(exc, url) from exc

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


def _fetch_error(exc: aiohttp.ClientError, url: str | URL) -> FetchError:
    """The ``FetchError`` for a failed request; a refusal of the guard names the host
    of the hop that was refused (a redirect target, perhaps) and the address."""
    refused = _refusal(exc)
    if refused is not None:
        host = refused.host or getattr(exc, "host", None) or refused.address
        return AddressRefused(host, refused.address, refused.reason)
    return FetchError(f"{type(exc).__name__} fetching {url}: {exc}")


def _refusal(exc: BaseException) -> Refused | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, Refused):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__
    return None
