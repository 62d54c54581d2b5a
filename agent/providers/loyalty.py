"""What the loyalty flow needs from a loyalty backend (Punchh-style: identify the guest, build a
discount basket, dry-run the redemptions before payment, commit them after, then check in).

Amounts are integer minor units everywhere at this interface; adapters convert to whatever their
API wants. Identifiers that are bearer secrets (phone, email, card numbers, codes) are never kept
in clear in these models: a `Guest` carries masked contact details only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.orders import OrderSnapshot


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward(_Model):
    """A reward or redeemable the guest holds, as the look-up returned it."""

    reward_id: str
    name: str
    discount_type: str = Field(description="how to select it: `reward` or `redeemable`")
    amount: int | None = Field(None, description="face value in minor units, when known")
    points: int | None = Field(None, description="points it costs, for redeemables")
    expires_at: str | None = Field(None, description="as the provider wrote it")


class Guest(_Model):
    """An identified loyalty guest: enough to greet them and to offer their rewards."""

    user_id: str
    first_name: str | None = None
    email_masked: str | None = None
    phone_masked: str | None = None
    points_balance: int | None = None
    banked_rewards: int = Field(0, description="banked currency in minor units")
    unredeemed_cards: int = 0
    membership_level: str | None = None
    rewards: list[Reward] = Field(default_factory=list)


class Discount(_Model):
    """One discount the provider can apply to this order, or one already in the basket."""

    discount_type: str
    discount_id: str | None = Field(None, description="reward/redeemable id or coupon code")
    name: str
    amount: int = Field(description="minor units it takes off this order")
    qualified: bool | None = Field(
        None, description="the order qualifies; None where the provider has not evaluated it"
    )
    selected: bool = Field(False, description="already in the guest's basket")
    basket_item_id: str | None = None


class Selection(NamedTuple):
    """A discount to put in the basket; `value` (minor units) only for banked currency."""

    discount_type: str
    discount_id: str | None
    value: int | None = None


class Basket(_Model):
    """The guest's discount basket after a change."""

    redemption_ref: str | None = None
    locked: bool
    items: list[Discount] = Field(default_factory=list)


class RedemptionLine(_Model):
    """A discount the provider granted: applied to the order (query) or deducted (commit)."""

    redemption_id: str | None = None
    discount_type: str | None = None
    discount_id: str | None = None
    name: str
    amount: int = Field(ge=0, description="minor units taken off the order")


class RedemptionFailure(_Model):
    """A basket item the provider would not redeem, with its reasons for the cashier."""

    discount_type: str | None = None
    discount_id: str | None = None
    name: str | None = None
    messages: list[str] = Field(default_factory=list)


class RedemptionOutcome(_Model):
    """The answer of a redemption dry run (`committed` False) or of its commit."""

    redemption_ref: str | None
    committed: bool
    success: list[RedemptionLine] = Field(default_factory=list)
    failures: list[RedemptionFailure] = Field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.success)


class CheckinResult(_Model):
    """What the earning event gave the guest."""

    guest: Guest | None = Field(
        None, description="the guest as the answer describes them, when it does"
    )
    points_earned: int | None = None


class OtpChallenge(NamedTuple):
    """A one-time password sent to a guest, as verifying it needs it again: the same contact and
    the PKCE verifier. Holds the contact in clear: memory only, never serialised or logged."""

    identifier_kind: str
    value: str
    verifier: str
    channel: str  # `sms` or `email`


class NewGuest(NamedTuple):
    """A guest to sign up (Punchh "Create New User"): contact details in clear, memory only."""

    phone: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birthday: date | None = None
    terms_and_conditions: bool = False
    send_compliance_sms: bool = False


class LoyaltyProvider(Protocol):
    """Identify → look up → select → query (before payment) → commit (after) → check in →
    receipt details. Raise `agent.errors.ProviderError` with a vocabulary code.

    `external_uid` is one stable id per lane transaction: it locks the basket to it and makes
    retries of a commit or a check-in safe. `receipt_key` is the key from `receipt_key()`,
    the same for every call about one check and printed on the receipt.
    """

    name: str
    identifier_kinds: frozenset[str]
    """The token kinds `find_guest` can look a guest up by."""
    otp_kinds: frozenset[str]
    """The token kinds a one-time password can be sent to (a phone, an email)."""

    async def receipt_key(self, check_id: str) -> str: ...

    def receipt_barcode(self, receipt_key: str) -> str:
        """What the receipt prints for `receipt_key`, for scanning it later to earn."""
        ...

    async def find_guest(self, identifier_kind: str, value: str) -> Guest: ...

    async def send_otp(self, identifier_kind: str, value: str) -> OtpChallenge:
        """Send the guest a one-time password (by SMS or email) to sign in or up with."""
        ...

    async def verify_otp(self, challenge: OtpChallenge, code: str) -> Guest:
        """The guest the password proves, signed up by the provider if new."""
        ...

    async def sign_up(self, guest: NewGuest) -> Guest: ...

    async def lookup_discounts(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        receipt_datetime: datetime | None = None,
    ) -> list[Discount]: ...

    async def select(
        self,
        guest: Guest,
        selections: Sequence[tuple[str, str | None, int | None]],
        *,
        external_uid: str,
    ) -> Basket: ...

    async def redeem_query(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        transaction_no: str,
        receipt_datetime: datetime | None = None,
    ) -> RedemptionOutcome: ...

    async def redeem_commit(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        transaction_no: str,
        receipt_datetime: datetime | None = None,
    ) -> RedemptionOutcome: ...

    async def unlock(self, guest: Guest, *, external_uid: str) -> None: ...

    async def void_redemption(self, guest: Guest, redemption_ref: str) -> None: ...

    async def checkin(
        self,
        guest_identifier: tuple[str, str],
        order: OrderSnapshot,
        *,
        receipt_key: str,
        external_uid: str,
        transaction_no: str,
        discounts: Sequence[RedemptionLine] = (),
        receipt_datetime: datetime | None = None,
    ) -> CheckinResult: ...

    async def receipt_details(
        self,
        order: OrderSnapshot,
        *,
        receipt_key: str,
        transaction_no: str,
        discounts: Sequence[RedemptionLine] = (),
        receipt_datetime: datetime | None = None,
    ) -> None: ...

    async def check_health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...
