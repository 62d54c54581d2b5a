"""Coupon (PETZ, seed 001) and loyalty (Punchh, seed 002) flows on the display page: the
customer or guest found by a keyed phone number, their discounts shown and chosen, and what the
providers' ledgers hold after the page marks the order paid; and a screen that joins mid-sale
rebuilding both panels from `order.get` as the screen that was there built them from events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from simulators.punchh import OAUTH_CLIENT
from tests.browser.conftest import PageOpener, enter_order, scan, screenshot
from tests.conftest import AgentFactory, Simulators, sim_get
from tests.integration.test_lane_agent import ProbeFactory, started
from tests.integration.test_seed_card_payment import ok
from tests.integration.test_seed_coupons import KIBBLE, PHONE, TREATS, basket, petz_toml, scan_phone
from tests.integration.test_seed_loyalty import ANA, ANA_PHONE, check, identify, punchh_toml

NEW_PHONE = "5550199999"  # nobody at the Punchh simulator
OTHER_PHONE = "5550199988"
ANA_EMAIL = "ana@example.com"  # a phone goes to the coupon flow when both are on the lane
# What the two panels show, but the look-up's check boxes: the agent does not keep the look-up.
# A part of a hidden panel is not shown either.
PANEL_PARTS = (
    "#coupon-customer",
    "#coupon-wallet",
    "#coupon-discounts",
    "#coupon-status",
    "#loyalty-guest",
    "#loyalty-rewards",
    "#loyalty-lines",
    "#loyalty-status",
)


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


async def panels(page: Page) -> list[dict[str, Any]]:
    """Each part of the coupon and loyalty panels: shown or not, its text and its colour."""
    parts: list[dict[str, Any]] = await page.evaluate(
        """(ids) => ids.map((id) => {
            const node = document.querySelector(id);
            return {id, shown: node.checkVisibility(), text: node.innerText,
                    tone: node.className};
        })""",
        list(PANEL_PARTS),
    )
    return parts


async def test_a_screen_joining_mid_sale_rebuilds_the_coupon_and_loyalty_panels(
    tmp_path: Path,
    lane_agents: AgentFactory,
    simulators: Simulators,
    open_page: PageOpener,
    probe_factory: ProbeFactory,
) -> None:
    """Coupons authorized and loyalty discounts checked over MQTT, as a POS does: a screen opened
    afterwards shows both panels as the screen that saw the events does, and both follow the
    payment the joined screen makes."""
    petz_api = simulators.start("petz")
    punchh_api = simulators.start("punchh")
    agent = lane_agents(petz_toml(tmp_path, petz_api) + punchh_toml(tmp_path, punchh_api))
    probe = await started(agent, probe_factory)
    there = await open_page(agent)
    ok(await probe.request("order.update", basket("M1", (KIBBLE, 1299), (TREATS, 1200), tax=200)))
    # Its read after order.updated is in: from here on its panels are built by the events.
    await expect(there.locator("#order-items tbody tr")).to_have_count(2)
    _, customer = await scan_phone(probe, PHONE)
    assert customer["type"] == "coupon.customer", customer
    ok(await probe.request("coupon.authorize", {"order_id": "M1"}))
    _, guest = await identify(probe, ANA_EMAIL)
    assert guest["type"] == "loyalty.user", guest
    checked = await check(
        probe,
        {"discount_type": "reward", "discount_id": "7001"},
        {"discount_type": "redeemable", "discount_id": "501"},
    )
    barcode = checked["barcode"]
    await expect(there.locator("#loyalty-status")).to_have_text(
        f"Checked: nothing is redeemed before the order is paid. Receipt barcode {barcode}."
    )

    joined = await open_page(agent)  # a POS screen restarted mid-sale: it knows nothing
    for page in (there, joined):
        await expect(page.locator("#coupon-customer")).to_have_text(
            "Customer ••••••••67 on order M1"
        )
        wallet = page.locator("#coupon-wallet li")
        await expect(wallet).to_have_count(3)
        await expect(wallet.first).to_contain_text("$2.00 off Acme Kibble 5 lb ($2.00 off, until")
        await expect(page.locator("#coupon-discounts tbody tr")).to_have_text(
            [
                re.compile(r"Kibble.*\$2\.00$"),
                re.compile(r"PupTreats\s*\$1\.80$"),
                re.compile(r"Catnip.*not applied"),
            ]
        )
        await expect(page.locator("#coupon-total")).to_have_text("$3.80")
        await expect(page.locator("#coupon-status")).to_have_text(
            "Authorized: apply the discounts, then take payment."
        )
        await expect(page.locator("#loyalty-guest")).to_have_text(
            "Ana (••••••••01): 240 points, $5.00 banked"
        )
        await expect(page.locator("#loyalty-rewards")).to_contain_text("Reward: Free Coffee")
        await expect(page.locator("#loyalty-lines tbody tr")).to_have_text(
            [re.compile(r"Free Coffee\s*-\$3\.50"), re.compile(r"\$5 Off\s*-\$5\.00")]
        )
        await expect(page.locator("#loyalty-total")).to_have_text("$8.50")
        await expect(page.locator("#loyalty-status")).to_have_text(
            f"Checked: nothing is redeemed before the order is paid. Receipt barcode {barcode}."
        )
    assert await panels(joined) == await panels(there)
    # The look-up's offers came only with loyalty.user: the joined screen says how to get them.
    await expect(there.get_by_role("checkbox")).to_have_count(len(guest["data"]["discounts"]))
    await expect(joined.get_by_role("checkbox")).to_have_count(0)
    await expect(joined.locator("#loyalty-discounts")).to_contain_text("Scan the guest again")
    await screenshot(joined, "coupons-loyalty-joined-mid-sale")

    # The rebuilt screen takes the payment; both screens show the capture and the receipt.
    await joined.get_by_role("button", name="Order paid").click()
    for page in (there, joined):
        await expect(page.locator("#order-status")).to_contain_text("Order M1: ")
        await expect(page.locator("#order-status")).to_contain_text("paid")
        await expect(page.locator("#coupon-status")).to_have_text(
            "Captured after payment: 2 coupon(s), $3.80 off."
        )
        await expect(page.locator("#loyalty-status")).to_have_text(
            re.compile(rf"^Receipt barcode {barcode}: guest checked in, \d+ points earned\.$")
        )
    assert await panels(joined) == await panels(there)
    petz = await sim_get(petz_api)
    assert sorted(r["coupon_id"] for r in petz["redemptions"]) == ["cpn_kibble2", "cpn_treats15"]
    punchh = await sim_get(punchh_api)
    assert len(punchh["redemptions"]) == 1 and len(punchh["checkins"]) == 1
    for page in (there, joined):
        content = await page.content()
        assert PHONE not in content and ANA_EMAIL not in content.lower()


async def test_a_new_guest_signs_in_by_code_and_another_signs_up(
    tmp_path: Path, lane_agents: AgentFactory, simulators: Simulators, open_page: PageOpener
) -> None:
    """Punchh identify (seed 002, step 5) on the page: a phone nobody has is offered a code
    and a sign-up; the code the guest "received" (the simulator's outbox) signs them in."""
    punchh_api = simulators.start("punchh")
    toml = punchh_toml(tmp_path, punchh_api) + f'oauth_client = "{OAUTH_CLIENT}"\n'
    page = await open_page(lane_agents(toml))
    await enter_order(page, "N1", "Burger; 10.00")

    await scan(page, NEW_PHONE)
    await expect(page.locator("#identify-contact")).to_have_text("No loyalty guest for ••••••••99.")
    await page.get_by_role("button", name="Send a code").click()
    await expect(page.locator("#identify-status")).to_have_text("Code sent by SMS to ••••••••99.")
    (message,) = (await sim_get(punchh_api))["otp_outbox"]
    await expect(page.locator("#otp-code")).to_be_focused()
    await page.keyboard.type(message["code"])
    await page.get_by_label("The guest agrees to the privacy policy and terms").first.check()
    await page.get_by_role("button", name="Verify code").click()
    await expect(page.locator("#loyalty-guest")).to_have_text(re.compile(r"^Guest \(••••••••99\)"))
    await expect(page.locator("#identify")).to_be_hidden()
    await screenshot(page, "loyalty-otp")

    await scan(page, OTHER_PHONE)
    await expect(page.locator("#identify-contact")).to_have_text("No loyalty guest for ••••••••88.")
    await page.locator("#signup-first").fill("Dee")
    await page.locator("#signup-terms").check()
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.locator("#loyalty-guest")).to_have_text(re.compile(r"^Dee \(••••••••88\)"))
    guests = (await sim_get(punchh_api))["guests"]
    assert len(guests) == 5  # the three seeded, one signed in by code, one signed up
    content = await page.content()
    assert NEW_PHONE not in content and OTHER_PHONE not in content
    assert message["code"] not in content
