"""Screenshots of the live dashboard for the README, at desktop and phone sizes.

    make run   # in another terminal: demo data and the simulated agent
    .venv/bin/python -m tests.screenshots http://127.0.0.1:8765 var/demo-token

Not a test: it writes docs/dashboard-desktop.png and docs/dashboard-phone.png (the whole
page, period "last 7 days" against the 7 days before), docs/dashboard-lead.png (1280×800 with
a lead's drawer open) and docs/dashboard-drill.png (1280×800: the leads behind the funnel's
BANT count, one of them open beside the list).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


async def main(base_url: str, token: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, viewport in SIZES.items():
            context = await browser.new_context(viewport=viewport,  # type: ignore[arg-type]
                                                device_scale_factor=1 if name == "desktop" else 2)
            page = await context.new_page()
            await page.goto(base_url + "/?period=last_7_days")
            await page.fill("#token", token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector('#conn-state[data-state="ready"]')
            await page.wait_for_selector(".card")
            await page.wait_for_selector(".mini")
            await asyncio.sleep(1.5)  # let the first live updates land
            path = ROOT / "docs" / f"dashboard-{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            print(path)
            if name == "desktop":
                await page.click('.column[data-step="requirements"] .card')
                await page.wait_for_selector("#lead-name")
                await asyncio.sleep(0.5)
                path = ROOT / "docs" / "dashboard-lead.png"
                await page.screenshot(path=str(path))
                print(path)
                await page.keyboard.press("Escape")
                await page.click('#funnel li[data-step="bant"] .count-link')
                await page.wait_for_selector("#drill-rows .row")
                await page.click("#drill-rows li:nth-child(2) .row")
                await page.wait_for_selector("#lead-name")
                await asyncio.sleep(0.5)
                path = ROOT / "docs" / "dashboard-drill.png"
                await page.screenshot(path=str(path))
                print(path)
            await context.close()
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].rstrip("/"), Path(sys.argv[2]).read_text().strip()))
