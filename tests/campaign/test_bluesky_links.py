"""The links a Bluesky post shares (its link card, the links in its text) are in the
item's ``links`` field, so a room that was shown the article gets the post as "also
reported by" on the same message (issue 15). Fixture: ``bluesky/shared_links.json``,
shaped by the lexicons named in ``fixtures/SOURCES.md``."""

from __future__ import annotations

from alerts.fixture_server import FixtureServer, Reply
from alerts.sources import SourceState
from alerts.sources.http import HttpClient

from .helpers import data
from .test_documents import FEED, bluesky


async def test_a_post_lists_the_web_links_it_shares(
    server: FixtureServer, http: HttpClient
) -> None:
    server.route("GET", FEED, Reply.json(data("bluesky/shared_links.json")))
    obs = await bluesky(server, http).fetch(SourceState())
    assert [item.fields["links"] for item in obs.items] == [
        ["https://next.ink/167245/ice-palantir-immigrationos/?utm_source=bluesky"],  # card
        ["https://iceout.tech"],  # a link facet; mentions and javascript: are no links
        ["https://www.ice.gov/doclib/foia/contracts/70CTD022FR0000170.pdf"],  # card with a quote
    ]
    assert all(item.url.startswith("https://bsky.app/profile/") for item in obs.items)  # type: ignore[union-attr]


async def test_a_post_without_links_has_none(server: FixtureServer, http: HttpClient) -> None:
    server.route("GET", FEED, Reply.json(data("bluesky/author_feed.json")))
    obs = await bluesky(server, http).fetch(SourceState())
    assert [item.fields["links"] for item in obs.items] == [[], []]
