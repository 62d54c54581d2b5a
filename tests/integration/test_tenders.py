"""Every tender belongs to the order, driven over MQTT as a POS would: a voucher (sandbox ledger)
and a gift card (the card API simulator) on one lane. A voided or replaced order leaves no
voucher spent, a paid order can be refunded, `gift.reverse` goes to whoever took the
transaction (closed orders too), and a screen restarted mid-sale rebuilds from `order.get`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulators.server import Running
from tests.conftest import AgentFactory, AgentProcess, Probe, sim_get
from tests.integration.test_lane_agent import BASE, MONETARY, ProbeFactory, started
from tests.integration.test_orders import event, order
from tests.integration.test_seed_card_payment import (
    CARD_5000,
    card_api,
    kseries_toml,
    ok,
    scan_card,
)

__all__ = ["card_api"]  # the fixture, used by name


@pytest.fixture
def agent_process(tmp_path: Path, lane_agents: AgentFactory, card_api: Running) -> AgentProcess:
    return lane_agents(kseries_toml(tmp_path, card_api))


def published(probe: Probe) -> str:
    """What the agent published (the POS's own requests carry the code it keyed)."""
    return "\n".join(p.decode() for t, p, _ in probe.messages if "/request/" not in t)


async def voucher(probe: Probe, code: str = MONETARY) -> str:
    answer = ok(await probe.request("scan.inject", {"data": code}))
    token_id: str = answer["token_id"]
    await probe.topic("event", lambda d: d["type"] == "gift.validated")
    return token_id


async def balance(probe: Probe, token_id: str) -> int:
    gift: dict[str, Any] = ok(await probe.request("gift.validate", {"token_id": token_id}))["gift"]
    return int(gift["balance"])


async def test_void_reverses_the_vouchers_redeemed_for_the_order(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    gift = await voucher(probe)
    before = await balance(probe, gift)
    ok(await probe.request("order.update", order("V1", 3000)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 1200}))
    assert await balance(probe, gift) == before - 1200

    voided = ok(await probe.request("order.void", {"order_id": "V1"}))
    assert [(s["flow"], s["step"], s["ok"]) for s in voided["steps"]] == [("gift", "reverse", True)]
    reversed_ = await probe.topic("event", lambda d: d["type"] == "gift.reversed")
    assert reversed_["data"]["order_id"] == "V1"
    assert reversed_["data"]["display"].endswith(MONETARY[-4:])
    assert MONETARY not in published(probe)
    assert await balance(probe, gift) == before


async def test_a_replaced_order_leaves_no_voucher_spent(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    gift = await voucher(probe)
    before = await balance(probe, gift)
    ok(await probe.request("order.update", order("R1", 3000)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 700}))
    ok(await probe.request("order.update", order("R2", 100)))
    abandoned = await event(probe, "order.abandoned", "R1")
    assert [(s["flow"], s["ok"]) for s in abandoned["steps"]] == [("gift", True)]
    assert await balance(probe, gift) == before


async def test_card_paid_order_paid_then_refunded_puts_the_money_back(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    card, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("F1", 1800, tax=200)))
    ok(await probe.request("gift.redeem", {"token_id": card}))
    ok(await probe.request("order.paid", {"order_id": "F1"}))
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 3000

    refunded = ok(await probe.request("order.refund", {"order_id": "F1"}))
    assert refunded["order"]["status"] == "refunded"
    assert [(s["flow"], s["step"], s["ok"]) for s in refunded["steps"]] == [
        ("card", "reverse", True)
    ]
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 5000
    await event(probe, "order.refunded", "F1")
    back = await probe.topic("event", lambda d: d["type"] == "card.reversed")
    assert (back["data"]["order_id"], back["data"]["reversal"]["amount"]) == ("F1", 2000)
    again = ok(await probe.request("order.refund", {"order_id": "F1"}))
    assert again["reason"] == "already refunded" and again["steps"] == []
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 5000


async def test_refund_of_named_tenders_and_reverse_after_payment(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    """`gift.reverse` finds a card payment of a closed order; a refund names one tender."""
    probe = await started(agent_process, probe_factory)
    card, _ = await scan_card(probe, CARD_5000)
    gift = await voucher(probe)
    before = await balance(probe, gift)
    ok(await probe.request("order.update", order("N1", 2000)))
    redeemed = ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 500}))
    paid = ok(await probe.request("gift.redeem", {"token_id": card, "amount": 1500}))
    ok(await probe.request("order.paid", {"order_id": "N1"}))

    voucher_tx = redeemed["redemption"]["transaction_id"]
    partial = ok(
        await probe.request("order.refund", {"order_id": "N1", "transaction_ids": [voucher_tx]})
    )
    assert partial["order"]["status"] == "paid"
    assert [(s["flow"], s["ok"]) for s in partial["steps"]] == [("gift", True)]
    assert await balance(probe, gift) == before
    twice = await probe.request("order.refund", {"order_id": "N1", "transaction_ids": [voucher_tx]})
    assert twice["error"]["code"] == "already_reversed"

    card_tx = paid["card"]["transaction_id"]
    back = ok(await probe.request("gift.reverse", {"transaction_id": card_tx}))
    assert back["card"]["amount"] == 1500
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 5000
    await probe.topic("event", lambda d: d["type"] == "card.reversed")
    nobody = await probe.request("gift.reverse", {"transaction_id": "txn-of-another-lane"})
    assert nobody["error"]["code"] == "not_found"
    assert "not taken on this lane" in nobody["error"]["message"]


async def test_a_screen_reconnecting_mid_sale_gets_the_order_from_order_get(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    card, _ = await scan_card(probe, CARD_5000)
    gift = await voucher(probe)
    ok(await probe.request("order.update", order("G1", 1500, 1000, tax=250)))
    ok(await probe.request("gift.redeem", {"token_id": gift, "amount": 1000}))
    ok(await probe.request("gift.redeem", {"token_id": card, "amount": 600}))

    screen = await probe_factory(BASE)  # a POS screen restarted: it knows nothing
    view = ok(await screen.request("order.get", {}))
    assert (view["order"]["order_id"], view["order"]["total"]) == ("G1", 2750)
    assert [line["id"] for line in view["lines"]] == ["1", "2"]
    assert [(t["flow"], t["amount"], t["state"]) for t in view["tenders"]] == [
        ("gift", 1000, "taken"),
        ("card", 600, "taken"),
    ]
    assert all(t["transaction_id"] for t in view["tenders"])
    assert view["tenders"][1]["display"].endswith(CARD_5000[-4:])
    assert (view["paid"], view["left_to_pay"]) == (1600, 1150)
    assert CARD_5000 not in published(screen)
    assert MONETARY not in published(screen)

    ok(await probe.request("order.void", {"order_id": "G1"}))
    none = await screen.request("order.get", {})
    assert none["error"]["code"] == "not_found"
    closed = ok(await screen.request("order.get", {"order_id": "G1"}))
    assert closed["order"]["status"] == "void"
    assert {t["state"] for t in closed["tenders"]} == {"reversed"}
