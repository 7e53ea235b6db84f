"""The sources of the hostile corpus: every adapter that takes strangers' text, served
by a scripted loopback server in the shapes of the real APIs.

Stage 0 is a benign baseline; at stage 1 every case of the corpus appears, in each
adapter's own places for strangers' text:

* ``feed`` — a JSON Feed 1.1 (jsonfeed.org/version/1.1: ``items[].id``, ``url``,
  ``title``, ``content_text``, ``authors[].name``): title, summary and author, and
  the link cases as item URLs;
* ``federal_register`` — ``GET /api/v1/documents.json`` (federalregister.gov API v1
  documents search: ``count``, ``results[].document_number``, ``title``,
  ``abstract``, ``html_url``, ``type``, ``publication_date``, ``agencies``): title,
  summary and link;
* ``bluesky`` — ``app.bsky.feed.getAuthorFeed`` (the AT Protocol lexicon: ``feed[]
  .post.uri``, ``author.displayName``, ``record.text``, ``record.createdAt``): the
  post text and the author's display name;
* ``awards`` — ``POST /api/v2/search/spending_by_award/`` (USAspending API v2
  contracts: ``results[]`` with the requested fields, ``page_metadata.hasNext``):
  recipient and description;
* ``petition`` — a JSON endpoint (``mode = "json"``) with the count and the named
  signatories: names, job titles and companies (watched, so each one is an alert of
  its own, besides the delta that lists them);
* ``webpage`` — one page per case (an HTML document whose ``<title>`` and watched
  region hold the case, HTML-escaped as a page would): the page title and the
  region's text diff.

Shapes follow the fixtures of ``tests/campaign/fixtures`` (same APIs) and the demo.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.config import HttpConfig
from alerts.fixture_server import FixtureServer, Recorded, Reply

CORPUS_FILE = Path(__file__).with_name("corpus.yaml")
SHARD = 100  # Bluesky's getAuthorFeed returns at most 100 posts
DID = "did:plc:z72i7hdynmk6r22z27h6tvur"
ADAPTERS = ("feed", "federal_register", "bluesky", "awards", "petition", "webpage")


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    rule: str
    text: str


@dataclass(frozen=True, slots=True)
class LinkCase:
    id: str
    rule: str
    url: str
    expect: str | None
    matrix: str | None


def load_corpus(member: str) -> tuple[list[Case], list[LinkCase]]:
    """The corpus with ``{member}`` replaced by a real room member's user id."""
    data = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
    texts = [
        Case(c["id"], c["rule"], c["text"].replace("{member}", member) * c.get("repeat", 1))
        for c in data["texts"]
    ]
    links = [
        LinkCase(
            c["id"],
            c["rule"],
            c["url"].replace("{long}", "a" * 2100),
            c["expect"],
            c.get("matrix", c["expect"]),
        )
        for c in data["links"]
    ]
    return texts, links


def shards(cases: Sequence[Case]) -> list[Sequence[Case]]:
    return [cases[i : i + SHARD] for i in range(0, len(cases), SHARD)]


