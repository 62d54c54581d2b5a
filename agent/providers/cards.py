"""What the card payment flow needs from a stored-value card backend (the K-Series style gift
card payment): read a card's balance, debit it under a client reference, reverse a debit, and
find a debit by its reference when an answer was lost.

Amounts are integer minor units at this interface. A card number is a bearer secret: adapters
take it as an argument and send it to the backend, but no model here can hold it; they keep its
last four characters only, which is all a cashier needs to match the card in hand. A card is
identified by its printed number or, for an NFC card without one, by its chip's UID in hex.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, computed_field

from agent.tokens import MASK

# How many mask characters stand for the hidden digits; matches `agent.tokens.mask` for the
# usual 16-digit card, so the event and the scan show the same text.
_HIDDEN = 12


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


LAST4 = r"^[0-9A-F]{4}$"
LAST4_TEXT = "the last four characters of the card number (or of its NFC UID, in hex)"


def masked(last4: str) -> str:
    """What a screen shows for a card: `••••••••••••0001`."""
    return MASK * _HIDDEN + last4


class _Masked(_Model):
    card_last4: str = Field(pattern=LAST4, description=LAST4_TEXT)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def masked_number(self) -> str:
        return masked(self.card_last4)


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    EXPIRED = "expired"


class RedemptionStatus(enum.StrEnum):
    COMPLETED = "completed"
    REVERSED = "reversed"


class CardBalance(_Masked):
    """A card as the backend sees it now; a blocked or expired card still has a balance."""

    balance: int = Field(ge=0, description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    status: CardStatus
    expires_on: date | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_redeemable(self) -> bool:
        """The card can pay something now; the flow checks this before offering it."""
        return self.status is CardStatus.ACTIVE and self.balance > 0


class CardRedemption(_Masked):
    """A debit of a card. `reference` is the client's idempotency key: the same reference
    always names this one debit, however often it was sent."""

    transaction_id: str = Field(min_length=1)
    amount: int = Field(gt=0, description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reference: str
    balance_after: int | None = Field(
        None,
        ge=0,
        description="the card's balance right after this debit; null when the card service's "
        "answer did not say (the debit stands all the same)",
    )
    status: RedemptionStatus
    created_at: datetime
    reversal_id: str | None = None


class CardReversal(_Model):
    """The undoing of a debit: its amount went back onto the card. The card service accepting
    it is the fact; each detail the service's answer did not give is null."""

    reversal_id: str | None = Field(None, min_length=1)
    transaction_id: str = Field(description="the redemption it reversed")
    card_last4: str | None = Field(None, pattern=LAST4, description=LAST4_TEXT)
    amount: int | None = Field(None, gt=0, description="minor units restored")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    reference: str
    balance_after: int | None = Field(None, ge=0)
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def masked_number(self) -> str | None:
        return None if self.card_last4 is None else masked(self.card_last4)


class CardProvider(Protocol):
    """Balance, redeem, reverse, find. Raise `agent.errors.ProviderError` with a vocabulary code;
    `insufficient_balance` carries `details={"available": N, "currency": "USD"}` so the POS can
    offer a partial payment.

    `payment_method_code` is what the POS passes to `pos_addPayment` for a payment this provider
    took; `currency` is the currency the lane's card payments are in.
    """

    name: str
    payment_method_code: str
    currency: str

    async def balance(self, card_number: str) -> CardBalance: ...

    async def redeem(
        self, card_number: str, *, amount: int, currency: str, reference: str
    ) -> CardRedemption: ...

    async def reverse(self, transaction_id: str, *, reference: str) -> CardReversal: ...

    async def find_redemption(self, reference: str) -> CardRedemption | None: ...

    async def check_health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...
