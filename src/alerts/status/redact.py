"""What the status page hides of the URLs it shows.

A stop-gap until ``alerts.redact`` (URL redaction for logs, errors and the CLI)
lands: then ``redact_url`` and ``redact_text`` become thin calls into it. Source URLs
may carry credentials (``https://user:pass@host/feed``) or tokens in the query
(``?token=…``), so a shown source URL loses both: its user information and its whole
query string. Free text (errors, park reasons) gets the same treatment for every URL
found in it.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

HIDDEN = "***"
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]")


def redact_url(url: str) -> str:
    """``url`` without user information and with ``***`` for any query string."""
    try:
        parts = urlsplit(url)
        netloc = _host_port(parts)
    except ValueError:
        return HIDDEN
    if not parts.scheme or not parts.netloc:
        return url if "?" not in url else url.split("?", 1)[0] + "?" + HIDDEN
    netloc = (f"{HIDDEN}@" if "@" in parts.netloc else "") + netloc
    query = HIDDEN if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` taken out, the rest kept (a link to follow)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=_host_port(parts)))


def _host_port(parts: SplitResult) -> str:
    """``host[:port]`` of a split URL; raises ``ValueError`` on a bad port."""
    host = parts.hostname or ""
    port = parts.port
    if ":" in host:
        host = f"[{host}]"
    return host + (f":{port}" if port is not None else "")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted like ``redact_url``."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
