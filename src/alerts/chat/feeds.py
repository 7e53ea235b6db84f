"""``add-feed``, ``remove-feed`` and ``feeds``: rooms adding sources of their own.

Only where the operator allows it (``[chat] allow_add_sources``), from the hosts it
lists (``add_source_domains``: a host allows its subdomains), up to
``add_source_quota`` feeds per room. A feed is checked as a config source is (an
absolute http(s) URL; the SSRF guard of ``alerts.netguard`` refuses loopback,
private and link-local addresses unless ``[chat] allow_private_network`` opens
them), then fetched once with ``alerts poll --dry-run`` semantics: nothing is
stored as seen and nothing is sent; the reply says what the feed lists now.

Then it is stored as a room-scoped source (``alerts.store.chat_sources``) whose id
derives from the room and the URL, with the room's subscription to it: its alerts
go to that room alone (it feeds no topic, whatever label the room gives it). The
running service polls it from then on (``on_change`` hands it to the scheduler);
its first poll is a baseline, like any source's, so only later items are sent.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from yarl import URL

from alerts.errors import SourceError
from alerts.model import Subscription, UpdateStyle, utcnow
from alerts.netguard import NetworkPolicy
from alerts.options import check_http_url
from alerts.records import ChatSource
from alerts.redact import redact_text
from alerts.render.facts import neutral_line

if TYPE_CHECKING:
    from alerts.chat.commands import CommandContext
    from alerts.config import ChatConfig
    from alerts.sources.http import HttpClient
    from alerts.store import Store

FEED_KIND = "feed"
SHOWN_TITLES = 3
_MASS_MENTION = re.compile(r"@(?=everyone|here|room)", re.IGNORECASE)


class FeedRefused(Exception):
    """A feed that cannot be added or removed; the message is the reply."""


def chat_source_id(destination_id: str, url: str) -> str:
    """The id of the feed ``url`` added by room ``destination_id`` (stable, a valid
    source name)."""
    digest = hashlib.sha256(f"{destination_id}\n{url}".encode()).hexdigest()
    return f"chat-{digest[:12]}"


def shown(text: object, limit: int = 100) -> str:
    """Text from a stranger, as a reply may show it: one neutral line, mass mentions
    broken by a zero-width space."""
    return _MASS_MENTION.sub("@\u200b", neutral_line(text, limit))


class ChatFeeds:
    """What ``CommandService`` runs for the feed verbs (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        http: HttpClient,
        chat: ChatConfig,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.http = http
        self.chat = chat  # replaced on reload
        self._on_change = on_change

    async def add(
        self,
        url: str,
        *,
        topic: str | None,
        updates: UpdateStyle | None,
        topics: Mapping[str, str],
        ctx: CommandContext,
    ) -> str:
        chat = self.chat
        if not chat.allow_add_sources:
            raise FeedRefused("The operator has not allowed adding feeds from chat.")
        host = self._check_url(url)
        if topic is not None and topic not in topics:
            known = ", ".join(sorted(topics)) or "none"
            raise FeedRefused(f"unknown topic {topic!r}; topics are: {known}")
        room = ctx.destination_id
        held = await self.store.list_chat_sources(room)
        source_id = chat_source_id(room, url)
        if any(s.id == source_id for s in held):
            raise FeedRefused(f"This room already has that feed, as {source_id}.")
        if len(held) >= chat.add_source_quota:
            raise FeedRefused(self._over_quota())
        titles, count = await self._dry_run(source_id, url)
        source = ChatSource(source_id, room, url, ctx.user, utcnow(), FEED_KIND, topic or "")
        subscription = Subscription(
            destination_id=room, source=source_id, updates=updates, created_by=ctx.user
        )
        if not await self.store.add_chat_source(
            source,
            destination=ctx.destination(),
            subscription=subscription,
            quota=chat.add_source_quota,
        ):
            raise FeedRefused(self._over_quota())
        await self._changed()
        lines = [
            f"Added feed {source_id} ({host}) for this room.",
            f"It lists {count} item{'s' if count != 1 else ''} now" + (":" if titles else "."),
            *(f"- {t}" for t in titles),
            "Those are recorded, not sent (the first poll is a baseline); "
            "new items will be posted here.",
        ]
        return "\n".join(lines)

    async def remove(self, which: str, ctx: CommandContext) -> str:
        held = await self.store.list_chat_sources(ctx.destination_id)
        found = next((s for s in held if which in (s.id, s.url)), None)
        if found is None:
            raise FeedRefused(f"This room has no feed {shown(which)!r}. Try: feeds")
        await self.store.remove_chat_source(found.id, reason=f"feed removed by {ctx.user}")
        await self._changed()
        return f"Removed feed {found.id} ({shown(redact_text(found.url), 200)})."

    async def listing(self, ctx: CommandContext) -> str:
        held = await self.store.list_chat_sources(ctx.destination_id)
        if not held:
            return "This room has added no feeds." + (
                " Try: add-feed URL" if self.chat.allow_add_sources else ""
            )
        lines = [
            f"- {s.id} {shown(redact_text(s.url), 200)}"
            + (f" topic={s.topic}" if s.topic else "")
            + f" (added by {shown(s.added_by, 80)} on {s.added_at:%Y-%m-%d})"
            for s in held
        ]
        return f"Feeds added here ({len(held)} of {self.chat.add_source_quota}):\n" + "\n".join(
            lines
        )

    def _check_url(self, url: str) -> str:
        """The URL's host, if the URL may be added; else ``FeedRefused``."""
        try:
            check_http_url(url)
        except ValueError as exc:
            raise FeedRefused(f"That URL {exc}.") from None
        host = (URL(url).host or "").lower().rstrip(".")
        if not self.chat.domain_allowed(host):
            allowed = ", ".join(self.chat.add_source_domains)
            raise FeedRefused(f"Feeds from {shown(host)} are not allowed here; allowed: {allowed}.")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return host
        reason = NetworkPolicy(self.chat.allow_private_network).refusal(str(address))
        if reason is not None:
            raise FeedRefused(f"Refused: {host} is a {reason} address.")
        return host

    async def _dry_run(self, source_id: str, url: str) -> tuple[list[str], int]:
        """Fetch once, store nothing: the newest titles and the item count."""
        from alerts.sources import SourceState
        from alerts.sources import registry as source_registry

        factory = source_registry()[FEED_KIND]
        adapter = factory(
            source_id=source_id,
            url=url,
            options=factory.Options.model_validate({}),
            http=self.http.for_source(self.chat.allow_private_network),
        )
        try:
            observation = await adapter.fetch(SourceState())
        except SourceError as exc:
            raise FeedRefused(f"Could not read that feed: {redact_text(str(exc))}") from None
        items = observation.items
        titles = [shown(i.title or i.url or i.key) for i in items[:SHOWN_TITLES]]
        return titles, len(items)

    def _over_quota(self) -> str:
        quota = self.chat.add_source_quota
        return (
            f"This room has added {quota} feed{'s' if quota != 1 else ''}, its quota; "
            "remove one first (remove-feed ID)."
        )

    async def _changed(self) -> None:
        if self._on_change is not None:
            await self._on_change()
