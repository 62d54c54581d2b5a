"""The loyalty flow's pure parts: how it sees the order as it was checked once the POS added the
granted discounts, which selections the POS may send, and that codes never leave in clear."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.contract.loyalty import LoyaltySelection
from agent.flows.loyalty import hide_code, same_receipt, split
from agent.orders import OrderLine, OrderSnapshot
from agent.providers.loyalty import Discount, RedemptionFailure


def snapshot(*lines: tuple[str, int], tax: int = 100) -> OrderSnapshot:
    subtotal = sum(amount for _, amount in lines)
    return OrderSnapshot(
        order_id="O1",
        lines=[OrderLine(id=i, name=f"line {i}", quantity=1, amount=a) for i, a in lines],
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        currency="USD",
    )


CHECKED = snapshot(("1", 1000), ("2", 500), ("promo", -100))


def test_the_granted_lines_are_taken_out_and_their_amount_given_back() -> None:
    paid = snapshot(("1", 1000), ("loyalty:1", -350), ("2", 500), ("promo", -100), tax=64)
    base, ours = split(paid)
    assert [line.id for line in ours] == ["loyalty:1"]
    assert [line.id for line in base.lines] == ["1", "2", "promo"]
    assert (base.subtotal, base.tax, base.total) == (1400, 64, 1464)
    assert same_receipt(base, CHECKED)  # the tax the POS recomputed is no change to Punchh


def test_an_order_without_granted_lines_is_its_own_base() -> None:
    assert split(CHECKED) == (CHECKED, [])


def test_another_item_or_a_positive_loyalty_line_is_a_change() -> None:
    grown, _ = split(snapshot(("1", 1000), ("2", 500), ("promo", -100), ("3", 400)))
    assert not same_receipt(grown, CHECKED)
    odd, ours = split(snapshot(("1", 1000), ("2", 500), ("promo", -100), ("loyalty:9", 50)))
    assert ours == [] and not same_receipt(odd, CHECKED)


@pytest.mark.parametrize(
    "selection",
    [
        {"discount_type": "reward", "discount_id": "7001"},
        {"discount_type": "redeemable", "discount_id": "501"},
        {"discount_type": "discount_amount", "discount_value": 250},
        {"discount_type": "redemption_code", "token_id": "tok_1"},
    ],
)
def test_each_discount_type_takes_its_one_reference(selection: dict[str, object]) -> None:
    assert LoyaltySelection.model_validate(selection).discount_type == selection["discount_type"]


@pytest.mark.parametrize(
    "selection",
    [
        {"discount_type": "reward"},
        {"discount_type": "reward", "discount_id": "7001", "token_id": "tok_1"},
        {"discount_type": "discount_amount", "discount_id": "x", "discount_value": 250},
        {"discount_type": "redemption_code", "discount_id": "1234567"},  # never in clear
        {"discount_type": "subscription", "discount_id": "9"},
    ],
)
def test_a_selection_with_a_wrong_reference_is_refused(selection: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LoyaltySelection.model_validate(selection)


def test_redemption_codes_are_masked_and_reward_ids_are_not() -> None:
    code = Discount(discount_type="redemption_code", discount_id="1234567", name="$2", amount=200)
    reward = Discount(discount_type="reward", discount_id="7001", name="Coffee", amount=350)
    assert hide_code(code).discount_id == "•••••67"
    assert hide_code(reward) == reward
    failure = RedemptionFailure(discount_type="redemption_code", discount_id="1234567")
    assert hide_code(failure).discount_id == "•••••67"
