"""``alerts import-opml`` and ``alerts export-opml``: real exports of feed readers in,
a drop-in that ``alerts check`` accepts out; malformed and hostile files refused with
exit 2 and one line; export then import gives the same feeds back.

Fixtures (tests/fixtures/opml/) follow the OPML 2.0 specification
(http://opml.org/spec2.opml) and the shapes readers really export; each file says
which it follows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from alerts import cli
from alerts.config import load_config
from alerts.opml import categories, slug

FIXTURES = Path(__file__).parent / "fixtures" / "opml"
REPO = Path(__file__).resolve().parents[1]

BASE_CONFIG = """
[service]
contact = "tests@example.org"

[topics.news]
description = "News"

[destinations.console]
sink = "console"

[[routes]]
destination = "console"
topics = ["news"]
"""


@pytest.fixture(autouse=True)
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` would replace the root logger's handlers (pytest's capture among them)."""
    monkeypatch.setattr(cli, "setup_logging", lambda **_: None)


def _config(tmp_path: Path, sources: str = "") -> Path:
    config = tmp_path / "config"
    (config / "sources.d").mkdir(parents=True)
    (config / "alerts.toml").write_text(BASE_CONFIG + sources)
    return config


def _alerts(config: Path, *args: str) -> int:
    return cli.main(["--config", str(config), *args])


