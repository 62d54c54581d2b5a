"""The lane's order context: what the POS last told the agent about the open order.

The POS sends `order.update` whenever the order changes and closes it with `order.paid` or
`order.void`; flows read the lines and amounts from here (PETZ order sync and coupon
authorization, Punchh redemptions and check-in, the card payment's total). Amounts are integer
minor units; `total` includes tax, as K-Series' `pos_getCurrentAccount` does.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OrderStatus(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, description="the POS's line id, stable per line")
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, description="whole units")
    amount: int = Field(description="line total in minor units, after store promotions")
    sku: str | None = Field(None, max_length=64, description="product code (UPC/EAN/SKU)")


class OrderSnapshot(BaseModel):
    """An order as the POS described it in its last `order.update`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str = Field(min_length=1, max_length=64)
    lines: list[OrderLine] = Field(default_factory=list, max_length=500)
    subtotal: int = Field(ge=0, description="minor units, before tax")
    tax: int = Field(0, ge=0)
    total: int = Field(ge=0, description="minor units, including tax")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")

    @model_validator(mode="after")
    def _total_adds_up(self) -> OrderSnapshot:
        if self.subtotal + self.tax != self.total:
            raise ValueError(f"total {self.total} is not subtotal {self.subtotal} + tax {self.tax}")
        return self


class Order(BaseModel):
    """The lane's current order and where it is in its life."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot: OrderSnapshot
    status: OrderStatus = OrderStatus.OPEN
    opened_at: datetime
    closed_at: datetime | None = None

    @property
    def order_id(self) -> str:
        return self.snapshot.order_id
