"""The live view in headless Chromium (Debian's chromium driven by Playwright) against a running gateway:
it loads without console errors and shows the experts and the recent decisions after routed traffic.

Needs /usr/bin/chromium (apt-get install chromium) and the playwright package; no `playwright install`.
Set UI_SCREENSHOT=<path> to choose where the screenshot goes (default: the test's tmp dir).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_live_view_shows_traffic_without_console_errors(browser, obs_gateway, traffic, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith((obs_gateway.url, "data:", "blob:"))
            else None)

    page.goto(f"{obs_gateway.url}/ui", wait_until="networkidle")
    page.wait_for_selector("#decisions tbody tr", timeout=15000)
    page.wait_for_selector("#frontier img", timeout=15000)
    page.wait_for_function("document.querySelector('#frontier img').naturalWidth > 0", timeout=15000)

    status = page.text_content("#status")
    assert "config v1" in status and f"{sum(traffic.values())} requests" in status
    experts = page.locator("#experts tbody tr td:first-child").all_text_contents()
    assert [e.strip() for e in experts] == ["small", "medium", "large", "broken"]
    rows = page.locator("#decisions tbody tr")
    assert rows.count() == sum(traffic.values())
    table = page.text_content("#decisions")
    assert "circuit open" in table  # why 'broken' was ineligible
    assert "large" in table and "strong" in table
    legend = page.text_content("#legend")
    assert all(name in legend for name in ("small", "medium", "large"))
    assert page.locator("#chart-share polygon, #chart-share rect").count() >= 3
    assert page.locator("#chart-latency circle").count() >= 3
    assert page.locator("#chart-cost rect").count() >= 1
    assert page.text_content("#c-requests").strip() == str(sum(traffic.values()))
    assert "%" in page.text_content("#c-errors")

    shot = Path(os.environ.get("UI_SCREENSHOT") or tmp_path / "ui-screenshot.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not problems, problems
    assert not external, external
    page.close()


def test_live_view_reports_missing_data_access(browser, obs_gateway):
    """The page stays up and says why when /ui/data is refused (here: a request from a non-loopback
    address is simulated by a 403 route)."""
    page = browser.new_page()
    page.route("**/ui/data", lambda route: route.fulfill(status=403, content_type="application/json",
                                                         body='{"error": {"message": "admin key needed"}}'))
    page.goto(f"{obs_gateway.url}/ui")
    page.wait_for_function("document.querySelector('#status').textContent.includes('HTTP 403')", timeout=10000)
    assert "#key=" in page.text_content("#status")
    assert page.text_content("#frontier").strip() == "no report"
    page.close()
