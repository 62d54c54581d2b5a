"""The page as a K-Series web extension (seed 000): the POS's scan forwarded to the agent, its
order total sent as the order, the agent's card payment added with pos_addPayment in cents with
the payment method code, then back to checkout; a payment the POS refuses goes back to the card.

The POS is tests/browser/pos_shim.js: its pos_* functions exist only inside the real POS app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from simulators.server import Running
from tests.browser.conftest import PageOpener, screenshot
from tests.conftest import AgentFactory, Simulators, sim_get
from tests.integration.test_seed_card_payment import CARD_1250, kseries_toml

POS_SHIM = Path(__file__).with_name("pos_shim.js")


async def pos_calls(page: Page, name: str) -> list[list[Any]]:
    """The arguments of every call the page made to the POS function `name`."""
    calls: list[dict[str, Any]] = await page.evaluate("window.__pos.calls")
    return [call["args"] for call in calls if call["name"] == name]


async def card_page(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> tuple[Page, Running]:
    card_api = simulators.start("kseries")
    page = await open_page(lane_agents(kseries_toml(tmp_path, card_api)), init_script=POS_SHIM)
    await expect(page.locator("#kseries-mode")).to_be_visible()
    return page, card_api


async def test_a_pos_scan_pays_the_card_balance_into_the_sale_in_cents(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    page, card_api = await card_page(tmp_path, lane_agents, simulators, open_page)
    await page.evaluate(f"window.__pos.scan('{CARD_1250}')")
    await expect(page.locator("#order-status")).to_have_text("Order KS-1: $20.00, 2 lines, open")
    await expect(page.locator("#gift-value")).to_have_text("$12.50")
    assert await pos_calls(page, "pos_postMessage") == [
        [{"name": "lane-agent", "args": ["Gift card ••••••••••••0002: $12.50"]}]
    ]
    amount = page.locator("#redeem-amount")
    await expect(amount).to_have_value("12.50")  # the card holds less than the $20.00 due
    await expect(amount).to_be_focused()
    await page.keyboard.press("Enter")

    await expect(page.locator("#redeemed")).to_have_text(
        "Paid $12.50 by card ••••••••••••0002; $7.50 left to pay."
    )
    await page.wait_for_function(
        "window.__pos.calls.some((c) => c.name === 'pos_navigateToCheckoutView')"
    )
    assert await pos_calls(page, "pos_addPayment") == [[1250, "GIFTCARD"]]
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_1250]["balance"] == 0
    assert [r["amount"] for r in ledger["redemptions"].values()] == [1250]
    assert CARD_1250 not in await page.content()
    await screenshot(page, "kseries")


async def test_a_payment_the_pos_refuses_goes_back_to_the_card(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    page, card_api = await card_page(tmp_path, lane_agents, simulators, open_page)
    await page.evaluate("window.__pos.refusePayment = 'Payment method not allowed'")
    await page.evaluate(f"window.__pos.scan('{CARD_1250}')")
    await expect(page.locator("#redeem-amount")).to_have_value("12.50")
    await page.get_by_role("button", name="Pay with card").click()

    await expect(page.locator("#alert")).to_have_text(
        "The POS did not take the card payment "
        "Payment method not allowed. $12.50 went back to the card."
    )
    await expect(page.locator("#gift-value")).to_have_text("$12.50")
    assert await pos_calls(page, "pos_addPayment") == [[1250, "GIFTCARD"]]
    assert await pos_calls(page, "pos_navigateToCheckoutView") == []
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_1250]["balance"] == 1250
    assert len(ledger["reversals"]) == 1
    await screenshot(page, "kseries-refused")
