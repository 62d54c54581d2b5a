"""The order owns every tender, in-process: Gift Local vouchers and K-Series card payments on one
lane, through the real router, flows, order desk and outbox, the simulators behind the
in-process transport (tests/lane.py). The same lifecycle over MQTT, with processes, is
tests/integration/test_tenders.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ErrorCode
from simulators.giftlocal import GiftLocalSimulator
from simulators.kseries import CardSimulator
from simulators.server import Fault
from tests.lane import InProcessLane

VOUCHER = "100000000001"  # Gift Local, bakery account: 50.00 USD
OTHER_VOUCHER = "012345678901"  # 30.00 USD, a leading zero
CARD = "6006490000000001"  # 50.00 USD
REVERSAL = r"/api/integration/redemption/reverse-redemption"


def order(order_id: str, *amounts: int, tax: int = 0) -> dict[str, Any]:
    lines = [
        {"id": str(n), "name": f"Item {n}", "quantity": 1, "amount": amount}
        for n, amount in enumerate(amounts, start=1)
    ]
    total = sum(amounts) + tax
    return {"order_id": order_id, "lines": lines, "subtotal": sum(amounts), "tax": tax,
            "total": total, "currency": "USD"}  # fmt: skip


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[InProcessLane]:
    made = InProcessLane(
        tmp_path,
        {"giftlocal": GiftLocalSimulator(), "kseries": CardSimulator()},
        flows={"routes": {"loyalty_card": "card"}},
    )
    yield made
    await made.close()


def voucher_balance(lane: InProcessLane, code: str = VOUCHER) -> int:
    balance: int = lane.ledger("giftlocal")["gifts"][code]["balance"]
    return balance


def card_balance(lane: InProcessLane) -> int:
    balance: int = lane.ledger("kseries")["cards"][CARD]["balance"]
    return balance


async def redeem(lane: InProcessLane, code: str, amount: int) -> str:
    token = await lane.scan(code)
    answer = await lane.ok("gift.redeem", token_id=token, amount=amount)
    tx = (answer.get("redemption") or answer["card"])["transaction_id"]
    assert isinstance(tx, str)
    return tx


async def test_void_reverses_voucher_redemptions(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("V1", 3000))
    await redeem(lane, VOUCHER, 1200)
    await redeem(lane, OTHER_VOUCHER, 300)
    assert (voucher_balance(lane), voucher_balance(lane, OTHER_VOUCHER)) == (3800, 2700)

    voided = await lane.ok("order.void", order_id="V1")
    assert [(s["flow"], s["step"], s["ok"]) for s in voided["steps"]] == [
        ("gift", "reverse", True),
        ("gift", "reverse", True),
    ]
    assert (voucher_balance(lane), voucher_balance(lane, OTHER_VOUCHER)) == (5000, 3000)
    assert [e["order_id"] for e in lane.events("gift.reversed")] == ["V1", "V1"]
    view = await lane.ok("order.get", order_id="V1")
    assert [t["state"] for t in view["tenders"]] == ["reversed", "reversed"]


async def test_a_voucher_redeemed_with_no_order_belongs_to_none(lane: InProcessLane) -> None:
    """Only gift.reverse gives it back; a later order's void does not touch it."""
    tx = await redeem(lane, VOUCHER, 500)
    await lane.ok("order.update", **order("L1", 100))
    await lane.ok("order.void", order_id="L1")
    assert voucher_balance(lane) == 4500
    await lane.ok("gift.reverse", transaction_id=tx)
    assert voucher_balance(lane) == 5000


async def test_a_replaced_order_gives_back_vouchers_and_card_payments(
    lane: InProcessLane,
) -> None:
    await lane.ok("order.update", **order("R1", 3000))
    await redeem(lane, VOUCHER, 700)
    await redeem(lane, CARD, 900)
    replaced = await lane.ok("order.update", **order("R2", 100))
    assert replaced["replaced"] == "R1"
    (abandoned,) = [
        p["data"] for t, p in lane.published() if p and p.get("type") == "order.abandoned"
    ]
    assert [(s["flow"], s["ok"]) for s in abandoned["steps"]] == [("gift", True), ("card", True)]
    assert (voucher_balance(lane), card_balance(lane)) == (5000, 5000)


