"""Take the README's screenshots of a running workbench (Debian's chromium driven by Playwright; nothing downloaded).

    repfit serve --data demo/org --scores demo/scores.parquet --balance-tiers --max-moves 200 --store /tmp/shots.db &
    python docs/screenshots.py http://127.0.0.1:8765

It accepts the top suggestion as user "dana", saves a scenario, re-solves with R007 leaving, saves and compares
(use a throwaway --store), and saves docs/workbench*.png.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

HERE = Path(__file__).resolve().parent


def main(url: str) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/")
        page.fill("#user", "dana")
        page.dispatch_event("#user", "change")
        before = page.locator('[data-total="approved_uplift"]').inner_text()
        page.locator("tbody.group").first.locator("button.accept").click()
        expect(page.locator('[data-total="approved_uplift"]')).not_to_have_text(before)
        page.screenshot(path=HERE / "workbench.png")
        page.locator("#book").scroll_into_view_if_needed()
        page.evaluate("document.getElementById('book').scrollIntoView()")
        page.screenshot(path=HERE / "workbench-book.png")
        page.goto(url + "/?q=R007")
        page.evaluate("document.getElementById('search').scrollIntoView()")
        page.screenshot(path=HERE / "workbench-search.png")
        page.goto(url + "/")
        page.fill("#scenario-form input[name=name]", "as proposed")
        with page.expect_navigation():
            page.click("#scenario-form button")
        page.fill("#whatif-form input[name=capacity]", "R007=0")
        with page.expect_navigation(timeout=300_000):
            page.click("#whatif-form button")
        page.fill("#scenario-form input[name=name]", "R007 leaves")
        with page.expect_navigation():
            page.click("#scenario-form button")
        page.select_option("#compare-form select[name=a]", "as proposed")
        page.select_option("#compare-form select[name=b]", "R007 leaves")
        page.click("#compare-form button")
        page.wait_for_selector("#compare table")
        page.evaluate("document.getElementById('whatif').scrollIntoView()")
        page.screenshot(path=HERE / "workbench-whatif.png")
        page.goto(url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock")
        page.screenshot(path=HERE / "workbench-api.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
