"""The order panel rebuilt from `order.get`: a screen that joins mid-sale, one that missed
events while its broker connection was down, and one opened while its agent was down show the
open order, its tenders (masked) and what is left to pay; a void shows every tender given back.

The sale is driven over MQTT as a POS would (the probe), before the page connects or while it is
cut off, so only the page's `order.get` can tell it what happened."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.conftest import Cable, PageOpener, screenshot
from tests.conftest import AgentFactory, Probe, Simulators, sim_get
from tests.integration.test_lane_agent import BASE, MONETARY, ProbeFactory, started
from tests.integration.test_orders import order
from tests.integration.test_seed_card_payment import CARD_5000, kseries_toml, ok, scan_card

VOUCHER_25 = "100000000002"  # sandbox demo gift: $25.00


async def voucher(probe: Probe, code: str) -> str:
    """Scan a voucher as the POS does; its token once the agent has validated it."""
    token_id: str = ok(await probe.request("scan.inject", {"data": code}))["token_id"]
    await probe.topic(
        "event", lambda d: d["type"] == "gift.validated" and d["data"]["token_id"] == token_id
    )
    return token_id


async def balance(probe: Probe, token_id: str) -> int:
    gift: dict[str, Any] = ok(await probe.request("gift.validate", {"token_id": token_id}))["gift"]
    return int(gift["balance"])


def tender_cells(page: Page) -> Any:
    """Each tender's row as three cells: what paid (masked), the amount, its state."""
    return expect(page.locator("#order-tenders tbody td"))


async def test_a_screen_joining_mid_sale_shows_the_order_and_its_tenders_then_the_void(
    tmp_path: Path,
    lane_agents: AgentFactory,
    simulators: Simulators,
    open_page: PageOpener,
    probe_factory: ProbeFactory,
) -> None:
    card_api = simulators.start("kseries")
    agent = lane_agents(kseries_toml(tmp_path, card_api))
    probe = await started(agent, probe_factory)
    card, _ = await scan_card(probe, CARD_5000)
    gift = await voucher(probe, MONETARY)
    ok(await probe.request("order.update", order("G1", 1500, 1000, tax=250)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 1000}))
    ok(await probe.request("gift.redeem", {"token_id": card, "amount": 600}))

    start = len(probe.messages)
    page = await open_page(agent)  # a POS screen restarted mid-sale: it knows nothing
    _, asked = await probe.wait_for(lambda t, _d: t == f"{BASE}/request/order.get", start=start)
    assert "order_id" not in asked  # the open order, whichever it is

    status = page.locator("#order-status")
    await expect(status).to_have_text("Order G1: $27.50, 2 lines, open")
    await expect(page.locator("#order-items tbody td")).to_have_text(
        ["Item 1", "1", "$15.00", "Item 2", "1", "$10.00"]
    )
    await expect(page.locator("#order-view-tax")).to_have_text("$2.50")
    await expect(page.locator("#order-view-total")).to_have_text("$27.50")
    await tender_cells(page).to_have_text(
        [
            "Gift voucher ••••••••0001",
            "$10.00",
            "taken",
            "Gift card ••••••••••••0001",
            "$6.00",
            "taken",
        ]
    )
    await expect(page.locator("#order-due")).to_have_text("Paid $16.00; left to pay $11.50.")
    await expect(page.get_by_role("button", name="Void order")).to_be_enabled()
    content = await page.content()
    assert MONETARY not in content and CARD_5000 not in content
    await screenshot(page, "order-joined-mid-sale")

    # The rebuilt page knows the order well enough to void it; both tenders go back.
    await page.get_by_role("button", name="Void order").click()
    await expect(status).to_have_text("Order G1: $27.50, 2 lines, voided")
    steps = page.locator("#order-steps")
    await expect(steps).to_contain_text("gift reverse: done. voucher ••••••••0001")
    await expect(steps).to_contain_text("card reverse: done.")
    await tender_cells(page).to_have_text(
        [
            "Gift voucher ••••••••0001",
            "$10.00",
            "given back",
            "Gift card ••••••••••••0001",
            "$6.00",
            "given back",
        ]
    )
    await expect(page.locator("#order-due")).to_have_text("Every payment given back.")
    await expect(page.get_by_role("button", name="Void order")).to_be_disabled()
    await expect(page.get_by_role("button", name="Order paid")).to_be_disabled()
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 5000
    assert await balance(probe, gift) == 5000
    content = await page.content()
    assert MONETARY not in content and CARD_5000 not in content
    await screenshot(page, "order-voided")


