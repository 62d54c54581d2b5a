"""`make demo` serves the display page: the address it prints opens a page that is connected to
the demo's broker over websockets and drives the demo's agent."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import scan, screenshot
from tests.integration.test_demo import DEMO_WAIT, demo_session


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
async def test_the_demo_prints_the_page_address_and_the_page_redeems_a_gift(
    tmp_path: Path, browser: Browser, broker: str
) -> None:
    async with demo_session(tmp_path, broker) as demo:
        await demo.expect("lane display page")
        address = (await demo.expect("http://")).strip()
        query = r"\?ws=ws%3A%2F%2F127\.0\.0\.1%3A\d+%2F&base=lane-agent%2Fdemo%2F1"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/" + query, address), address
        page = await browser.new_page(locale="en-US")
        await page.goto(address)
        await expect(page.locator("#agent-state")).to_have_text(
            re.compile("^Agent: online"), timeout=DEMO_WAIT * 1000
        )
        await scan(page, "100000000001")
        await expect(page.locator("#gift-value")).to_have_text("$50.00")
        await page.keyboard.type("5")
        await page.keyboard.press("Enter")
        await expect(page.locator("#redeemed")).to_have_text("Redeemed $5.00; balance $45.00.")
        redeemed = await demo.expect("[event]    gift.redeemed")  # the demo's live view saw it
        assert "$45.00 available" in redeemed
        await screenshot(page, f"demo-{broker}")
        await demo.type("quit")
        async with asyncio.timeout(DEMO_WAIT):
            assert await demo.proc.wait() == 0
