"""Debian's Chromium, headless, driven over the DevTools protocol (a websocket, with
the aiohttp client the project already uses).

``chromium_or_skip()`` finds the binary (``scripts/setup-chromium`` installs it):
without one the browser tests skip, saying why, except under ``CI=true`` where they
fail. ``browser()`` starts it with a fresh profile and no network beyond loopback
use; ``Page`` opens a tab, emulates a viewport, navigates, evaluates expressions
and takes screenshots.

Protocol reference: https://chromedevtools.github.io/devtools-protocol/ (Page,
Runtime, Emulation domains; the ``/json/new`` HTTP endpoint and the
``DevToolsActivePort`` file written for ``--remote-debugging-port=0``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    "about:blank",
)
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


def chromium_or_skip() -> str:
    """The chromium binary, or skip (fail under CI) saying how to get one."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no chromium on PATH; run scripts/setup-chromium (installs Debian's chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class DevToolsError(RuntimeError):
    """Chromium answered a call with an error."""


class Page:
    """One tab, over its own DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping events as they come."""
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while True:
                message = await self._ws.receive_json()
                if message.get("id") == call_id:
                    if "error" in message:
                        raise DevToolsError(f"{method}: {message['error']}")
                    return dict(message.get("result", {}))
                if "method" in message:
                    self.events.append(message)

    async def wait_for_event(self, method: str) -> dict[str, Any]:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while True:
                for event in self.events:
                    if event["method"] == method:
                        self.events.remove(event)
                        return event
                message = await self._ws.receive_json()
                if "method" in message:
                    self.events.append(message)

    def saw(self, method: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["method"] == method]

    async def viewport(self, width: int, height: int, *, mobile: bool) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    async def open(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        """Navigate and wait for the load event."""
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Network.enable")
        if headers:
            await self.call("Network.setExtraHTTPHeaders", headers=headers)
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise DevToolsError(f"navigating to {url}: {result['errorText']}")
        await self.wait_for_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path, *, width: int) -> bytes:
        """A PNG of the whole page at ``width`` CSS pixels, written to ``path``."""
        height = int(await self.evaluate("document.documentElement.scrollHeight"))
        await self.viewport(width, height, mobile=True)
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data


async def _port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """The DevTools port Chromium chose, from the file it writes into its profile."""
    marker = profile / "DevToolsActivePort"
    async with asyncio.timeout(START_TIMEOUT_S):
        while not marker.exists() or not marker.read_text().strip():
            if process.returncode is not None:
                raise DevToolsError(f"chromium exited with {process.returncode} at start-up")
            await asyncio.sleep(0.05)
    return int(marker.read_text().split()[0])


@contextlib.asynccontextmanager
async def browser(binary: str, workdir: Path) -> AsyncIterator[Page]:
    """Start headless Chromium with a fresh profile; yield one page; stop it."""
    profile = workdir / "chromium-profile"
    profile.mkdir()
    log = (workdir / "chromium.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary, f"--user-data-dir={profile}", *FLAGS, stdout=log, stderr=log
    )
    try:
        port = await _port(profile, process)
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as resp:
                target = await resp.json()
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()
