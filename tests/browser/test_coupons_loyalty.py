"""Coupon (PETZ, seed 001) and loyalty (Punchh, seed 002) flows on the display page: the
customer or guest found by a keyed phone number, their discounts shown and chosen, and what the
providers' ledgers hold after the page marks the order paid."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect

from tests.browser.conftest import PageOpener, enter_order, scan, screenshot
from tests.conftest import AgentFactory, Simulators, sim_get
from tests.integration.test_seed_coupons import KIBBLE, PHONE, TREATS, petz_toml
from tests.integration.test_seed_loyalty import ANA, ANA_PHONE, punchh_toml


async def test_petz_coupons_found_by_phone_authorized_and_captured_when_paid(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    petz_api = simulators.start("petz")
    page = await open_page(lane_agents(petz_toml(tmp_path, petz_api)))
    await enter_order(page, "P1", f"Kibble; 12.99; {KIBBLE}\nTreats; 12.00; {TREATS}", "2.00")
    await expect(page.locator("#order-status")).to_have_text("Order P1: $26.99, 2 lines, open")

    await scan(page, PHONE)
    await expect(page.locator("#coupon-customer")).to_have_text("Customer ••••••••67 on order P1")
    wallet = page.locator("#coupon-wallet li")
    await expect(wallet).to_have_count(3)
    await expect(wallet.first).to_contain_text("$2.00 off Acme Kibble 5 lb ($2.00 off, until")

    await page.get_by_role("button", name="Authorize coupons").click()
    rows = page.locator("#coupon-discounts tbody tr")
    await expect(rows).to_have_text(
        [
            re.compile(r"Kibble.*\$2\.00$"),
            re.compile(r"PupTreats\s*\$1\.80$"),
            re.compile(r"Catnip.*not applied"),
        ]
    )
    await expect(page.locator("#coupon-total")).to_have_text("$3.80")
    await screenshot(page, "coupons-authorized")

    await page.get_by_role("button", name="Order paid").click()
    await expect(page.locator("#coupon-status")).to_have_text(
        "Captured after payment: 2 coupon(s), $3.80 off."
    )
    await expect(page.locator("#order-steps")).to_contain_text("coupons capture: done")
    await expect(page.locator("#order-status")).to_contain_text("paid")
    ledger = await sim_get(petz_api)
    assert sorted(r["coupon_id"] for r in ledger["redemptions"]) == ["cpn_kibble2", "cpn_treats15"]
    assert [a["status"] for a in ledger["authorizations"].values()] == ["captured"]
    assert ledger["consumers"]["c_1001"]["wallet"] == ["cpn_catnip1"]
    assert PHONE not in await page.content()
    await screenshot(page, "coupons")


async def test_punchh_guest_discounts_checked_then_committed_when_paid(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    punchh_api = simulators.start("punchh")
    page = await open_page(lane_agents(punchh_toml(tmp_path, punchh_api)))
    await enter_order(page, "L1", "Burger; 10.00\nFries; 5.00", "1.20")

    await scan(page, ANA_PHONE)
    await expect(page.locator("#loyalty-guest")).to_have_text(
        "Ana (••••••••01): 240 points, $5.00 banked"
    )
    await expect(page.locator("#loyalty-rewards")).to_contain_text("Reward: Free Coffee")
    coffee = page.get_by_role("checkbox", name=re.compile("^Free Coffee: \\$3\\.50"))
    five_off = page.get_by_role("checkbox", name=re.compile("^\\$5 Off: \\$5\\.00"))
    # Keyboard only: Space ticks a box, Tab moves on, Enter sends the form.
    await coffee.focus()
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    await expect(five_off).to_be_focused()
    await page.keyboard.press("Space")
    await expect(coffee).to_be_checked()
    await expect(five_off).to_be_checked()
    await page.keyboard.press("Enter")

    rows = page.locator("#loyalty-lines tbody tr")
    await expect(rows).to_have_text(
        [re.compile(r"Free Coffee\s*-\$3\.50"), re.compile(r"\$5 Off\s*-\$5\.00")]
    )
    await expect(page.locator("#loyalty-total")).to_have_text("$8.50")
    await expect(page.locator("#loyalty-status")).to_contain_text("Receipt barcode")
    assert (await sim_get(punchh_api))["redemptions"] == {}  # checked, nothing redeemed yet
    await screenshot(page, "loyalty-checked")

    await page.get_by_role("button", name="Order paid").click()
    await expect(page.locator("#loyalty-status")).to_have_text(
        re.compile(r"^Receipt barcode \d{13}: guest checked in, \d+ points earned\.$")
    )
    steps = page.locator("#order-steps li")
    await expect(steps).to_have_text(
        [
            re.compile("^loyalty commit: done"),
            re.compile("^loyalty checkin: done"),
            re.compile("^loyalty receipt: done"),
        ]
    )
    ledger = await sim_get(punchh_api)
    assert ledger["guests"][ANA]["rewards"] == []  # the Free Coffee was used
    assert len(ledger["redemptions"]) == 1 and len(ledger["checkins"]) == 1
    assert ANA_PHONE not in await page.content()
    await screenshot(page, "loyalty")
