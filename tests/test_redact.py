"""Redaction rules (``alerts.redact``), the logging filter and the error tree that
applies them. End-to-end checks through the CLI and the store are in
``test_secrets.py``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from alerts.errors import (
    AlertsError,
    ConfigError,
    FetchError,
    HttpStatusError,
    ParseError,
    RetryableSendError,
    StoreError,
)
from alerts.logs import JsonFormatter, setup_logging
from alerts.redact import (
    MASK,
    RedactingFilter,
    forget_secrets,
    is_secret_param,
    redact_text,
    redact_url,
    register_environment,
    register_secret,
)


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "https://user:hunter2@feeds.example/rss",
            "https://user:***@feeds.example/rss",
            id="user-and-password",
        ),
        pytest.param(
            "https://user:p%40ss%2Fw0rd@feeds.example:8443/rss",
            "https://user:***@feeds.example:8443/rss",
            id="percent-encoded-password-and-port",
        ),
        pytest.param(
            "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.example/x.atom",
            "https://***@github.example/x.atom",
            id="token-as-user-name",
        ),
        pytest.param(
            "https://user:@feeds.example/", "https://user:***@feeds.example/", id="empty-password"
        ),
        pytest.param(
            "https://feeds.example/rss?token=abc123&page=2",
            "https://feeds.example/rss?token=***&page=2",
            id="token-param",
        ),
        pytest.param(
            "https://a.example/?KEY=1&Api-Key=2&apiKey=3&X-Amz-Signature=4&x-amz-credential=5",
            "https://a.example/?KEY=***&Api-Key=***&apiKey=***&X-Amz-Signature=***&x-amz-credential=***",
            id="case-and-dashes",
        ),
        pytest.param(
            "https://a.example/p?sig=s&signature=t&secret=u&client_secret=v&password=w&auth=x",
            "https://a.example/p?sig=***&signature=***&secret=***&client_secret=***&password=***&auth=***",
            id="the-explicit-list",
        ),
        pytest.param(
            "https://a.example/p?access_token=a&refresh_token=b&subscription-key=c&session=d",
            "https://a.example/p?access_token=***&refresh_token=***&subscription-key=***&session=***",
            id="tokens-and-keys-by-shape",
        ),
        pytest.param(
            "https://a.example/p?author=ana&q=ice+contracts&sort=new&page=3",
            "https://a.example/p?author=ana&q=ice+contracts&sort=new&page=3",
            id="ordinary-params-kept",
        ),
        pytest.param(
            "https://a.example/p?token=&flag&token",
            "https://a.example/p?token=***&flag&token",
            id="empty-and-bare-params",
        ),
        pytest.param(
            "https://a.example/cb#access_token=abc&state=1",
            "https://a.example/cb#access_token=***&state=1",
            id="fragment-params",
        ),
        pytest.param(
            "https://a.example/p#section-2", "https://a.example/p#section-2", id="plain-fragment"
        ),
        pytest.param(
            "https://a.example/go?next=https://u:pw@b.example/x",
            "https://a.example/go?next=https://u:***@b.example/x",
            id="url-inside-a-parameter",
        ),
        pytest.param(
            "https://discord.com/api/webhooks/123456789012345678/Abc-DEF_ghi.jkl",
            "https://discord.com/api/webhooks/123456789012345678/***",
            id="discord-webhook",
        ),
        pytest.param(
            "https://canary.discord.com/api/v10/webhooks/123456789012345678/Abc/messages/1?wait=true",
            "https://canary.discord.com/api/v10/webhooks/123456789012345678/***/messages/1?wait=true",
            id="discord-webhook-versioned",
        ),
        pytest.param(
            "postgresql://alerts:s3cr3t@db.internal:5432/alerts?sslmode=require",
            "postgresql://alerts:***@db.internal:5432/alerts?sslmode=require",
            id="database-url",
        ),
        pytest.param(
            "postgres://alerts:s3cr3t@/alerts?host=/run/postgresql&password=again",
            "postgres://alerts:***@/alerts?host=/run/postgresql&password=***",
            id="database-url-socket-and-param",
        ),
        pytest.param(
            "https://mastodon.example/@user.rss",
            "https://mastodon.example/@user.rss",
            id="at-in-path",
        ),
        pytest.param(
            "https://user@feeds.example/a@b?x=1", "https://***@feeds.example/a@b?x=1", id="at-both"
        ),
        pytest.param("sqlite:///data/alerts.db", "sqlite:///data/alerts.db", id="sqlite"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


SECRET_NAMES = [
    "key",
    "TOKEN",
    "api_key",
    "apikey",
    "access_token",
    "secret",
    "client_secret",
    "sig",
    "signature",
    "password",
    "auth",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "passwd",
    "pwd",
    "private_key",
    "license-key",
    "ALERTS_DISCORD_TOKEN",
    "api%5Fkey",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_param_names(name: str) -> None:
    assert is_secret_param(name)


@pytest.mark.parametrize(
    "name", ["q", "page", "author", "sort", "id", "format", "since", "lang", "limit"]
)
def test_ordinary_param_names(name: str) -> None:
    assert not is_secret_param(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "HTTP 500 from https://u:pw@a.example/f?token=t1: boom",
            "HTTP 500 from https://u:***@a.example/f?token=***: boom",
            id="url-in-a-sentence",
        ),
        pytest.param(
            "invalid target 'https://discord.com/api/webhooks/1234567/tok' (quoted)",
            "invalid target 'https://discord.com/api/webhooks/1234567/***' (quoted)",
            id="quoted-url",
        ),
        pytest.param(
            "host=db user=alerts password=hunter2 dbname=alerts",
            "host=db user=alerts password=*** dbname=alerts",
            id="libpq-keywords",
        ),
        pytest.param(
            "sent Authorization: Bearer abc.def-ghi; got 401",
            "sent Authorization: Bearer ***; got 401",
            id="authorization-header",
        ),
        pytest.param("bearer eyJhbGciOi.x.y rejected", "bearer *** rejected", id="bearer"),
        pytest.param(
            "ALERTS_MATRIX_PASSWORD=correct-horse is set",
            "ALERTS_MATRIX_PASSWORD=*** is set",
            id="env-assignment",
        ),
        pytest.param(
            "source x failing (3 in a row): timed out",
            "source x failing (3 in a row): timed out",
            id="nothing-to-hide",
        ),
        pytest.param("", "", id="empty"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("mxtoken-0123456789")
    register_secret("abc")  # too short to mask without garbling messages
    assert redact_text("login failed for mxtoken-0123456789.") == f"login failed for {MASK}."
    assert redact_text("abc") == "abc"


def test_environment_secrets_are_registered() -> None:
    register_environment(
        {
            "ALERTS_DISCORD_TOKEN": "discord-bot-token-xyz",
            "ALERTS_MATRIX_PASSWORD": "correct-horse-battery",
            "ALERTS_DATABASE_URL": "postgresql://alerts:pg%2Fsecret@db/alerts",
            "ALERTS_LOG_LEVEL": "WARNING",
            "HOME_TOKEN": "not-ours-to-mask",
        }
    )
    text = "discord-bot-token-xyz correct-horse-battery pg/secret WARNING not-ours-to-mask"
    assert redact_text(text) == f"{MASK} {MASK} {MASK} WARNING not-ours-to-mask"


def test_environment_registration_replaces_the_previous_one() -> None:
    register_environment({"ALERTS_API_TOKEN": "first-token-value"})
    register_environment({"ALERTS_API_TOKEN": "second-token-value"})
    assert redact_text("first-token-value") == "first-token-value"
    assert redact_text("second-token-value") == MASK


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(FetchError("cannot fetch https://u:pw@a.example/?token=t"), id="fetch"),
        pytest.param(HttpStatusError(500, "https://u:pw@a.example/?token=t"), id="status"),
        pytest.param(ParseError("invalid JSON from https://u:pw@a.example/?token=t"), id="parse"),
        pytest.param(ConfigError(["f: k: 'https://u:pw@a.example/?token=t'"]), id="config"),
        pytest.param(StoreError("cannot open postgresql://u:pw@db/x?token=t"), id="store"),
        pytest.param(RetryableSendError("POST https://u:pw@a.example/?token=t"), id="send"),
    ],
)
def test_every_alerts_error_is_redacted_when_made(error: AlertsError) -> None:
    assert "pw" not in str(error)
    assert "token=t" not in str(error)
    assert MASK in str(error)


def test_config_error_problems_are_redacted() -> None:
    error = ConfigError(["a.toml: destinations.x.target: 'https://discord.com/api/webhooks/1/tk'"])
    assert error.problems == [
        "a.toml: destinations.x.target: 'https://discord.com/api/webhooks/1/***'"
    ]


def test_http_status_error_keeps_a_redacted_url() -> None:
    error = HttpStatusError(503, "https://feeds.example/rss?key=k123")
    assert error.url == "https://feeds.example/rss?key=***"
    assert error.status == 503


def _handler(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redact")
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger, stream


def test_logging_filter_masks_messages_args_and_tracebacks() -> None:
    logger, stream = _handler(logging.Formatter("%(levelname)s %(message)s"))
    logger.warning("fetching %s", "https://u:pw1@a.example/?token=t1")
    try:
        raise ValueError("bad https://discord.com/api/webhooks/12345/hook-token")
    except ValueError:
        logger.exception("crashed with password=%s", "pw2")
    out = stream.getvalue()
    assert "WARNING fetching https://u:***@a.example/?token=***" in out
    assert "crashed with password=***" in out
    assert "webhooks/12345/***" in out and "Traceback" in out
    for secret in ("pw1", "t1", "pw2", "hook-token"):
        assert secret not in out


def test_logging_filter_covers_json_lines() -> None:
    logger, stream = _handler(JsonFormatter())
    try:
        raise RuntimeError("https://u:pw3@a.example/")
    except RuntimeError:
        logger.exception("failed %s", "https://b.example/?access_token=t3")
    line = json.loads(stream.getvalue())
    assert line["msg"] == "failed https://b.example/?access_token=***"
    assert "u:***@a.example" in line["exc"]
    assert "pw3" not in stream.getvalue() and "t3" not in stream.getvalue()


def test_logging_filter_leaves_malformed_records_to_logging() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("nan",), None)
    assert RedactingFilter().filter(record) is True
    assert record.args == ("nan",)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_installs_the_filter_and_the_environments_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALERTS_MATRIX_PASSWORD", "correct-horse-battery")
    setup_logging(level="INFO")
    logging.getLogger("nio.client").warning(
        "login as @bot:example.org with correct-horse-battery failed at %s",
        "https://matrix.example/_matrix/client/v3/login?access_token=syt_abc",
    )
    err = capsys.readouterr().err
    assert "login as @bot:example.org with *** failed at" in err
    assert "v3/login?access_token=***" in err
    assert "correct-horse-battery" not in err and "syt_abc" not in err
