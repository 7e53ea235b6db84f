"""Every registered sink and source declares its whole contract (``alerts.contracts``),
and a plugin that does not, or that takes a kind already registered, is refused."""

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from alerts import plugins
from alerts.contracts import BaseSink, Sink, Source
from alerts.errors import ConfigError
from alerts.model import Delivery, Destination
from alerts.sinks import registry as sinks
from alerts.sources import registry as sources

SINK_KINDS = sorted(sinks())
SOURCE_KINDS = sorted(sources())
ITEM_ATTRIBUTES = {"title", "url", "summary", "published", "author"}


def test_the_built_in_sinks_are_registered() -> None:
    assert set(SINK_KINDS) >= {"console", "jsonl", "discord", "discord_webhook", "matrix"}


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_sink_declares_its_contract(kind: str) -> None:
    factory = sinks()[kind]
    assert factory.kind == kind
    assert (factory.__doc__ or "").strip(), f"{kind} has no user documentation"
    assert issubclass(factory.Options, BaseModel)
    assert factory.Options.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        factory.Options.model_validate({"no_such_option": 1})
    assert factory.Settings is None or issubclass(factory.Settings, BaseSettings)
    for hook in ("start", "close", "send"):
        assert inspect.iscoroutinefunction(getattr(factory, hook)), f"{kind}.{hook}"
    for hook in ("check_destination", "configured"):
        assert inspect.ismethod(getattr(factory, hook)), f"{kind}.{hook} is not a classmethod"
    assert "context" in inspect.signature(factory).parameters
    assert isinstance(factory.configured(), bool)


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_sink_check_destination_names_the_key(kind: str) -> None:
    destination = Destination("x", kind, "target", {"no_such_option": 1})
    with pytest.raises(ConfigError) as info:
        sinks()[kind].check_destination(destination)
    assert all(p.startswith("destinations.x") for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_source_declares_what_config_checks_against(kind: str) -> None:
    factory = sources()[kind]
    assert isinstance(factory.item_fields, frozenset)
    assert set(factory.fingerprint_fields) <= factory.item_fields
    assert factory.item_fields >= {"title", "url", "summary"}
    assert factory.default_url is None or factory.default_url.startswith("https://")


class _Sink(BaseSink):
    """A plugin sink."""

    kind: ClassVar[str] = "pigeon"

    def __init__(self, *, context: object) -> None:
        self.context = context

    async def send(self, delivery: Delivery) -> str | None:
        return None


class _SameKind(_Sink):
    """Takes a kind that is already built in."""

    kind: ClassVar[str] = "console"


class _Incomplete:
    """Has a kind and nothing else."""

    kind: ClassVar[str] = "half"


def _entry_points(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    points = [EntryPoint(name=n, value=f"{__name__}:{n}", group="alerts.sinks") for n in names]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)


def test_a_plugin_sink_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "_Sink")
    found = sinks()["pigeon"]
    assert found is _Sink
    assert isinstance(_Sink(context=None), Sink)
    assert not isinstance(_Sink(context=None), Source)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("_SameKind", "kind 'console' is already registered", id="duplicate-kind"),
        pytest.param("_Incomplete", "does not declare Options, Settings, start", id="incomplete"),
        pytest.param("ITEM_ATTRIBUTES", "not a sink class", id="not-a-class"),
        pytest.param("_Missing", "cannot be loaded", id="missing"),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    _entry_points(monkeypatch, name)
    with pytest.raises(ConfigError, match=reason):
        sinks()
