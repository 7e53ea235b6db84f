"""``alerts demo``: the real service, offline, against a short campaign timeline.

A scripted server on loopback (``alerts.fixture_server``) plays the campaign's
sources: the letter page, USAspending, the Federal Register, a company newsroom and
a Bluesky feed. The demo writes a config pointing at it, loads it with the normal
loader, and runs the normal ``Runtime`` (scheduler, adapters, detector, router,
outbox, dispatcher, console sink) in a temporary directory, with poll intervals
shortened to seconds. Once every source has its baseline, the timeline moves on:

1. signatures rise past a milestone, with named signatories (one from a watched
   company) and anonymous ones, counted by company;
2. ICE posts a sole-source justification on SAM.gov (the earliest public trace);
3. ICE signs a new award, and a new document appears in the Federal Register;
4. a modification raises Palantir's existing award (ImmigrationOS; the award id has
   the shape of the real one, ``CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730``);
5. a company rewrites its statement; next.ink reports it in its RSS feed and shares
   the article on Bluesky: one story, so one message that lists both;
6. a second modification of Palantir's award edits the first alert about it in place
   and replies under it with what changed, and more signatures move the letter's
   live count message.

Alerts go to the console, and to a Matrix room or Discord channel as well when
``ALERTS_DEMO_MATRIX_ROOM`` / ``ALERTS_DEMO_DISCORD_CHANNEL`` name one (the sinks'
own credentials come from their usual settings). Nothing leaves the machine
otherwise, and the demo stops by itself once the expected alerts are delivered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.config import Config, Settings, load_config
from alerts.fixture_server import FixtureServer, Recorded, Reply
from alerts.model import DeliveryState, Event, EventKind

PALANTIR = "CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"
ICE = "U.S. Immigration and Customs Enforcement"
EXPECTED: Counter[tuple[str, EventKind]] = Counter(
    {
        ("iceout-letter", EventKind.MILESTONE): 1,
        ("iceout-letter", EventKind.DELTA): 2,  # the second edits the live count message
        ("iceout-letter", EventKind.NEW): 1,
        ("ice-sam", EventKind.NEW): 1,
        ("ice-awards", EventKind.NEW): 1,
        ("ice-awards", EventKind.UPDATED): 2,  # the second edits the first, and replies
        ("ice-federal-register", EventKind.NEW): 1,
        ("examplecorp-statement", EventKind.UPDATED): 1,
        ("next-ink", EventKind.NEW): 1,
        ("twc-bluesky", EventKind.NEW): 1,  # the same story: merged into next.ink's message
    }
)
STAGES = (
    "baseline: every source is read once and nothing is alerted",
    "signatures rise past 1,000: four named signatories, sixty anonymous",
    "ICE posts a sole-source justification for Palantir on SAM.gov",
    "ICE signs a new award; a new ICE document in the Federal Register",
    "a modification raises Palantir's existing ICE award",
    "ExampleCorp rewrites its statement; next.ink reports it, in its feed and on Bluesky",
    "a second modification of Palantir's award; more signatures",
)
ARTICLE = "https://next.ink/167301/examplecorp-drops-its-ice-contract/"


class DemoSettings(BaseSettings):
    """Optional chat destinations for the demo (``ALERTS_DEMO_*``)."""

    model_config = SettingsConfigDict(env_prefix="ALERTS_DEMO_", extra="ignore")

    matrix_room: str = ""
    discord_channel: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class DemoResult:
    delivered: list[Event]
    missing: Counter[tuple[str, EventKind]]

    @property
    def ok(self) -> bool:
        return not self.missing


async def run_demo(
    *,
    step_s: float = 4.0,
    poll_s: float = 1.0,
    settle_s: float = 15.0,
    out: TextIO | None = None,
) -> DemoResult:
    """Play the timeline; return the alerts delivered to the console."""
    stream = out or sys.stdout
    world = Campaign()
    with tempfile.TemporaryDirectory(prefix="alerts-demo-") as tmp, _sam_key():
        async with FixtureServer() as server:
            world.install(server)
            settings = _settings(Path(tmp), server.base_url)
            config = _fast(load_config(settings.config_dir), poll_s)
            return await _play(settings, config, world, step_s, poll_s, settle_s, stream)


async def _play(
    settings: Settings,
    config: Config,
    world: Campaign,
    step_s: float,
    poll_s: float,
    settle_s: float,
    stream: TextIO,
) -> DemoResult:
    from alerts.runtime import Runtime
    from alerts.scheduler import Timing

    timing = Timing(jitter=0.0, first_spread_s=0.0, idle_s=min(0.5, poll_s / 2))
    runtime = await Runtime.open(settings, config, timing=timing)
    task = asyncio.create_task(runtime.run(), name="demo-runtime")
    try:
        _say(stream, f"[demo] {STAGES[0]}")
        await _until(lambda: _baselined(runtime, config), timeout_s=settle_s)
        for stage in range(1, len(STAGES)):
            world.stage = stage
            _say(stream, f"[demo] step {stage}: {STAGES[stage]}")
            await asyncio.sleep(step_s)
        delivered: list[Event] = []

        async def all_there() -> bool:
            delivered[:] = await _delivered(runtime)
            return not EXPECTED - Counter((e.source_id, e.kind) for e in delivered)

        await _until(all_there, timeout_s=settle_s)
        await _until(lambda: _outbox_empty(runtime), timeout_s=min(settle_s, 10.0))  # chat rooms
    finally:
        runtime.stop()
        await asyncio.gather(task, return_exceptions=True)
        await runtime.close()
    missing = EXPECTED - Counter((e.source_id, e.kind) for e in delivered)
    return DemoResult(delivered=delivered, missing=missing)


@contextmanager
def _sam_key() -> Iterator[None]:
    """The demo's SAM.gov server wants a key: lend one for the demo's duration only."""
    name = "ALERTS_SAM_API_KEY"
    before = os.environ.get(name)
    os.environ[name] = "demo-key"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _say(stream: TextIO, line: str) -> None:
    stream.write(f"\n{line}\n\n")
    stream.flush()


async def _until(check: Callable[[], Any], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)


async def _baselined(runtime: Any, config: Config) -> bool:
    rows = await runtime.store.list_sources()
    done = {r.source_id for r in rows if r.baselined}
    return set(config.sources) <= done


async def _outbox_empty(runtime: Any) -> bool:
    stats = await runtime.store.outbox_stats()
    return bool(stats.pending == 0)


async def _delivered(runtime: Any) -> list[Event]:
    sent = await runtime.store.list_deliveries(state=DeliveryState.SENT, limit=1000)
    return [d.event for d in sent if d.destination_id == "console"]


def _fast(config: Config, poll_s: float) -> Config:
    """Poll every ``poll_s`` seconds: below the operator minimum, for the demo only."""
    sources = {k: dataclasses.replace(s, interval_s=poll_s) for k, s in config.sources.items()}
    return dataclasses.replace(config, sources=sources)


def _settings(tmp: Path, base: str) -> Settings:
    config_dir = tmp / "config"
    config_dir.mkdir()
    (config_dir / "alerts.toml").write_text(demo_config(base, DemoSettings()), encoding="utf-8")
    return Settings(
        config_dir=config_dir,
        database_url=f"sqlite:///{tmp / 'demo.db'}",
        data_dir=tmp / "data",
        http_bind="",
    )


def demo_config(base: str, chat: DemoSettings) -> str:
    """The demo's config file: the campaign pack's shape, pointed at ``base``."""
    extra = ""
    for dest_id, sink, target in (
        ("demo-matrix", "matrix", chat.matrix_room),
        ("demo-discord", "discord", chat.discord_channel),
    ):
        if target:
            extra += f'\n[destinations.{dest_id}]\nsink = "{sink}"\ntarget = {json.dumps(target)}\n'
            extra += f'\n[[routes]]\ndestination = "{dest_id}"\ntopics = {TOPICS}\n'
    return _CONFIG.format(base=base, palantir=PALANTIR) + extra


TOPICS = '["petition", "contracts", "statements", "news"]'
_CONFIG = """
[service]
contact = "mailto:demo@example.org"

