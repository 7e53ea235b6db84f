"""Config validation: every problem names the file, the key path and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.config import check_destinations, load_config, parse_duration_s
from alerts.config_files import parse_toml
from alerts.errors import ConfigError
from alerts.model import Destination
from alerts.options import check_http_url
from alerts.sources.awards import AwardsSource

REPO = Path(__file__).resolve().parents[1]

MAIN = """
[topics.news]
[destinations.console]
sink = "console"
[[routes]]
destination = "console"
topics = ["news"]
"""


def write(tmp_path: Path, main: str, dropin: str = "") -> Path:
    (tmp_path / "sources.d").mkdir()
    (tmp_path / "alerts.toml").write_text(main)
    if dropin:
        (tmp_path / "sources.d" / "news.toml").write_text(dropin)
    return tmp_path


def source(**kw: object) -> str:
    fields = {
        "id": "a",
        "kind": "feed",
        "url": "https://example.org/feed",
        "topics": ["news"],
        **kw,
    }
    body = "\n".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}".replace("'", '"')
        for k, v in fields.items()
        if v is not None
    )
    return f"[[sources]]\n{body}\n"


@pytest.mark.parametrize(
    ("main", "dropin", "expected"),
    [
        pytest.param(
            MAIN,
            source() + source(id="b") + source(id="c", interval="10s"),
            "sources.d/news.toml: sources[2].interval: must be at least 30 s",
            id="interval-too-short",
        ),
        pytest.param(
            MAIN,
            source(topics=["nope"]),
            "sources.d/news.toml: sources[0].topics[0]: unknown topic 'nope'",
            id="unknown-topic",
        ),
        pytest.param(
            MAIN,
            source(kind="carrier-pigeon"),
            "sources.d/news.toml: sources[0].kind: unknown source kind 'carrier-pigeon'",
            id="unknown-kind",
        ),
        pytest.param(
            MAIN,
            source(max_itemz=5),
            "sources.d/news.toml: sources[0].max_itemz: unknown key",
            id="adapter-option-typo",
        ),
        pytest.param(
            MAIN,
            source() + source(),
            "sources.d/news.toml: sources[1].id: source 'a' already defined",
            id="duplicate-id",
        ),
        pytest.param(
            MAIN,
            source(id="Has Spaces"),
            "sources.d/news.toml: sources[0].id: must be 1 to 64 lower-case",
            id="bad-id",
        ),
        pytest.param(
            MAIN + '[[routes]]\ndestination = "nowhere"\n',
            "",
            "alerts.toml: routes[1].destination: unknown destination 'nowhere'",
            id="route-to-unknown-destination",
        ),
        pytest.param(
            MAIN + '[destinations.x]\nsink = "fax"\n',
            "",
            "alerts.toml: destinations.x.sink: unknown sink 'fax'",
            id="unknown-sink",
        ),
        pytest.param(
            MAIN + "[service]\ncolour = 1\n",
            "",
            "alerts.toml: service.colour: unknown key",
            id="unknown-service-key",
        ),
        pytest.param(
            "[topics.news\n",
            "",
            "alerts.toml: invalid TOML",
            id="broken-toml",
        ),
        pytest.param(
            MAIN + '[service]\ndefault_interval = "soon"\n',
            "",
            "alerts.toml: service.default_interval: expected a duration",
            id="bad-duration",
        ),
    ],
)
def test_config_errors_name_file_path_and_reason(
    tmp_path: Path, main: str, dropin: str, expected: str
) -> None:
    write(tmp_path, main, dropin)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, MAIN, source(topics=["x"]) + source(id="b", kind="nope"))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert len(info.value.problems) == 2


def test_a_missing_config_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no alerts\.toml"):
        load_config(tmp_path / "missing")


def test_the_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config")
    assert {"news", "statements", "petition", "contracts"} <= set(config.topics)
    assert config.sources, "the starter config ships sources"
    assert all(spec.topics for spec in config.sources.values())


def test_options_and_defaults_are_applied(tmp_path: Path) -> None:
    write(
        tmp_path,
        MAIN + '[service]\ndefault_interval = "1h"\n',
        source(max_items=7) + source(id="b", interval="2m"),
    )
    config = load_config(tmp_path)
    assert config.sources["a"].interval_s == 3600
    assert config.sources["b"].interval_s == 120
    assert config.sources["a"].options.model_dump()["max_items"] == 7
    assert config.sources["a"].fingerprint == ("title", "summary", "url")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "1h soon", True, "inf", "nan", "-60s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(float("nan"), "finite", id="nan"),
        pytest.param(float("inf"), "finite", id="inf"),
        pytest.param(-60, "must not be negative", id="negative"),
        pytest.param("99999999999d", "at most 366 days", id="overflows-a-timedelta"),
        pytest.param(10**30, "at most 366 days", id="huge-int"),
        pytest.param("367d", "at most 366 days", id="over-a-year"),
    ],
)
def test_durations_are_finite_positive_and_bounded(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration_s(value)


def test_a_year_is_the_longest_duration() -> None:
    assert parse_duration_s("366d") == 366 * 86400
    assert parse_duration_s(0) == 0.0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("example.org/feed", "absolute URL", id="no-scheme"),
        pytest.param("//example.org/feed", "absolute URL", id="protocol-relative"),
        pytest.param("file:///etc/passwd", "scheme 'file'", id="file"),
        pytest.param("gopher://example.org/", "scheme 'gopher'", id="gopher"),
        pytest.param("javascript:alert(1)", "scheme 'javascript'", id="javascript"),
        pytest.param("https:///feed", "no host", id="no-host"),
        pytest.param("https://example.org:99999/", "not a valid URL", id="bad-port"),
        pytest.param("http://[::1", "not a valid URL", id="unclosed-bracket"),
        pytest.param("https://exa mple.org/", "spaces", id="space"),
        pytest.param("", "must not be empty", id="empty"),
        pytest.param(5, "a string", id="not-a-string"),
    ],
)
def test_source_urls_are_absolute_http(url: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/feed",
        "HTTP://Example.org:8080/a?b=c#d",
        "https://例え.jp/",
        "http://[::1]:9/",
    ],
)
def test_http_urls_pass(url: str) -> None:
    assert check_http_url(url) == url


def test_a_secret_in_a_bad_url_is_not_repeated() -> None:
    with pytest.raises(ValueError, match="scheme 'ftp'") as info:
        check_http_url("ftp://user:hunter2@example.org/")
    assert "hunter2" not in str(info.value)


def test_service_keys_may_come_from_several_files(tmp_path: Path) -> None:
    write(tmp_path, MAIN + '[service]\ncontact = "a@example.org"\n', "[service]\njitter = 0.2\n")
    config = load_config(tmp_path)
    assert (config.service.contact, config.service.jitter) == ("a@example.org", 0.2)


def test_a_source_kind_with_a_default_url_needs_none(tmp_path: Path) -> None:
    write(tmp_path, MAIN, source(kind="awards", url=None))
    assert load_config(tmp_path).sources["a"].url == AwardsSource.default_url


def test_fingerprint_fields_the_adapter_has_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, MAIN, source(fingerprint=["title", "categories"]))
    assert load_config(tmp_path).sources["a"].fingerprint == ("title", "categories")


def test_a_disabled_source_keeps_its_id_and_may_be_routed(tmp_path: Path) -> None:
    route = '[[routes]]\ndestination = "console"\nsources = ["b"]\n'
    write(tmp_path, MAIN + route, source() + source(id="b", enabled=False))
    assert set(load_config(tmp_path).sources) == {"a"}
    write_dropin = tmp_path / "sources.d" / "news.toml"
    write_dropin.write_text(source() + source(id="a", enabled=False))
    with pytest.raises(ConfigError, match=r"sources\[1\]\.id: source 'a' already defined"):
        load_config(tmp_path)


def test_a_bom_and_crlf_line_ends_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, MAIN, "")
    (tmp_path / "sources.d" / "news.toml").write_bytes(
        b"\xef\xbb\xbf" + source().replace("\n", "\r\n").encode()
    )
    assert set(load_config(tmp_path).sources) == {"a"}


def test_editor_lock_files_in_sources_d_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, MAIN, source())
    (tmp_path / "sources.d" / ".#news.toml").symlink_to("user@host.1234")  # Emacs
    assert load_config(tmp_path).files == (
        _shown(tmp_path / "alerts.toml"),
        _shown(tmp_path / "sources.d" / "news.toml"),
    )


def test_route_tables_are_counted_not_expanded(tmp_path: Path) -> None:
    route = '[[routes]]\ndestination = "console"\ntopics = ["news"]\nsources = ["a", "b"]\n'
    write(tmp_path, MAIN + route, source() + source(id="b"))
    config = load_config(tmp_path)
    assert (config.route_tables, len(config.routes)) == (2, 4)


def test_problems_a_sink_finds_later_name_the_file(tmp_path: Path) -> None:
    write(tmp_path, MAIN + '[destinations.file]\nsink = "jsonl"\ntarget = "a.jsonl"\n', source())
    config = load_config(tmp_path)

    def refuse(destination: Destination) -> None:
        if destination.sink == "jsonl":
            raise ConfigError(f"destinations.{destination.id}.target: no room for it")

    with pytest.raises(ConfigError) as info:
        check_destinations(config, refuse)
    assert info.value.problems == [
        f"{_shown(tmp_path / 'alerts.toml')}: destinations.file.target: no room for it"
    ]


def _shown(path: Path) -> str:
    return str(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("a = 1\nb = 2\na = 3\n", "a: defined twice (line 3)", id="top-level-key"),
        pytest.param("[t]\nx = 1\n[u]\n[t]\n", "t: table defined twice (line 4)", id="table"),
        pytest.param(
            "[[sources]]\nid = 'a'\n[[sources]]\nid = 'b'\nid = 'c'\n",
            "sources[1].id: defined twice (line 5)",
            id="array-of-tables",
        ),
        pytest.param("[t]\na.b = 1\na.b = 2\n", "t.a.b: defined twice (line 3)", id="dotted"),
        pytest.param('[t]\n"a b" = 1\n"a b" = 2\n', 't."a b": defined twice (line 3)', id="quoted"),
        pytest.param(
            'a = """\n[t]\nq = 1\n"""\n[t]\nq = 1\nq = 2\n',
            "t.q: defined twice (line 7)",
            id="after-a-multi-line-string",
        ),
        pytest.param(
            "x = {a = 1, a = 2}\n", "x: an inline table defines 'a' twice (line 1)", id="inline"
        ),
        pytest.param(
            "[[sources]]\nid = 'a'\ninterval = 30s\n",
            "sources[0].interval: invalid TOML: Expected newline",
            id="syntax-error-names-the-key",
        ),
        pytest.param(
            "[t]\nx = [1,\n 2 3]\n", "t.x: invalid TOML: Unclosed array", id="multi-line-array"
        ),
        pytest.param(
            "x = " + "{a = " * 3000 + "1" + "}" * 3000,
            "x: nested more than 16 levels deep (line 1)",
            id="recursion",
        ),
        pytest.param(
            "[t]\nx = " + "[" * 17 + "]" * 17, "t.x[0]: nested more than 16", id="too-deep"
        ),
        pytest.param("# only a comment\n", "defines nothing (only comments)", id="comments"),
    ],
)
def test_toml_problems_name_the_key(text: str, problem: str) -> None:
    data, found = parse_toml(text)
    assert data is None
    assert found is not None and found.startswith(problem), found


def test_sixteen_levels_are_allowed() -> None:
    data, problem = parse_toml("x = " + "[" * 15 + "]" * 15)
    assert problem is None and data is not None
