"""Canonical forms used to recognise the same thing written two ways.

``canonical_url`` turns the many spellings of one link into one string, so that
item keys and story matching do not depend on URL noise. It is for comparing, never
for fetching or showing: the link an alert shows is the one the source gave.

What does not count: the scheme (``http`` = ``https``), the host's case and a
trailing dot, a leading ``www.``, a default port (80, 443), a trailing ``/`` on the
path, the order of query parameters, the tracking parameters listed below, and the
fragment, except a ``#!`` route (single-page sites select content with it). What
counts: everything else, the path's case and every other query parameter included.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

# Query parameters that only say where a click came from, each documented as such by
# the service that adds it. Explicit and conservative: a parameter that can select
# content (``id``, ``p``, ``page``, ``q``, ``ref``, ``source``, ``si``…) is never dropped.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",  # Facebook click id
        "gclid",  # Google Ads click id
        "gclsrc",
        "dclid",  # Google Display click id
        "gbraid",  # Google Ads (iOS)
        "wbraid",
        "msclkid",  # Microsoft Advertising click id
        "twclid",  # X/Twitter Ads click id
        "ttclid",  # TikTok Ads click id
        "li_fat_id",  # LinkedIn Ads
        "yclid",  # Yandex Direct click id
        "igshid",  # Instagram share id
        "mc_cid",  # Mailchimp campaign and member
        "mc_eid",
        "_hsenc",  # HubSpot email tracking
        "_hsmi",
        "mkt_tok",  # Marketo email tracking
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "vero_id",  # Vero email
        "_ga",  # Google Analytics cross-domain linker
        "_gl",
        "pk_campaign",  # Matomo (Piwik) campaigns
        "pk_kwd",
        "pk_source",
        "pk_medium",
        "pk_content",
        "mtm_campaign",  # Matomo campaigns
        "mtm_kwd",
        "mtm_source",
        "mtm_medium",
        "mtm_content",
        "mtm_cid",
        "mtm_group",
        "mtm_placement",
    }
)
TRACKING_PREFIXES = ("utm_",)  # Google Analytics campaign parameters: utm_source, utm_medium…


_PLAIN = re.compile(r"https?://(?!www\.)([a-z0-9-]+(?:\.[a-z0-9-]+)*)(/[^?#%\s]*)?")
_ESCAPE = re.compile(r"%[0-9a-f]{2}")


def _tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """One spelling of ``url`` for comparison; the input unchanged if it is not a URL."""
    plain = _PLAIN.fullmatch(url)
    if plain is not None:  # the common case, without parsing: same result as below
        return f"https://{plain.group(1)}{_path(plain.group(2) or '/')}"
    return _canonical(url)


def _canonical(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower().rstrip(".")
    host = f"[{host}]" if ":" in host else host.removeprefix("www.")
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    path = _path(_ESCAPE.sub(lambda m: m.group(0).upper(), parts.path or "/"))
    query = sorted(p for p in parts.query.split("&") if p and not _tracking(p.split("=", 1)[0]))
    fragment = parts.fragment if parts.fragment.startswith("!") else ""
    return urlunsplit(("https", host, path, "&".join(query), fragment))


def _path(path: str) -> str:
    """A path without its trailing slashes (``/`` stays)."""
    return path.rstrip("/") or "/"


def canonical_text(text: str) -> str:
    """One spelling of a title for comparison: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
