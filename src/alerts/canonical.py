"""Canonical forms used to recognise the same thing written two ways.

``canonical_url`` turns the many spellings of one link (tracking parameters, scheme,
host case, default port, ``www.``, trailing slash, fragment) into one string, so
that item keys and story matching do not depend on URL noise. It is for comparing,
never for fetching or showing: the link an alert shows is the one the source gave.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that only say where a click came from. Explicit and conservative:
# a parameter that can select content (``id``, ``p``, ``page``, ``ref`` on some sites)
# is never dropped.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "yclid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
    }
)
TRACKING_PREFIXES = ("utm_",)


def _tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """One spelling of ``url`` for comparison; the input unchanged if it is not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower().rstrip(".")
    host = host.removeprefix("www.")
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _tracking(k)]
    return urlunsplit(("https", host, path, urlencode(sorted(query)), ""))


def canonical_text(text: str) -> str:
    """One spelling of a title for comparison: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
