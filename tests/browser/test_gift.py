"""Gift flows on the display page: a Gift Local voucher validated and redeemed with the keyboard
only (the rest of it when the cashier asks for more than is left), and a K-Series style gift
card paying part of an order after an insufficient-balance answer."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from simulators.giftlocal import BAKERY_KEY
from simulators.server import Running
from tests.browser.conftest import PageOpener, enter_order, scan, screenshot
from tests.conftest import AgentFactory, Simulators, sim_get
from tests.integration.test_seed_card_payment import CARD_1250, kseries_toml
from tests.integration.test_seed_gift_local import giftlocal_toml

VOUCHER = "100000000001"  # $50.00 at the simulator's Corner Bakery


async def test_gift_local_voucher_redeemed_by_keyboard_then_the_rest_when_short(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    gift_api = simulators.start("giftlocal")
    page = await open_page(lane_agents(giftlocal_toml(tmp_path, gift_api, BAKERY_KEY)))
    keyboard = page.keyboard
    await expect(page.locator("#scan-input")).to_be_focused()
    await keyboard.type(VOUCHER)
    await keyboard.press("Enter")

    await expect(page.locator("#gift-display")).to_have_text("••••••••0001")
    await expect(page.locator("#gift-value")).to_have_text("$50.00")
    await expect(page.locator("#gift-status")).to_contain_text("Redeemable")
    amount = page.locator("#redeem-amount")
    await expect(amount).to_be_focused()  # a redeemable gift takes the cashier to the amount
    await keyboard.type("12.50")
    await keyboard.press("Enter")
    redeemed = page.locator("#redeemed")
    await expect(redeemed).to_have_text("Redeemed $12.50; balance $37.50.")
    await expect(page.locator("#gift-value")).to_have_text("$37.50")
    assert (await sim_get(gift_api))["gifts"][VOUCHER]["balance"] == 3750

    # Back at the scan field; the tab order leads through Send to the amount.
    await expect(page.locator("#scan-input")).to_be_focused()
    await keyboard.press("Tab")
    await keyboard.press("Tab")
    await expect(amount).to_be_focused()
    await keyboard.type("60")
    await keyboard.press("Enter")
    await expect(page.locator("#alert")).to_contain_text("Redeem: Not enough balance")
    offer = page.locator("#offer-button")
    await expect(offer).to_have_text("Redeem $37.50")
    await expect(offer).to_be_focused()
    await screenshot(page, "gift-local-short")
    await keyboard.press("Enter")
    await expect(redeemed).to_have_text("Redeemed $37.50; balance $0.00.")
    await expect(page.locator("#alert")).to_be_hidden()
    await expect(page.locator("#gift-status")).to_contain_text("Not redeemable (used up)")
    await expect(page.locator("#redeem-button")).to_be_disabled()
    assert (await sim_get(gift_api))["gifts"][VOUCHER]["balance"] == 0
    assert VOUCHER not in await page.content()
    await screenshot(page, "gift-local")


async def test_gift_card_pays_what_it_holds_of_an_order(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    card_api: Running = simulators.start("kseries")
    page = await open_page(lane_agents(kseries_toml(tmp_path, card_api)))
    await enter_order(page, "K1", "Pizza; 17.00\nSoda; 3.00")
    await expect(page.locator("#order-status")).to_have_text("Order K1: $20.00, 2 lines, open")

    await scan(page, CARD_1250)
    await expect(page.locator("#gift-heading")).to_have_text("Gift card")
    await expect(page.locator("#gift-display")).to_have_text("••••••••••••0002")
    await expect(page.locator("#gift-value")).to_have_text("$12.50")
    amount = page.locator("#redeem-amount")
    await expect(amount).to_have_value("12.50")  # the balance, as the order is more
    await amount.fill("")  # empty: the whole rest of the order, more than the card holds
    await page.get_by_role("button", name="Pay with card").click()
    await expect(page.locator("#alert")).to_contain_text("Card payment: Not enough balance")
    offer = page.locator("#offer-button")
    await expect(offer).to_have_text("Pay $12.50 by card")
    await offer.click()
    await expect(page.locator("#redeemed")).to_have_text(
        "Paid $12.50 by card ••••••••••••0002; $7.50 left to pay."
    )
    await expect(page.locator("#gift-status")).to_contain_text("Not redeemable")

    await page.get_by_role("button", name="Order paid").click()
    await expect(page.locator("#order-status")).to_have_text("Order K1: $20.00, 2 lines, paid")
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_1250]["balance"] == 0
    assert [r["amount"] for r in ledger["redemptions"].values()] == [1250]
    assert CARD_1250 not in await page.content()
    await screenshot(page, "gift-card")
