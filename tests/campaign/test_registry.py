"""Every registered source adapter declares what operators and the registry rely on."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel, ValidationError

from alerts.sources import DerivesEvents, registry

KINDS = sorted(registry())
CAMPAIGN = {"petition", "awards", "federal_register", "webpage", "bluesky"}


def test_campaign_adapters_are_registered() -> None:
    assert set(KINDS) >= CAMPAIGN


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_declares_its_contract(kind: str) -> None:
    factory = registry()[kind]
    assert factory.kind == kind
    assert isinstance(factory.fingerprint_fields, tuple)
    assert factory.fingerprint_fields
    assert all(isinstance(f, str) for f in factory.fingerprint_fields)
    assert (factory.__doc__ or "").strip(), f"{kind} has no user documentation"
    options = factory.Options
    assert issubclass(options, BaseModel)
    assert options.model_config.get("extra") == "forbid"
    required = [n for n, f in options.model_fields.items() if f.is_required()]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        options.model_validate({**dict.fromkeys(required, "x"), "no_such_option": 1})
    assert inspect.iscoroutinefunction(factory.fetch)  # type: ignore[attr-defined]
    params = inspect.signature(factory).parameters
    assert {"source_id", "url", "options", "http"} <= set(params)


@pytest.mark.parametrize("kind", ["petition", "awards", "webpage"])
def test_deriving_adapters_implement_the_hook(kind: str) -> None:
    assert issubclass(registry()[kind], DerivesEvents)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "options", "match"),
    [
        pytest.param("petition", {"mode": "json"}, "needs count_path", id="petition-json-no-path"),
        pytest.param("petition", {"mode": "csv"}, "mode", id="petition-unknown-mode"),
        pytest.param("petition", {"delta_period": "soon"}, "duration", id="petition-bad-period"),
        pytest.param(
            "awards", {"award_type_codes": ["A", "IDV_A"]}, "one group", id="awards-mixed-types"
        ),
        pytest.param("awards", {"award_type_codes": ["Z"]}, "unknown award", id="awards-bad-type"),
        pytest.param("awards", {"page_size": 500}, "100", id="awards-page-too-big"),
        pytest.param("webpage", {}, "selector", id="webpage-needs-selector"),
        pytest.param("bluesky", {}, "actor", id="bluesky-needs-actor"),
        pytest.param("federal_register", {"per_page": 0}, "per_page", id="fr-per-page"),
    ],
)
def test_bad_options_are_rejected(kind: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        registry()[kind].Options.model_validate(options)
