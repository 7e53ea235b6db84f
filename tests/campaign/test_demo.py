"""The offline demo runs the real service and delivers the campaign's alerts."""

from __future__ import annotations

import io
import tomllib
from collections import Counter

import pytest

from alerts.cli import main
from alerts.demo import EXPECTED, PALANTIR, DemoSettings, demo_config, run_demo
from alerts.model import EventKind


@pytest.mark.slow
async def test_demo_delivers_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_demo(step_s=1.5, poll_s=0.4, settle_s=20.0, out=io.StringIO())
    assert result.missing == Counter()
    delivered = Counter((e.source_id, e.kind) for e in result.delivered)
    assert delivered == EXPECTED  # no duplicates, nothing at the baseline
    got = {(e.source_id, e.kind): e for e in reversed(result.delivered)}  # the latest of each
    assert PALANTIR == "CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"  # the real id's shape
    modifications = sorted(
        (
            e
            for e in result.delivered
            if e.kind is EventKind.UPDATED and e.source_id == "ice-awards"
        ),
        key=lambda e: e.detected_at,
    )
    first, second = modifications
    assert first.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert first.fields["delta"] == 29_854_750.0
    assert first.url == f"https://www.usaspending.gov/award/{PALANTIR}"
    assert second.changes == {"amount": (125_754_750.0, 140_000_000.0)}
    milestone = got[("iceout-letter", EventKind.MILESTONE)]
    assert (milestone.fields["threshold"], milestone.fields["anonymous"]) == (1000, 60)
    deltas = sorted(
        (e for e in result.delivered if e.kind is EventKind.DELTA), key=lambda e: e.detected_at
    )
    assert [d.fields["delta"] for d in deltas] == [80, 44]  # 940 -> 1,020 -> 1,064
    assert deltas[0].fields["anonymous"] == 60
    assert deltas[0].fields["by_company"]["Google"] == 40
    assert got[("iceout-letter", EventKind.NEW)].title == "Margaret Hamilton"
    notice = got[("ice-sam", EventKind.NEW)]
    assert notice.title.startswith("Justification: Sole Source Justification - ImmigrationOS")
    assert notice.detected_at < first.detected_at  # the notice came first
    printed = capsys.readouterr().out
    assert "Margaret Hamilton" in printed
    assert "PALANTIR TECHNOLOGIES INC." in printed
    assert "60 of the newest signed anonymously" in printed
    # an edit (with a reply under it), the live count edited, and a merge
    assert "now reads:\nUpdated · ICE contract awards: PALANTIR TECHNOLOGIES INC." in printed
    assert "↳ reply to alert" in printed
    assert (
        "now reads:\nNew signatures · ICEout.tech letter: +124 signatures (1,064 total)" in printed
    )
    assert "Also reported by: " in printed


def test_demo_command_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    assert "--step" in capsys.readouterr().out


def test_demo_config_adds_chat_rooms_when_named() -> None:
    chat = DemoSettings(matrix_room="!room:example.org", discord_channel="1234")
    parsed = tomllib.loads(demo_config("http://127.0.0.1:1", chat))
    assert parsed["destinations"]["demo-matrix"] == {
        "sink": "matrix",
        "target": "!room:example.org",
    }
    assert parsed["destinations"]["demo-discord"] == {"sink": "discord", "target": "1234"}
    assert {r["destination"] for r in parsed["routes"]} == {
        "console",
        "demo-matrix",
        "demo-discord",
    }
    plain = tomllib.loads(demo_config("http://127.0.0.1:1", DemoSettings()))
    assert set(plain["destinations"]) == {"console"}
