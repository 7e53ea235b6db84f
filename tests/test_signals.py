"""A real ``alerts run`` process: SIGHUP reloads (a bad file keeps the running config),
SIGTERM finishes in-flight work and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from .support import LOOPBACK_OPT_IN, feed_server, write_config

pytestmark = pytest.mark.slow


async def _wait_for_text(path: Path, text: str, timeout_s: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if path.exists() and text in path.read_text():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_sighup_reload_and_sigterm_clean_exit(tmp_path: Path) -> None:
    async with feed_server() as server:
        config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
        env.update(
            ALERTS_CONFIG_DIR=str(config),
            ALERTS_DATABASE_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
            ALERTS_DATA_DIR=str(tmp_path / "data"),
            ALERTS_HTTP_BIND="",
        )
        log = tmp_path / "alerts.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alerts", "run", env=env, stdout=out, stderr=out
            )
        try:
            assert await _wait_for_text(log, "alerts running"), log.read_text()
            feeds = config / "sources.d" / "feeds.toml"
            good = feeds.read_text()
            feeds.write_text(good.replace('interval = "30s"', 'interval = "5s"'))
            proc.send_signal(signal.SIGHUP)
            assert await _wait_for_text(log, "reload failed; keeping the running config")
            assert "sources[0].interval: must be at least 30 s" in log.read_text()
            feeds.write_text(
                good
                + f'[[sources]]\nid = "second"\nkind = "feed"\nurl = "{server.feed("second", "x")}"\n'
                'topics = ["news"]\n' + LOOPBACK_OPT_IN
            )
            proc.send_signal(signal.SIGHUP)
            assert await _wait_for_text(log, "config reloaded: 2 sources")
            assert proc.returncode is None  # still running throughout
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            assert "stopped cleanly" in log.read_text()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