async def test_a_reversal_lost_on_the_way_is_retried_until_done(lane: InProcessLane) -> None:
    """The void's reversal of a voucher fails (provider down): the order is void at once, the
    step is queued, and the outbox gives the voucher back when the provider answers again."""
    await lane.ok("order.update", **order("Q1", 3000))
    await redeem(lane, VOUCHER, 1000)
    await redeem(lane, CARD, 500)
    lane.simulators["giftlocal"].arm([Fault(path=REVERSAL, kind="error", status=503)])
    voided = await lane.ok("order.void", order_id="Q1")
    # The card's part waits behind the voucher's: an order's work is done in order.
    assert voided["order"]["status"] == "void" and voided["queued"] == ["gift", "card"]
    assert [(s["flow"], s["ok"]) for s in voided["steps"]] == [("gift", False)]
    assert (voucher_balance(lane), card_balance(lane)) == (4000, 4500)
    for entry in lane.agent.orders.outbox.entries(order_id="Q1"):
        await lane.agent.orders.worker.deliver(entry)
    assert (voucher_balance(lane), card_balance(lane)) == (5000, 5000)
    # `outbox.delivered` tells of work that had failed; the card's had only waited.
    assert [e["entry"]["flow"] for e in lane.events("outbox.delivered")] == ["gift"]


async def test_refund_whole_then_again_gives_money_back_once(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("F1", 1500, 500))
    await redeem(lane, VOUCHER, 800)
    await redeem(lane, CARD, 1200)
    await lane.refused(ErrorCode.INVALID_REQUEST, "order.refund", order_id="F1")  # open
    await lane.ok("order.paid", order_id="F1")
    refunded = await lane.ok("order.refund", order_id="F1")
    assert refunded["order"]["status"] == "refunded"
    assert [(s["flow"], s["ok"]) for s in refunded["steps"]] == [("gift", True), ("card", True)]
    assert (voucher_balance(lane), card_balance(lane)) == (5000, 5000)
    again = await lane.ok("order.refund", order_id="F1")
    assert (again["reason"], again["steps"]) == ("already refunded", [])
    assert len(lane.ledger("kseries")["reversals"]) == 1
    assert len(lane.events("order.refunded")) == 1  # the repeat only answers
    assert len(lane.events("card.reversed")) == 1


async def test_refund_of_named_tenders(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("N1", 2000))
    voucher_tx = await redeem(lane, VOUCHER, 500)
    await redeem(lane, CARD, 1500)
    await lane.ok("order.paid", order_id="N1")
    error = await lane.refused(
        ErrorCode.NOT_FOUND, "order.refund", order_id="N1", transaction_ids=["nope"]
    )
    assert "not a tender of order N1" in error.message
    partial = await lane.ok("order.refund", order_id="N1", transaction_ids=[voucher_tx])
    assert partial["order"]["status"] == "paid"
    assert (voucher_balance(lane), card_balance(lane)) == (5000, 3500)
    await lane.refused(
        ErrorCode.ALREADY_REVERSED, "order.refund", order_id="N1", transaction_ids=[voucher_tx]
    )
    rest = await lane.ok("order.refund", order_id="N1")
    assert [(s["flow"], s["ok"]) for s in rest["steps"]] == [("card", True)]
    assert card_balance(lane) == 5000


async def test_gift_reverse_goes_to_the_owner_of_the_transaction(lane: InProcessLane) -> None:
    """A card payment of a paid order is no Gift Local redemption (it fell through to Gift
    Local before, which refused the id as no UUID); an id nobody owns is not_found."""
    await lane.ok("order.update", **order("P1", 1000))
    card_tx = await redeem(lane, CARD, 1000)
    await lane.ok("order.paid", order_id="P1")
    await lane.ok("order.update", **order("P2", 1000))  # another order is open now
    back = await lane.ok("gift.reverse", transaction_id=card_tx)
    assert back["card"]["amount"] == 1000 and card_balance(lane) == 5000
    assert lane.events("card.reversed")[0]["order_id"] == "P1"
    await lane.refused(ErrorCode.ALREADY_REVERSED, "gift.reverse", transaction_id=card_tx)
    error = await lane.refused(ErrorCode.NOT_FOUND, "gift.reverse", transaction_id="tx-elsewhere")
    assert "not taken on this lane" in error.message
    assert not lane.simulators["giftlocal"].requests  # nothing was tried at Gift Local


async def test_order_get_rebuilds_a_screen_mid_sale(lane: InProcessLane) -> None:
    await lane.refused(ErrorCode.NOT_FOUND, "order.get")
    await lane.ok("order.update", **order("G1", 1500, 1000, tax=250))
    await redeem(lane, VOUCHER, 1000)
    await redeem(lane, CARD, 600)
    view = await lane.ok("order.get")
    assert (view["order"]["order_id"], view["paid"], view["left_to_pay"]) == ("G1", 1600, 1150)
    assert [(t["flow"], t["provider"], t["amount"], t["state"]) for t in view["tenders"]] == [
        ("gift", "giftlocal", 1000, "taken"),
        ("card", "kseries", 600, "taken"),
    ]
    shown = str(view)
    assert VOUCHER not in shown and CARD not in shown
    assert view["tenders"][0]["display"].endswith(VOUCHER[-4:])
