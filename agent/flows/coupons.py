"""PETZ coupons (seed 001): the customer by phone, coupons authorized for the open order after
the store's own promotions, captured once the order is paid and released when it is voided.

Choices this flow makes (docs/providers/petz.md has the whole workflow):

- PETZ hears of an order once it has a customer: a phone scan (or `coupon.customer`) attaches
  the customer (`set_customer`) and sends the order; from then on `order.update` sends the order
  again only when it differs from what PETZ last received. Orders without a PETZ customer cost
  no PETZ call at all, and a failed sync is only logged: authorizing sends the order anyway.
- An authorization stands until the order's products (product lines and quantities) or its
  customer change. Amounts are left out on purpose: applying the coupons' own discounts changes
  them. Asking to authorize again while it stands returns it as it is, since PETZ would price the
  already discounted lines. When it no longer stands, `coupon.invalidated` tells the POS to take
  the discounts off and authorize again; one that was never renewed is not captured at payment.
- Every PETZ call is bounded by `providers.petz.timeout`; a request or hook makes at most three
  (the capture is sent a second time, with the same authorization, when its answer was lost).
  The auth id and the capture are kept in the order book, so a restart or a retried
  `order.paid` captures nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Final

from pydantic import BaseModel

from agent.contract import ErrorBody, Event, StepOutcome
from agent.contract.coupons import (
    CouponAuthorizedData,
    CouponAuthorizeParams,
    CouponCapturedData,
    CouponCaptureParams,
    CouponCustomerData,
    CouponCustomerParams,
    CouponInvalidatedData,
    CouponInvalidData,
    CouponView,
)
from agent.errors import ErrorCode, LaneError
from agent.flows.base import FlowContext, Handler
from agent.flows.orders import outcome
from agent.normalise import Token
from agent.orders import Order, OrderSnapshot, OrderStatus
from agent.providers.coupons import (
    CouponAuthorization,
    CouponCapture,
    CouponCustomer,
    CouponProvider,
    OrderState,
)
from agent.tokens import display

log = logging.getLogger(__name__)

FLOW: Final = "coupons"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def basket(order: OrderSnapshot) -> str:
    """A digest of what an authorization depends on: the product lines and their quantities. A
    line with a negative amount is a discount however the POS codes it, so it is not a product."""
    return _digest(
        sorted((x.id, x.sku, x.quantity) for x in order.lines if x.sku and x.amount >= 0)
    )


def sent(order: OrderSnapshot, consumer_id: str) -> str:
    """A digest of the order as it goes to PETZ (lines, amounts, customer), to send it once."""
    return _digest([order.model_dump(mode="json"), consumer_id])


class CouponState(BaseModel):
    """The coupon flow's state for one order (flow state in the order book). The phone number
    is never stored: only the customer PETZ matched it to (its number masked)."""

    consumer_id: str | None = None
    customer: CouponCustomer | None = None  # as coupon.customer showed it, for order.get
    auth: CouponAuthorization | None = None
    basket: str | None = None  # of the snapshot `auth` was made for
    stale: bool = False  # products or customer changed since `auth`; the POS must renew it
    stale_reason: str | None = None  # why, as coupon.invalidated said
    capture: CouponCapture | None = None
    released: bool = False  # PETZ has the order void, its authorization released
    synced: str | None = None  # `sent(...)` of the order PETZ last received


class CouponFlow:
    name = FLOW

    def __init__(self, provider: CouponProvider, ctx: FlowContext) -> None:
        self.provider = provider
        self._vault = ctx.vault
        self._book = ctx.book
        self._emit = ctx.emit
        self._kinds = ctx.kinds(FLOW)
        self._device_ref = provider.device_ref
        # One order at a time: PETZ calls and their state changes never interleave (a phone
        # scan runs beside requests, and a stale order sync must not drop a new customer).
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "coupon.customer": self.customer,
            "coupon.authorize": self.authorize,
            "coupon.capture": self.capture,
        }

    async def on_scan(self, token: Token, token_id: str) -> None:
        """A scanned phone number looks the customer up at once (the events tell the POS)."""
        with contextlib.suppress(LaneError):  # published as coupon.invalid
            await self._identify(token, token_id)

    async def customer(self, params: CouponCustomerParams) -> CouponCustomerData:
        token = self._vault.require(params.token_id, self._kinds, "a phone number")
        return await self._identify(token, params.token_id)

    async def _identify(self, token: Token, token_id: str) -> CouponCustomerData:
        """Attach the phone's customer to the open order; another phone replaces the customer
        (family phones), which invalidates an authorization made for the previous one."""
        shown = display(token)
        try:
            async with self._lock:
                order = self._book.require_open()
                customer = await self.provider.set_customer(
                    token.value, order=order.snapshot, device_ref=self._device_ref
                )
                state = self._state(order)
                state.customer = customer
                if state.consumer_id != customer.consumer_id:
                    state.consumer_id = customer.consumer_id
                    self._invalidate(order, state, "the customer changed")
                await self._sync(order, state, customer.consumer_id)
        except LaneError as exc:
            log.info("phone %s (%s) gave no PETZ customer: %s", shown, token_id, exc.code)
            invalid = CouponInvalidData(
                token_id=token_id,
                display=shown,
                provider=self.provider.name,
                error=ErrorBody.of(exc),
            )
            self._emit(Event(type="coupon.invalid", data=invalid.model_dump(mode="json")))
            raise
        log.info(
            "phone %s is customer %s on order %s (%d coupons in the wallet)",
            shown,
            customer.consumer_id,
            order.order_id,
            len(customer.wallet),
        )
        data = CouponCustomerData(
            token_id=token_id,
            display=shown,
            provider=self.provider.name,
            order_id=order.order_id,
            customer=customer,
        )
        self._emit(Event(type="coupon.customer", data=data.model_dump(mode="json")))
        return data

    async def authorize(self, params: CouponAuthorizeParams) -> CouponAuthorizedData:
        """Hold the wallet's coupons for the open order as it stands (after store promotions);
        an authorization that still stands is answered again without asking PETZ."""
        async with self._lock:
            order = self._book.require_open()
            if params.order_id not in (None, order.order_id):
                raise LaneError(
                    ErrorCode.INVALID_REQUEST,
                    f"order {params.order_id} is not the open order ({order.order_id})",
                )
            state = self._state(order)
            auth = state.auth
            if auth is None or state.stale:
                auth = await self._authorize(order, state)
        data = CouponAuthorizedData(provider=self.provider.name, authorization=auth)
        self._emit(Event(type="coupon.authorized", data=data.model_dump(mode="json")))
        return data

    async def _authorize(self, order: Order, state: CouponState) -> CouponAuthorization:
        if state.consumer_id is None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"order {order.order_id} has no PETZ customer: scan the customer's phone first",
            )
        try:
            auth = await self.provider.authorize(
                order.snapshot, device_ref=self._device_ref, consumer_id=state.consumer_id
            )
        except LaneError as exc:
            if exc.code is ErrorCode.NOT_REDEEMABLE:  # PETZ let go of any previous one
                state.auth, state.stale = None, False
                self._save(order, state)
            raise
        state.auth, state.basket, state.stale = auth, basket(order.snapshot), False
        state.synced = sent(order.snapshot, state.consumer_id)  # authorize sends the order
        self._save(order, state)
        log.info(
            "order %s: %d of %d coupons authorized, %d off (%s)",
            order.order_id,
            len(auth.applied),
            len(auth.discounts),
            auth.total_discount,
            auth.auth_id,
        )
        return auth

    async def capture(self, params: CouponCaptureParams) -> CouponCapturedData:
        """Capture a paid order's authorization when the capture at `order.paid` failed."""
        async with self._lock:
            order = self._book.require(params.order_id)
            if order.status is not OrderStatus.PAID:
                raise LaneError(
                    ErrorCode.INVALID_REQUEST,
                    f"order {order.order_id} is {order.status}: coupons are captured once it "
                    "is paid",
                )
            state = self._state(order)
            if state.auth is None or state.stale:
                raise LaneError(
                    ErrorCode.NOT_FOUND,
                    f"order {order.order_id} has no coupon authorization to capture",
                )
            capture = state.capture or await self._capture(order, state, state.auth)
        return CouponCapturedData(
            provider=self.provider.name, order_id=order.order_id, capture=capture
        )

    async def _capture(
        self, order: Order, state: CouponState, auth: CouponAuthorization
    ) -> CouponCapture:
        """Capture once; a lost answer is resolved by capturing again with the same auth id,
        never with a new authorization (which would replace the one perhaps captured)."""
        try:
            capture = await self.provider.capture(
                auth, order=order.snapshot, device_ref=self._device_ref
            )
        except LaneError as exc:
            if exc.code is not ErrorCode.UNKNOWN_OUTCOME:
                raise
            log.warning("capture of %s: answer lost; capturing again", auth.auth_id)
            capture = await self.provider.capture(
                auth, order=order.snapshot, device_ref=self._device_ref
            )
        state.capture = capture
        self._save(order, state)
        data = CouponCapturedData(
            provider=self.provider.name, order_id=order.order_id, capture=capture
        )
        self._emit(Event(type="coupon.captured", data=data.model_dump(mode="json")))
        return capture

    async def on_update(self, order: Order) -> None:
        """Keep PETZ's copy of an order it knows; a change of products invalidates the
        authorization."""
        async with self._lock:
            state = self._state(order)
            if state.consumer_id is None:
                return
            if state.basket != basket(order.snapshot):
                self._invalidate(order, state, "the order's products changed")
            await self._sync(order, state, state.consumer_id)

    async def on_paid(self, order: Order) -> list[StepOutcome]:
        """Capture the authorization, then tell PETZ the order is paid."""
        async with self._lock:
            state = self._state(order)
            if state.consumer_id is None:
                return []
            steps = []
            if state.auth is not None:
                steps.append(await self._capture_step(order, state, state.auth))
            steps.append(await self._final(order, state.consumer_id, "paid"))
            return steps

    async def _capture_step(
        self, order: Order, state: CouponState, auth: CouponAuthorization
    ) -> StepOutcome:
        what = f"coupons of authorization {auth.auth_id}"
        if state.stale:
            error = LaneError(
                ErrorCode.NOT_REDEEMABLE,
                "the order changed after the authorization and was not authorized again; "
                "no coupon was redeemed",
            )
            return outcome(FLOW, self.provider.name, "capture", what, error)
        try:
            capture = state.capture or await self._capture(order, state, auth)
        except LaneError as exc:
            log.warning("order %s: capture of %s failed: %s", order.order_id, auth.auth_id, exc)
            return outcome(FLOW, self.provider.name, "capture", what, exc)
        detail = (
            f"{len(capture.coupon_ids)} coupons redeemed, {capture.total_discount} off "
            f"(capture {capture.capture_id})"
        )
        return outcome(FLOW, self.provider.name, "capture", detail)

    async def on_void(self, order: Order) -> list[StepOutcome]:
        """Release the authorization (PETZ: the order sent as void); nothing is redeemed."""
        async with self._lock:
            state = self._state(order)
            if state.consumer_id is None or state.released:
                return []
            if state.auth is None:
                step = await self._final(order, state.consumer_id, "void")
            else:
                step = await self._release(order, state.auth)
            if step.ok:
                state.released = True
                self._save(order, state)
            return [step]

    on_abandoned = on_void
    """A replaced order releases its coupons like a voided one: holds go, nothing is captured."""

    async def on_refund(self, order: Order) -> list[StepOutcome]:
        """Ask the backend to give the captured coupons back (PETZ cannot: its refusal, with
        what the cashier does instead, is the step)."""
        state = self._state(order)
        if state.capture is None:
            return []
        what = f"coupons of capture {state.capture.capture_id}"
        try:
            await self.provider.refund(
                state.capture, order=order.snapshot, device_ref=self._device_ref
            )
        except LaneError as exc:
            return [outcome(FLOW, self.provider.name, "refund", what, exc)]
        return [outcome(FLOW, self.provider.name, "refund", f"{what} given back")]

    def view(self, order: Order) -> CouponView | None:
        state = self._book.flow_state(order.order_id, FLOW, CouponState)
        if state is None:
            return None
        return CouponView(
            consumer_id=state.consumer_id,
            customer=state.customer,
            auth=state.auth,
            stale=state.stale,
            stale_reason=state.stale_reason if state.stale else None,
            capture=state.capture,
            released=state.released,
        )

    async def _release(self, order: Order, auth: CouponAuthorization) -> StepOutcome:
        what = f"coupons of authorization {auth.auth_id}"
        try:
            await self.provider.release(
                auth.auth_id, order=order.snapshot, device_ref=self._device_ref
            )
        except LaneError as exc:
            return outcome(FLOW, self.provider.name, "release", what, exc)
        return outcome(FLOW, self.provider.name, "release", f"{what} released")

    async def _final(self, order: Order, consumer_id: str, status: OrderState) -> StepOutcome:
        try:
            await self.provider.set_order(
                order.snapshot, device_ref=self._device_ref, consumer_id=consumer_id, status=status
            )
        except LaneError as exc:
            return outcome(FLOW, self.provider.name, "order", f"order {status} at PETZ", exc)
        return outcome(FLOW, self.provider.name, "order", f"order {status} at PETZ")

    async def _sync(self, order: Order, state: CouponState, consumer_id: str) -> None:
        """Send the open order unless PETZ has it as it is; a failure only waits for the next
        update (authorizing sends the order anyway)."""
        want = sent(order.snapshot, consumer_id)
        if state.synced != want:
            try:
                await self.provider.set_order(
                    order.snapshot,
                    device_ref=self._device_ref,
                    consumer_id=consumer_id,
                    status="open",
                )
            except LaneError as exc:
                log.warning("order %s not sent to PETZ: %s", order.order_id, exc)
            else:
                state.synced = want
        self._save(order, state)

    def _invalidate(self, order: Order, state: CouponState, reason: str) -> None:
        """The authorization no longer stands: keep it to release, never to capture."""
        auth = state.auth
        if auth is None or state.stale:
            return
        state.stale, state.stale_reason = True, reason
        self._save(order, state)
        log.info("order %s: authorization %s invalidated: %s", order.order_id, auth.auth_id, reason)
        data = CouponInvalidatedData(
            provider=self.provider.name,
            order_id=order.order_id,
            auth_id=auth.auth_id,
            reason=reason,
        )
        self._emit(Event(type="coupon.invalidated", data=data.model_dump(mode="json")))

    def _state(self, order: Order) -> CouponState:
        return self._book.flow_state(order.order_id, FLOW, CouponState) or CouponState()

    def _save(self, order: Order, state: CouponState) -> None:
        self._book.save_flow_state(order.order_id, FLOW, state)
