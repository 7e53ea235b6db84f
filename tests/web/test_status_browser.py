"""The status page in a real browser (Debian's Chromium, headless): what a person sees
on a phone and on a desk, with strangers' markup as text, no script run, no sideways
scrolling, readable contrast. Writes the screenshot used in docs/operations.md:
``UPDATE_DOCS_SCREENSHOT=1 pytest tests/web/test_status_browser.py`` refreshes
``docs/status-page.png``."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from .chromium import Page, browser, chromium_or_skip
from .scenario import HOSTILE_NAME, HOSTILE_REASON, URL_PASSWORD, URL_TOKEN, endpoint, scenario

pytestmark = pytest.mark.slow

PHONE = (360, 740)
TABLET = (800, 1000)
DESK = (1280, 900)
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
DOCS_WIDTH = 1000

ROW_TEXT = """
[...document.querySelectorAll('tbody tr')]
  .map(tr => tr.innerText.replace(/\\s+/g, ' ').trim())
"""
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# WCAG 2.x contrast of every element that holds text, against its effective background.
WORST_CONTRAST = """
(() => {
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const lum = c => {
    const [r, g, b] = rgb(c).slice(0, 3).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor, v = rgb(c);
      if (v.length < 4 || v[3] > 0) return c;
    }
    return getComputedStyle(document.documentElement).backgroundColor || 'rgb(255, 255, 255)';
  };
  let worst = [99, ''];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!text || !el.getClientRects().length) continue;
    const a = lum(getComputedStyle(el).color), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst[0]) worst = [ratio, el.tagName + '.' + el.className + ' ' + el.textContent.slice(0, 40)];
  }
  return worst;
})()
"""


async def _look(page: Page, url: str, size: tuple[int, int], *, mobile: bool) -> list[str]:
    await page.viewport(*size, mobile=mobile)
    await page.open(url)
    assert await page.evaluate(SIDEWAYS) <= 0, f"the page scrolls sideways at {size}"
    return list(await page.evaluate(ROW_TEXT))


def _one(rows: list[str], start: str) -> str:
    found = [r for r in rows if r.startswith(start)]
    assert len(found) == 1, (start, rows)
    return found[0]


def _png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int(struct.unpack(">I", data[16:20])[0])


async def test_a_person_sees_the_state_on_a_phone_and_a_desk(tmp_path: Path) -> None:
    binary = chromium_or_skip()
    async with (
        scenario(tmp_path) as sc,
        endpoint(sc.runtime) as base,
        browser(binary, tmp_path) as page,
    ):
        for size, mobile in (
            (PHONE, True),
            (TABLET, True),
            ((DOCS_WIDTH, 800), False),
            (DESK, False),
        ):
            rows = await _look(page, f"{base}/status", size, mobile=mobile)
            broken = _one(rows, "broken")
            assert "failing" in broken and "HTTP 500 Internal Server Error" in broken
            assert "ok" in _one(rows, f"{HOSTILE_NAME} (wire)")  # a script tag, as text
            assert _one(rows, "gone").endswith(HOSTILE_REASON)  # markup in a reason, as text
            assert "disabled" in _one(rows, "paused")
            assert "gone pending" in _one(rows, "new Council votes on the contract")
            seen = await page.evaluate("document.documentElement.outerHTML")
            assert URL_PASSWORD not in seen and URL_TOKEN not in seen
            # nothing from strangers became an element, and nothing ran
            assert await page.evaluate("document.querySelectorAll('script, img').length") == 0
            assert page.saw("Page.javascriptDialogOpening") == []
        shot = await page.screenshot(tmp_path / "status-page.png", width=DOCS_WIDTH)
    assert _png_width(shot) == DOCS_WIDTH
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "status-page.png", DOCS_SCREENSHOT)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_page_is_readable_and_structured(tmp_path: Path, scheme: str) -> None:
    binary = chromium_or_skip()
    async with (
        scenario(tmp_path) as sc,
        endpoint(sc.runtime) as base,
        browser(binary, tmp_path) as page,
    ):
        await page.call(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )
        await _look(page, f"{base}/status", PHONE, mobile=True)
        ratio, where = await page.evaluate(WORST_CONTRAST)
        assert ratio >= 4.5, f"contrast {ratio:.2f} < 4.5 (WCAG AA) at {where}"
        assert await page.evaluate("document.documentElement.lang") == "en"
        headings = await page.evaluate(
            "[...document.querySelectorAll('h1, h2')].map(h => h.innerText)"
        )
        assert headings == [
            "alerts status",
            "Sources",
            "Recent alerts",
            "Deliveries",
            "Parked destinations",
        ]
        tables = await page.evaluate(
            "[...document.querySelectorAll('table')].map(t => [t.caption !== null,"
            " t.querySelectorAll('thead th[scope=col]').length,"
            " t.querySelectorAll('tbody th[scope=row]').length === t.tBodies[0].rows.length])"
        )
        assert len(tables) == 5 and all(caption and cols and rows for caption, cols, rows in tables)
