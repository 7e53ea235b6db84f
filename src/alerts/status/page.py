"""``GET /status`` (HTML) and ``GET /status.json`` on the operations endpoint.

Who may read them (``Access``):

* bound to loopback (``127.0.0.0/8``, ``::1``, ``localhost``) with no token: anyone
  who can reach the port, i.e. this machine;
* with ``ALERTS_API_TOKEN`` set, on any bind: only requests carrying it, as
  ``Authorization: Bearer <token>`` or as the password of HTTP Basic auth (so a
  browser can ask for it);
* bound elsewhere with no token: nobody. The page answers 403 with the reason, and
  the reason is logged once when the endpoint starts.

``/healthz``, ``/readyz`` and ``/metrics`` are not covered: orchestrators and
Prometheus probe them without credentials, and they carry no strangers' text.

The HTML is rendered by Jinja2 with autoescaping on, no script at all, and a
Content-Security-Policy that allows only the page's own inline stylesheet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup
from pydantic import SecretStr

from alerts.model import utcnow
from alerts.status.view import Snapshot, SourceState, snapshot

log = logging.getLogger(__name__)

PAGE_PATH = "/status"
JSON_PATH = "/status.json"
READ_TIMEOUT_S = 10.0
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read the status page: ``refused`` says why nobody may, ``token``
    (when set) is what a request must carry."""

    token: bytes | None = None
    refused: str | None = None

    def deny(self, request: web.Request) -> web.Response | None:
        """A 401/403 response for a request that may not read the page, else None."""
        if self.refused is not None:
            return web.Response(status=403, text=f"status page unavailable: {self.refused}\n")
        if self.token is None or hmac.compare_digest(_presented(request), self.token):
            return None
        response = web.Response(status=401, text="the status page needs ALERTS_API_TOKEN\n")
        response.headers.add("WWW-Authenticate", 'Bearer realm="alerts"')
        response.headers.add("WWW-Authenticate", 'Basic realm="alerts", charset="UTF-8"')
        return response


def access_for(bind_host: str, token: SecretStr | None) -> Access:
    """The access rule for an endpoint bound to ``bind_host`` (see the module doc)."""
    secret = token.get_secret_value() if token is not None else ""
    if secret:
        if len(secret) < MIN_TOKEN_CHARS:
            log.warning(
                "ALERTS_API_TOKEN is shorter than %d characters; use a long random one",
                MIN_TOKEN_CHARS,
            )
        return Access(token=secret.encode())
    if is_loopback(bind_host):
        return Access()
    return Access(
        refused=f"the endpoint is bound to {bind_host or 'every interface'}, not loopback, "
        "and ALERTS_API_TOKEN is not set; set it to serve the status page"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) only listens on this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _presented(request: web.Request) -> bytes:
    """The token a request carries (Bearer, or Basic auth's password), or b""."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value.encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return b""
        return decoded.partition(":")[2].encode()
    return b""


# --- rendering ------------------------------------------------------------------------


@cache
def _css() -> str:
    return resources.files(__package__).joinpath("templates/status.css").read_text("utf-8")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__ or "alerts.status", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
    )
    env.filters["utc"] = lambda value: f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    env.filters["ago"] = relative
    env.filters["slug"] = lambda text: str(text).lower().replace(" ", "-")
    return env


def render_html(snap: Snapshot, *, only: SourceState | None = None) -> str:
    """The page for ``snap``; every value is escaped by the template engine."""
    counts = snap.source_counts
    problems = sum(counts.get(s, 0) for s in (SourceState.FAILING, SourceState.HELD))
    problems += snap.outbox.dead + len(snap.parked)
    return (
        _environment()
        .get_template("status.html")
        .render(
            snap=snap,
            only=only,
            css=Markup(_css()),
            total_sources=sum(counts.values()),
            problems=problems,
        )
    )


def relative(value: datetime, now: datetime) -> str:
    """``3m ago``, ``in 2h``, ``just now``."""
    seconds = (value - now).total_seconds()
    span = abs(seconds)
    if span < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if span >= size:
            text = f"{span // size:.0f}{unit}"
            break
    return f"in {text}" if seconds > 0 else f"{text} ago"


@cache
def content_security_policy() -> str:
    """No script, no outside resource; only the page's own stylesheet (by hash)."""
    digest = base64.b64encode(hashlib.sha256(_css().encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


# --- the routes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusContext:
    """What the handlers need: the running service and the access rule."""

    runtime: Any
    access: Access


STATUS_KEY = web.AppKey("status", StatusContext)


def add_routes(app: web.Application, *, runtime: Any, bind_host: str) -> None:
    """Serve the status page on ``app`` (an endpoint bound to ``bind_host``)."""
    access = access_for(bind_host, runtime.settings.api_token)
    if access.refused is not None:
        log.warning("not serving %s: %s", PAGE_PATH, access.refused)
    app[STATUS_KEY] = StatusContext(runtime=runtime, access=access)
    app.router.add_get("/", _root)
    app.router.add_get(PAGE_PATH, _page)
    app.router.add_get(JSON_PATH, _json)


async def _root(request: web.Request) -> web.Response:
    raise web.HTTPFound(PAGE_PATH)


async def _page(request: web.Request) -> web.Response:
    return await _serve(request, html=True)


async def _json(request: web.Request) -> web.Response:
    return await _serve(request, html=False)


async def _serve(request: web.Request, *, html: bool) -> web.Response:
    context = request.app[STATUS_KEY]
    denied = context.access.deny(request)
    if denied is not None:
        return denied
    only = _state_filter(request)
    try:
        snap = await asyncio.wait_for(_read(context.runtime, only), READ_TIMEOUT_S)
    except Exception as exc:
        log.warning("status page: could not read the store: %s", type(exc).__name__)
        return web.Response(
            status=503,
            text=f"status unavailable: the store did not answer ({type(exc).__name__})\n",
        )
    if not html:
        body = json.dumps(snap.to_json(), ensure_ascii=False, indent=1)
        return web.json_response(text=body, headers=_headers())
    return web.Response(
        text=render_html(snap, only=only), content_type="text/html", headers=_headers()
    )


def _state_filter(request: web.Request) -> SourceState | None:
    raw = request.query.get("state", "")
    if not raw:
        return None
    try:
        return SourceState(raw)
    except ValueError:
        known = ", ".join(s.value for s in SourceState)
        raise web.HTTPBadRequest(text=f"unknown state {raw!r}; known: {known}\n") from None


async def _read(runtime: Any, only: SourceState | None) -> Snapshot:
    return await snapshot(
        store=runtime.store,
        config=getattr(runtime, "polled_config", runtime.config),  # chat sources included
        now=utcnow(),
        instance=runtime.owner,
        only=only,
    )
