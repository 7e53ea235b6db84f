"""Operator mistakes in campaign options are refused at load time: ``file: key.path: reason``."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.config import load_config
from alerts.detect import detect
from alerts.errors import ConfigError
from alerts.model import Item, Observation

BASE = """
[topics.news]
[destinations.console]
sink = "console"
"""
WEBPAGE = '[[sources]]\nid = "page"\nkind = "webpage"\nurl = "https://example.org/"\n'
PETITION = '[[sources]]\nid = "letter"\nkind = "petition"\nurl = "https://example.org/"\n'
ROUTE = '[[routes]]\ndestination = "console"\n'


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            WEBPAGE + "selector = \"main\"\nnoise = ['(?<=x)y']",
            "sources[0].noise: regular expression '(?<=x)y': invalid perl operator: (?<=",
            id="noise-not-linear",
        ),
        pytest.param(
            WEBPAGE + "selector = \"main\"\nnoise = ['(unclosed']",
            "sources[0].noise: regular expression '(unclosed': missing )",
            id="noise-unbalanced",
        ),
        pytest.param(
            WEBPAGE + 'selector = "div[[["',
            "sources[0].selector: CSS selector 'div[[[' cannot be parsed",
            id="css-selector",
        ),
        pytest.param(
            PETITION + 'count_selector = "a >"',
            "sources[0].count_selector: CSS selector 'a >' cannot be parsed",
            id="petition-selector",
        ),
        pytest.param(
            PETITION + "milestones = [1000, 500]",
            "sources[0].milestones: milestones must be listed in increasing order",
            id="milestones-unsorted",
        ),
        pytest.param(
            PETITION + "milestones = [-5, 10]",
            "sources[0].milestones: milestones must be positive",
            id="milestones-negative",
        ),
        pytest.param(
            PETITION + 'watch_companies = ["Palantir", ""]',
            "sources[0].watch_companies: an empty keyword would match everything",
            id="empty-watched-company",
        ),
        pytest.param(
            WEBPAGE + 'selector = "main"\ninclude = [""]',
            "sources[0].include: an empty keyword would match everything",
            id="source-include-empty",
        ),
        pytest.param(
            ROUTE + 'include = [""]',
            "routes[0].include: an empty keyword would match everything",
            id="route-include-empty",
        ),
        pytest.param(
            ROUTE + 'exclude = ["re:(a+"]',
            "routes[0].exclude: regular expression '(a+': missing )",
            id="route-exclude-bad-regex",
        ),
        pytest.param(
            ROUTE + "min_change = -1",
            "routes[0].min_change: Input should be greater than or equal to 0",
            id="route-min-change-negative",
        ),
        pytest.param(
            '[[sources]]\nid = "sam"\nkind = "sam"\nnotice_types = ["x"]',
            "sources[0].notice_types[0]: Input should be 'u', 'p', 'a'",
            id="sam-notice-type",
        ),
        pytest.param(
            '[[sources]]\nid = "a"\nkind = "awards"\nagency_type = "paying"',
            "sources[0].agency_type: Input should be 'awarding' or 'funding'",
            id="awards-agency-type",
        ),
    ],
)
def test_refused_with_file_key_path_and_reason(tmp_path: Path, extra: str, expected: str) -> None:
    (tmp_path / "alerts.toml").write_text(BASE + extra + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert any(
        p.endswith(f"alerts.toml: {expected}") or f"alerts.toml: {expected}" in p
        for p in caught.value.problems
    ), caught.value.problems


def test_catastrophic_noise_is_accepted_because_re2_is_linear(tmp_path: Path) -> None:
    (tmp_path / "alerts.toml").write_text(
        BASE + WEBPAGE + "selector = \"main\"\nnoise = ['(a+)+$']\n", encoding="utf-8"
    )
    assert load_config(tmp_path).sources["page"].kind == "webpage"


@pytest.mark.slow
def test_alerts_check_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "alerts.toml").write_text(BASE + ROUTE + 'include = ["ok", ""]\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "alerts", "--config", str(tmp_path), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "routes[0].include: an empty keyword would match everything; remove it" in done.stderr
    assert "Traceback" not in done.stderr


def test_source_filters_and_min_change_reach_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "alerts.toml").write_text(
        BASE
        + '[[sources]]\nid = "wired"\nkind = "feed"\nurl = "https://example.org/rss"\n'
        + 'topics = ["news"]\ninclude = ["ICE", "re:immigra"]\nexclude = ["review"]\n'
        + ROUTE
        + "min_change = 1_000_000\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path)
    spec = config.sources["wired"]
    assert (spec.include, spec.exclude) == (("ICE", "re:immigra"), ("review",))
    assert [r.min_change for r in config.routes] == [1_000_000.0]
    items = (
        Item(key="a", title="ICE expands surveillance"),
        Item(key="b", title="Review: the best office chairs"),
        Item(key="c", title="Immigration court backlog"),
        Item(key="d", title="ICE in review"),
    )
    found = detect(
        spec=spec,
        observation=Observation(items=items),
        known={},
        baselined=True,
        detector_state={},
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert [e.key for e in found.events] == ["a", "c"]
    assert set(found.items) == {"a", "b", "c", "d"}  # every item is still remembered
