"""The display page itself: its settings from the URL, a clear error in the agent's words, the
device list, visible keyboard focus, a layout that fits a 360 px wide screen, and the lane
shown offline when its agent dies."""

from __future__ import annotations

import re
import signal

from playwright.async_api import expect

from tests.browser.conftest import PageOpener, scan, screenshot
from tests.conftest import AgentFactory
from tests.integration.test_lane_agent import BASE


async def test_small_screen_shows_lane_errors_focus_and_a_dead_agent(
    lane_agents: AgentFactory, open_page: PageOpener
) -> None:
    agent = lane_agents("")  # the sandbox ledger
    page = await open_page(agent, width=360, height=740)
    await expect(page.locator("#lane-name")).to_have_text(BASE)
    await expect(page.locator("#connection")).to_have_text("Broker: connected")
    await expect(page.locator("#device-rows")).to_have_text(
        re.compile(r"keyed \(keyed\)\s*connected")
    )
    await page.get_by_text("Broker and lane").click()
    await expect(page.get_by_label("Base topic")).to_have_value(BASE)
    await expect(page.get_by_label("Broker websocket URL")).to_have_value(
        re.compile(r"^ws://127\.0\.0\.1:\d+/$")
    )

    await scan(page, "999999999999")  # no such gift in the sandbox ledger
    alert = page.locator("#alert")
    await expect(alert).to_contain_text("Gift ••••••••9999: Not found")
    await scan(page, "100000000004")  # expired: found, validated, not redeemable
    await expect(page.locator("#gift-status")).to_contain_text("Not redeemable (expired)")
    await expect(page.locator("#redeem-amount")).to_be_disabled()
    await expect(page.locator("#scan-list li")).to_have_count(2)

    # Nothing is wider than the screen, and the focused control is ringed.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px screen"
    await page.locator("#scan-input").focus()
    await page.keyboard.press("Tab")
    send = page.get_by_role("button", name="Send", exact=True)
    await expect(send).to_be_focused()
    style = "(b) => getComputedStyle(b).outlineStyle + ' ' + getComputedStyle(b).outlineWidth"
    outline = await send.evaluate(style)
    assert outline == "solid 3px", outline
    await screenshot(page, "small-screen")

    agent.signal(signal.SIGKILL)  # the broker publishes the agent's last will
    await expect(page.locator("#agent-state")).to_have_text("Agent: offline")
