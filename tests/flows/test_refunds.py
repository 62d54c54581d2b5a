"""`order.refund` of what the coupon and loyalty flows did at payment, in-process. Neither
provider takes it back after a sale: PETZ has no refund call, and Punchh refuses to void
redemptions once the check-in is committed. Each step fails with what the cashier must do
instead, and the outbox gives it up at once for a person (`outbox.dead`)."""

from __future__ import annotations

from pathlib import Path

from simulators.petz import PetzSimulator
from simulators.punchh import PunchhSimulator
from tests.lane import InProcessLane, order

KIBBLE = "012345678905"
TREATS = "036000291452"
PHONE = "5551234567"  # PETZ customer c_1001, wallet coupons for KIBBLE and TREATS
BEN_CARD = "6000000000000002"  # Punchh guest with reward 7002


async def test_refund_after_a_check_in_says_what_to_give_back_by_hand(tmp_path: Path) -> None:
    """Punchh answers 410 to a void once the check-in is committed: the lane does not try, and
    the step (dead-lettered for a person) names the guest, the rewards and the points."""
    lane = InProcessLane(tmp_path, {"punchh": PunchhSimulator()})
    try:
        await lane.ok("order.update", **order("L1", ("Burger", 1000, None), ("Fries", 500, None)))
        await lane.scan(BEN_CARD)
        (guest,) = lane.events("loyalty.user")
        user_id = guest["guest"]["user_id"]
        await lane.ok(
            "loyalty.select", selections=[{"discount_type": "reward", "discount_id": "7002"}]
        )
        paid = await lane.ok("order.paid", order_id="L1")
        assert [(s["step"], s["ok"]) for s in paid["steps"]][:2] == [
            ("commit", True),
            ("checkin", True),
        ]
        before = len(lane.simulators["punchh"].requests)

        refunded = await lane.ok("order.refund", order_id="L1")
        (step,) = refunded["steps"]
        assert (step["flow"], step["step"], step["ok"]) == ("loyalty", "void", False)
        assert f"give guest {user_id} back" in step["detail"] and "points" in step["detail"]
        assert len(lane.simulators["punchh"].requests) == before  # nothing sent to be refused
        assert [e["entry"]["flow"] for e in lane.events("outbox.dead")] == ["loyalty"]
    finally:
        await lane.close()


async def test_refund_of_captured_coupons_tells_the_cashier_and_dead_letters(
    tmp_path: Path,
) -> None:
    lane = InProcessLane(tmp_path, {"petz": PetzSimulator()})
    try:
        await lane.ok(
            "order.update", **order("C1", ("Kibble", 1299, KIBBLE), ("Treats", 1299, TREATS))
        )
        await lane.scan(PHONE)
        auth = (await lane.ok("coupon.authorize"))["authorization"]
        assert auth["total_discount"] > 0
        await lane.ok("order.paid", order_id="C1")
        captured = lane.ledger("petz")["redemptions"]
        assert captured

        refunded = await lane.ok("order.refund", order_id="C1")
        (step,) = refunded["steps"]
        assert (step["flow"], step["step"], step["ok"]) == ("coupons", "refund", False)
        assert step["error"]["code"] == "not_configured"
        assert "PETZ has no refund call" in step["detail"] and "store policy" in step["detail"]
        assert lane.ledger("petz")["redemptions"] == captured  # nothing was undone silently
        (dead,) = lane.events("outbox.dead")
        assert (dead["entry"]["flow"], dead["entry"]["phase"]) == ("coupons", "refund:1")
        assert refunded["queued"] == []
    finally:
        await lane.close()
