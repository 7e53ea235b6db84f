"""The spec checker itself: it must catch what Discord would refuse."""

from __future__ import annotations

from typing import Any

import pytest
from discord_openapi import OpenApi

GOOD = {"embeds": [{"title": "x"}], "nonce": "a" * 25, "enforce_nonce": True}


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "problem"),
    [
        pytest.param("POST", "/channels/123/messages", {}, GOOD, None, id="valid-message"),
        pytest.param(
            "POST",
            "/channels/123/messages",
            {},
            {**GOOD, "nonce": "a" * 26},
            "nonce",
            id="nonce-26",
        ),
        pytest.param(
            "POST",
            "/channels/123/messages",
            {},
            {"embeds": [{"title": "t" * 257}]},
            "embeds/0/title",
            id="title-257",
        ),
        pytest.param(
            "POST", "/channels/general/messages", {}, GOOD, "channel_id", id="not-a-snowflake"
        ),
        pytest.param("POST", "/channels/1/messages", {"x": "1"}, GOOD, "unknown query", id="query"),
        pytest.param("POST", "/nowhere", {}, None, "no such operation", id="unknown-path"),
        pytest.param(
            "POST", "/webhooks/1/tok", {"wait": "true"}, GOOD, None, id="webhook-wait-bool"
        ),
    ],
)
def test_requests(
    openapi: OpenApi,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    problem: str | None,
) -> None:
    found = openapi.check_request(method, path, query, body, content_type="application/json")
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        pytest.param(404, {"code": 10003, "message": "Unknown Channel"}, None, id="error-ok"),
        pytest.param(404, {"message": "Unknown Channel"}, "'code' is a required", id="no-code"),
        pytest.param(
            429, {"code": 0, "message": "slow", "retry_after": 1.0}, "'global'", id="no-global"
        ),
        pytest.param(200, {"id": "1"}, "required property", id="thin-message"),
        pytest.param(503, None, None, id="outage-undescribed"),
    ],
)
def test_responses(openapi: OpenApi, status: int, body: Any, problem: str | None) -> None:
    found = openapi.check_response("POST", "/channels/1/messages", status, body)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found