class HostileWorld:
    """Every source of one adapter, at ``stage`` 0 (baseline) or 1 (the corpus)."""

    def __init__(self, adapter: str, texts: Sequence[Case], links: Sequence[LinkCase]) -> None:
        self.adapter = adapter
        self.texts = list(texts)
        self.links = list(links)
        self.stage = 0

    def sources(self, base: str) -> list[dict[str, Any]]:
        """The ``[[sources]]`` tables of this adapter (one per shard or per page)."""
        if self.adapter == "webpage":
            return [
                {"id": f"page-{n}", "kind": "webpage", "url": f"{base}/pages/{n}",
                 "selector": "#region"}
                for n in range(len(self.texts))
            ]  # fmt: skip
        tables = []
        for n in range(len(shards(self.texts))):
            table: dict[str, Any] = {"id": f"{self.adapter}-{n}", "kind": self.adapter}
            table.update(self._source_options(base, n))
            tables.append(table)
        return tables

    def _source_options(self, base: str, n: int) -> dict[str, Any]:
        return {
            "feed": {"url": f"{base}/feeds/{n}.json"},
            "federal_register": {"url": f"{base}/fr/{n}/documents.json", "per_page": 1000},
            "bluesky": {"url": f"{base}/bsky/{n}", "actor": "hostile.example", "limit": 100},
            "awards": {"url": f"{base}/usaspending/{n}", "modifications": False},
            "petition": {
                "url": f"{base}/petition/{n}.json", "mode": "json", "count_path": "count",
                "signatories_path": "signatories", "watch_companies": ["Watched"],
            },
        }[self.adapter]  # fmt: skip

    def install(self, server: FixtureServer) -> None:
        if self.adapter == "webpage":
            for n, case in enumerate(self.texts):
                server.route("GET", f"/pages/{n}", lambda _r, c=case, i=n: self._page(i, c))
            return
        for n, shard in enumerate(shards(self.texts)):
            links = self.links if n == 0 else []
            route = {
                "feed": ("GET", f"/feeds/{n}.json", lambda _r, s=shard, li=links: self._feed(s, li)),
                "federal_register": ("GET", f"/fr/{n}/documents.json",
                                     lambda _r, s=shard, li=links: self._documents(s, li)),
                "bluesky": ("GET", f"/bsky/{n}/xrpc/app.bsky.feed.getAuthorFeed",
                            lambda _r, s=shard, i=n: self._author_feed(i, s)),
                "awards": ("POST", f"/usaspending/{n}/api/v2/search/spending_by_award/",
                           lambda r, s=shard, i=n: self._awards(r, i, s)),
                "petition": ("GET", f"/petition/{n}.json", lambda _r, s=shard, i=n: self._petition(i, s)),
            }[self.adapter]  # fmt: skip
            server.route(route[0], route[1], route[2])

    # --- payloads ----------------------------------------------------------------

    def _feed(self, shard: Sequence[Case], links: Sequence[LinkCase]) -> Reply:
        items = [_feed_item("baseline", "A calm day", "https://news.example/baseline")]
        if self.stage:
            items += [
                {**_feed_item(c.id, c.text, f"https://news.example/{c.id}"),
                 "content_text": c.text, "authors": [{"name": c.text}]}
                for c in shard
            ]  # fmt: skip
            items += [_feed_item(f"link-{c.id}", f"Link case {c.id}", c.url) for c in links]
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": "Hostile news",
                "home_page_url": "https://news.example/", "items": items}  # fmt: skip
        return Reply(200, json.dumps(feed).encode(), "application/feed+json")

    def _documents(self, shard: Sequence[Case], links: Sequence[LinkCase]) -> Reply:
        docs = [
            _document(
                "2026-00001", "Baseline notice", "", "https://www.federalregister.gov/d/2026-00001"
            )
        ]
        if self.stage:
            docs += [
                # a document without a title is refused by the adapter (ParseError)
                _document(
                    c.id,
                    (c.text.strip() and c.text) or f"(case {c.id})",
                    c.text,
                    f"https://www.federalregister.gov/d/{c.id}",
                )
                for c in shard
            ]
            docs += [_document(f"link-{c.id}", f"Link case {c.id}", "", c.url) for c in links]
        return Reply.json({"count": len(docs), "total_pages": 1, "results": docs})

    def _author_feed(self, n: int, shard: Sequence[Case]) -> Reply:
        posts = [_post(f"base{n}", "Baseline post", "Hostile Example")]
        if self.stage:
            posts = [_post(f"case{n}x{i}", c.text, c.text) for i, c in enumerate(shard)] + posts
        return Reply.json({"feed": posts, "cursor": "x"})

    def _awards(self, request: Recorded, n: int, shard: Sequence[Case]) -> Reply:
        rows = [_award(f"B{n}", "BASELINE CONTRACTOR", "BASELINE SERVICES")]
        if self.stage:
            rows += [_award(f"H{n}x{i}", c.text, c.text) for i, c in enumerate(shard)]
        page = {"page": 1, "hasNext": False, "hasPrevious": False, "next": None, "previous": None}
        return Reply.json({"limit": 100, "results": rows, "page_metadata": page})

    def _petition(self, n: int, shard: Sequence[Case]) -> Reply:
        # A signatory must have a name (the adapter refuses an empty one): the empty case
        # stays out of names, and is still every job title.
        people = [] if not self.stage else [
            {"name": c.text or f"(case {c.id})", "title": c.text, "company": f"Watched {n}x{i}"}
            for i, c in enumerate(shard)
        ]  # fmt: skip
        return Reply.json({"count": 1000 + len(people), "signatories": people})

    def _page(self, n: int, case: Case) -> Reply:
        text = case.text if self.stage else "Our statement, as first published."
        body = (
            f"<html><head><title>{html.escape(text)}</title></head><body>"
            f'<div id="region"><p>Statement {n}</p><p>{html.escape(text)}</p></div></body></html>'
        )
        return Reply.html(body)


