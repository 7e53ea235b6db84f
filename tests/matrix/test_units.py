"""Matrix pieces that need no homeserver: error mapping, rendering, settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import nio
import pytest

from alerts.errors import (
    ConfigError,
    DestinationUnavailable,
    PlatformUnavailable,
    RateLimitedError,
    RejectedError,
    RetryableSendError,
    SendError,
)
from alerts.model import Destination, Event, EventKind
from alerts.platforms.matrix import MatrixSettings, MatrixSink
from alerts.platforms.matrix.render import defuse, render
from alerts.platforms.matrix.session import error_for, txn_id_for
from alerts.sinks import registry


def error(
    errcode: str | None, status: int | None, retry_after_ms: int | None = None
) -> nio.ErrorResponse:
    resp = nio.ErrorResponse("boom", errcode, retry_after_ms)
    resp.transport_response = SimpleNamespace(status=status) if status is not None else None  # type: ignore[assignment]
    return resp


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(error("M_LIMIT_EXCEEDED", 429, 1500), RateLimitedError, id="429"),
        pytest.param(error("M_FORBIDDEN", 403), DestinationUnavailable, id="forbidden"),
        pytest.param(error("M_NOT_FOUND", 404), DestinationUnavailable, id="room-gone"),
        pytest.param(error("M_TOO_LARGE", 413), RejectedError, id="too-large"),
        pytest.param(error("M_BAD_JSON", 400), RejectedError, id="bad-json"),
        pytest.param(error("M_UNKNOWN_TOKEN", 401), PlatformUnavailable, id="token"),
        pytest.param(error("M_UNKNOWN", 500), RetryableSendError, id="5xx"),
        pytest.param(error(None, 502), PlatformUnavailable, id="bad-gateway-no-json"),
        pytest.param(error("M_SOMETHING_NEW", 400), RejectedError, id="other-4xx"),
        pytest.param(error(None, 429), RateLimitedError, id="429-without-errcode"),
        pytest.param(error(None, None), RetryableSendError, id="no-response"),
    ],
)
def test_error_table(response: nio.ErrorResponse, expected: type[SendError]) -> None:
    assert type(error_for(response)) is expected


def test_a_refused_login_tells_the_operator_what_to_do() -> None:
    message = str(error_for(error("M_UNKNOWN_TOKEN", 401)))
    assert "ALERTS_MATRIX_PASSWORD" in message and "deliveries wait" in message


def test_rate_limit_carries_the_server_wait() -> None:
    exc = error_for(error("M_LIMIT_EXCEEDED", 429, 1500))
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after_s == 1.5


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("abc-123", "alerts.abc-123", id="plain"),
        pytest.param("a/b c", "alerts.a_b_c", id="unsafe-characters"),
    ],
)
def test_txn_id_is_stable_and_url_safe(key: str, expected: str) -> None:
    assert txn_id_for(key) == expected == txn_id_for(key)


EVENT = Event(
    source_id="src", kind=EventKind.NEW, key="k", title="Title",
    detected_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
)  # fmt: skip


@pytest.mark.parametrize(
    ("summary", "shown"),
    [
        pytest.param("<p>Hi <b>bold</b></p>", "&lt;p&gt;Hi &lt;b&gt;bold&lt;/b&gt;&lt;/p&gt;", id="tags-are-text"),
        pytest.param("<script>x()</script>ok", "&lt;script&gt;x()&lt;/script&gt;ok", id="script"),
        pytest.param(
            '<a href="https://phish.example/login">Sign here</a>',
            "&lt;a href=&quot;https:\u2060//phish.example/login&quot;&gt;Sign here&lt;/a&gt;",
            id="link-is-text",
        ),
        pytest.param("&amp;lt;h1&amp;gt;", "&amp;amp;lt;h1&amp;amp;gt;", id="double-encoded"),
        pytest.param("&lt;h1&gt;", "&amp;lt;h1&amp;gt;", id="encoded"),
        pytest.param("ping @room now", "ping @\u2060room now", id="at-room"),
    ],
)  # fmt: skip
def test_summary_is_text_never_markup(summary: str, shown: str) -> None:
    content = render(replace(EVENT, summary=summary))
    assert f"<blockquote>{shown}</blockquote>" in content["formatted_body"]
    assert content["m.mentions"] == {}


def test_defuse_breaks_mentions_pills_and_links() -> None:
    assert defuse("@room and @bob:example.org") == "@\u2060room and @\u2060bob:example.org"
    assert (
        defuse("#room:example.org !id:example.org")
        == "#\u2060room:example.org !\u2060id:example.org"
    )
    assert defuse("see https://matrix.to/#/x") == "see https:\u2060//matrix\u2060.to/#/x"


def test_plain_body_of_a_new_item() -> None:
    assert render(EVENT)["body"] == "Title\nsrc · new\n2026-01-02 03:04 UTC"


def test_a_named_source_is_shown_by_its_name() -> None:
    content = render(replace(EVENT, source_name="Wired <News>"))
    assert content["body"] == "Title\nWired <News> · new\n2026-01-02 03:04 UTC"
    assert "<em>Wired &lt;News&gt; · new</em>" in content["formatted_body"]


@pytest.mark.parametrize(
    "url",
    [
        "https://matrix.to/#/@alice:example.org",
        "https://matrix.to:443/#/@alice:example.org",
        "HTTPS://MATRIX.TO/#/@alice:example.org",
        "https://matrix.to./#/@alice:example.org",
        "https://www.matrix.to/#/@alice:example.org",
        "https://\uff4d\uff41\uff54\uff52\uff49\uff58.to/#/@alice:example.org",
    ],
)
def test_no_link_to_matrix_to_whatever_the_spelling(url: str) -> None:
    content = render(replace(EVENT, url=url))
    assert "<a " not in content["formatted_body"]
    assert "matrix.to" not in content["body"]


def test_the_link_line_of_the_body_has_no_mention() -> None:
    content = render(replace(EVENT, url="https://social.example/@room/1"))
    assert content["body"].splitlines()[1] == "https://social.example/%40room/1"
    assert 'href="https://social.example/@room/1"' in content["formatted_body"]


def sink() -> MatrixSink:
    return MatrixSink(context=None, settings=MatrixSettings())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("destination", "ok"),
    [
        pytest.param(Destination("a", "matrix", "!abc:example.org"), True, id="room-id"),
        pytest.param(Destination("a", "matrix", "!abc:example.org", {"msgtype": "m.text"}), True, id="m.text"),
        pytest.param(Destination("a", "matrix", "#alias:example.org"), True, id="alias"),
        pytest.param(Destination("a", "matrix", "!8lsnbjajp2zNhbE7J5vh7PqymoI6HQKrZoxGoI1ZUb8"), True, id="room-v12"),
        pytest.param(Destination("a", "matrix", "!abc:[::1]:8448"), True, id="ipv6-server"),
        pytest.param(Destination("a", "matrix", "alerts"), False, id="bare-name"),
        pytest.param(Destination("a", "matrix", "general"), False, id="general"),
        pytest.param(Destination("a", "matrix", "#general"), False, id="alias-without-server"),
        pytest.param(Destination("a", "matrix", "!abc def:example.org"), False, id="space"),
        pytest.param(Destination("a", "matrix", "!" + "a" * 300), False, id="too-long"),
        pytest.param(Destination("a", "matrix", "!abc:example.org", {"colour": 1}), False, id="bad-option"),
    ],
)  # fmt: skip
def test_check_and_validate_destination(destination: Destination, ok: bool) -> None:
    for check in (MatrixSink.check_destination, sink().validate_destination):
        if ok:
            check(destination)
        else:
            with pytest.raises(ConfigError, match=r"destinations\.a(\.target)?: "):
                check(destination)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_MATRIX_HOMESERVER", "https://matrix.example.org")
    monkeypatch.setenv("ALERTS_MATRIX_USER", "alerts")
    monkeypatch.setenv("ALERTS_MATRIX_PASSWORD", "s3cret")
    monkeypatch.setenv("ALERTS_MATRIX_INVITE_USERS", "@a:example.org, @b:example.org")
    settings = MatrixSettings()
    assert settings.user_id() == "@alerts:matrix.example.org"
    assert settings.invite_users == ["@a:example.org", "@b:example.org"]
    assert "s3cret" not in repr(settings)


async def test_start_without_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ALERTS_MATRIX_HOMESERVER"):
        await sink().start()


def test_registered_with_kind_options_and_docstring() -> None:
    factory = registry()["matrix"]
    assert factory is MatrixSink
    assert factory.Options.model_config.get("extra") == "forbid"
    assert "ALERTS_MATRIX_PASSWORD" in (factory.__doc__ or "")


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        pytest.param({}, False, id="nothing"),
        pytest.param({"HOMESERVER": "https://m.org", "USER": "bot"}, False, id="no-credential"),
        pytest.param({"HOMESERVER": "https://m.org", "USER": "bot", "PASSWORD": "p"}, True, id="password"),
        pytest.param({"HOMESERVER": "https://m.org", "USER": "bot", "ACCESS_TOKEN": "t"}, True, id="token"),
    ],
)  # fmt: skip
def test_configured_from_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], configured: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"ALERTS_MATRIX_{name}", value)
    assert MatrixSink.configured() is configured


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_pacer_learns_spacing_from_429s_and_defers_far_slots() -> None:
    from alerts.platforms.matrix.session import Pacer

    clock = FakeClock()
    pacer = Pacer(max_wait_s=0.2, clock=clock)
    first = await pacer.wait_turn()
    assert (first.start_s, first.interval_s) == (100.0, 0.0)

    pacer.limited(first, retry_after_s=0.3)
    assert pacer.interval_s == 0.3
    clock.now = 100.3
    turn = await pacer.wait_turn()  # at the server's retry time, not before
    assert turn.start_s == 100.3
    pacer.limited(turn, retry_after_s=0.5)  # the longest retry_after is the spacing
    assert pacer.interval_s == 0.5
    pacer.limited(turn, retry_after_s=0.1)  # a shorter one teaches nothing
    assert pacer.interval_s == 0.5
    with pytest.raises(RateLimitedError) as far:
        await pacer.wait_turn()  # the next slot is past the retry time, 0.5 s away
    assert far.value.retry_after_s == pytest.approx(0.5)
    clock.now = 100.8
    accepted = await pacer.wait_turn()  # sent and taken: nothing to learn
    assert pacer.interval_s == 0.5
    pacer.limited(accepted, retry_after_s=None)  # no retry_after_ms: learn nothing
    assert pacer.interval_s == 0.5
    pacer.limited(accepted, retry_after_s=99.0)  # a pause, not a rate
    assert pacer.interval_s == pacer.max_interval_s
    clock.now = 100.8 + 601
    assert (await pacer.wait_turn()).interval_s == 0.0
