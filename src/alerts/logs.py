"""Logging set-up: human-readable lines by default, JSON lines on request.

Every line goes through ``RedactingFilter``: secrets (URL credentials, secret query
parameters, webhook tokens, the environment's secret settings) are masked even in
third-party libraries' messages and in tracebacks.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from alerts.redact import RedactingFilter, register_environment


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def setup_logging(*, level: str = "INFO", fmt: str = "text") -> None:
    register_environment(os.environ)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "discord.gateway", "nio.rooms", "nio.crypto", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