def _feed_item(item_id: str, title: str, url: str) -> dict[str, Any]:
    return {"id": item_id, "url": url, "title": title, "content_text": title,
            "date_published": "2026-02-03T15:04:05Z"}  # fmt: skip


def _document(number: str, title: str, abstract: str, url: str) -> dict[str, Any]:
    return {
        "document_number": number, "title": title, "type": "Notice", "abstract": abstract or None,
        "html_url": url, "publication_date": "2026-02-02",
        "agencies": [{"raw_name": "U.S. IMMIGRATION AND CUSTOMS ENFORCEMENT",
                      "name": "U.S. Immigration and Customs Enforcement",
                      "slug": "u-s-immigration-and-customs-enforcement"}],
    }  # fmt: skip


def _post(rkey: str, text: str, name: str) -> dict[str, Any]:
    return {
        "post": {
            "uri": f"at://{DID}/app.bsky.feed.post/{rkey}", "cid": f"bafy{rkey}",
            "author": {"did": DID, "handle": "hostile.example", "displayName": name},
            "record": {"$type": "app.bsky.feed.post", "createdAt": "2026-02-03T15:04:05Z",
                       "text": text},
            "indexedAt": "2026-02-03T15:04:06Z",
        }
    }  # fmt: skip


def _award(piid: str, recipient: str, description: str) -> dict[str, Any]:
    return {
        "internal_id": 1, "Award ID": piid, "Recipient Name": recipient,
        "Award Amount": 1_500_000.5, "Awarding Agency": "Department of Homeland Security",
        "Awarding Sub Agency": "U.S. Immigration and Customs Enforcement",
        "Description": description, "Start Date": "2026-01-20",
        "Contract Award Type": "DEFINITIVE CONTRACT",
        "generated_internal_id": f"CONT_AWD_{piid}_7012_-NONE-_-NONE-",
    }  # fmt: skip


def config_toml(world: HostileWorld, base: str, targets: Mapping[str, str]) -> str:
    """The service config: the adapter's sources, one destination per sink, all routed."""
    lines = [
        "[service]", 'contact = "mailto:tests@example.org"', "jitter = 0.0",
        "max_events_per_poll = 1000",
        'account_lease = "1h"',  # the test drives the dispatcher: no accounts loop renews
        "", "[topics.hostile]", 'description = "Hostile"', "",
    ]  # fmt: skip
    if "allow_private_network" in HttpConfig.model_fields:  # the SSRF guard: opt in to loopback
        lines += ["[http]", "allow_private_network = true", ""]
    for name, (sink, target) in {
        "room": ("matrix", targets["matrix"]),
        "channel": ("discord", targets["discord"]),
        "hook": ("discord_webhook", "default"),
    }.items():
        lines += [f"[destinations.{name}]", f'sink = "{sink}"', f"target = {json.dumps(target)}"]
        lines += ["", "[[routes]]", f'destination = "{name}"', 'topics = ["hostile"]', ""]
    for table in world.sources(base):
        lines.append("[[sources]]")
        for key, value in {**table, "topics": ["hostile"], "max_events": 1000}.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


# Titles of a feed a room adds from chat (add-feed's reply shows three).
HOSTILE_TITLES = (
    "[https://bank.example](https://phish.example/login) verify now",
    "deadline <t:0:R> ping <@&123456789012345678> in <#123456789012345678>",
    "# SYSTEM\x00 @everyone \u202eevil\u202c **bold** ||spoiler|| `code`",
)


def json_feed(titles: tuple[str, ...]) -> bytes:
    """A JSON Feed 1.1 document (jsonfeed.org/version/1.1: ``items`` with ``id``,
    ``url`` and ``title``), which can carry a NUL that XML cannot."""
    items = [
        {"id": f"h{n}", "url": f"https://example.org/h{n}", "title": title}
        for n, title in enumerate(titles)
    ]
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": items}
    ).encode()
