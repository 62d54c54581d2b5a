"""`flows` of `order.get`, in-process: what the coupon (PETZ) and loyalty (Punchh) flows hold for
an order is what their events told the screens that were there, so a screen that missed them
rebuilds the same panels; nothing in it is in clear that the events mask."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulators.petz import PetzSimulator
from simulators.punchh import PunchhSimulator
from tests.lane import InProcessLane, order

KIBBLE = "012345678905"
TREATS = "036000291452"
OTHER = "041000000638"  # no coupon lists it
PHONE = "5551234567"  # PETZ customer c_1001
ANA_EMAIL = "ana@example.com"  # Punchh guest 101
BEN_CODE = "1234567"  # a redemption code of Punchh guest 102


PET_FOOD = (("Kibble", 1299, KIBBLE), ("Treats", 1299, TREATS))


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[InProcessLane]:
    made = InProcessLane(tmp_path, {"petz": PetzSimulator(), "punchh": PunchhSimulator()})
    yield made
    await made.close()


async def flows(lane: InProcessLane, order_id: str) -> dict[str, Any]:
    held: dict[str, Any] = (await lane.ok("order.get", order_id=order_id))["flows"]
    return held


async def test_the_coupon_view_follows_customer_authorization_invalidation_and_capture(
    lane: InProcessLane,
) -> None:
    await lane.ok("order.update", **order("C1", *PET_FOOD))
    assert await flows(lane, "C1") == {"coupons": None, "loyalty": None}

    await lane.scan(PHONE)
    (customer,) = lane.events("coupon.customer")
    coupons = (await flows(lane, "C1"))["coupons"]
    assert coupons == {
        "consumer_id": "c_1001",
        "customer": customer["customer"],
        "auth": None,
        "stale": False,
        "stale_reason": None,
        "capture": None,
        "released": False,
    }
    assert coupons["customer"]["phone_masked"] == customer["display"] == "••••••••67"

    first = (await lane.ok("coupon.authorize"))["authorization"]
    assert (await flows(lane, "C1"))["coupons"]["auth"] == first

    await lane.ok("order.update", **order("C1", *PET_FOOD, ("Leash", 900, OTHER)))
    (invalidated,) = lane.events("coupon.invalidated")
    coupons = (await flows(lane, "C1"))["coupons"]
    assert (coupons["auth"], coupons["stale"]) == (first, True)
    assert coupons["stale_reason"] == invalidated["reason"] == "the order's products changed"

    renewed = (await lane.ok("coupon.authorize"))["authorization"]
    assert renewed["auth_id"] != first["auth_id"]
    coupons = (await flows(lane, "C1"))["coupons"]
    assert (coupons["auth"], coupons["stale"], coupons["stale_reason"]) == (renewed, False, None)

    await lane.ok("order.paid", order_id="C1")
    (captured,) = lane.events("coupon.captured")
    coupons = (await flows(lane, "C1"))["coupons"]
    assert (coupons["capture"], coupons["released"]) == (captured["capture"], False)
    assert PHONE not in json.dumps(coupons)


async def test_a_voided_orders_coupon_view_says_they_were_released(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("C2", *PET_FOOD))
    await lane.scan(PHONE)
    auth = (await lane.ok("coupon.authorize"))["authorization"]
    await lane.ok("order.void", order_id="C2")
    coupons = (await flows(lane, "C2"))["coupons"]
    assert (coupons["auth"], coupons["capture"], coupons["released"]) == (auth, None, True)


async def test_the_loyalty_view_holds_the_guest_the_check_as_shown_and_the_receipt(
    lane: InProcessLane,
) -> None:
    await lane.ok("order.update", **order("L1", ("Burger", 1000, None), ("Fries", 500, None)))
    await lane.scan(ANA_EMAIL)
    (user,) = lane.events("loyalty.user")
    loyalty = (await flows(lane, "L1"))["loyalty"]
    assert loyalty["guest"] == user["guest"]
    assert (loyalty["check"], loyalty["committed"], loyalty["locked"]) == (None, None, False)

    shown = await lane.ok(
        "loyalty.select",
        selections=[
            {"discount_type": "reward", "discount_id": "7001"},
            {"discount_type": "redeemable", "discount_id": "501"},
        ],
    )
    loyalty = (await flows(lane, "L1"))["loyalty"]
    check = {k: shown[k] for k in ("redemption_ref", "lines", "failures", "total")}
    assert loyalty["check"] == check
    assert [(x["name"], x["amount"]) for x in check["lines"]] == [
        ("Free Coffee", -350),
        ("$5 Off", -500),
    ]
    assert (loyalty["receipt_key"], loyalty["barcode"]) == (shown["receipt_key"], shown["barcode"])
    assert loyalty["locked"] is True

    await lane.ok("order.paid", order_id="L1")
    (receipt,) = lane.events("loyalty.receipt")
    loyalty = (await flows(lane, "L1"))["loyalty"]
    assert loyalty["committed"] == check
    assert (loyalty["checked_in"], loyalty["points_earned"], loyalty["barcode"]) == (
        receipt["checked_in"],
        receipt["points_earned"],
        receipt["barcode"],
    )
    assert loyalty["checked_in"] is True
    assert "Ana@" not in json.dumps(loyalty) and ANA_EMAIL not in json.dumps(loyalty)


async def test_a_redemption_code_stays_masked_in_the_loyalty_view(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("R1", ("Burger", 1000, None), ("Fries", 500, None)))
    code = await lane.scan(BEN_CODE)
    shown = await lane.ok(
        "loyalty.select", selections=[{"discount_type": "redemption_code", "token_id": code}]
    )
    await lane.ok("order.paid", order_id="R1")
    loyalty = (await flows(lane, "R1"))["loyalty"]
    assert loyalty["check"]["lines"] == loyalty["committed"]["lines"] == shown["lines"]
    assert loyalty["check"]["lines"][0]["discount_id"] == "•••••67"
    assert BEN_CODE not in json.dumps(loyalty)


async def test_an_order_paid_without_a_guest_has_only_its_receipt(lane: InProcessLane) -> None:
    await lane.ok("order.update", **order("N1", ("Burger", 1000, None)))
    await lane.ok("order.paid", order_id="N1")
    (receipt,) = lane.events("loyalty.receipt")
    loyalty = (await flows(lane, "N1"))["loyalty"]
    assert (loyalty["guest"], loyalty["check"], loyalty["checked_in"]) == (None, None, False)
    assert (loyalty["receipt_key"], loyalty["barcode"]) == (
        receipt["receipt_key"],
        receipt["barcode"],
    )
