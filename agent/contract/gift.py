"""Gift vouchers (Gift Local, sandbox) and gift card payments (the K-Series style card flow)."""

from __future__ import annotations

from pydantic import Field, StrictBool, model_validator

from agent.contract.base import ErrorBody, OpSpec, Request, _Payload
from agent.errors import ErrorCode
from agent.orders import Count, Minor
from agent.providers.base import GiftStatus, Redemption, Reversal
from agent.providers.cards import CardBalance, CardRedemption, CardReversal


class GiftValidatedData(_Payload):
    token_id: str
    display: str
    provider: str
    gift: GiftStatus


class GiftInvalidData(_Payload):
    """A scanned gift code the provider could not validate (not found, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class GiftRedeemedData(_Payload):
    """A voucher redeemed: at once, in answer to its request, or `late`: found applied after a
    fault (a crash or a lost answer) by the next redeem of the same gift, when its own request
    was not answered with it."""

    token_id: str | None
    display: str | None
    provider: str
    redemption: Redemption
    request_id: str | None = Field(None, description="the `gift.redeem` request that redeemed it")
    late: bool = Field(
        False,
        description="learnt after a fault, not in the answer to its request: check whether the "
        "sale counted it",
    )


class GiftReversedData(_Payload):
    """A voucher redemption given back: by `gift.reverse`, or by the void, replacement or
    refund of its order."""

    provider: str
    reversal: Reversal
    order_id: str | None = Field(None, description="the order it had paid for, if any")
    display: str | None = Field(None, description="the masked voucher code")


class CardBalanceData(_Payload):
    """A scanned gift card's balance, for the POS display (K-Series: `pos_postMessage`)."""

    token_id: str
    display: str
    provider: str
    card: CardBalance


class CardInvalidData(_Payload):
    """A scanned gift card the provider could not look up (unknown card, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class PaymentInstruction(_Payload):
    """What the POS adds as a payment (K-Series: `pos_addPayment(amount_cents, code, cb)`)."""

    amount_cents: int = Field(gt=0, description="minor units")
    payment_method_code: str
    currency: str


class CardReversedData(_Payload):
    """A gift card payment given back: by `gift.reverse`, or by the void, replacement or
    refund of its order."""

    provider: str
    order_id: str
    reversal: CardReversal


class CardPaidData(_Payload):
    token_id: str
    display: str
    provider: str
    order_id: str
    payment: PaymentInstruction
    redemption: CardRedemption
    remaining: int = Field(description="what is left to pay on the order, minor units")


class GiftValidateParams(Request):
    token_id: str


class GiftRedeemParams(Request):
    """`amount` (monetary gifts and gift cards, minor units) or `quantity` (item gifts). For a
    gift card payment `amount` may be left out: the agent then pays what is left of the open
    order's total (tax included)."""

    token_id: str
    amount: Minor | None = Field(None, gt=0, description="minor units, e.g. cents")
    quantity: Count | None = None
    confirm_repeat: StrictBool = Field(
        False,
        description="redeem even though an earlier redemption of this gift on this lane went "
        "through after a fault or may have (answered `earlier_redemption`): the cashier checked "
        "that a second one is meant",
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> GiftRedeemParams:
        if self.amount is not None and self.quantity is not None:
            raise ValueError("give amount (minor units) or quantity, not both")
        return self


class GiftReverseParams(Request):
    transaction_id: str = Field(min_length=1, max_length=128)


class RedeemResult(_Payload):
    """A gift voucher redemption (`redemption`) or a gift card payment (`card` and `payment`:
    add `payment` to the order, e.g. with K-Series `pos_addPayment`)."""

    provider: str
    redemption: Redemption | None = None
    card: CardRedemption | None = None
    payment: PaymentInstruction | None = None
    remaining: int | None = Field(
        None, description="card payments: what is left to pay on the order, minor units"
    )


class ReverseResult(_Payload):
    """A gift voucher redemption reversed (`reversal`), or a gift card payment (`card`)."""

    provider: str
    reversal: Reversal | None = None
    card: CardReversal | None = None


class ValidateResult(_Payload):
    """A gift voucher (`gift`) or a gift card's balance (`card`)."""

    provider: str
    gift: GiftStatus | None = None
    card: CardBalance | None = None


EVENTS: dict[str, type[_Payload]] = {
    "gift.validated": GiftValidatedData,
    "gift.invalid": GiftInvalidData,
    "gift.redeemed": GiftRedeemedData,
    "gift.reversed": GiftReversedData,
    "card.balance": CardBalanceData,
    "card.invalid": CardInvalidData,
    "card.paid": CardPaidData,
    "card.reversed": CardReversedData,
}

OPS: dict[str, OpSpec] = {
    "gift.validate": OpSpec(
        GiftValidateParams,
        ValidateResult,
        "validate a scanned gift voucher or read a gift card's balance again",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.NOT_CONFIGURED,
        ),
    ),
    "gift.redeem": OpSpec(
        GiftRedeemParams,
        RedeemResult,
        "redeem a gift voucher, or pay with a gift card (amount defaults to what is left)",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.NOT_REDEEMABLE,
            ErrorCode.INSUFFICIENT_BALANCE,
            ErrorCode.EXPIRED,
            ErrorCode.NOT_YET_VALID,
            ErrorCode.WRONG_LOCATION,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.EARLIER_REDEMPTION,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
        outcome_learnt_later=True,
    ),
    "gift.reverse": OpSpec(
        GiftReverseParams,
        ReverseResult,
        "reverse a voucher redemption or a card payment this lane took, by its transaction id",
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.ALREADY_REVERSED,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
}
