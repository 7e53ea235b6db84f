"""Config validation: every problem names the file, the key path and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.config import load_config, parse_duration_s
from alerts.errors import ConfigError

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
    body = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in fields.items())
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
            "sources.d/news.toml: sources[0].topics: unknown topic 'nope'",
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
            "sources.d/news.toml: sources[0].id: must be lower-case",
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


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "1h soon", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration_s(text)
