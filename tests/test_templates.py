"""Message templates (issue 16): the placeholder format refuses everything but plain
fields, a template's output is neutral text like source text (the renderers escape it
afterwards), ``alerts check`` names the file and key of a bad template, chat refuses
a template the operator did not define, and a delivery keeps the template it was
routed with in both stores."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from alerts.chat.commands import CommandContext, CommandService, parse
from alerts.config import load_config
from alerts.errors import ConfigError
from alerts.model import Event, EventKind, MessageView, Subscription, View
from alerts.render.facts import facts_of, template_values, templated
from alerts.render.text import render_view_text
from alerts.route import Router
from alerts.store.sqlite import SqliteStore
from alerts.templates import FIELDS, Template, TemplateError, checked, fill
from alerts.templates import parse as parse_template

from .edits_world import award_modified, award_new, delta, report
from .test_config_cli import alerts

SHORT = Template("short", title="{source}: {title}", body="{amount} to {recipient}\n{link}")
HOSTILE = report(
    "wire",
    "@everyone <a href='https://evil.example'>ICE</a> **deal**\u202e",
    "https://example.org/a",
    name="Wire\n@here",
)


# --- the placeholder format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{title.upper}", "no attribute or index access", id="attribute"),
        pytest.param("{title[0]}", "no attribute or index access", id="index"),
        pytest.param("{title!r}", "no conversions or format specs", id="conversion"),
        pytest.param("{amount:>99999}", "no conversions or format specs", id="spec"),
        pytest.param("{}", "no attribute or index access", id="positional"),
        pytest.param("{0}", "no attribute or index access", id="numbered"),
        pytest.param("{__class__}", "unknown field {__class__}", id="dunder"),
        pytest.param("{titel}", "unknown field {titel}; fields: title, source", id="typo"),
        pytest.param("{title", "write {{ and }} for literal braces", id="unclosed"),
        pytest.param("x" * 2001, "longer than 2000 characters", id="long"),
    ],
)
def test_a_template_is_only_text_and_plain_fields(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(text)
    assert message in str(caught.value)


def test_braces_are_written_twice_and_a_field_missing_from_an_event_is_empty() -> None:
    assert fill("{{{title}}} {amount}!", {"title": "T"}) == "{T} !"
    with pytest.raises(TemplateError, match=r"^body: unknown field"):
        checked("x", title="{title}", body="{nope}")


def test_every_field_has_a_value_from_the_facts() -> None:
    values = template_values(facts_of(award_modified(1_000_000.0, 1_500_000.5, "P00001")))
    assert set(values) <= set(FIELDS)
    assert values["amount"] == "$1,000,000 → $1,500,000.50 (+$500,000.50)"
    assert values["recipient"] == "PALANTIR TECHNOLOGIES INC."
    assert values["title"].startswith("Updated: PALANTIR")
    assert values["kind"] == "updated" and values["topic"] == "contracts"
    counted = template_values(facts_of(delta(50_123, 1_204, 1)))
    assert counted["count"] == "50,123" and counted["change"] == "+1,204"


# --- the template's output is text --------------------------------------------------------


def test_a_templated_alert_is_neutral_text_before_any_renderer() -> None:
    template = Template("t", title="{source} · {title}", body="{summary}\n\n{facts}")
    facts = templated(facts_of(HOSTILE), template)
    assert facts.headline == (
        "Wire @here · @everyone <a href='https://evil.example'>ICE</a> **deal**"
    )  # one neutral line: no line break, no bidi override; markup is still only text
    assert "\u202e" not in facts.headline and "\n" not in facts.headline
    assert facts.link == "https://example.org/a"  # the link is the event's safe_link


def test_a_template_drops_the_facts_only_when_asked_and_a_digest_keeps_its_wording() -> None:
    event = award_new(95_900_000.0)
    assert templated(facts_of(event), SHORT).facts == facts_of(event).facts
    bare = templated(facts_of(event), replace(SHORT, show_facts=False))
    assert bare.facts == () and bare.summary.startswith("$95,900,000 to PALANTIR")
    digest = Event(
        "digest",
        EventKind.SUMMARY,
        "d",
        "Daily digest: 2 alerts",
        fields={"digest": [{"topic": "news", "source": "Wire", "count": 2, "items": []}]},
    )
    assert templated(facts_of(digest), SHORT) == facts_of(digest)


def test_the_console_shows_the_template_and_without_one_the_default() -> None:
    event = award_new(95_900_000.0)
    text = render_view_text(MessageView(event, template=SHORT))
    first, link, body = text.splitlines()[:3]
    assert (
        first
        == "New · ICE contract awards: ICE contract awards: PALANTIR TECHNOLOGIES INC.: INVESTIGATIVE CASE MANAGEMENT"
    )
    assert body.startswith("  $95,900,000 to PALANTIR TECHNOLOGIES INC.")
    assert link == "  https://www.usaspending.gov/award/" + event.key
    assert render_view_text(MessageView(event)).splitlines()[0] == (
        "New · ICE contract awards: PALANTIR TECHNOLOGIES INC.: INVESTIGATIVE CASE MANAGEMENT"
    )


# --- config: alerts check ------------------------------------------------------------------

CONFIG = """\
[topics.news]
[[sources]]
id = "wire"
kind = "feed"
url = "https://example.org/feed"
topics = ["news"]
[templates.short]
title = "{source}: {title}"
body = "{summary}"
facts = false
[destinations.console]
sink = "console"
template = "short"
[[routes]]
destination = "console"
topics = ["news"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sources.d").mkdir(exist_ok=True)
    (tmp_path / "alerts.toml").write_text(text)
    return tmp_path


def test_templates_are_read_and_the_destination_view_carries_its_template(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, CONFIG))
    short = Template("short", "{source}: {title}", "{summary}", show_facts=False)
    assert config.templates == {"short": short}
    assert config.views["console"].template == short


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ('body = "{summary}"', 'body = "{summary} {sumary}"'),
            "alerts.toml: templates.short.body: unknown field {sumary}; fields:",
            id="unknown-field",
        ),
        pytest.param(
            ('title = "{source}: {title}"', 'title = "{title.__class__}"'),
            "alerts.toml: templates.short.title: {title.__class__}: only plain",
            id="attribute",
        ),
        pytest.param(
            ('template = "short"', 'template = "long"'),
            "alerts.toml: destinations.console.template: unknown template 'long'; "
            "defined templates: short",
            id="unknown-name",
        ),
        pytest.param(
            ('topics = ["news"]\n', 'topics = ["news"]\ntemplate = "tiny"\n'),
            "alerts.toml: routes[0].template: unknown template 'tiny'",
            id="route-unknown-name",
        ),
        pytest.param(
            ("facts = false", "facts = false\ncolour = 1"),
            "alerts.toml: templates.short.colour: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_alerts_check_names_the_file_and_key_of_a_bad_template(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    bad = CONFIG.replace(*change) if change[0] != 'topics = ["news"]\n' else _last(CONFIG, change)
    config_dir = write(tmp_path, bad)
    with pytest.raises(ConfigError) as caught:
        load_config(config_dir)
    assert any(message in p for p in caught.value.problems), caught.value.problems
    result = alerts("--config", str(config_dir), "check")
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if message in line]
    assert line.count("\n") == 0


