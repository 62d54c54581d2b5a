"""Gift Local through the whole lane, in-process, when it answers only what seed 003 describes:
a code with a leading zero from the scan to the request body, the open order sent as the POS
ticket, a redemption answered without its amount, and a void whose reversal is answered with
the transaction record alone. None of it may end in `unknown_outcome`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.giftlocal import DEFAULT_SEED, REDEEM, REVERSE, VALIDATE, GiftLocalSimulator
from simulators.server import Fault
from tests.lane import InProcessLane, order

CODE = "012345678901"  # 30.00 USD at the bakery; the leading zero is part of the code


def sent(simulator: GiftLocalSimulator, path: str) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in simulator.requests if r.path == path]


@pytest.mark.parametrize(
    ("data", "symbology"),
    [
        (CODE, "keyed"),
        ("0123 4567 8901", "keyed"),
        ("0123-4567-8901", "keyed"),
        ("]C0" + CODE, "keyed"),  # a Code 128 scan with its AIM identifier
        (CODE, "code128"),
    ],
)
async def test_a_voucher_on_a_voided_order_when_gift_local_answers_only_the_seed_fields(
    tmp_path: Path, data: str, symbology: str
) -> None:
    simulator = GiftLocalSimulator()
    simulator.seed({**DEFAULT_SEED, "answers": "seed"})
    lane = InProcessLane(tmp_path, {"giftlocal": simulator})
    try:
        await lane.ok("order.update", **order("S1", ("Latte", 950, "0001"), ("Bagel", 300, None)))
        token = await lane.scan(data, symbology)
        (validated,) = lane.events("gift.validated")
        assert validated["gift"]["is_redeemable"] and validated["gift"]["balance"] == 3000
        (scan_check,) = sent(simulator, VALIDATE)
        assert scan_check["voucherCode"] == CODE
        ticket = scan_check["posTicket"]
        assert isinstance(ticket, dict) and ticket["ticketID"] == "S1" and ticket["total"] == 12.5
        assert [line["description"] for line in ticket["items"]] == ["Latte", "Bagel"]

        answer = await lane.ok("gift.redeem", token_id=token, amount=1200)
        assert answer["redemption"]["amount"] == 1200  # the answer had no amount: the one asked
        assert sent(simulator, REDEEM)[0]["amount"] == 12
        assert lane.ledger("giftlocal")["gifts"][CODE]["balance"] == 1800

        voided = await lane.ok("order.void", order_id="S1")
        assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("reverse", True)]
        (reversed_,) = lane.events("gift.reversed")
        assert reversed_["reversal"]["transaction_id"] == answer["redemption"]["transaction_id"]
        assert reversed_["reversal"]["gift"] is None  # the record alone said nothing of the gift
        assert len(sent(simulator, REVERSE)) == 1
        assert lane.ledger("giftlocal")["gifts"][CODE]["balance"] == 3000
        view = await lane.ok("order.get", order_id="S1")
        assert [t["state"] for t in view["tenders"]] == ["reversed"]
    finally:
        await lane.close()


async def test_a_lost_redeem_answer_is_settled_from_the_seed_fields_alone(tmp_path: Path) -> None:
    """Without `remainingValue`, the eligible value the seed names tells the lane that a redeem
    whose answer was lost went through: a tender taken, not `unknown_outcome`."""
    simulator = GiftLocalSimulator()
    simulator.seed({**DEFAULT_SEED, "answers": "seed"})
    lane = InProcessLane(tmp_path, {"giftlocal": simulator})
    try:
        await lane.ok("order.update", **order("S2", ("Latte", 950, None)))
        token = await lane.scan(CODE)
        simulator.arm([Fault(path=REDEEM, kind="drop_after_apply")])
        answer = await lane.ok("gift.redeem", token_id=token, amount=950)
        assert answer["redemption"]["transaction_id"].startswith("unconfirmed:")
        assert lane.ledger("giftlocal")["gifts"][CODE]["balance"] == 2050
        view = await lane.ok("order.get", order_id="S2")
        assert [(t["state"], t["amount"]) for t in view["tenders"]] == [("taken", 950)]
    finally:
        await lane.close()
