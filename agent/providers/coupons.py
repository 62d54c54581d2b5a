"""What the coupon flow needs from a coupon backend (PETZ-style: identify the customer by phone,
keep the backend's copy of the order in step, authorize the wallet's coupons against it before
payment, capture the authorization after payment, release it when the sale is voided).

Amounts are integer minor units everywhere at this interface; adapters convert to whatever their
API wants. The customer's phone number is never kept in clear in these models.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.orders import OrderSnapshot

OrderState = Literal["open", "paid", "void"]
"""The order's state as the lane reports it to the coupon backend."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WalletCoupon(_Model):
    """A coupon the customer saved in their wallet: only these can be authorized."""

    coupon_id: str
    description: str
    upcs: list[str] = Field(default_factory=list, description="products it applies to")
    amount_off: int | None = Field(None, ge=0, description="minor units off the matching items")
    percent_off: Decimal | None = Field(None, gt=0, le=100)
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _one_value(self) -> WalletCoupon:
        if (self.amount_off is None) == (self.percent_off is None):
            raise ValueError("a coupon has exactly one of amount_off or percent_off")
        return self


class CouponCustomer(_Model):
    """The customer the phone number matched, with their wallet."""

    consumer_id: str
    phone_masked: str = Field(description="so the cashier can confirm the number (family phones)")
    wallet: list[WalletCoupon] = Field(default_factory=list)
    wallet_url: str | None = Field(
        None, description="the backend's page showing the wallet, for a webview on the POS"
    )


class CouponRejection(enum.StrEnum):
    """Why a wallet coupon gave no discount on this order."""

    PRODUCT_MISMATCH = "product_mismatch"  # no order line carries one of its UPCs
    EXPIRED = "expired"
    IN_USE = "in_use"  # authorized on another, still open, order
    FULLY_DISCOUNTED = "fully_discounted"  # its items have no amount left to discount
    NOT_APPLICABLE = "not_applicable"  # any other reason the backend gives


class CouponDiscount(_Model):
    """One wallet coupon evaluated against the order: a discount, or a reason why not."""

    coupon_id: str
    description: str
    amount: int = Field(ge=0, description="minor units taken off the order; 0 when rejected")
    line_ids: list[str] = Field(default_factory=list, description="order lines it applies to")
    rejected: CouponRejection | None = None
    reason: str | None = Field(None, description="the backend's words, for the cashier")


class CouponAuthorization(_Model):
    """The coupons held for one order until capture (after payment) or release (void)."""

    auth_id: str
    order_id: str
    consumer_id: str
    discounts: list[CouponDiscount] = Field(
        default_factory=list, description="every coupon evaluated, applied or not"
    )
    total_discount: int = Field(ge=0, description="minor units")

    @property
    def applied(self) -> list[CouponDiscount]:
        return [d for d in self.discounts if d.amount > 0]


class CouponCapture(_Model):
    """The authorization turned into redemptions: its coupons left the wallet."""

    capture_id: str
    auth_id: str
    coupon_ids: list[str]
    total_discount: int = Field(ge=0, description="minor units")
    captured_at: datetime | None = None


class CouponProvider(Protocol):
    """Customer → order sync → authorize (before payment) → capture (after) or release (void).

    Raise `agent.errors.ProviderError` with a vocabulary code. `device_ref` names the register
    (lane) to the backend; `order.order_id` is the backend's order reference.
    """

    name: str
    device_ref: str
    """How the backend knows this register (lane)."""

    async def set_customer(
        self, phone: str, *, order: OrderSnapshot, device_ref: str
    ) -> CouponCustomer: ...

    async def set_order(
        self,
        order: OrderSnapshot,
        *,
        device_ref: str,
        consumer_id: str | None,
        status: OrderState,
    ) -> None: ...

    async def authorize(
        self, order: OrderSnapshot, *, device_ref: str, consumer_id: str
    ) -> CouponAuthorization: ...

    async def capture(
        self, auth: CouponAuthorization | str, *, order: OrderSnapshot, device_ref: str
    ) -> CouponCapture: ...

    async def release(self, auth_id: str, *, order: OrderSnapshot, device_ref: str) -> None: ...

    async def refund(
        self, capture: CouponCapture, *, order: OrderSnapshot, device_ref: str
    ) -> None:
        """Give a refunded sale's captured coupons back to the customer's wallet; a backend
        without such a call raises `not_configured` saying what the cashier does instead."""
        ...

    async def check_health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...
