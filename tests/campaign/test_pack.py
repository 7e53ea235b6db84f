"""The shipped campaign config pack loads and validates with every adapter's options."""

from __future__ import annotations

import tomllib
from pathlib import Path

from alerts.config import load_config
from alerts.sources.awards import AwardsOptions
from alerts.sources.petition import PetitionOptions
from alerts.sources.sam import SamOptions

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


def test_pack_follows_the_real_palantir_award_and_ships_the_new_sources() -> None:
    config = load_config(CONFIG)
    awards = config.sources["ice-vendor-awards"].options
    assert isinstance(awards, AwardsOptions)
    assert awards.follow == ["CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"]
    funded = config.sources["ice-funded-awards"].options
    assert isinstance(funded, AwardsOptions) and funded.agency_type == "funding"
    assert config.sources["iceout-updates"].kind == "webpage"
    assert "wired" not in config.sources  # the firehose, replaced by filtered sections
    for section in ("wired-security", "wired-politics"):
        assert "ICE" in config.sources[section].include
    raw = tomllib.loads((CONFIG / "sources.d" / "campaign.toml").read_text(encoding="utf-8"))
    (sam,) = [s for s in raw["sources"] if s["kind"] == "sam"]
    assert sam["notice_types"] == ["u", "a"] and sam["enabled"] is False
    SamOptions.model_validate({k: v for k, v in sam.items() if k in SamOptions.model_fields})