def _dropin(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _sources(path: Path) -> dict[str, tuple[str, str | None, tuple[str, ...]]]:
    return {
        s["id"]: (s["url"], s.get("name"), tuple(s.get("topics", ())))
        for s in _dropin(path)["sources"]
    }


# --- real exports --------------------------------------------------------------------------

EXPECTED: dict[str, dict[str, tuple[str, str | None, tuple[str, ...]]]] = {
    "feedly.opml": {
        "404-media": ("https://www.404media.co/rss/", "404 Media", ("tech-news", "ice-watch")),
        "the-verge": ("https://www.theverge.com/rss/index.xml", "The Verge", ("tech-news",)),
        "palantir-blog-medium": (
            "https://blog.palantir.com/feed",
            "Palantir Blog - Medium",
            ("ice-watch",),
        ),
    },
    "inoreader.opml": {
        "the-intercept": ("https://theintercept.com/feed/?lang=en", "The Intercept", ()),
        "cdc": ("http://cdc.tencent.com/feed/", "腾讯CDC", ("folder-1",)),
        "rologo": ("http://www.rologo.com/feed", "Rologo 标志共和国", ("folder-1",)),
    },
    "netnewswire.opml": {
        "netnewswire-news": ("https://netnewswire.blog/feed.xml", "NetNewsWire News", ()),
        "tech-workers-coalition": (
            "https://techworkerscoalition.org/feed.xml",
            "Tech Workers Coalition",
            ("labor",),
        ),
        "labor-notes-news": ("https://labornotes.org/feed", "Labor Notes & News", ("labor",)),
    },
    "spec-subscription-list.opml": {
        "cnet-news-com": ("http://news.com.com/2547-1_3-0-5.xml", "CNET News.com", ("news",)),
        "washingtonpost-com-politics": (
            "http://www.washingtonpost.com/wp-srv/politics/rssheadlines.xml",
            "washingtonpost.com - Politics",
            ("berkman", "politics"),
        ),
        "scripting-news": ("http://www.scripting.com/rss.xml", "Scripting News", ()),
        "le-monde-diplomatique": (
            "https://www.monde-diplomatique.fr/recents.xml",
            "Le Monde diplomatique",
            ("societe", "economie"),
        ),
    },
    "flat.opml": {
        "iceout-tech-updates": ("https://iceout.tech/feed.xml", "ICEout.tech updates", ()),
        "federal-register-ice": (
            "https://www.federalregister.gov/api/v1/documents.rss?conditions%5Bagencies%5D%5B%5D"
            "=u-s-immigration-and-customs-enforcement",
            "Federal Register: ICE",
            (),
        ),
        "podcast": ("http://podcast.example.org/episodes.xml", "Podcast", ()),
    },
}
NEW_TOPICS = {
    "feedly.opml": {"tech-news": "Tech news", "ice-watch": "ICE watch"},
    "inoreader.opml": {"folder-1": "设计"},
    "netnewswire.opml": {"labor": "Labor"},
    "spec-subscription-list.opml": {
        "berkman": "Berkman",
        "politics": "politics",
        "societe": "Société",
        "economie": "économie",
    },  # "news" is already defined: reused, not created again
    "flat.opml": {},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_real_export_becomes_a_dropin_that_passes_check(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert _alerts(config, "import-opml", str(FIXTURES / name)) == 0
    out = config / "sources.d" / f"{slug(Path(name).stem)}.toml"
    assert f"wrote {out}" in capsys.readouterr().out
    assert _sources(out) == EXPECTED[name]
    topics = _dropin(out).get("topics", {})
    assert {k: v["description"] for k, v in topics.items()} == NEW_TOPICS[name]
    assert _alerts(config, "check") == 0
    assert set(load_config(config).sources) == set(EXPECTED[name])


def test_what_is_left_out_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert _alerts(config, "import-opml", str(FIXTURES / "flat.opml")) == 0
    out = capsys.readouterr().out
    assert "note: Local file: skipped: 'file:///etc/passwd' is not an http(s) URL" in out
    assert "Old comment" not in out  # commented out: not a feed at all
    assert (
        _alerts(
            config,
            "import-opml",
            "--out",
            str(tmp_path / "b.toml"),
            str(FIXTURES / "spec-subscription-list.opml"),
        )
        == 0
    )
    assert "note: Another list: another subscription list, not followed" in capsys.readouterr().out


# --- ids, topics and what is already there --------------------------------------------------


def _opml(tmp_path: Path, outlines: str) -> Path:
    path = tmp_path / "list.opml"
    path.write_text(f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>')
    return path


def test_ids_are_unique_valid_and_avoid_existing_sources(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '\n[[sources]]\nid = "news"\nkind = "feed"\nurl = "https://a.example/feed"\ntopics = ["news"]\n',
    )
    long = "A " * 80
    source = _opml(
        tmp_path,
        '<outline text="News" xmlUrl="https://b.example/feed"/>'
        '<outline text="News" xmlUrl="https://c.example/feed"/>'
        f'<outline text="{long}" xmlUrl="https://d.example/feed"/>'
        '<outline text="!!!" xmlUrl="https://e.example/feed"/>'
        '<outline text="Already here" xmlUrl="https://a.example/feed"/>',
    )
    assert _alerts(config, "import-opml", str(source)) == 0
    ids = list(_sources(config / "sources.d" / "list.toml"))
    assert ids[:2] == ["news-2", "news-3"] and ids[3] == "e-example"
    assert len(ids[2]) <= 64 and ids[2].startswith("a-a-a")
    assert len(ids) == 4  # the configured URL is not imported twice
    assert _alerts(config, "check") == 0


def test_topic_flag_adds_every_feed_and_must_be_a_valid_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    feedly = str(FIXTURES / "feedly.opml")
    assert _alerts(config, "import-opml", "--topic", "reading", feedly) == 0
    dropin = _dropin(config / "sources.d" / "feedly.toml")
    assert all(s["topics"][0] == "reading" for s in dropin["sources"])
    assert dropin["topics"]["reading"] == {"description": "reading"}
    assert _alerts(config, "check") == 0
    capsys.readouterr()
    out = tmp_path / "other.toml"
    assert _alerts(config, "import-opml", "--topic", "Not Valid", "--out", str(out), feedly) == 2
    assert "--topic 'Not Valid'" in capsys.readouterr().err and not out.exists()


def test_an_existing_file_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    out = config / "sources.d" / "feedly.toml"
    out.write_text("# mine\n")
    feedly = str(FIXTURES / "feedly.opml")
    assert _alerts(config, "import-opml", feedly) == 2
    assert "already exists; --force replaces it" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert _alerts(config, "import-opml", "--force", feedly) == 0
    assert len(_sources(out)) == 3
    # replacing its own earlier import: its feeds are not "already configured"
    assert _alerts(config, "import-opml", "--force", "--topic", "news", feedly) == 0
    assert len(_sources(out)) == 3 and _alerts(config, "check") == 0


def test_nothing_new_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    feedly = str(FIXTURES / "feedly.opml")
    assert _alerts(config, "import-opml", feedly) == 0
    again = tmp_path / "again.toml"
    assert _alerts(config, "import-opml", "--out", str(again), feedly) == 0
    out = capsys.readouterr().out
    assert "nothing to import" in out and "already configured as '404-media'" in out
    assert not again.exists()


def test_strangers_text_stays_inside_toml_strings(tmp_path: Path) -> None:
    config = _config(tmp_path)
    evil = "&quot;]&#10;[[sources]]&#10;id = &quot;evil&quot;&#10;kind = &quot;feed&quot; # \\"
    source = _opml(
        tmp_path,
        f'<outline text="{evil}" xmlUrl="https://ok.example/feed"/>'
        f'<outline text="x&#10;[topics.evil]" category="a&#10;b"><outline text="y" xmlUrl="https://y.example/f"/></outline>',
    )
    assert _alerts(config, "import-opml", str(source)) == 0
    loaded = load_config(config)
    assert set(loaded.sources) == {"sources-id-evil-kind-feed", "y"}
    assert (
        loaded.sources["sources-id-evil-kind-feed"].name
        == '"] [[sources]] id = "evil" kind = "feed" # \\'
    )
    assert "evil" not in loaded.topics


def test_an_invalid_existing_config_is_reported_not_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '\n[[sources]]\nid = "Bad Id"\nkind = "feed"\n')
    assert _alerts(config, "import-opml", str(FIXTURES / "feedly.opml")) == 2
    err = capsys.readouterr().err
    assert f"{config}/alerts.toml: sources[0].id" in err
    assert not (config / "sources.d" / "feedly.toml").exists()


# --- refused files ----------------------------------------------------------------------------

REFUSED = {
    "billion-laughs": (None, "refused: the file declares XML entities ('lol')"),
    "external-entity": (None, "refused: the file declares XML entities ('secret')"),
    "not-xml": (b"this is not XML\n", "line 1, column 1: not well-formed XML: syntax error"),
    "truncated": (b'<opml version="2.0"><body><outline', "not well-formed XML"),
    "empty": (b"", "not well-formed XML: no element found"),
    "rss-not-opml": (b'<rss version="2.0"><channel/></rss>', "not OPML: the root element is <rss>"),
    "no-body": (b'<opml version="2.0"><head/></opml>', "not OPML: no <body> element"),
    "no-feeds": (
        b'<opml version="2.0"><body><outline text="Just a note"/></body></opml>',
        "no feeds in this file",
    ),
    "only-bad-urls": (
        b'<opml version="2.0"><body><outline text="x" xmlUrl="javascript:alert(1)"/></body></opml>',
        "no usable feeds: x: skipped: 'javascript:alert(1)' is not an http(s) URL",
    ),
    "version-3": (b'<opml version="3.0"><body/></opml>', "unsupported OPML version '3.0'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_malformed_or_hostile_file_is_refused_with_exit_2(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, reason = REFUSED[case]
    path = FIXTURES / f"{case}.opml"
    if data is not None:
        path = tmp_path / f"{case}.opml"
        path.write_bytes(data)
    config = _config(tmp_path)
    code = _alerts(config, "import-opml", str(path))
    captured = capsys.readouterr()
    assert code == 2, captured
    problem = captured.err.splitlines()[1].strip()
    assert problem.startswith(f"{path}: ") and reason in problem, captured.err
    assert "Traceback" not in captured.err
    assert list((config / "sources.d").iterdir()) == []


def test_a_missing_or_huge_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert _alerts(config, "import-opml", str(tmp_path / "nope.opml")) == 2
    assert "nope.opml: cannot read: No such file or directory" in capsys.readouterr().err
    huge = tmp_path / "huge.opml"
    with huge.open("wb") as handle:
        handle.truncate(10_000_001)
    assert _alerts(config, "import-opml", str(huge)) == 2
    assert "larger than 10,000,000 bytes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("/Boston/Weather", ["Weather"]),
        ("/Harvard/Berkman,/Politics", ["Berkman", "Politics"]),
        ("tech, news ,", ["tech", "news"]),
        ("/Trailing/", ["Trailing"]),
        ("", []),
    ],
)
def test_categories_follow_the_spec(value: str, parts: list[str]) -> None:
    assert categories(value) == parts


# --- export, and back ---------------------------------------------------------------------------

ROUND_TRIP = """
[topics.contracts]
description = "ICE contracts"

[[sources]]
id = "wired"
name = "Wired"
kind = "feed"
url = "https://www.wired.com/feed/rss"
topics = ["news"]

[[sources]]
id = "palantir.blog_2"
name = "Palantir & friends <blog>"
kind = "feed"
url = "https://blog.palantir.com/feed?format=rss&x=1"
topics = ["contracts", "news"]
interval = "1h"

[[sources]]
id = "no-topic"
kind = "feed"
url = "https://example.org/feed.xml"

[[sources]]
id = "ice-awards"
kind = "awards"
topics = ["contracts"]
"""


def _shape(config: Path) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    loaded = load_config(config)
    return {s.id: (s.url, s.label, s.topics) for s in loaded.sources.values() if s.kind == "feed"}


def test_export_then_import_gives_the_same_feeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = _config(tmp_path / "a", ROUND_TRIP)
    exported = tmp_path / "feeds.opml"
    assert _alerts(original, "export-opml", "--out", str(exported)) == 0
    text = exported.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    assert "<docs>http://opml.org/spec2.opml</docs>" in text and "ice-awards" not in text
    fresh = _config(tmp_path / "b")
    assert _alerts(fresh, "import-opml", str(exported)) == 0
    assert _alerts(fresh, "check") == 0
    assert _shape(fresh) == _shape(original)
    assert load_config(fresh).topics["contracts"].description == "ICE contracts"
    capsys.readouterr()
    assert _alerts(original, "export-opml") == 0  # the same to stdout
    dated = re.compile(r"<dateCreated>[^<]*</dateCreated>")
    assert dated.sub("", capsys.readouterr().out) == dated.sub("", text)


def test_the_commands_end_to_end(tmp_path: Path) -> None:
    """The installed command, as an operator runs it: import, check, export."""
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}

    def alerts(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alerts", "--config", str(config), *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    imported = alerts("import-opml", "--topic", "news", str(FIXTURES / "netnewswire.opml"))
    assert imported.returncode == 0, imported.stderr
    assert "3 feed source(s); new topics: labor" in imported.stdout
    checked = alerts("check")
    assert checked.returncode == 0 and "config OK: 3 sources, 2 topics" in checked.stdout
    exported = alerts("export-opml")
    assert exported.returncode == 0 and exported.stdout.count('type="rss"') == 3
    refused = alerts("import-opml", str(FIXTURES / "billion-laughs.opml"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 2  # "configuration error:" + the line
