"""Coupons (seed 001, PETZ): the customer by phone, the coupons authorized for the open order
before payment, and their capture after `order.paid`.

The POS applies the store's own promotions, sends `order.update`, then `coupon.authorize`; it
applies the discounts of `coupon.authorized` to the order and sends `order.update` again. The
capture runs inside `order.paid` and the release inside `order.void` (their steps say how it
went); `coupon.capture` only retries a capture that failed there.
"""

from __future__ import annotations

from pydantic import Field

from agent.contract.base import ErrorBody, OpSpec, Request, _Payload
from agent.errors import ErrorCode
from agent.providers.coupons import CouponAuthorization, CouponCapture, CouponCustomer


class CouponCustomerData(_Payload):
    """The customer a phone number matched, attached to the open order, with their wallet."""

    token_id: str
    display: str = Field(description="the masked phone number, for the cashier to confirm")
    provider: str
    order_id: str
    customer: CouponCustomer


class CouponInvalidData(_Payload):
    """A phone number that gave no customer (unknown number, no open order, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class CouponAuthorizedData(_Payload):
    """The wallet's coupons held for the order: apply `authorization.discounts` whose `amount`
    is above 0 to their `line_ids`; the others carry the reason they did not apply."""

    provider: str
    authorization: CouponAuthorization


class CouponInvalidatedData(_Payload):
    """The order's products or customer changed after the authorization: remove its discounts
    and send `coupon.authorize` again before payment, or nothing will be captured."""

    provider: str
    order_id: str
    auth_id: str
    reason: str


class CouponCapturedData(_Payload):
    """The authorization captured after payment: its coupons left the customer's wallet."""

    provider: str
    order_id: str
    capture: CouponCapture


class CouponView(_Payload):
    """`flows.coupons` of `order.get`: what the coupon flow holds for the order, for a screen
    that missed the `coupon.*` events."""

    consumer_id: str | None = Field(description="the provider's customer attached to the order")
    customer: CouponCustomer | None = Field(
        description="that customer as `coupon.customer` showed them (masked phone, the wallet "
        "as it was then); null for a customer attached by an agent that did not keep it"
    )
    auth: CouponAuthorization | None = Field(
        description="the last authorization (`coupon.authorized`)"
    )
    stale: bool = Field(
        description="the order's products or customer changed since `auth` "
        "(`coupon.invalidated`): it must be renewed, or nothing is captured"
    )
    stale_reason: str | None = Field(description="why, while `stale`")
    capture: CouponCapture | None = Field(description="the capture after payment")
    released: bool = Field(
        description="the order was voided or replaced and the provider let the coupons go"
    )


class CouponCustomerParams(Request):
    """Look up the customer of a scanned or keyed phone number (`token_id` of a `phone` scan)
    for the open order; a phone scan does the same by itself."""

    token_id: str


class CouponAuthorizeParams(Request):
    order_id: str | None = Field(
        None, min_length=1, max_length=64, description="must be the open order when given"
    )


class CouponCaptureParams(Request):
    order_id: str = Field(min_length=1, max_length=64)


EVENTS: dict[str, type[_Payload]] = {
    "coupon.customer": CouponCustomerData,
    "coupon.invalid": CouponInvalidData,
    "coupon.authorized": CouponAuthorizedData,
    "coupon.invalidated": CouponInvalidatedData,
    "coupon.captured": CouponCapturedData,
}

OPS: dict[str, OpSpec] = {
    "coupon.customer": OpSpec(
        CouponCustomerParams,
        CouponCustomerData,
        "attach the customer of a phone number to the open order and show their wallet",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
    "coupon.authorize": OpSpec(
        CouponAuthorizeParams,
        CouponAuthorizedData,
        "authorize the customer's coupons for the open order (after store promotions)",
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.NOT_REDEEMABLE,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
    "coupon.capture": OpSpec(
        CouponCaptureParams,
        CouponCapturedData,
        "capture a paid order's coupons again when the capture at order.paid failed",
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.NOT_REDEEMABLE,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
}
