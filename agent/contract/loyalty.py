"""The loyalty flow (seed 002, Punchh): identify the guest, check the discounts they chose against
the open order before payment, and the receipt key the POS prints after it.

No bearer code travels here: a redemption code's `discount_id` is masked, and a selection names
a scanned code by its `token_id`. The guest's contact details are masked by the adapter.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from agent.contract.base import ErrorBody, OpSpec, Request, _Payload
from agent.errors import ErrorCode
from agent.orders import Minor
from agent.providers.loyalty import Discount, Guest, RedemptionFailure

LINE_PREFIX = "loyalty:"
"""Order lines whose id starts with this are the loyalty discounts the POS added from
`loyalty.discounts`; the agent takes them out again to get the order as it was checked."""


BARCODE = (
    "what to print on the receipt (Punchh: the EAN-13 digits, the receipt key and its parity "
    "digit; print them as an EAN-13 barcode, or in a QR code)"
)


class LoyaltyUserData(_Payload):
    """`loyalty.user`, and the answer to `loyalty.lookup`: the guest, and what they can use."""

    token_id: str
    display: str
    provider: str
    order_id: str | None = Field(
        description="the open order the guest is now attached to; null when no order was "
        "open (send `loyalty.lookup` once it is)"
    )
    guest: Guest
    discounts: list[Discount] = Field(
        description="the discount look-up for this order: `selected` ones are already in the "
        "guest's basket; empty while the order is empty or none is open"
    )
    discounts_error: ErrorBody | None = Field(
        None, description="why the discount look-up failed; the guest is attached all the same"
    )


class LoyaltyInvalidData(_Payload):
    """A scanned identifier that found no guest (unknown, expired code, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class LoyaltySelection(_Payload):
    """One discount to put in the guest's basket, as `discounts` of `loyalty.user` lists it."""

    discount_type: Literal["reward", "redeemable", "discount_amount", "redemption_code"]
    discount_id: str | None = Field(
        None, min_length=1, max_length=64, description="reward and redeemable: its id"
    )
    discount_value: Minor | None = Field(
        None, gt=0, description="discount_amount: the banked currency to use, minor units"
    )
    token_id: str | None = Field(
        None, description="redemption_code: the `token_id` of the scanned code"
    )

    @model_validator(mode="after")
    def _one_reference(self) -> LoyaltySelection:
        need = {"redemption_code": "token_id", "discount_amount": "discount_value"}.get(
            self.discount_type, "discount_id"
        )
        given = [n for n in ("discount_id", "discount_value", "token_id") if getattr(self, n)]
        if given != [need]:
            raise ValueError(f"a {self.discount_type} selection takes {need} and nothing else")
        return self


class LoyaltyLookupParams(Request):
    token_id: str = Field(
        description="a scanned phone, email, loyalty card, user QR, "
        "single-scan code or redemption code"
    )


class _Agreed(Request):
    accepted_terms: bool = Field(
        description="the guest agreed to the business's privacy policy and terms (the cashier "
        "asked); required true"
    )

    @model_validator(mode="after")
    def _agreed(self) -> _Agreed:
        if not self.accepted_terms:
            raise ValueError("the guest must agree to the privacy policy and terms first")
        return self


class LoyaltyOtpSendParams(Request):
    token_id: str = Field(description="a scanned or typed phone number or email")


class LoyaltyOtpSentData(_Payload):
    """A one-time password is on its way to the guest: send `loyalty.otp_verify` with it."""

    token_id: str
    display: str = Field(description="where it went, masked")
    provider: str
    channel: Literal["sms", "email"]


class LoyaltyOtpVerifyParams(_Agreed):
    token_id: str = Field(description="the `token_id` the password was sent to")
    code: str = Field(
        pattern=r"^[0-9A-Za-z]{4,12}$",
        description="the password the guest received; never logged, published or kept",
    )


class LoyaltySignupParams(_Agreed):
    token_id: str = Field(description="the guest's phone number, scanned or typed")
    email_token_id: str | None = Field(None, description="the guest's email, scanned or typed")
    first_name: str | None = Field(None, min_length=1, max_length=64)
    last_name: str | None = Field(None, min_length=1, max_length=64)
    birthday: date | None = None
    marketing_sms: bool = Field(
        False, description="the guest asked for the business's opt-in SMS (Punchh sends it)"
    )


class LoyaltySelectParams(Request):
    selections: list[LoyaltySelection] = Field(
        default_factory=list,
        max_length=20,
        description="discounts to add to the basket; empty: check the basket against the order "
        "again",
    )


class DiscountLine(_Payload):
    """A granted discount, as the order line the POS adds with `order.update` (quantity 1)."""

    line_id: str = Field(description=f"the order line's `id`; starts with `{LINE_PREFIX}`")
    name: str
    amount: int = Field(le=0, description="the order line's amount: minor units, negative")
    discount_type: str | None = None
    discount_id: str | None = Field(None, description="masked for redemption codes")


class LoyaltyDiscountsData(_Payload):
    """`loyalty.discounts`, and the answer to `loyalty.select`: the redemption check (nothing is
    redeemed yet). Replace the order's `loyalty:` lines with `lines`; `order.paid` commits
    exactly this check, `order.void` unlocks the basket."""

    order_id: str
    provider: str
    redemption_ref: str | None
    lines: list[DiscountLine]
    failures: list[RedemptionFailure] = Field(description="basket items refused, with reasons")
    total: int = Field(ge=0, description="minor units the lines take off the order")
    receipt_key: str = Field(description="the order's receipt key (Punchh: 12 digits)")
    barcode: str = Field(description=BARCODE)


class LoyaltyCheck(_Payload):
    """A redemption check's outcome (or its commit's) as `loyalty.discounts` gives it."""

    redemption_ref: str | None
    lines: list[DiscountLine]
    failures: list[RedemptionFailure] = Field(description="basket items refused, with reasons")
    total: int = Field(ge=0, description="minor units the lines take off the order")


class LoyaltyView(_Payload):
    """`flows.loyalty` of `order.get`: what the loyalty flow holds for the order, for a screen
    that missed the `loyalty.*` events. The discounts a look-up offered are not kept: the
    guest's next scan (`loyalty.user`) lists them again."""

    guest: Guest | None = Field(description="null for an order paid without a guest")
    receipt_key: str
    barcode: str = Field(description=BARCODE)
    locked: bool = Field(description="the guest's discount basket may be locked to the order")
    check: LoyaltyCheck | None = Field(description="the last redemption check (nothing redeemed)")
    committed: LoyaltyCheck | None = Field(description="what `order.paid` redeemed")
    checked_in: bool = Field(description="the guest earned for this order (check-in sent)")
    points_earned: int | None = None


class LoyaltyStaleData(_Payload):
    """The order changed after the redemption check and checking it again failed: its loyalty
    lines are not confirmed. `loyalty.select` with no selections checks again; paid as it is,
    nothing is redeemed."""

    order_id: str
    provider: str
    error: ErrorBody


class LoyaltyReceiptData(_Payload):
    """`loyalty.receipt` on `order.paid`: what to print, loyalty guest or not."""

    order_id: str
    provider: str
    receipt_key: str
    barcode: str = Field(description=BARCODE)
    checked_in: bool = Field(description="the guest earned for this order (check-in sent)")
    points_earned: int | None = None


EVENTS: dict[str, type[_Payload]] = {
    "loyalty.user": LoyaltyUserData,
    "loyalty.invalid": LoyaltyInvalidData,
    "loyalty.discounts": LoyaltyDiscountsData,
    "loyalty.stale": LoyaltyStaleData,
    "loyalty.receipt": LoyaltyReceiptData,
}

OPS: dict[str, OpSpec] = {
    "loyalty.lookup": OpSpec(
        LoyaltyLookupParams,
        LoyaltyUserData,
        "identify the guest by a scanned identifier, attach them to the open order and look up "
        "their discounts",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.EXPIRED,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
    "loyalty.otp_send": OpSpec(
        LoyaltyOtpSendParams,
        LoyaltyOtpSentData,
        "send the guest a one-time password by SMS or email, to sign in (or up) with "
        "`loyalty.otp_verify`",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.NOT_CONFIGURED,
        ),
    ),
    "loyalty.otp_verify": OpSpec(
        LoyaltyOtpVerifyParams,
        LoyaltyUserData,
        "check the guest's one-time password; the guest it proves (signed up if new) is "
        "attached to the open order as by `loyalty.lookup`",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.EXPIRED,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
    "loyalty.signup": OpSpec(
        LoyaltySignupParams,
        LoyaltyUserData,
        "sign a new guest up by phone (Punchh's legacy Create New User) and attach them to the "
        "open order as by `loyalty.lookup`",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
    "loyalty.select": OpSpec(
        LoyaltySelectParams,
        LoyaltyDiscountsData,
        "add discounts to the guest's basket and check them against the open order (nothing "
        "is redeemed before order.paid)",
        errors=(
            ErrorCode.UNKNOWN_TOKEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.NOT_REDEEMABLE,
            ErrorCode.INSUFFICIENT_BALANCE,
            ErrorCode.EXPIRED,
            ErrorCode.BASKET_LOCKED,
            ErrorCode.PROVIDER_UNAVAILABLE,
            ErrorCode.UNKNOWN_OUTCOME,
            ErrorCode.NOT_CONFIGURED,
            ErrorCode.STORAGE_FULL,
        ),
    ),
}