[http]
# The demo's sources are a fixture server on this machine's loopback, which the
# SSRF guard refuses unless told otherwise. A real pack never needs this.
allow_private_network = true

[topics.petition]
description = "The letter"
[topics.contracts]
description = "ICE contract awards"
[topics.statements]
description = "Statements and official documents"
[topics.news]
description = "News"

[destinations.console]
sink = "console"

[[routes]]
destination = "console"
topics = ["petition", "contracts", "statements", "news"]

[[sources]]
id = "iceout-letter"
name = "ICEout.tech letter"
kind = "petition"
url = "{base}/letter"
interval = "30s"
topics = ["petition"]
count_selector = ".signature-count"
signatory_selector = "li.signatory"
milestones = [1000, 5000]
delta_period = "1s"
watch_companies = ["Palantir"]

[[sources]]
id = "ice-awards"
name = "ICE contract awards"
kind = "awards"
url = "{base}"
interval = "30s"
topics = ["contracts"]
follow = ["{palantir}"]

[[sources]]
id = "ice-sam"
name = "ICE notices on SAM.gov"
kind = "sam"
url = "{base}/opportunities/v2/search"
interval = "30s"
topics = ["contracts"]
notice_types = ["u", "a"]
organization_code = "7012"

[[sources]]
id = "ice-federal-register"
name = "ICE in the Federal Register"
kind = "federal_register"
url = "{base}/api/v1/documents.json"
interval = "30s"
topics = ["statements"]

