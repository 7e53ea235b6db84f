"""Value types shared by the operator config and every adapter's and sink's
``Options`` model: durations and the like, validated where they are declared.

Kept apart from ``alerts.config`` so that adapters and sinks can use them without
importing the config loader (which imports the registries that import them).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(value: Any) -> float:
    """Seconds from ``90``, ``90.5``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90, '90s', '15m' or '1h'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts).lower() == text.lower():
            return sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    raise ValueError(f"expected a duration like 90, '90s', '15m' or '1h', not {value!r}")


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
