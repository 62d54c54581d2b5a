"""What the flows need from a gift backend. Amounts are integer minor units everywhere."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.orders import OrderSnapshot


class GiftType(enum.StrEnum):
    MONETARY = "monetary"
    ITEM = "item"


class NotRedeemableReason(enum.StrEnum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    DEPLETED = "depleted"
    WRONG_LOCATION = "wrong_location"
    VOIDED = "voided"


class GiftRef(BaseModel):
    """How the gift was presented: the 12-digit code typed or scanned, or the QR public token."""

    model_config = ConfigDict(frozen=True)

    code: str | None = None
    public_token: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GiftRef:
        if (self.code is None) == (self.public_token is None):
            raise ValueError("give exactly one of code or public_token")
        return self


class GiftStatus(BaseModel):
    """A validated gift. Found is not redeemable: check `is_redeemable` before redeeming."""

    gift_id: str
    type: GiftType
    currency: str | None = None
    balance: int | None = None
    item_label: str | None = None
    item_quantity: int | None = None
    eligible_value: int = 0
    eligible_quantity: int = 0
    is_redeemable: bool
    reason: NotRedeemableReason | None = None
    description: str
    valid_from: datetime | None = None
    expires_at: datetime | None = None
    sender: str | None = None
    recipient: str | None = None


class Redemption(BaseModel):
    transaction_id: str = Field(
        description="the provider's id; `unconfirmed:<request_id>` when its answer was lost and "
        "the gift's balance showed the redemption went through (reverse that one with the "
        "provider directly)"
    )
    gift_id: str
    amount: int | None = None
    quantity: int | None = None
    gift: GiftStatus | None = Field(
        description="the gift after the redemption; null when the provider's answer did not "
        "describe it (the redemption stands all the same)"
    )


class Reversal(BaseModel):
    transaction_id: str
    gift_id: str | None = Field(
        None, description="null when the provider answered with the transaction record alone"
    )
    amount: int | None = None
    quantity: int | None = None
    reversed_at: datetime
    gift: GiftStatus | None = Field(
        None,
        description="the gift after the reversal; null when the provider's answer did not "
        "describe it (seed 003 answers a reversal with the transaction record)",
    )


class GiftProvider(Protocol):
    """Validate, redeem, reverse. Raise `agent.errors.ProviderError` with a vocabulary code."""

    name: str

    async def validate(
        self, ref: GiftRef, *, location: str | None, ticket: OrderSnapshot | None = None
    ) -> GiftStatus:
        """`ticket`: the lane's open order, which a provider may use to check an item gift's
        eligible items (seed 003's optional "POS ticket data")."""
        ...

    async def redeem(
        self,
        gift_id: str,
        *,
        amount: int | None = None,
        quantity: int | None = None,
        location: str | None,
        idempotency_key: str,
    ) -> Redemption: ...

    async def reverse(
        self, transaction_id: str, *, location: str | None, idempotency_key: str
    ) -> Reversal: ...

    async def check_health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...