[[sources]]
id = "examplecorp-statement"
name = "ExampleCorp statement"
kind = "webpage"
url = "{base}/newsroom"
interval = "30s"
topics = ["statements"]
selector = "#statement"
noise = ['Updated \\w+ \\d+, \\d{{4}}']

[[sources]]
id = "next-ink"
name = "Next"
kind = "feed"
url = "{base}/next.xml"
interval = "30s"
topics = ["news"]

[[sources]]
id = "twc-bluesky"
name = "Tech Workers (Bluesky)"
kind = "bluesky"
url = "{base}"
interval = "30s"
topics = ["news"]
actor = "techworkers.example.org"
"""


# --- the fake world --------------------------------------------------------------


_SIGNATORIES = [
    ("Ada Lovelace", "Staff Engineer", "Microsoft"),
    ("Grace Hopper", "Principal Engineer", "Google"),
    ("Alan Turing", "Researcher", "DeepMind"),
]
_ANONYMOUS = [("", "", "Google")] * 40 + [("Anonymous", "", "Microsoft")] * 20
_NEW_SIGNATORIES = [
    ("Margaret Hamilton", "Engineer", "Palantir"),
    ("Katherine Johnson", "Data Scientist", "Amazon"),
    ("Dorothy Vaughan", "SRE", "Microsoft"),
    ("Mary Jackson", "Engineer", "Salesforce"),
]
_LATE_SIGNATORIES = [
    ("Frances Allen", "Compiler Engineer", "IBM"),
    ("Barbara Liskov", "Professor", "MIT"),
]


class Campaign:
    """The state of every fake source at the current ``stage``."""

    def __init__(self) -> None:
        self.stage = 0

    def install(self, server: FixtureServer) -> None:
        server.route("GET", "/letter", lambda _r: Reply.html(self.letter()))
        server.route("GET", "/opportunities/v2/search", self.notices)
        server.route("POST", "/api/v2/search/spending_by_award/", self.awards)
        server.route("POST", "/api/v2/search/spending_by_transaction/", self.transactions_search)
        server.route("POST", "/api/v2/transactions/", self.transactions)
        server.route("GET", f"/api/v2/awards/{PALANTIR}/", lambda _r: Reply.json(self.award()))
        server.route("GET", "/api/v1/documents.json", lambda _r: Reply.json(self.documents()))
        server.route("GET", "/newsroom", lambda _r: Reply.html(self.statement()))
        server.route("GET", "/xrpc/app.bsky.feed.getAuthorFeed", lambda _r: Reply.json(self.feed()))
        server.route("GET", "/next.xml", lambda _r: _rss(self.news()))

    def letter(self) -> str:
        people = _SIGNATORIES + (_NEW_SIGNATORIES + _ANONYMOUS if self.stage >= 1 else [])
        people += _LATE_SIGNATORIES if self.stage >= 6 else []
        count = "1,064" if self.stage >= 6 else "1,020" if self.stage >= 1 else "940"
        rows = "".join(
            f'<li class="signatory"><span class="name">{n}</span>'
            f'<span class="title">{t}</span><span class="company">{c}</span></li>'
            for n, t, c in people
        )
        return (
            "<html><head><title>ICE Out</title></head><body>"
            f'<p class="signature-count">{count} signatures</p><ul>{rows}</ul></body></html>'
        )

    def notices(self, request: Recorded) -> Reply:
        """SAM.gov Get Opportunities v2 (open.gsa.gov/api/get-opportunities-public-api)."""
        justification = self.stage >= 2 and dict(request.query).get("ptype") == "u"
        rows = [_justification()] if justification else []
        return Reply.json(
            {"totalRecords": len(rows), "limit": 100, "offset": 0, "opportunitiesData": rows}
        )

    def awards(self, _request: Recorded) -> Reply:
        rows = [
            _award("70CDCR26C00000012", "GEO GROUP, INC., THE", 45_800_000.0, "DETENTION SERVICES")
        ]
        if self.stage >= 3:
            rows.append(
                _award("70CTD026FR0000031", "CLEARVIEW AI, INC.", 1_250_000.0, "FACIAL RECOGNITION")
            )
        return Reply.json({"limit": 100, "results": rows, "page_metadata": _last_page()})

    def transactions_search(self, _request: Recorded) -> Reply:
        rows = []
        if self.stage >= 4:
            rows.append(_modification("287331190", "P00011", "2026-01-28", "29854750.00"))
        if self.stage >= 6:
            rows.insert(0, _modification("287441207", "P00012", "2026-02-09", "14245250.00"))
        return Reply.json({"limit": 100, "results": rows, "page_metadata": _last_page()})

    def transactions(self, _request: Recorded) -> Reply:
        rows = [_tx("P00010", "2025-09-12", 18_400_000.0), _tx("0", "2022-09-26", 77_500_000.0)]
        if self.stage >= 4:
            rows.insert(0, _tx("P00011", "2026-01-28", 29_854_750.0))
        if self.stage >= 6:
            rows.insert(0, _tx("P00012", "2026-02-09", 14_245_250.0))
        return Reply.json({"page_metadata": _last_page(), "results": rows})

    def award(self) -> dict[str, Any]:
        return {
            "generated_unique_award_id": PALANTIR,
            "piid": "70CTD022FR0000170",
            "description": "INVESTIGATIVE CASE MANAGEMENT",
            "awarding_agency": {"subtier_agency": {"name": ICE, "code": "7012"}},
            "recipient": {"recipient_name": "PALANTIR TECHNOLOGIES INC."},
        }

    def documents(self) -> dict[str, Any]:
        docs = [_doc("2026-00987", "Privacy Act of 1974; System of Records", "Notice")]
        if self.stage >= 3:
            docs.insert(0, _doc("2026-01234", "Detention Standards Revision", "Proposed Rule"))
        return {"count": len(docs), "total_pages": 1, "results": docs}

    def statement(self) -> str:
        position = (
            "We will not renew our contract with U.S. Immigration and Customs Enforcement."
            if self.stage >= 5
            else "We review every public-sector engagement against our human rights policy."
        )
        return (
            "<html><head><title>Newsroom | ExampleCorp</title></head><body>"
            f'<article id="statement"><p>Updated February {self.stage + 1}, 2026</p>'
            f"<h1>Our position on government contracts</h1><p>{position}</p></article>"
            "</body></html>"
        )

    def feed(self) -> dict[str, Any]:
        posts = [_post("3lgwz7aaaaa2c", "Read the letter and sign: ICE out of tech.")]
        if self.stage >= 5:
            post = _post("3lgxq4vbzyc2a", "ExampleCorp just dropped its ICE contract!")
            post["post"]["record"]["embed"] = _card(ARTICLE, "ExampleCorp drops its ICE contract")
            posts.insert(0, post)
        return {"feed": posts, "cursor": "x"}

    def news(self) -> list[tuple[str, str, str]]:
        """next.ink's RSS items: (guid, title, link)."""
        items = [("167001", "What ICE buys from tech companies", "https://next.ink/167001/")]
        if self.stage >= 5:
            items.insert(0, ("167301", "ExampleCorp drops its ICE contract", ARTICLE))
        return items