def _last(text: str, change: tuple[str, str]) -> str:
    head, sep, tail = text.rpartition(change[0])
    return head + change[1] + tail


def test_a_template_defined_twice_is_an_error_naming_both_files(tmp_path: Path) -> None:
    write(tmp_path, CONFIG)
    (tmp_path / "sources.d" / "more.toml").write_text('[templates.short]\ntitle = "{title}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert any(
        "templates.short: already defined in" in p and "more.toml" in p
        for p in caught.value.problems
    ), caught.value.problems


# --- chat grammar and routing ---------------------------------------------------------------


async def test_subscribe_with_a_template_stores_it_and_an_unknown_one_is_refused(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        await _subscribe(store)
    finally:
        await store.close()


async def _subscribe(store: SqliteStore) -> None:
    commands = CommandService(store=store, topics={"news": ""}, templates={"short"})
    ctx = CommandContext("matrix", "!room:example.org", "@mod:example.org", may_manage=True)
    done = await commands.handle_text("subscribe news template=short", ctx)
    assert done.ok and done.text == "Subscribed: news template=short"
    [sub] = await store.list_subscriptions(ctx.destination_id)
    assert sub.template == "short"
    refused = await commands.handle_text("subscribe news template=loud", ctx)
    assert not refused.ok
    assert refused.text == "unknown template 'loud'; templates are: short"
    assert [s.template for s in await store.list_subscriptions()] == ["short"]  # unchanged
    none = CommandService(store=store, topics={"news": ""})
    refused = await none.handle_text("subscribe news template=short", ctx)
    assert "templates are: none (the operator defined none)" in refused.text
    assert parse("subscribe news template=short").template == "short"


def test_a_subscription_template_wins_over_its_destination_and_an_unknown_name_falls_back() -> None:
    loud = Template("loud", title="{title}!")
    router = Router([Subscription("room", topic="news", template="short"), Subscription("other")])
    router.set_views({"room": View(template=loud), "other": View(template=loud)}, {}, ())
    router.set_templates({"short": SHORT, "loud": loud})
    routed = router.routed(HOSTILE)
    assert routed.views["room"].template == SHORT
    assert routed.views["other"].template == loud
    router.set_templates({"loud": loud})  # "short" removed by a reload
    assert router.routed(HOSTILE).views["room"].template == loud
