"""What a coupon authorization depends on (`basket`): the order's products and quantities, not
its amounts, which change when the POS applies the coupons' own discounts."""

from __future__ import annotations

from agent.flows.coupons import basket
from agent.orders import OrderLine, OrderSnapshot

KIBBLE = "012345678905"
TREATS = "036000291452"


def snapshot(*lines: OrderLine) -> OrderSnapshot:
    subtotal = sum(x.amount for x in lines)
    return OrderSnapshot(
        order_id="o-1", lines=list(lines), subtotal=subtotal, total=subtotal, currency="USD"
    )


def line(n: int, amount: int, sku: str | None, quantity: int = 1) -> OrderLine:
    return OrderLine(id=str(n), name=f"item {n}", quantity=quantity, amount=amount, sku=sku)


AUTHORIZED = snapshot(line(1, 1299, KIBBLE), line(2, 1299, TREATS))


def test_discounted_amounts_and_discount_lines_keep_the_authorization() -> None:
    discounted = snapshot(line(1, 1099, KIBBLE), line(2, 1104, TREATS))
    assert basket(discounted) == basket(AUTHORIZED)
    as_lines = snapshot(
        line(1, 1299, KIBBLE),
        line(2, 1299, TREATS),
        line(3, -200, None),  # a coupon discount as a line of its own
        line(4, -195, "cpn_treats15"),  # one that carries the coupon's code
    )
    assert basket(as_lines) == basket(AUTHORIZED)


def test_lines_without_a_product_code_do_not_count() -> None:
    bag = snapshot(line(1, 1299, KIBBLE), line(2, 1299, TREATS), line(3, 10, None))
    assert basket(bag) == basket(AUTHORIZED)


def test_products_added_removed_or_requantified_invalidate() -> None:
    added = snapshot(line(1, 1299, KIBBLE), line(2, 1299, TREATS), line(3, 500, KIBBLE))
    removed = snapshot(line(1, 1299, KIBBLE))
    more = snapshot(line(1, 2598, KIBBLE, quantity=2), line(2, 1299, TREATS))
    swapped = snapshot(line(1, 1299, TREATS), line(2, 1299, KIBBLE))
    assert len({basket(s) for s in (AUTHORIZED, added, removed, more, swapped)}) == 5
