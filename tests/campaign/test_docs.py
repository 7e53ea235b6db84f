"""docs/adapters.md carries each campaign adapter's docstring and options."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from alerts.sources import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


@pytest.mark.parametrize("kind", ["petition", "awards", "federal_register", "webpage", "bluesky"])
def test_adapter_documented(kind: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    factory = registry()[kind]
    assert f"### `{kind}`" in text
    assert inspect.cleandoc(factory.__doc__ or "") in text, "docstring changed: update the doc"
    for name in factory.Options.model_fields:
        assert f"| `{name}` |" in text, f"option {name} of {kind} is not documented"
