"""docs/adapters.md carries each adapter's docstring and options.

Regenerate its reference section after changing an adapter:
``python -m tests.campaign.test_docs`` (from the repository root, with ``src`` on the path).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from alerts.sources import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
SECTION = "## Built-in adapters\n"


def reference() -> str:
    out = []
    for kind, factory in sorted(registry().items()):
        out += [f"### `{kind}`\n", inspect.cleandoc(factory.__doc__ or "") + "\n"]
        out += ["| option | default | |", "|---|---|---|"]
        for name, f in factory.Options.model_fields.items():
            default = (
                "required" if f.is_required() else f"`{f.get_default(call_default_factory=True)!r}`"
            )
            out.append(f"| `{name}` | {default} | {f.description or ''} |")
        out.append("")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    "kind", ["petition", "awards", "federal_register", "webpage", "bluesky", "sam"]
)
def test_adapter_documented(kind: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    factory = registry()[kind]
    assert f"### `{kind}`" in text
    assert inspect.cleandoc(factory.__doc__ or "") in text, "run python -m tests.campaign.test_docs"
    for name in factory.Options.model_fields:
        assert f"| `{name}` |" in text, f"option {name} of {kind} is not documented"


if __name__ == "__main__":
    head = DOC.read_text(encoding="utf-8").split(SECTION)[0]
    DOC.write_text(head + SECTION + "\n" + reference(), encoding="utf-8")
