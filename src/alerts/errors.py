"""One error tree for the whole service.

::

    AlertsError
    ├── ConfigError                 bad operator config: names file, key path, reason (exit 2)
    │   └── OpmlError               an OPML file to import is malformed or refused (exit 2)
    ├── SourceError                 a source could not be polled; the source is marked failing
    │   ├── FetchError              transport-level failure (DNS, connect, timeout, TLS)
    │   │   ├── HttpStatusError     non-success HTTP status
    │   │   │   └── RetryAfterError 429/503 with a server-given wait (honoured by the scheduler)
    │   │   ├── ResponseTooLarge    body cut at the configured cap
    │   │   ├── TooManyRedirects
    │   │   └── AddressRefused      the SSRF guard: a loopback/private/... address, not opted in
    │   └── ParseError              payload does not match what the adapter expects
    ├── SendError                   a delivery could not be sent
    │   ├── RetryableSendError      try again later (5xx, timeout, offline server)
    │   │   └── RateLimitedError    the platform said when: retry that destination at T
    │   ├── RejectedError           this delivery can never succeed (it is parked as dead)
    │   ├── DestinationUnavailable  forbidden / unknown channel / not in room: park the destination
    │   └── MessageGone             the message to edit is gone (deleted, too old): post anew
    └── StoreError
        ├── LeaseLostError          another worker owns the claim now; the transaction is dropped
        ├── StoreUnavailable        transient: disk full, database locked, connection lost, server
        │                           restarting; loops wait it out with backoff, /readyz says not ready
        └── StoreCorrupt            the database file is damaged or not a database: names the file

Retryable versus rejected is a type, never a string: the dispatcher dispatches on
class only.

Every message is redacted when the error is made (``alerts.redact``): a URL's
credentials, secret query parameters and webhook tokens never reach a log line,
the CLI or the store through an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

from alerts.redact import redact_text, redact_url

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
MAX_KEY_CHARS = 64


class AlertsError(Exception):
    """Base class of every error raised on purpose by alerts; string arguments are
    redacted."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class ConfigError(AlertsError):
    """Operator configuration is invalid.

    ``problems`` holds one line per problem, each ``file: key.path: reason``.
    """

    def __init__(self, problems: list[str] | str) -> None:
        raw = [problems] if isinstance(problems, str) else list(problems)
        self.problems = [redact_text(p) for p in raw]
        super().__init__("\n".join(self.problems))

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, origin: str = "", prefix: str = ""
    ) -> ConfigError:
        """One ``origin: prefix.key.path: reason`` line per error of a pydantic model
        (an unknown key reads "unknown key", a missing one "required")."""
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            path = prefix + key_path(tuple(err["loc"]), nested=bool(prefix))
            where = ": ".join(p for p in (origin, path) if p)
            problems.append(f"{where}: {_reason(err['type'], err['msg'])}")
        return cls(problems)


def key_path(loc: Sequence[int | str], *, nested: bool = False) -> str:
    """``sources[2].interval`` from ``("sources", 2, "interval")``; keys that are not
    bare TOML keys are quoted (``topics."a b"``, control characters escaped) and long
    ones cut. With ``nested``, the path continues one (``.interval``, ``[2]``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = part if len(part) <= MAX_KEY_CHARS else part[: MAX_KEY_CHARS - 1] + "…"
        key = shown if _BARE_KEY.fullmatch(part) else json.dumps(shown, ensure_ascii=False)
        out += f".{key}" if out or nested else key
    return out


# pydantic error types → what they mean in a TOML file.
_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "string_type": "must be a string (in quotes)",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
}


def _reason(kind: str, message: str) -> str:
    return _REASONS.get(kind) or message.removeprefix("Value error, ")


class OpmlError(ConfigError):
    """An OPML file given to ``alerts import-opml`` cannot be used: not XML, not OPML,
    no feeds, entities refused, or the output exists. One line, naming the file."""


class SourceError(AlertsError):
    """A poll failed; the message is the reason shown in ``alerts sources``."""


class FetchError(SourceError):
    """The resource could not be fetched.

    Messages give the reason first and the URL last (``HTTP 429 Too Many Requests
    (retry after 30 s) from URL``), so that a cut message still says what went wrong.
    """


class HttpStatusError(FetchError):
    def __init__(self, status: int, url: str, detail: str = "") -> None:
        self.status = status
        self.url = redact_url(url)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "unknown status"
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"HTTP {status} {phrase}{suffix} from {self.url}")


class RetryAfterError(HttpStatusError):
    """The server asked us to come back later (429 or 503 with ``Retry-After``)."""

    def __init__(self, status: int, url: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(status, url, f"retry after {retry_after_s:.0f} s")


class ResponseTooLarge(FetchError):
    def __init__(self, url: str, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(f"response larger than {limit_bytes} bytes (cut at the cap) from {url}")


class TooManyRedirects(FetchError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"more than {limit} redirects fetching {url}")


class AddressRefused(FetchError):
    """The SSRF guard refused the address a request (or a redirect hop) would connect
    to: loopback, private, link-local and the like (``alerts.netguard``)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        where = f"{host} ({reason})" if host == address else f"{host} ({address}, {reason})"
        super().__init__(
            f"refused to connect to {where}: set allow_private_network = true on this "
            "source (or in [http] for every source) to allow it"
        )


class ParseError(SourceError):
    """The payload does not have the shape the adapter expects (a schema change?)."""


class SendError(AlertsError):
    """A delivery could not be sent."""


class RetryableSendError(SendError):
    """Transient: the dispatcher retries with backoff.

    ``retry_after_s`` is the platform's own wait when it gave one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RateLimitedError(RetryableSendError):
    """The platform rate-limited this destination; not counted as a failed attempt."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class PlatformUnavailable(RetryableSendError):
    """The platform as a whole takes no messages now: it cannot be reached, its gateway
    answers 502/503/504, or it refuses the bot's credentials.

    Not the delivery's fault, so not counted as a failed attempt: the dispatcher
    keeps retrying, backing off, for as long as the outage lasts, and no delivery goes
    dead because of it.
    """


class RejectedError(SendError):
    """The platform refused this message for good; the delivery is parked as dead."""


class DestinationUnavailable(SendError):
    """The destination cannot receive anything (forbidden, gone, not a member).

    The destination is parked and the operator is told; its deliveries wait.
    """


class MessageGone(SendError):
    """The message an edit or a reply was for can no longer be edited: deleted
    (Discord "Unknown Message", a redacted Matrix event), too old to edit, or in a
    thread that was archived. The update is posted as a new message instead."""


class StoreError(AlertsError):
    """The store failed."""


class LeaseLostError(StoreError):
    """The claim this worker held was taken over; its transaction was rolled back."""


class StoreUnavailable(StoreError):
    """The store cannot be used right now, but may recover by itself: the disk is
    full, the database is locked, the connection dropped, the server is restarting
    or failing over. Long-running loops wait it out (with backoff, logging once) and
    the service reports not ready meanwhile; nothing is lost, since nothing was
    committed."""


class StoreCorrupt(StoreError):
    """The database is damaged or is not a database of ours; the message names the
    file (or server) and says what to do. Not transient: the command exits 1."""
