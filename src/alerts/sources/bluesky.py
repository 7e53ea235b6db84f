"""The ``bluesky`` adapter: an account's posts through the public AppView API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from alerts.errors import ParseError
from alerts.model import Item, Observation
from alerts.sources import SourceState
from alerts.sources.http import HttpClient

DEFAULT_API = "https://public.api.bsky.app"
_REPOST = "app.bsky.feed.defs#reasonRepost"


class BlueskyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str = Field(description="handle (example.bsky.social) or DID")
    limit: int = Field(default=30, ge=1, le=100, description="newest posts per poll")
    replies: bool = Field(default=False, description="include the account's replies")


class BlueskySource:
    """Posts of one Bluesky account, from ``app.bsky.feed.getAuthorFeed``.

    ``url`` is the AppView base (default ``https://public.api.bsky.app``, no login).
    ``actor`` is the handle or DID. The newest ``limit`` posts are read; reposts are
    skipped, and replies too unless ``replies = true``. Items are keyed on the post
    ``at://`` URI and link to ``https://bsky.app/profile/<handle>/post/<id>``; the
    web links a post shares (its link card, the links in its text) are in the field
    ``links``, so that a room shown the article already gets the post as "also
    reported by" on the same message.
    (For an RSS alternative, the ``feed`` adapter reads
    ``https://bsky.app/profile/<handle>/rss``.)
    """

    kind: ClassVar[str] = "bluesky"
    Options: ClassVar[type[BaseModel]] = BlueskyOptions
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("summary",)
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "url", "summary", "published", "author", "handle", "links"}
    )
    default_url: ClassVar[str | None] = DEFAULT_API

    def __init__(
        self, *, source_id: str, url: str, options: BlueskyOptions, http: HttpClient
    ) -> None:
        self.source_id = source_id
        self.api = (url or DEFAULT_API).rstrip("/")
        self.options = options
        self.http = http

    async def fetch(self, state: SourceState) -> Observation:
        params = {
            "actor": self.options.actor,
            "limit": str(self.options.limit),
            "filter": "posts_with_replies" if self.options.replies else "posts_no_replies",
        }
        resp = await self.http.get(f"{self.api}/xrpc/app.bsky.feed.getAuthorFeed", params=params)
        data = resp.json()
        feed = data.get("feed") if isinstance(data, dict) else None
        if not isinstance(feed, list):
            raise ParseError("Bluesky getAuthorFeed: no 'feed' list in the response")
        items = [_item(entry) for entry in feed if not _is_repost(entry)]
        return Observation(items=tuple(i for i in items if i is not None))


def _is_repost(entry: Any) -> bool:
    reason = entry.get("reason") if isinstance(entry, dict) else None
    return isinstance(reason, dict) and reason.get("$type") == _REPOST


def _item(entry: Any) -> Item | None:
    post = entry.get("post") if isinstance(entry, dict) else None
    if not isinstance(post, dict):
        raise ParseError("Bluesky feed entry without a 'post' object")
    uri, author, record = post.get("uri"), post.get("author"), post.get("record")
    if not isinstance(uri, str) or not isinstance(author, dict) or not isinstance(record, dict):
        raise ParseError("Bluesky post without uri/author/record")
    handle = str(author.get("handle") or author.get("did") or "")
    text = str(record.get("text") or "")
    first = text.strip().splitlines()[0] if text.strip() else "(no text)"
    return Item(
        key=uri,
        title=first if len(first) <= 120 else first[:119] + "…",
        url=f"https://bsky.app/profile/{quote(handle)}/post/{uri.rsplit('/', 1)[-1]}",
        summary=text,
        published=_when(record.get("createdAt") or post.get("indexedAt")),
        author=str(author.get("displayName") or handle) or None,
        fields={"handle": handle, "links": shared_links(post)},
    )


def shared_links(post: dict[str, Any]) -> list[str]:
    """The web links a post shares, in the lexicons' shapes: a link card
    (``app.bsky.embed.external``, in the record and in the AppView's
    ``app.bsky.embed.external#view``, also inside ``recordWithMedia``) and link facets
    of its text (``app.bsky.richtext.facet#link``)."""
    record = post.get("record")
    record = record if isinstance(record, dict) else {}
    found = [_card(record.get("embed")), _card(post.get("embed"))]
    for facet in _dicts(record.get("facets")):
        found += [f.get("uri") for f in _dicts(facet.get("features")) if "uri" in f]
    links = (u for u in found if isinstance(u, str) and u.startswith(("https://", "http://")))
    return list(dict.fromkeys(links))[:20]


def _card(embed: Any) -> Any:
    if not isinstance(embed, dict):
        return None
    media = embed.get("media")  # app.bsky.embed.recordWithMedia
    external = embed.get("external") or (media.get("external") if isinstance(media, dict) else None)
    return external.get("uri") if isinstance(external, dict) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
