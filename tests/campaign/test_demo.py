"""The offline demo runs the real service and delivers the campaign's alerts."""

from __future__ import annotations

import io
import tomllib

import pytest

from alerts.cli import main
from alerts.demo import EXPECTED, PALANTIR, DemoSettings, demo_config, run_demo
from alerts.model import EventKind


@pytest.mark.slow
async def test_demo_delivers_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_demo(step_s=1.5, poll_s=0.4, settle_s=15.0, out=io.StringIO())
    assert result.missing == set()
    got = {(e.source_id, e.kind): e for e in result.delivered}
    assert PALANTIR == "CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"  # the real id's shape
    assert set(got) == EXPECTED
    assert len(result.delivered) == len(EXPECTED)  # no duplicates, nothing at the baseline
    modification = got[("ice-awards", EventKind.UPDATED)]
    assert modification.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert modification.fields["delta"] == 29_854_750.0
    assert modification.url == f"https://www.usaspending.gov/award/{PALANTIR}"
    milestone = got[("iceout-letter", EventKind.MILESTONE)]
    assert (milestone.fields["threshold"], milestone.fields["anonymous"]) == (1000, 60)
    delta = got[("iceout-letter", EventKind.DELTA)]
    assert delta.fields["delta"] == 80  # 940 -> 1,020: the rise of the count
    assert delta.fields["anonymous"] == 60
    assert delta.fields["by_company"]["Google"] == 40
    assert got[("iceout-letter", EventKind.NEW)].title == "Margaret Hamilton"
    notice = got[("ice-sam", EventKind.NEW)]
    assert notice.title.startswith("Justification: Sole Source Justification - ImmigrationOS")
    assert notice.detected_at < modification.detected_at  # the notice came first
    printed = capsys.readouterr().out
    assert "Margaret Hamilton" in printed
    assert "PALANTIR TECHNOLOGIES INC." in printed
    assert "60 of the newest signed anonymously" in printed


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
