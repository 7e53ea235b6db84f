"""How a room shows events (issue 15): ``updates`` and ``merge_window`` from TOML
(destinations and routes), from the chat ``subscribe`` command, and resolved by the
router for each delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.chat.commands import CommandContext, CommandError, CommandService, parse
from alerts.config import load_config
from alerts.errors import ConfigError
from alerts.model import Event, EventKind, Subscription, UpdateStyle, View
from alerts.route import Router
from alerts.store.sqlite import SqliteStore

HOUR = 3600.0


def update(source: str = "awards") -> Event:
    return Event(
        source_id=source, kind=EventKind.UPDATED, key="award-1", title="x", topics=("contracts",)
    )


# --- the router: subscription, then destination, then the source's adapter ------------


def test_a_subscription_choice_wins_over_the_room_and_the_source() -> None:
    router = Router([Subscription("ops", topic="contracts", updates=UpdateStyle.NEW)])
    router.set_views({"ops": View(UpdateStyle.EDIT, 12 * HOUR)}, {"awards": UpdateStyle.REPLY})
    assert router.routed(update()).views == {"ops": View(UpdateStyle.NEW, 12 * HOUR)}


def test_the_room_wins_over_the_source_and_keeps_its_merge_window() -> None:
    router = Router([Subscription("ops", topic="contracts")])
    router.set_views({"ops": View(UpdateStyle.EDIT, 0.0)}, {"awards": UpdateStyle.REPLY})
    assert router.routed(update()).views == {"ops": View(UpdateStyle.EDIT, 0.0)}


def test_without_a_choice_the_sources_default_applies() -> None:
    router = Router([Subscription("ops", topic="contracts")])
    router.set_views({}, {"awards": UpdateStyle.REPLY, "wire": UpdateStyle.EDIT})
    routed = router.routed(update())
    assert (routed.destination_ids, routed.views) == (("ops",), {"ops": View(UpdateStyle.REPLY)})
    assert router.routed(update("wire")).views["ops"].updates is UpdateStyle.EDIT
    assert router.routed(update("unknown")).views["ops"].updates is None  # edit, the default


def test_a_source_whose_items_are_no_stories_is_never_merged() -> None:
    router = Router([Subscription("ops")])
    router.set_views({"ops": View(None, 12 * HOUR)}, {}, not_stories=["iceout-letter"])
    assert router.routed(update("iceout-letter")).views["ops"].merge_window_s == 0.0
    assert router.routed(update("wired")).views["ops"].merge_window_s == 12 * HOUR


def test_a_later_matching_subscription_that_says_updates_is_heard() -> None:
    router = Router(
        [Subscription("ops", topic="contracts")],
        [Subscription("ops", source="awards", updates=UpdateStyle.NEW)],
    )
    assert router.routed(update()).views["ops"].updates is UpdateStyle.NEW
    assert router.route(update()) == ("ops",)  # still one delivery for the room


# --- TOML -----------------------------------------------------------------------------

MAIN = """
[topics.contracts]
[destinations.ops]
sink = "console"
{destination}
[[routes]]
destination = "ops"
topics = ["contracts"]
{route}
[[sources]]
id = "ice-awards"
kind = "awards"
topics = ["contracts"]
[[sources]]
id = "wired"
kind = "feed"
url = "https://www.wired.com/feed/rss"
topics = ["contracts"]
[[sources]]
id = "iceout-letter"
kind = "petition"
url = "https://iceout.tech/letter"
count_selector = ".signature-count"
topics = ["contracts"]
"""


def config_dir(tmp_path: Path, *, destination: str = "", route: str = "") -> Path:
    (tmp_path / "alerts.toml").write_text(MAIN.format(destination=destination, route=route))
    return tmp_path


def test_destinations_and_routes_say_how_their_room_shows_events(tmp_path: Path) -> None:
    config = load_config(
        config_dir(
            tmp_path, destination='updates = "reply"\nmerge_window = "12h"', route='updates = "new"'
        )
    )
    assert config.views == {"ops": View(UpdateStyle.REPLY, 12 * HOUR)}
    assert [s.updates for s in config.routes] == [UpdateStyle.NEW]
    assert config.destinations["ops"].options == {}  # not options of the console sink
    # awards (and statements) reply by default, feeds edit
    assert config.source_updates == {
        "ice-awards": UpdateStyle.REPLY,
        "wired": UpdateStyle.EDIT,
        "iceout-letter": UpdateStyle.EDIT,
    }
    assert config.not_stories == {"iceout-letter"}  # a petition's alerts are no news stories


def test_the_defaults_are_edit_and_48_hours(tmp_path: Path) -> None:
    config = load_config(config_dir(tmp_path))
    assert config.views == {"ops": View(None, 48 * HOUR)}
    assert config.routes[0].updates is None


@pytest.mark.parametrize(
    ("destination", "route", "problem"),
    [
        pytest.param(
            'updates = "sometimes"',
            "",
            "/alerts.toml: destinations.ops.updates: Input should be 'edit', 'reply' or 'new'",
            id="bad-destination-updates",
        ),
        pytest.param(
            'merge_window = "-1h"',
            "",
            "/alerts.toml: destinations.ops.merge_window: expected a duration",
            id="negative-window",
        ),
        pytest.param(
            "merge_window = true",
            "",
            "/alerts.toml: destinations.ops.merge_window: expected a duration",
            id="boolean-window",
        ),
        pytest.param(
            "",
            'updates = "thread"',
            "/alerts.toml: routes[0].updates: Input should be 'edit', 'reply' or 'new'",
            id="bad-route-updates",
        ),
    ],
)
def test_check_refuses_a_bad_choice_with_file_key_and_reason(
    tmp_path: Path, destination: str, route: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir(tmp_path, destination=destination, route=route))
    assert any(problem in p for p in info.value.problems), info.value.problems


# --- chat -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["edit", "reply", "new", "REPLY"])
def test_subscribe_takes_updates(value: str) -> None:
    assert parse(f"subscribe contracts updates={value}").updates is UpdateStyle(value.lower())


def test_subscribe_refuses_an_unknown_updates_value_with_the_choices() -> None:
    with pytest.raises(CommandError, match="updates must be one of edit, reply, new, not 'thread'"):
        parse("subscribe contracts updates=thread")


async def test_a_room_that_subscribes_with_updates_keeps_it(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        service = CommandService(store=store, topics={"contracts": ""})
        ctx = CommandContext(sink="matrix", target="!r:example.org", user="@mod:x", may_manage=True)
        reply = await service.handle_text("subscribe contracts updates=new", ctx)
        assert reply.ok and reply.text == "Subscribed: contracts updates=new"
        [sub] = await store.list_subscriptions()
        assert sub.updates is UpdateStyle.NEW
        listed = await service.handle_text("list", ctx)
        assert "updates=new" in listed.text
    finally:
        await store.close()
