"""K-Series receipt notifications settle the lane's card payments, in-process: the receiver's
own logic (authentication, reading, the lane ops it chooses) over the real router, card flow
and order desk, the card API simulator behind the in-process transport. The same over a real
broker, the agent process and HTTP is tests/integration/test_kseries_notify.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.contract import Response
from agent.kseries_notify import CardOrders, Receiver, card_paid
from agent.secrets import Secret
from simulators.kseries import CardSimulator, ReceiptNotifier
from tests.flows.test_tenders import order
from tests.lane import InProcessLane

CARD = "6006490000000001"  # 50.00 USD
USER, PASSWORD = "kseries", "s3cret-webhook"
GOOD = {"authorization": "Basic a3NlcmllczpzM2NyZXQtd2ViaG9vaw=="}  # kseries:s3cret-webhook
FORGED = {"authorization": "Basic a3NlcmllczpndWVzcw=="}  # kseries:guess


class LaneAsker:
    """The receiver's `Lanes` over the in-process lane (store s1, lane l1)."""

    def __init__(self, lane: InProcessLane) -> None:
        self.lane = lane
        self.asked: list[tuple[str, str]] = []

    async def ask(
        self, store: str, lane: str, op: str, params: Mapping[str, Any], request_id: str
    ) -> Response:
        assert (store, lane) == ("s1", "l1")
        self.asked.append((op, request_id))
        return await self.lane.ask(op, request_id, **params)


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[InProcessLane]:
    made = InProcessLane(
        tmp_path / "lane", {"kseries": CardSimulator()}, flows={"routes": {"loyalty_card": "card"}}
    )
    yield made
    await made.close()


@pytest.fixture
def index(tmp_path: Path) -> CardOrders:
    return CardOrders(tmp_path / "notify" / "card-orders.sqlite")


def receiver(lane: InProcessLane, index: CardOrders) -> tuple[Receiver, LaneAsker]:
    asker = LaneAsker(lane)
    return Receiver(index, asker, USER, Secret(PASSWORD)), asker


async def pay_by_card(lane: InProcessLane, index: CardOrders, order_id: str, amount: int) -> None:
    """A card payment on the lane, and its `card.paid` event read into the index as the
    receiver reads it from the broker."""
    await lane.ok("order.update", **order(order_id, 2000))
    token = await lane.scan(CARD)
    await lane.ok("gift.redeem", token_id=token, amount=amount)
    for message in lane.agent.bus.outgoing():
        paid = card_paid(message.topic, message.payload, "lane-agent")
        if paid is not None:
            index.record(*paid)
    assert index.lanes(order_id) == [("s1", "l1")]


def body(account: str, kind: str, **extra: Any) -> bytes:
    return json.dumps(ReceiptNotifier.payload(account, kind, **extra)).encode()  # type: ignore[arg-type]


def card_balance(lane: InProcessLane) -> int:
    balance: int = lane.ledger("kseries")["cards"][CARD]["balance"]
    return balance


async def test_a_voided_receipt_gives_the_card_payment_back_once(
    lane: InProcessLane, index: CardOrders
) -> None:
    rtn, asker = receiver(lane, index)
    await pay_by_card(lane, index, "A1.1", 1500)
    assert card_balance(lane) == 3500

    assert await rtn.receive(FORGED, body("A1.1", "voided")) == (401, "unauthorized")
    assert await rtn.receive({}, body("A1.1", "voided")) == (401, "unauthorized")
    assert asker.asked == [] and card_balance(lane) == 3500  # a forgery moves nothing

    status, text = await rtn.receive(GOOD, body("A1.1", "voided"))
    assert (status, text) == (200, "s1/l1: order.void ok")
    assert card_balance(lane) == 5000
    assert len(lane.ledger("kseries")["reversals"]) == 1

    again = await rtn.receive(GOOD, body("A1.1", "voided"))  # K-Series delivers it again
    assert again == (200, "s1/l1: order already void")
    assert len(lane.ledger("kseries")["reversals"]) == 1
    assert [op for op, _ in asker.asked] == ["order.get", "order.void", "order.get"]


async def test_finalized_closes_the_order_and_a_later_void_refunds_it(
    lane: InProcessLane, index: CardOrders
) -> None:
    rtn, _ = receiver(lane, index)
    await pay_by_card(lane, index, "A2.1", 2000)
    assert await rtn.receive(GOOD, body("A2.1", "finalized")) == (200, "s1/l1: order.paid ok")
    view = await lane.ok("order.get", order_id="A2.1")
    assert view["order"]["status"] == "paid" and card_balance(lane) == 3000
    assert await rtn.receive(GOOD, body("A2.1", "finalized")) == (
        200,
        "s1/l1: order already paid",
    )
    # Voided after it was finalized: the paid order is refunded whole.
    assert await rtn.receive(GOOD, body("A2.1", "voided")) == (200, "s1/l1: order.refund ok")
    assert card_balance(lane) == 5000
    assert await rtn.receive(GOOD, body("A2.1", "voided")) == (
        200,
        "s1/l1: order already refunded",
    )
    assert len(lane.ledger("kseries")["reversals"]) == 1


async def test_receipts_without_a_card_payment_and_other_notifications_move_nothing(
    lane: InProcessLane, index: CardOrders
) -> None:
    rtn, asker = receiver(lane, index)
    await pay_by_card(lane, index, "A3.1", 500)
    assert await rtn.receive(GOOD, body("B9.9", "voided")) == (
        200,
        "no card payment on this receipt",
    )
    update = json.dumps({"notificationType": "UPDATE", "ikentooAccountIdentifier": "A3.1"})
    assert await rtn.receive(GOOD, update.encode()) == (200, "ignored")
    assert (await rtn.receive(GOOD, b"<xml/>"))[0] == 400
    assert asker.asked == [] and card_balance(lane) == 4500
