"""The page as a K-Series web extension (seed 000): the POS's barcode or NFC read forwarded to
the agent, its order total sent as the order, the agent's card payment added with pos_addPayment
in cents with the payment method code, then back to checkout; a payment the POS refuses goes back
to the card.

The POS is tests/browser/pos_shim.js: its pos_* functions exist only inside the real POS app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from simulators.server import Running
from tests.browser.conftest import PageOpener, screenshot
from tests.conftest import AgentFactory, Simulators, sim_get
from tests.integration.test_lane_agent import BASE, ProbeFactory
from tests.integration.test_seed_card_payment import CARD_1250, kseries_toml

POS_SHIM = Path(__file__).with_name("pos_shim.js")
NFC_CARD = "04A1B2C3D4E5F6"  # the simulator's NFC card, known by its UID: $20.00


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


async def test_an_nfc_card_the_pos_reads_shows_its_balance_and_pays(
    tmp_path: Path,
    lane_agents: AgentFactory,
    simulators: Simulators,
    open_page: PageOpener,
    probe_factory: ProbeFactory,
) -> None:
    probe = await probe_factory(BASE)
    page, card_api = await card_page(tmp_path, lane_agents, simulators, open_page)
    # pos_onNFCEvent with the UID as a reader app prints it: lower case, bytes split by colons.
    await page.evaluate("window.__pos.tap('04:a1:b2:c3:d4:e5:f6')")

    _, sent = await probe.wait_for(lambda t, _d: t == f"{BASE}/request/scan.inject")
    assert sent["symbology"] == "nfc"
    _, scanned = await probe.wait_for(lambda t, _d: t == f"{BASE}/scan")
    assert (scanned["kind"], scanned["symbology"], scanned["value"]) == ("nfc_uid", "nfc", None)
    _, balance = await probe.wait_for(
        lambda t, d: t == f"{BASE}/event" and d.get("type") in ("card.balance", "card.invalid")
    )
    assert balance["type"] == "card.balance", balance
    card = balance["data"]["card"]
    assert (card["balance"], card["is_redeemable"]) == (2000, True)
    assert balance["data"]["token_id"] == scanned["token_id"]

    await expect(page.locator("#gift-heading")).to_have_text("Gift card")
    await expect(page.locator("#gift-value")).to_have_text("$20.00")
    await expect(page.locator("#scan-result")).to_have_text(f"{scanned['display']}: nfc uid")
    number = card["masked_number"]
    assert number.endswith("E5F6")
    assert await pos_calls(page, "pos_postMessage") == [
        [{"name": "lane-agent", "args": [f"Gift card {number}: $20.00"]}]
    ]
    amount = page.locator("#redeem-amount")
    await expect(amount).to_have_value("20.00")
    await expect(amount).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "window.__pos.calls.some((c) => c.name === 'pos_navigateToCheckoutView')"
    )
    assert await pos_calls(page, "pos_addPayment") == [[2000, "GIFTCARD"]]
    assert (await sim_get(card_api))["cards"][NFC_CARD]["balance"] == 0

    published = [p for t, p, _ in probe.messages if "/request/" not in t]
    assert not any(NFC_CARD.encode() in p or b"04:a1:b2" in p for p in published)
    content = await page.content()
    assert NFC_CARD not in content and "04:a1:b2" not in content
    await screenshot(page, "kseries-nfc")
