"""The weekly report page in a real browser: Debian's headless Chromium (`make browser`)
driven by Playwright, opening the file `write_report` wrote, as someone opening it from a
mail or a bucket would.

Checked: every chart is drawn (an SVG with a non-empty box and marks in it, inside its
card), the page makes no request at all besides itself (none to the network, none failed),
and nothing errs on the console. `UPDATE_SCREENSHOTS=1` also writes docs/images/report.png
(the README shows it); every run leaves its screenshot in the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mysoulmate.analytics.period_report import Period
from mysoulmate.reports.job import write_report
from mysoulmate.runtime.backends import event_store
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.helpers import require_service
from tests.support.report_data import REPORT_WEEK, seed_demo
from tests.support.server import ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = ROOT / "docs" / "images" / "report.png"
CHARTS = ["events-by-day", "active-users-by-day", "revenue-by-day", "funnel", "retention"]
# Vega's mark groups: bars and heat-map cells are rects, lines are lines, points symbols.
MARKS = ".mark-rect path, .mark-line path, .mark-symbol path, .mark-text text"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        require_service(f"{CHROMIUM} is missing (Debian's chromium: `make browser`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    store = event_store()
    seed_demo(store)
    written = write_report(
        store,
        Period.week(REPORT_WEEK),
        tmp_path / "reports",
        locale="en",
        now=datetime(2026, 11, 30, 6, tzinfo=UTC),
    )
    assert written.written
    return written.directory / "report.html"


def test_every_chart_renders_and_nothing_is_fetched(
    browser: Browser, report_file: Path, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    failed: list[str] = []
    problems: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    context.on("requestfailed", lambda request: failed.append(request.url))
    page: Page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        page.goto(report_file.as_uri(), wait_until="load")
        assert page.title().startswith("MySoulmate analytics · Weekly report: week 48, 2026")
        for name in CHARTS:
            figure = page.locator(f'figure[data-chart="{name}"]')
            svg = figure.locator("svg")
            assert svg.count() == 1, name
            box, card = svg.bounding_box(), figure.bounding_box()
            assert box is not None, name
            assert card is not None, name
            assert box["width"] > 200, (name, box)
            assert box["height"] > 100, (name, box)
            # Inside its card: nothing cut off or spilling over the page.
            assert card["x"] <= box["x"], name
            assert box["x"] + box["width"] <= card["x"] + card["width"], name
            marks = svg.locator(MARKS)
            assert marks.count() > 3, name
            drawn = svg.evaluate(
                "el => [...el.querySelectorAll('.mark-rect path, .mark-line path')]"
                ".filter(p => { const b = p.getBBox(); return b.width > 0 && b.height > 0; })"
                ".length"
            )
            assert drawn > 0, f"{name}: no mark with a visible area"
        assert page.locator(".card").count() >= 8
        assert page.locator("table").count() >= 6
        slowest = page.locator("table", has_text="Slowest screens")
        assert slowest.locator("tbody tr").count() >= 3
        assert slowest.locator(".down", has_text="regressed").count() == 1
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        context.close()
    assert requests == [report_file.as_uri()]
    assert failed == []
    assert problems == []
