"""The order's life on the lane: `order.update`, `order.paid`, `order.void`, and the flows that
act at each step (coupon capture and loyalty commit after payment, releases after a void).

Order matters to the providers: PETZ captures only after payment, Punchh commits redemptions
after payment and checks in after the commit, and a void must release what was held. Each flow
reports one `StepOutcome` per provider call so the POS sees exactly what happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel

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
from agent.contract.orders import (
    OrderFlows,
    OrderGetParams,
    OrderRefundParams,
    OrderView,
    OutboxDeadData,
    OutboxDeliveredData,
    OutboxEntryInfo,
)
from agent.errors import ErrorCode, LaneError
from agent.orders import Order, OrderBook, OrderStatus, can_close
from agent.outbox import DEFAULT_BACKOFF, Backoff, Entry, EntryState, Outbox, OutboxWorker
from agent.tenders import Tender, TenderState

log = logging.getLogger(__name__)

# While the order desk makes an entry's first attempt, the background worker keeps off it; a
# crash during that attempt leaves the entry to the worker after this many seconds.
FIRST_ATTEMPT_HOLD = 120.0

CLOSED_EVENTS = {
    OrderStatus.PAID: "order.committed",
    OrderStatus.VOID: "order.voided",
    OrderStatus.ABANDONED: "order.abandoned",
    OrderStatus.REFUNDED: "order.refunded",
}
# Refunds give back flow by flow in this order: a coupon backend without a refund call, whose
# step can only tell the cashier what to do, comes last.
REFUND_ORDER = ("gift", "card", "loyalty", "coupons")


class OrderFlow(Protocol):
    """A flow that follows the lane's order. Each hook returns what it did, one outcome per
    provider call, and never raises for a provider's refusal (that is an outcome)."""

    name: str

    async def on_update(self, order: Order) -> None: ...

    async def on_paid(self, order: Order) -> list[StepOutcome]: ...

    async def on_void(self, order: Order) -> list[StepOutcome]: ...

    async def on_abandoned(self, order: Order) -> list[StepOutcome]: ...

    async def on_refund(self, order: Order) -> list[StepOutcome]:
        """Give back what `order.refund` asked of this flow (tenders marked `refunding`, or for
        a whole refund the flow's own committed work)."""
        ...

    def view(self, order: Order) -> BaseModel | None:
        """What the flow holds for the order, for `order.get` (its `OrderFlows` field); None
        when nothing."""
        ...


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
    """Serialises the order ops of one lane; what an order's closing owes each flow goes
    through the outbox, attempted at once and retried in the background until done."""

    def __init__(
        self,
        book: OrderBook,
        flows: Sequence[OrderFlow],
        emit: Callable[[Event], None],
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.book = book
        self.flows = {flow.name: flow for flow in flows}
        self._emit = emit
        self._lock = asyncio.Lock()
        self.outbox = Outbox(book.db)
        self.worker = OutboxWorker(
            self.outbox,
            self._attempt,
            on_dead=self._dead,
            on_done=self._delivered,
            backoff=backoff,
        )

    async def update(self, params: OrderUpdateParams) -> OrderResult:
        async with self._lock:
            order, replaced = self.book.update(params.snapshot())
            if replaced is not None:
                why = f"replaced by order {order.order_id}"
                await self._close(replaced.order_id, OrderStatus.ABANDONED, why)
            for flow in self.flows.values():
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

    async def get(self, params: OrderGetParams) -> OrderView:
        order = (
            self.book.require(params.order_id)
            if params.order_id is not None
            else self.book.current()
        )
        if order is None:
            raise LaneError(ErrorCode.NOT_FOUND, "no open order on this lane")
        tenders = self.book.tenders.of_order(order.order_id)
        paid = sum(t.amount or 0 for t in tenders if t.holds_money)
        s = order.snapshot
        views = {name: flow.view(order) for name, flow in self.flows.items()}
        return OrderView(
            order=info(order),
            lines=s.lines,
            subtotal=s.subtotal,
            tax=s.tax,
            tenders=tenders,
            paid=paid,
            left_to_pay=max(s.total - paid, 0),
            flows=OrderFlows.model_validate(
                {name: view for name, view in views.items() if view is not None}
            ),
        )

    async def refund(self, params: OrderRefundParams) -> OrderClosedData:
        """Mark what is given back, close the order as refunded when it is all of it, and
        queue each flow's part in the same transaction; then make the first attempt."""
        async with self._lock:
            order = self.book.require(params.order_id)
            if order.status not in (OrderStatus.PAID, OrderStatus.REFUNDED):
                raise LaneError(
                    ErrorCode.INVALID_REQUEST,
                    f"order {order.order_id} is {order.status}: a refund is for a paid order "
                    "(an open one is voided)",
                )
            tenders = self.book.tenders.of_order(order.order_id)
            whole = params.transaction_ids is None
            chosen = (
                [t for t in tenders if t.state is TenderState.TAKEN]
                if whole
                else [self._refundable(order, tenders, tx) for tx in params.transaction_ids or []]
            )
            if whole and order.status is OrderStatus.REFUNDED and not chosen:
                return await self._close(order.order_id, OrderStatus.REFUNDED)
            flows = (
                [f for f in REFUND_ORDER if f in self.flows]
                if whole
                else [f for f in REFUND_ORDER if any(t.flow == f for t in chosen)]
            )
            phase = f"refund:{self._refunds(order.order_id) + 1}"
            with self.book.transaction():
                for tender in chosen:
                    self.book.tenders.update(tender, state=TenderState.REFUNDING)
                closed = self.book.close(order.order_id, OrderStatus.REFUNDED) if whole else order
                self.outbox.add(order.order_id, flows, phase, hold=FIRST_ATTEMPT_HOLD)
            steps = await self._deliver(order.order_id)
            named = f"{len(chosen)} tender" + ("" if len(chosen) == 1 else "s")
            what = "whole order" if whole else named
            data = OrderClosedData(
                order=info(closed),
                steps=steps,
                reason=f"refund of the {what}",
                queued=self._queued(order.order_id),
            )
            self._emit(Event(type="order.refunded", data=data.model_dump(mode="json")))
            log.info("order %s refunded (%s): %d steps", order.order_id, what, len(steps))
            return data

    @staticmethod
    def _refundable(order: Order, tenders: list[Tender], transaction_id: str) -> Tender:
        tender = next((t for t in tenders if t.transaction_id == transaction_id), None)
        if tender is None:
            raise LaneError(
                ErrorCode.NOT_FOUND,
                f"transaction {transaction_id} is not a tender of order {order.order_id}",
            )
        if tender.state is not TenderState.TAKEN:
            code = (
                ErrorCode.ALREADY_REVERSED
                if tender.state in (TenderState.REVERSED, TenderState.REFUNDING)
                else ErrorCode.INVALID_REQUEST
            )
            raise LaneError(code, f"transaction {transaction_id} is {tender.state}")
        return tender

    def _refunds(self, order_id: str) -> int:
        entries = self.outbox.entries(order_id=order_id)
        return len({e.phase for e in entries if e.phase.startswith("refund")})

    async def _close(
        self, order_id: str, status: OrderStatus, reason: str | None = None
    ) -> OrderClosedData:
        order = self.book.require(order_id)
        if order.status is status:
            # The POS asks again (its answer was lost, or work is still queued): try what is
            # left now, and answer with where each flow's work stands.
            await self._deliver(order_id)
            steps = [
                step
                for entry in self.outbox.entries(order_id=order_id)
                if entry.phase == status.value
                for step in entry.steps
            ]
            queued = self._queued(order_id)
            return OrderClosedData(
                order=info(order), steps=steps, reason=f"already {status}", queued=queued
            )
        if not can_close(order.status, status):
            raise LaneError(ErrorCode.INVALID_REQUEST, f"order {order_id} is {order.status}")
        # The order is closed and its work written in one transaction: after a crash at any
        # point the work is either all on disk or the order is still open for the POS's retry.
        with self.book.transaction():
            closed = self.book.close(order_id, status)
            self.outbox.add(order_id, self.flows, status.value, hold=FIRST_ATTEMPT_HOLD)
        steps = await self._deliver(order_id)
        data = OrderClosedData(
            order=info(closed), steps=steps, reason=reason, queued=self._queued(order_id)
        )
        self._emit(Event(type=CLOSED_EVENTS[status], data=data.model_dump(mode="json")))
        failed = [s for s in steps if not s.ok]
        log.info("order %s %s: %d steps, %d failed", order_id, status, len(steps), len(failed))
        return data

    async def _deliver(self, order_id: str) -> list[StepOutcome]:
        """The first attempt, made here so the POS's answer says what happened; what fails is
        left to the worker, and the rest of the order's work waits behind it."""
        steps: list[StepOutcome] = []
        for entry in self.outbox.entries(EntryState.PENDING, order_id):
            steps += await self.worker.deliver(entry)
            after = self.outbox.get(entry.id)
            if after is None or after.state is EntryState.PENDING:
                break
        self.worker.wake()
        return steps

    def _queued(self, order_id: str) -> list[str]:
        return [e.flow for e in self.outbox.entries(EntryState.PENDING, order_id)]

    async def _attempt(self, entry: Entry) -> list[StepOutcome]:
        flow = self.flows.get(entry.flow)
        order = self.book.get(entry.order_id)
        if flow is None or order is None:
            missing = LaneError(
                ErrorCode.NOT_CONFIGURED, f"flow {entry.flow} is not configured on this lane"
            )
            return [outcome(entry.flow, "-", entry.phase, "nothing can run this work", missing)]
        hook = {
            OrderStatus.PAID.value: flow.on_paid,
            OrderStatus.VOID.value: flow.on_void,
            OrderStatus.ABANDONED.value: flow.on_abandoned,
            "refund": flow.on_refund,
        }[entry.phase.split(":")[0]]
        return await hook(order)

    def _dead(self, entry: Entry, error: str) -> None:
        data = OutboxDeadData(entry=entry_info(entry), error=error)
        self._emit(Event(type="outbox.dead", data=data.model_dump(mode="json")))

    def _delivered(self, entry: Entry, steps: list[StepOutcome]) -> None:
        data = OutboxDeliveredData(entry=entry_info(entry), steps=steps)
        self._emit(Event(type="outbox.delivered", data=data.model_dump(mode="json")))


def entry_info(entry: Entry) -> OutboxEntryInfo:
    return OutboxEntryInfo(
        id=entry.id,
        order_id=entry.order_id,
        flow=entry.flow,
        phase=entry.phase,
        attempts=entry.attempts,
        last_error=entry.last_error,
    )
