"""A scripted HTTP server on loopback, for adapter tests and the offline demo.

Routes map ``(method, path)`` to replies. A route's replies are used in order and
the last one repeats; a reply may also be a function of the request (for paging on
a POSTed ``page``). Every request is recorded. ETags are honoured: a reply with an
``etag`` answers 304 to a matching ``If-None-Match``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """One canned response."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None

    @classmethod
    def json(cls, data: Any, *, status: int = 200, etag: str | None = None) -> Reply:
        return cls(status, json.dumps(data).encode(), "application/json", etag=etag)

    @classmethod
    def html(cls, text: str, *, status: int = 200, etag: str | None = None) -> Reply:
        return cls(status, text.encode(), "text/html; charset=utf-8", etag=etag)

    @classmethod
    def redirect(cls, location: str, *, status: int = 302) -> Reply:
        return cls(status, b"", "text/plain", headers={"Location": location})

    @classmethod
    def retry_after(cls, seconds: int, *, status: int = 429) -> Reply:
        return cls(status, b"slow down", "text/plain", headers={"Retry-After": str(seconds)})


@dataclass(frozen=True, slots=True)
class Recorded:
    """A request the server received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: Any


Responder = Reply | Callable[[Recorded], Reply]


class FixtureServer:
    """Serve scripted replies on 127.0.0.1 (a free port); ``async with`` it."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Responder]] = {}
        self.requests: list[Recorded] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def route(self, method: str, path: str, *replies: Responder) -> None:
        """Set (replace) the replies of a route."""
        self.routes[(method.upper(), path)] = list(replies)

    def url(self, path: str) -> str:
        return self.base_url + path

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FixtureServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        recorded = Recorded(
            request.method, request.path, list(request.query.items()), dict(request.headers), body
        )
        self.requests.append(recorded)
        replies = self.routes.get((request.method, request.path))
        if not replies:
            return web.Response(status=404, text=f"no fixture for {request.method} {request.path}")
        responder = replies.pop(0) if len(replies) > 1 else replies[0]
        reply = responder(recorded) if callable(responder) else responder
        headers = dict(reply.headers)
        if reply.etag:
            headers["ETag"] = reply.etag
            if request.headers.get("If-None-Match") == reply.etag:
                return web.Response(status=304, headers=headers)
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers={**headers, "Content-Type": reply.content_type},
        )
