"""Secrets out of everything alerts shows or keeps: logs, errors, CLI output, the
store (a source's ``last_error``), metrics.

What is a secret here (each rule is tested in ``tests/test_redact.py``):

* URL credentials: ``user:password@`` keeps the user (``user:***@``); a user name
  alone is often a token (``https://ghp_x@host``) and becomes ``***@``. Database
  URLs are URLs: ``postgresql://alerts:***@db/alerts``.
* The value of a secret query or fragment parameter (``?token=***``). A parameter
  name is secret when, read case-insensitively with ``-`` as ``_``, it is one of
  ``SECRET_PARAMS``, contains one of ``SECRET_PARTS`` or ends in ``key``.
* The token of a Discord webhook URL: ``/api/webhooks/<id>/***``.
* Outside URLs: ``name=value`` pairs whose name is secret by the same rule
  (``password=…`` in a libpq connection string), ``Authorization:`` header values
  and ``Bearer`` tokens.
* Values registered with ``register_secret`` (``alerts`` registers the secret
  ``ALERTS_*`` settings of its environment at start-up), wherever they appear.

Redaction keeps everything else byte for byte, so a redacted URL still says which
host and path failed. Passwords must be percent-encoded in URLs, as the URL
standard requires (a raw ``/`` or ``#`` ends the authority for every URL parser).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

MASK = "***"

SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "code_verifier",
        "jwt",
        "key",
        "pass",
        "passwd",
        "password",
        "pwd",
        "refresh_token",
        "secret",
        "session",
        "sessionid",
        "sig",
        "signature",
        "token",
        "x_amz_credential",
        "x_amz_security_token",
        "x_amz_signature",
        "x_goog_credential",
        "x_goog_signature",
    }
)
SECRET_PARTS = ("token", "secret", "passw", "signature", "credential", "apikey", "api_key")

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`]+")
_WEBHOOK = re.compile(r"(/api(?:/v\d+)?/webhooks/\d+/)([^/?#]+)")
_TRAILING = ".,;:!?)]}"
_WEBHOOK_MASKED = rf"\1{MASK}"
_PAIR = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]*)(\s*=\s*)([^\s&;,'\"]+)")
_AUTHORIZATION = re.compile(r"(?i)(authorization\s*[:=]\s*)(?:(bearer|basic|token)\s+)?([^\s;,]+)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]+)")
_BEARER_MASKED = rf"\1{MASK}"
_MIN_REGISTERED = 6

_registered: set[str] = set()


def is_secret_param(name: str) -> bool:
    """Whether a query parameter or ``name=value`` key holds a secret."""
    key = unquote_plus(name).strip().lower().replace("-", "_")
    return key in SECRET_PARAMS or key.endswith("key") or any(p in key for p in SECRET_PARTS)


def redact_url(url: str) -> str:
    """``url`` with its credentials, secret parameters and webhook token masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _redact_pairs(url)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        authority = f"{_mask_userinfo(userinfo)}@{hostport}"
    path, query, fragment = _split_tail(tail)
    out = f"{scheme}://{authority}{_WEBHOOK.sub(_WEBHOOK_MASKED, path)}"
    if query is not None:
        out += "?" + _redact_query(query)
    if fragment is not None:
        out += "#" + (_redact_query(fragment) if "=" in fragment else fragment)
    return out


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with every secret in it masked."""
    if not text:
        return text
    text = _URL.sub(_redact_url_match, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{_scheme(m.group(2))}{MASK}", text)
    text = _BEARER.sub(_BEARER_MASKED, text)
    text = _redact_pairs(text)
    for secret in sorted(_registered, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (too short values are ignored:
    masking every ``abc`` would garble messages without protecting anything)."""
    if value and len(value.strip()) >= _MIN_REGISTERED:
        _registered.add(value.strip())


def forget_secrets() -> None:
    """Drop every registered secret (tests; a process registers once)."""
    _registered.clear()


def register_environment(environ: Mapping[str, str]) -> None:
    """Register the secret ``ALERTS_*`` settings (tokens, passwords, keys, webhook
    URLs, the database URL's password) in place of any registered before."""
    forget_secrets()
    for name, value in environ.items():
        if not name.startswith("ALERTS_"):
            continue
        if name == "ALERTS_DATABASE_URL":
            register_secret(_password_of(value))
        elif is_secret_param(name) or "WEBHOOK" in name:
            register_secret(value)


class RedactingFilter(logging.Filter):
    """A logging filter (installed on the handlers) that masks secrets in the
    message, its arguments and the formatted traceback. A safety net: messages
    should be clean where they are made."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not ours
            return True
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


# --- helpers ----------------------------------------------------------------------


def _redact_url_match(match: re.Match[str]) -> str:
    """A URL found in text, less the punctuation that ends the sentence around it."""
    url = match.group(0)
    core = url.rstrip(_TRAILING)
    return redact_url(core) + url[len(core) :]


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else MASK


def _split_tail(tail: str) -> tuple[str, str | None, str | None]:
    before_fragment, hash_, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    return path, (query if question else None), (fragment if hash_ else None)


def _redact_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and is_secret_param(name):
            value = MASK
        elif "://" in value:
            value = redact_text(value)
        parts.append(f"{name}{eq}{value}")
    return "&".join(parts)


def _redact_pairs(text: str) -> str:
    return _PAIR.sub(_redact_pair, text)


def _redact_pair(match: re.Match[str]) -> str:
    name, equals, value = match.groups()
    if not is_secret_param(name):
        return match.group(0)
    core = value.rstrip(_TRAILING)
    return f"{name}{equals}{MASK}{value[len(core) :] if core else ''}"


def _scheme(word: str | None) -> str:
    return f"{word} " if word else ""


def _password_of(url: str) -> str | None:
    _, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    _, colon, password = userinfo.partition(":")
    return unquote_plus(password) if sep and at and colon else None
