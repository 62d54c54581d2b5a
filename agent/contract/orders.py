"""The lane's order: what the POS sends (`order.update`, `order.paid`, `order.void`) and what
the agent reports of each flow's steps when an order closes."""

from __future__ import annotations

from pydantic import Field

from agent.contract.base import ErrorBody, OpSpec, Request, _Payload
from agent.contract.coupons import CouponView
from agent.contract.loyalty import LoyaltyView
from agent.errors import ErrorCode
from agent.orders import OrderLine, OrderSnapshot, OrderStatus
from agent.tenders import Tender


class OrderInfo(_Payload):
    order_id: str
    status: OrderStatus
    total: int = Field(description="minor units, tax included")
    currency: str
    lines: int = Field(description="number of lines")


class StepOutcome(_Payload):
    """One provider call an order's closing made (a commit, a capture, a release...)."""

    flow: str = Field(description="gift, card, coupons or loyalty")
    provider: str
    step: str = Field(description="e.g. capture, commit, checkin, receipt, release, reverse")
    ok: bool
    detail: str = Field(description="what happened, for the cashier or the support log")
    error: ErrorBody | None = None


class OrderClosedData(_Payload):
    """`order.committed` after `order.paid`, `order.voided` after `order.void`,
    `order.refunded` after `order.refund`, and `order.abandoned` when a new order id replaced
    an open order: what each flow did."""

    order: OrderInfo
    steps: list[StepOutcome]
    reason: str | None = None
    queued: list[str] = Field(
        default_factory=list,
        description="flows whose work failed for now and is retried in the background until "
        "done (`outbox.delivered`) or given up (`outbox.dead`)",
    )


class OutboxEntryInfo(_Payload):
    id: int
    order_id: str
    flow: str
    phase: str = Field(description="paid, void or abandoned")
    attempts: int
    last_error: str | None = None


class OutboxDeliveredData(_Payload):
    """Work an order's closing owed, done after one or more failed attempts."""

    entry: OutboxEntryInfo
    steps: list[StepOutcome]


class OutboxDeadData(_Payload):
    """Work given up on: a final error or its deadline passed. `lane-agent outbox` lists it;
    a person retries or settles it."""

    entry: OutboxEntryInfo
    error: str


class OrderRefundParams(Request):
    """Give back a paid order's money: every tender (vouchers, card payments) and the
    loyalty redemptions it committed, or only the tenders named by `transaction_ids`."""

    order_id: str = Field(min_length=1, max_length=64)
    transaction_ids: list[str] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="the tenders to give back; leave out for the whole order",
    )


class OrderGetParams(Request):
    order_id: str | None = Field(
        None, min_length=1, max_length=64, description="a recent order; default: the open one"
    )


class OrderFlows(_Payload):
    """What the coupon and loyalty flows hold for an order; null where a flow holds nothing
    (or is not set up on the lane). Vouchers and card payments are the order's `tenders`."""

    coupons: CouponView | None = None
    loyalty: LoyaltyView | None = None


class OrderView(_Payload):
    """An order as the lane holds it: what a POS screen needs to rebuild itself mid-sale."""

    order: OrderInfo
    lines: list[OrderLine]
    subtotal: int
    tax: int
    tenders: list[Tender] = Field(description="every money step of the order, in order")
    paid: int = Field(description="minor units the tenders hold (taken, or perhaps taken)")
    left_to_pay: int = Field(description="`total` less `paid`, never below 0")
    flows: OrderFlows = Field(
        default_factory=OrderFlows,
        description="what the coupon flow (customer, authorization, capture) and the loyalty "
        "flow (guest, last redemption check, receipt key) hold for the order",
    )


class OrderUpdatedData(_Payload):
    order: OrderInfo
    replaced: str | None = Field(None, description="the open order this one replaced, if any")


class OrderUpdateParams(Request, OrderSnapshot):
    """The whole order as the POS has it now (after store promotions), sent on every change.
    A new `order_id` starts a new order; the lane keeps one open order at a time."""

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot.model_validate(self.model_dump(exclude={"request_id"}))


class OrderCloseParams(Request):
    order_id: str = Field(min_length=1, max_length=64)


class OrderResult(_Payload):
    order: OrderInfo
    replaced: str | None = Field(None, description="the open order this one replaced, if any")


EVENTS: dict[str, type[_Payload]] = {
    "order.updated": OrderUpdatedData,
    "order.committed": OrderClosedData,
    "order.voided": OrderClosedData,
    "order.abandoned": OrderClosedData,
    "order.refunded": OrderClosedData,
    "outbox.delivered": OutboxDeliveredData,
    "outbox.dead": OutboxDeadData,
}

OPS: dict[str, OpSpec] = {
    "order.update": OpSpec(
        OrderUpdateParams,
        OrderResult,
        "open or update the lane's order (lines, amounts)",
        errors=(ErrorCode.STORAGE_FULL,),
    ),
    "order.paid": OpSpec(
        OrderCloseParams,
        OrderClosedData,
        "the order is paid: commit loyalty redemptions, check in, capture coupons",
        errors=(ErrorCode.NOT_FOUND, ErrorCode.STORAGE_FULL),
    ),
    "order.void": OpSpec(
        OrderCloseParams,
        OrderClosedData,
        "the order is voided: reverse vouchers and card payments, release coupons, unlock "
        "the basket",
        errors=(ErrorCode.NOT_FOUND, ErrorCode.STORAGE_FULL),
    ),
    "order.refund": OpSpec(
        OrderRefundParams,
        OrderClosedData,
        "give a paid order's money back: all of it, or the tenders named",
        errors=(ErrorCode.NOT_FOUND, ErrorCode.ALREADY_REVERSED, ErrorCode.STORAGE_FULL),
    ),
    "order.get": OpSpec(
        OrderGetParams,
        OrderView,
        "the open order (or a recent one): lines, tenders, what is left to pay, flow state",
        errors=(ErrorCode.NOT_FOUND,),
        reads_only=True,
    ),
}
