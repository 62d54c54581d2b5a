"""The lane's order: what the POS sends (`order.update`, `order.paid`, `order.void`) and what
the agent reports of each flow's steps when an order closes."""

from __future__ import annotations

from pydantic import Field

from agent.contract.base import ErrorBody, OpSpec, Request, _Payload
from agent.errors import ErrorCode
from agent.orders import OrderSnapshot, OrderStatus


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
    """`order.committed` after `order.paid`, `order.voided` after `order.void`, and
    `order.abandoned` when a new order id replaced an open order: what each flow did."""

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
        "the order is voided: release coupons, unlock the basket, reverse card payments",
        errors=(ErrorCode.NOT_FOUND, ErrorCode.STORAGE_FULL),
    ),
}
