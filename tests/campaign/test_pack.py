"""The shipped campaign config pack loads and validates with every adapter's options."""

from __future__ import annotations

from pathlib import Path

from alerts.config import load_config
from alerts.sources.awards import AwardsOptions
from alerts.sources.petition import PetitionOptions

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_campaign_pack_validates() -> None:
    config = load_config(CONFIG)
    kinds = {s.kind for s in config.sources.values()}
    assert {"petition", "awards", "federal_register", "webpage", "bluesky", "feed"} <= kinds
    for spec in config.sources.values():
        assert set(spec.topics) <= {"petition", "contracts", "statements", "news"}, spec.id
        assert set(spec.topics) <= set(config.topics), spec.id
    letter = config.sources["iceout-letter"].options
    assert isinstance(letter, PetitionOptions)
    assert letter.milestones
    assert letter.delta_period == 3600.0
    awards = config.sources["ice-vendor-awards"].options
    assert isinstance(awards, AwardsOptions)
    assert awards.agency == "U.S. Immigration and Customs Enforcement"
    assert any("palantir" in r.casefold() for r in awards.recipients)
