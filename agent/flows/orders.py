"""The order's life on the lane: `order.update`, `order.paid`, `order.void`, and the flows that
act at each step (coupon capture and loyalty commit after payment, releases after a void).

Order matters to the providers: PETZ captures only after payment, Punchh commits redemptions
after payment and checks in after the commit, and a void must release what was held. Each flow
reports one `StepOutcome` per provider call so the POS sees exactly what happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from agent.contract import (
    ErrorBody,
    Event,
    OrderClosedData,
    OrderCloseParams,
    OrderInfo,
    OrderResult,
    OrderUpdatedData,
    OrderUpdateParams,
    StepOutcome,
)
from agent.errors import ErrorCode, LaneError
from agent.orders import Order, OrderBook, OrderStatus, can_close

log = logging.getLogger(__name__)


class OrderFlow(Protocol):
    """A flow that follows the lane's order. Each hook returns what it did, one outcome per
    provider call, and never raises for a provider's refusal (that is an outcome)."""

    name: str

    async def on_update(self, order: Order) -> None: ...

    async def on_paid(self, order: Order) -> list[StepOutcome]: ...

    async def on_void(self, order: Order) -> list[StepOutcome]: ...

    async def on_abandoned(self, order: Order) -> list[StepOutcome]: ...


def info(order: Order) -> OrderInfo:
    s = order.snapshot
    return OrderInfo(
        order_id=s.order_id,
        status=order.status,
        total=s.total,
        currency=s.currency,
        lines=len(s.lines),
    )


def outcome(
    flow: str, provider: str, step: str, detail: str, error: LaneError | None = None
) -> StepOutcome:
    return StepOutcome(
        flow=flow,
        provider=provider,
        step=step,
        ok=error is None,
        detail=detail if error is None else f"{detail}: {error.message}",
        error=None if error is None else ErrorBody.of(error),
    )


class OrderDesk:
    """Serialises the order ops of one lane and runs the flows' hooks in a fixed order."""

    def __init__(
        self, book: OrderBook, flows: Sequence[OrderFlow], emit: Callable[[Event], None]
    ) -> None:
        self.book = book
        self.flows = list(flows)
        self._emit = emit
        self._lock = asyncio.Lock()

    async def update(self, params: OrderUpdateParams) -> OrderResult:
        async with self._lock:
            order, replaced = self.book.update(params.snapshot())
            if replaced is not None:
                await self._abandon(replaced, f"replaced by order {order.order_id}")
            for flow in self.flows:
                await flow.on_update(order)
            data = OrderUpdatedData(
                order=info(order), replaced=None if replaced is None else replaced.order_id
            )
            self._emit(Event(type="order.updated", data=data.model_dump(mode="json")))
            return OrderResult(order=data.order, replaced=data.replaced)

    async def paid(self, params: OrderCloseParams) -> OrderClosedData:
        async with self._lock:
            return await self._close(params.order_id, OrderStatus.PAID)

    async def void(self, params: OrderCloseParams) -> OrderClosedData:
        async with self._lock:
            return await self._close(params.order_id, OrderStatus.VOID)

    async def _close(self, order_id: str, status: OrderStatus) -> OrderClosedData:
        order = self.book.require(order_id)
        if order.status is status:
            return OrderClosedData(order=info(order), steps=[], reason=f"already {status}")
        if not can_close(order.status, status):
            raise LaneError(ErrorCode.INVALID_REQUEST, f"order {order_id} is {order.status}")
        # The hooks run before the order is marked closed: a crash in between leaves it open,
        # and the POS's retry runs them again (every step is idempotent at its provider).
        steps: list[StepOutcome] = []
        for flow in self.flows:
            hook = flow.on_paid if status is OrderStatus.PAID else flow.on_void
            steps += await self._run(flow, hook, order)
        closed = self.book.close(order_id, status)
        data = OrderClosedData(order=info(closed), steps=steps)
        kind = "order.committed" if status is OrderStatus.PAID else "order.voided"
        self._emit(Event(type=kind, data=data.model_dump(mode="json")))
        failed = [s for s in steps if not s.ok]
        log.info("order %s %s: %d steps, %d failed", order_id, status, len(steps), len(failed))
        return data

    async def _abandon(self, order: Order, reason: str) -> None:
        steps: list[StepOutcome] = []
        for flow in self.flows:
            steps += await self._run(flow, flow.on_abandoned, order)
        closed = self.book.close(order.order_id, OrderStatus.ABANDONED)
        data = OrderClosedData(order=info(closed), steps=steps, reason=reason)
        self._emit(Event(type="order.abandoned", data=data.model_dump(mode="json")))
        log.warning("order %s abandoned (%s)", order.order_id, reason)

    @staticmethod
    async def _run(
        flow: OrderFlow,
        hook: Callable[[Order], Awaitable[list[StepOutcome]]],
        order: Order,
    ) -> list[StepOutcome]:
        try:
            return await hook(order)
        except Exception:
            log.exception("flow %s failed on order %s", flow.name, order.order_id)
            error = LaneError(ErrorCode.INTERNAL, "internal error; the agent log has details")
            return [outcome(flow.name, "-", "hook", "the flow failed", error)]