def _justification() -> dict[str, Any]:
    """One notice in the documented v2 shape (see tests/campaign/fixtures/sam)."""
    return {
        "noticeId": "4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b",
        "title": "Sole Source Justification - ImmigrationOS Case Management Platform",
        "solicitationNumber": "70CTD025R00000017",
        "fullParentPathName": "HOMELAND SECURITY, DEPARTMENT OF.US IMMIGRATION AND CUSTOMS "
        "ENFORCEMENT.ICE-MISSION SUPPORT DALLAS",
        "fullParentPathCode": "070.7012.70CDCR",
        "postedDate": "2026-01-20",
        "type": "Justification",
        "baseType": "Justification",
        "responseDeadLine": None,
        "active": "Yes",
        "award": {
            "date": "2026-01-19",
            "number": "70CTD022FR0000170",
            "amount": None,
            "awardee": {"name": "PALANTIR TECHNOLOGIES INC.", "location": {}},
        },
        "uiLink": "https://sam.gov/opp/4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b/view",
    }


def _modification(internal_id: str, mod: str, when: str, amount: str) -> dict[str, Any]:
    """A row of ``spending_by_transaction`` (see tests/campaign/fixtures/awards)."""
    return {
        "internal_id": internal_id,
        "Award ID": "70CTD022FR0000170",
        "Mod": mod,
        "Recipient Name": "PALANTIR TECHNOLOGIES INC.",
        "Action Date": when,
        "Transaction Amount": amount,
        "Transaction Description": "IMMIGRATIONOS - CASE MANAGEMENT ENHANCEMENTS",
        "Awarding Agency": "Department of Homeland Security",
        "Awarding Sub Agency": ICE,
        "generated_internal_id": PALANTIR,
    }


