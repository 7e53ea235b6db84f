"""What the status page hides of the URLs it shows.

Stricter than ``alerts.redact`` (which masks the secrets it recognises, for logs,
errors and the CLI), because a status page may be read by more people than the
logs: a shown source URL loses its user information and its *whole* query string.
Free text (errors, park reasons) first goes through ``alerts.redact`` (credentials,
tokens, ``Bearer`` values, webhook tokens), then every URL left in it is shown the
same way as a source URL.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

from alerts import redact

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
    """``text`` with its secrets masked and every URL in it shown like ``redact_url``."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), redact.redact_text(text))