async def test_a_screen_that_lost_the_broker_catches_up_when_it_reconnects(
    lane_agents: AgentFactory, open_page: PageOpener, probe_factory: ProbeFactory
) -> None:
    cable = Cable()
    probe = await probe_factory(BASE)
    page = await open_page(lane_agents(""), before_load=cable.attach)  # the sandbox ledger
    await expect(page.locator("#order-status")).to_have_text("No open order")
    first = await voucher(probe, MONETARY)
    second = await voucher(probe, VOUCHER_25)
    ok(await probe.request("order.update", order("R1", 6000)))
    ok(await probe.request("gift.redeem", {"token_id": first, "amount": 1500}))
    await tender_cells(page).to_have_text(["Gift voucher ••••••••0001", "$15.00", "taken"])
    due = page.locator("#order-due")
    await expect(due).to_have_text("Paid $15.00; left to pay $45.00.")

    # Away while a tender is taken: the event never reaches the page.
    connection = page.locator("#connection")
    await cable.cut()
    await expect(connection).not_to_have_text("Broker: connected")
    ok(await probe.request("gift.redeem", {"token_id": second, "amount": 2500}))
    cable.mend()
    await expect(connection).to_have_text("Broker: connected")
    taken = ["Gift voucher ••••••••0001", "$15.00", "taken"]
    taken += ["Gift voucher ••••••••0002", "$25.00", "taken"]
    await tender_cells(page).to_have_text(taken)
    await expect(due).to_have_text("Paid $40.00; left to pay $20.00.")

    # The connection drops with the answer to the page's read after an event: the read is
    # given up with it, and the page reads again as soon as it is back (not 30 s later).
    cable.cut_at(f"{BASE}/response/order.get")
    start = len(probe.messages)
    ok(await probe.request("gift.redeem", {"token_id": first, "amount": 1000}))
    await expect(connection).not_to_have_text("Broker: connected")
    _, read = await probe.wait_for(lambda t, _d: t == f"{BASE}/request/order.get", start=start)
    assert read["order_id"] == "R1"
    assert cable.lost and read["request_id"].encode() in cable.lost[0]
    cable.mend()
    await expect(connection).to_have_text("Broker: connected")
    taken += ["Gift voucher ••••••••0001", "$10.00", "taken"]
    await tender_cells(page).to_have_text(taken)
    await expect(due).to_have_text("Paid $50.00; left to pay $10.00.")
    await expect(page.locator("#alert")).to_be_hidden()

    # Away while the order is voided: no open order any more, so the page shows how it ended.
    await cable.cut()
    await expect(connection).not_to_have_text("Broker: connected")
    ok(await probe.request("order.void", {"order_id": "R1"}))
    cable.mend()
    await expect(connection).to_have_text("Broker: connected")
    await expect(page.locator("#order-status")).to_have_text("Order R1: $60.00, 1 line, voided")
    await tender_cells(page).to_have_text([cell.replace("taken", "given back") for cell in taken])
    await expect(due).to_have_text("Every payment given back.")
    assert (await balance(probe, first), await balance(probe, second)) == (5000, 2500)
    await screenshot(page, "order-reconnected")


async def test_a_screen_opened_while_the_agent_is_down_shows_the_order_once_it_is_back(
    lane_agents: AgentFactory, open_page: PageOpener, probe_factory: ProbeFactory
) -> None:
    agent = lane_agents("")  # the sandbox ledger
    probe = await started(agent, probe_factory)
    gift = await voucher(probe, MONETARY)
    ok(await probe.request("order.update", order("A1", 2000, 1000, tax=100)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 1200}))
    start = len(probe.messages)
    agent.signal(signal.SIGKILL)  # the broker publishes the agent's last will
    await probe.topic("state", lambda d: d["state"] == "offline", start=start)

    page = await open_page(None, width=360, height=740)
    await expect(page.locator("#agent-state")).to_have_text(re.compile(r"^Agent: offline"))
    await expect(page.locator("#order-status")).to_have_text("No open order")
    agent.start()  # the open order and its tenders are on the agent's disk
    await expect(page.locator("#agent-state")).to_have_text(re.compile(r"^Agent: online"))
    await expect(page.locator("#order-status")).to_have_text("Order A1: $31.00, 2 lines, open")
    await tender_cells(page).to_have_text(["Gift voucher ••••••••0001", "$12.00", "taken"])
    await expect(page.locator("#order-due")).to_have_text("Paid $12.00; left to pay $19.00.")
    assert MONETARY not in await page.content()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px screen"
    await screenshot(page, "order-agent-back-small-screen")


async def test_a_refunded_order_shows_refunded_and_its_voucher_given_back(
    lane_agents: AgentFactory, open_page: PageOpener, probe_factory: ProbeFactory
) -> None:
    probe = await probe_factory(BASE)
    page = await open_page(lane_agents(""))  # the sandbox ledger
    gift = await voucher(probe, MONETARY)
    await expect(page.locator("#gift-display")).to_have_text("••••••••0001")
    ok(await probe.request("order.update", order("F1", 3000)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 3000}))
    await expect(page.locator("#redeemed")).to_have_text("Redeemed $30.00; balance $20.00.")
    status = page.locator("#order-status")
    due = page.locator("#order-due")
    await expect(due).to_have_text("Paid $30.00; nothing left to pay.")
    await page.get_by_role("button", name="Order paid").click()
    await expect(status).to_have_text("Order F1: $30.00, 1 line, paid")
    await expect(due).to_have_text("Taken on this lane: $30.00.")

    ok(await probe.request("order.refund", {"order_id": "F1"}))  # from the back office
    await expect(status).to_have_text("Order F1: $30.00, 1 line, refunded")
    steps = page.locator("#order-steps")
    await expect(steps).to_contain_text("refund of the whole order")
    await expect(steps).to_contain_text("gift reverse: done. voucher ••••••••0001")
    await tender_cells(page).to_have_text(["Gift voucher ••••••••0001", "$30.00", "given back"])
    await expect(due).to_have_text("Every payment given back.")
    await expect(page.locator("#redeemed")).to_have_text(
        "Reversed: $30.00 back on gift ••••••••0001."
    )
    await expect(page.locator("#gift-value")).to_have_text("$50.00")
    await expect(page.get_by_role("button", name="Void order")).to_be_disabled()
    assert await balance(probe, gift) == 5000
    await screenshot(page, "order-refunded")