def _card(uri: str, title: str) -> dict[str, Any]:
    """A post's link card, ``app.bsky.embed.external`` (atproto lexicons)."""
    return {
        "$type": "app.bsky.embed.external",
        "external": {"uri": uri, "title": title, "description": ""},
    }


def _rss(items: list[tuple[str, str, str]]) -> Reply:
    """RSS 2.0 (www.rssboard.org/rss-specification): one item per (guid, title, link)."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{html.escape(title)}</title><link>{link}</link>"
        "<pubDate>Tue, 03 Feb 2026 15:00:00 GMT</pubDate></item>"
        for guid, title, link in items
    )
    return Reply(
        body=(
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Next</title>'
            f"<link>https://next.ink/</link><description>News</description>{body}</channel></rss>"
        ).encode(),
        content_type="application/rss+xml",
    )


def _last_page() -> dict[str, Any]:
    return {"page": 1, "hasNext": False, "hasPrevious": False, "next": None, "previous": None}


def _award(piid: str, recipient: str, amount: float, description: str) -> dict[str, Any]:
    return {
        "internal_id": 1,
        "Award ID": piid,
        "Recipient Name": recipient,
        "Award Amount": amount,
        "Awarding Agency": "Department of Homeland Security",
        "Awarding Sub Agency": ICE,
        "Description": description,
        "Start Date": "2026-01-20",
        "generated_internal_id": f"CONT_AWD_{piid}_7012_-NONE-_-NONE-",
    }


def _tx(mod: str, when: str, amount: float) -> dict[str, Any]:
    return {
        "id": f"CONT_TX_7012_-NONE-_70CTD022FR0000170_{mod}_GS35F0086U_0",
        "type": "C",
        "type_description": "DELIVERY ORDER",
        "action_date": when,
        "action_type": None,
        "action_type_description": None,
        "modification_number": mod,
        "description": "INVESTIGATIVE CASE MANAGEMENT",
        "federal_action_obligation": amount,
        "face_value_loan_guarantee": None,
        "original_loan_subsidy_cost": None,
    }


def _doc(number: str, title: str, kind: str) -> dict[str, Any]:
    return {
        "document_number": number,
        "title": title,
        "type": kind,
        "abstract": None,
        "html_url": f"https://www.federalregister.gov/d/{number}",
        "publication_date": "2026-02-02",
        "agencies": [
            {
                "raw_name": ICE.upper(),
                "name": ICE,
                "slug": "u-s-immigration-and-customs-enforcement",
            }
        ],
    }


def _post(rkey: str, text: str) -> dict[str, Any]:
    did = "did:plc:z72i7hdynmk6r22z27h6tvur"
    return {
        "post": {
            "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
            "cid": f"bafy{rkey}",
            "author": {
                "did": did,
                "handle": "techworkers.example.org",
                "displayName": "Tech Workers",
            },
            "record": {
                "$type": "app.bsky.feed.post",
                "createdAt": "2026-02-03T15:04:05Z",
                "text": text,
            },
            "indexedAt": "2026-02-03T15:04:06Z",
        }
    }
