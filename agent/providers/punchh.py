"""Punchh (PAR) POS API adapter: guest look-up, Redemptions 2.0 (discount basket, dry run before
payment, commit after), check-in and receipt details.

Wire rules it keeps (see docs/providers/punchh.md for sources and the UNCERTAIN list):

- every call carries `Authorization: Token token=<location key>, btoken=<business key>`, a
  `User-Agent` of the form `<Integrator>/POS/<version>` and `Accept: application/json`; calls
  with a body are JSON;
- Redemptions 2.0 calls describe the order as `line_items` (`item_name`, `item_qty`, `amount`,
  `item_type`, `item_id`, `item_family`, `item_group`, `serial_number`); check-in and receipt
  details as `menu_items` (`item_name`, `item_qty`, `item_amount`, `menu_item_type`,
  `menu_item_id`, `menu_family`, `menu_major_group`, `serial_number`). Both lists are pure
  functions of the `OrderSnapshot`, so the commit can resend the dry run's items byte for byte
  (Punchh re-validates the receipt at commit and fails it on any change);
- the commit is the dry run without the `query` key (not `query: false`);
- Punchh amounts are decimal currency; this module converts them to and from integer minor
  units with `Decimal`, never through binary floating point arithmetic.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ConfigDict, Field, ValidationError

from agent import __version__
from agent.errors import ErrorCode, ProviderError
from agent.orders import OrderSnapshot
from agent.providers import punchh_key
from agent.providers.answers import Answer, Lenient, present
from agent.providers.http import ProviderClient, error_message
from agent.providers.loyalty import (
    Basket,
    CheckinResult,
    Discount,
    Guest,
    NewGuest,
    OtpChallenge,
    RedemptionFailure,
    RedemptionLine,
    RedemptionOutcome,
    Reward,
)
from agent.providers.settings import PunchhSettings
from agent.registry import ProviderEnv
from agent.secrets import read_key
from agent.tokens import mask

log = logging.getLogger(__name__)

NAME: Final = "punchh"

SEARCH_PARAMS: Final[Mapping[str, str]] = {
    "phone": "phone",
    "email": "email",
    "loyalty_card": "card_number",
    "loyalty_user_qr": "user_as_qrcode",
    "loyalty_single_scan": "single_scan_code",
    "loyalty_redemption_code": "redemption_code",
}
"""The agent's token kind → the one `/api/pos/users/search` (and check-in) parameter naming the
guest."""

INTEGRATION_TYPE: Final = "POS"
"""The middle part of the mandatory User-Agent, `<Integrator>/<IntegrationType>/<Version>`."""

STATUS_CODES: Final[Mapping[int, ErrorCode]] = {
    400: ErrorCode.INVALID_REQUEST,  # a parameter is missing or empty; Punchh names it
    401: ErrorCode.NOT_CONFIGURED,  # ["Invalid LocationKey"]: the keys in the config are wrong
    403: ErrorCode.NOT_CONFIGURED,
    404: ErrorCode.NOT_FOUND,  # user, code, basket or redemption not found
    # Gone: a code expired, or a void after the check-in was committed: too late to do it here.
    410: ErrorCode.EXPIRED,
    422: ErrorCode.NOT_REDEEMABLE,  # a business rule refused it; see REJECTIONS_422 first
    429: ErrorCode.PROVIDER_UNAVAILABLE,  # throttled: nothing applied, try again later
}

REJECTIONS_422: Final[tuple[tuple[str, ErrorCode], ...]] = (
    ("basket is currently locked", ErrorCode.BASKET_LOCKED),
    ("currently accessing the same code", ErrorCode.BASKET_LOCKED),
    ("insufficient", ErrorCode.INSUFFICIENT_BALANCE),
    ("no basket found", ErrorCode.NOT_FOUND),
    ("invalid receipt amount", ErrorCode.INVALID_REQUEST),
    ("does not support this feature", ErrorCode.NOT_CONFIGURED),
)
"""Punchh answers most business-rule refusals with 422 and tells them apart only by text
(lower-case substrings, first match wins; UNCERTAIN wording, from the R2 spec's examples)."""

OTP_CHANNELS: Final[Mapping[str, str]] = {"phone": "sms", "email": "email"}
"""The token kinds a one-time password can go to, and how it travels."""

SEND_OTP_PATH: Final = "/api2/password_less/token"
"""UNCERTAIN: PAR's "Send OTP" page (mobile portal, Advanced Authentication) was stored only up
to its body's `client`; this path is the one Punchh's public QA code names for it, beside the
verify and refresh paths that PAR's own pages name."""
VERIFY_OTP_PATH: Final = "/api2/password_less/verify"
"""PAR's "Verify Token" page (its URL names the method and path)."""

PKCE_FIELDS: Final = ("code_challenge", "code_challenge_method", "S256")
"""UNCERTAIN: how Send OTP takes the PKCE code challenge (its stored page stops before them;
Verify Token's `code_verifier` is documented): OAuth's names and method (RFC 7636)."""

OTP_FIELD: Final = "token"
"""UNCERTAIN: the name of the guest's code in Verify Token's body (not in the stored page; the
mobile API's other OTP call, the migration flow's verify_token, names it `token`)."""

CLIENT_TYPE: Final = "online_ordering"
"""UNCERTAIN: Verify Token's required `client-type` header knows `external_mobile_app` and
`online_ordering` only; Punchh lists POS among Advanced Authentication's future channels."""

IDENTIFY_REFUSALS: Final[Mapping[int, ErrorCode]] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.INVALID_REQUEST,
    410: ErrorCode.EXPIRED,
    422: ErrorCode.INVALID_REQUEST,
}
"""UNCERTAIN: Advanced Authentication's answer to a wrong or expired code, and Create New User's
to a phone or email already taken, are not documented (only 422 "Please agree on given privacy
policy" is): any of these is the cashier's to read in Punchh's words, not a configuration
fault; a 401 to Create New User is the location key (`not_configured`, as everywhere)."""

TAX_ITEM_ID: Final = 0
PAYMENT_ITEM_ID: Final = 0
"""`menu_item_id` of the tax (T) and payment (P) lines: Punchh matches offers against menu (M)
items only, so these ids carry no meaning (UNCERTAIN)."""


# -- money and order data --------------------------------------------------------------------


def to_amount(minor: int, decimals: int) -> float:
    """Minor units → the decimal number Punchh expects; its JSON form (the shortest repr) reads
    back to the same minor units."""
    return float(Decimal(minor).scaleb(-decimals))


def from_amount(value: Decimal, decimals: int, rounding: str = ROUND_HALF_UP) -> int:
    """A Punchh decimal amount → minor units."""
    return int(value.scaleb(decimals).quantize(Decimal(1), rounding=rounding))


def numeric_id(*candidates: str | None) -> int:
    """Punchh wants integers for item ids and check-in transaction numbers: the first all-digit
    candidate, else a stable CRC-32 of the first non-empty one, so one product (or order) always
    gets one number (UNCERTAIN: offers keyed on real menu item ids match only numeric SKUs)."""
    present = [c for c in candidates if c]
    for candidate in present:
        if candidate.isascii() and candidate.isdigit() and len(candidate) <= 18:
            return int(candidate)
    return zlib.crc32(present[0].encode()) if present else 0


def line_items(order: OrderSnapshot, decimals: int) -> list[dict[str, Any]]:
    """Redemptions 2.0 `line_items`: one M item per order line, in order.

    Pure and deterministic: the same snapshot gives the same list (hence the same JSON bytes), so
    a commit can repeat its dry run exactly. Lines with a negative amount (store discounts) are
    left out: Punchh wants discounted prices, never D lines, in R2 calls.
    """
    return [
        {
            "item_name": line.name,
            "item_qty": line.quantity,
            "amount": to_amount(line.amount, decimals),
            "item_type": "M",
            "item_id": numeric_id(line.sku, line.id),
            "item_family": "",
            "item_group": "",
            "serial_number": float(index),
        }
        for index, line in enumerate(order.lines, start=1)
        if line.amount >= 0
    ]


def menu_items(
    order: OrderSnapshot, discounts: Sequence[RedemptionLine], decimals: int
) -> list[dict[str, Any]]:
    """Check-in and receipt-details `menu_items`: M per line (D for a store discount line), D per
    loyalty discount, T for tax, P for what was paid. Every `item_amount` is positive and the
    check balances as Punchh requires: subtotal = ΣM − ΣD and subtotal + ΣT = ΣP."""
    _, payable = receipt_amounts(order, discounts)
    rows: list[tuple[str, int, int, str, int]] = [
        (
            line.name,
            line.quantity,
            abs(line.amount),
            "D" if line.amount < 0 else "M",
            numeric_id(line.sku, line.id),
        )
        for line in order.lines
    ]
    rows += [
        (d.name, 1, d.amount, "D", numeric_id(d.discount_id, d.redemption_id))
        for d in discounts
        if d.amount
    ]
    if order.tax:
        rows.append(("Tax", 1, order.tax, "T", TAX_ITEM_ID))
    rows.append(("Payment", 1, payable, "P", PAYMENT_ITEM_ID))
    return [
        {
            "item_name": name,
            "item_qty": qty,
            "item_amount": to_amount(amount, decimals),
            "menu_item_type": kind,
            "menu_item_id": str(ident),
            "menu_family": "",
            "menu_major_group": "",
            "serial_number": f"{index}.0",
        }
        for index, (name, qty, amount, kind, ident) in enumerate(rows, start=1)
    ]


def receipt_amounts(order: OrderSnapshot, discounts: Sequence[RedemptionLine]) -> tuple[int, int]:
    """(subtotal after loyalty discounts, payable) for a paid order; tax is not recomputed.

    `order` is the snapshot the redemptions were queried with (before loyalty discounts)."""
    lines = sum(line.amount for line in order.lines)
    if lines != order.subtotal:
        raise ProviderError(
            ErrorCode.INVALID_REQUEST,
            f"the order lines add up to {lines}, not to its subtotal {order.subtotal}: "
            "Punchh needs a balanced check",
        )
    subtotal = order.subtotal - sum(d.amount for d in discounts)
    if subtotal < 0:
        raise ProviderError(
            ErrorCode.INVALID_REQUEST, "the loyalty discounts exceed the order subtotal"
        )
    return subtotal, subtotal + order.tax


def iso_datetime(when: datetime | None) -> str:
    """ISO 8601 with the UTC offset, as Punchh requires (`2018-10-26T23:59:59-07:00`)."""
    moment = when or datetime.now()
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="seconds")


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{mask(local)}@{domain}"


# -- Punchh's answers --------------------------------------------------------------------------
#
# Tolerant readers: the seed names no answer field, so the public spec's names come first. Only
# the one identifier a read needs is required (a guest's `id`); every other field is optional,
# and one that is missing or unreadable is left out (and logged) instead of failing the answer.
# Fields no model names are ignored, and logged once per name. A write's success is its HTTP
# status: its answer is read the same way and never turns a success into `unknown_outcome`.


class _Api(Answer):
    model_config = ConfigDict(coerce_numbers_to_str=True)
    provider = NAME


class _ApiReward(_Api):
    id: str
    name: Lenient[str] = None
    type: Lenient[str] = None
    discount_amount: Lenient[Decimal] = None
    points: Lenient[Decimal] = None
    end_date_tz: Lenient[str] = None


class _ApiBalance(_Api):
    banked_rewards: Lenient[Decimal] = None
    points_balance: Lenient[Decimal] = None
    unredeemed_cards: Lenient[int] = None
    membership_level: Lenient[str] = None


class _ApiUser(_Api):
    id: str
    first_name: Lenient[str] = None
    email: Lenient[str] = None
    phone: Lenient[str] = None
    balance: Lenient[_ApiBalance] = None
    rewards: Lenient[list[Lenient[_ApiReward]]] = None


class _ApiCheckin(_Api):
    """What a check-in earned; the guest it describes is read apart, as an `_ApiUser`."""

    points_earned: Lenient[Decimal] = None


class _ApiDetails(_Api):
    name: Lenient[str] = None


class _ApiDiscount(_Api):
    discount_basket_item_id: Lenient[str] = None
    discount_type: Lenient[str] = None
    discount_id: Lenient[str] = None
    discount_amount: Lenient[Decimal] = None
    discount_value: Lenient[Decimal] = None
    qualified: Lenient[bool] = None
    redemption_id: Lenient[str] = None
    message: Lenient[list[str] | str] = None
    discount_details: Lenient[_ApiDetails] = None  # the spec's examples also send [] here

    @property
    def name(self) -> str:
        details = self.discount_details
        return (details.name if details else None) or self.discount_type or "discount"


class _ApiLookup(_Api):
    selected_discounts: Lenient[list[Lenient[_ApiDiscount]]] = None
    unselected_discounts: Lenient[list[Lenient[_ApiDiscount]]] = None


class _ApiBasket(_Api):
    redemption_ref: Lenient[str] = None
    locked: Lenient[bool] = None
    discount_basket_items: Lenient[list[Lenient[_ApiDiscount]]] = None


class _ApiBatch(_Api):
    redemption_ref: Lenient[str] = None
    success: Lenient[list[Lenient[_ApiDiscount]]] = None
    failures: Lenient[list[Lenient[_ApiDiscount]]] = None


class _ApiLocation(_Api):
    location_name: Lenient[str] = None
    short_key: Lenient[Annotated[int, Field(ge=0, le=punchh_key.MAX_SHORT_KEY)]] = None


_A = TypeVar("_A", bound=_Api)


def classify(status: int, message: str) -> ErrorCode:
    """The vocabulary code for a Punchh refusal (any status from 300 to 499)."""
    if status < 400:
        return ErrorCode.NOT_CONFIGURED  # a redirect: base_url points at the wrong place
    if status == 422:
        lowered = message.lower()
        for text, code in REJECTIONS_422:
            if text in lowered:
                return code
    return STATUS_CODES.get(status, ErrorCode.INVALID_REQUEST)


class PunchhLoyaltyProvider:
    """One store location's Punchh POS API client (`LoyaltyProvider`)."""

    name = NAME
    identifier_kinds = frozenset(SEARCH_PARAMS)
    otp_kinds = frozenset(OTP_CHANNELS)

    def __init__(
        self,
        settings: PunchhSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        device_id: str = "lane-agent",
    ) -> None:
        location_key = read_key(f"providers.{NAME}", settings, "location_key_file")
        business_key = read_key(f"providers.{NAME}", settings, "business_key_file")
        self._settings = settings
        # Punchh's `punchh-app-device-id`: one per device, never changing (its sign-up rewards
        # are given once per device): the lane's identity.
        self._device_id = device_id
        self._decimals = settings.currency_decimals
        self._short_key = settings.short_key
        self._client = ProviderClient(
            "Punchh",
            settings,
            headers={
                "Authorization": f"Token token={location_key.reveal()}, "
                f"btoken={business_key.reveal()}",
                "User-Agent": f"{settings.integrator}/{INTEGRATION_TYPE}/{__version__}",
                "Accept": "application/json",
            },
            transport=transport,
        )

    @classmethod
    def create(cls, settings: PunchhSettings, env: ProviderEnv) -> PunchhLoyaltyProvider:
        return cls(settings, transport=env.transport, device_id=f"{env.store}-{env.lane}")

    # -- plumbing --------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        write: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        refusals: Mapping[int, ErrorCode] | None = None,
        private: bool = False,
    ) -> httpx.Response:
        """One request; any refusal becomes a `ProviderError` with Punchh's own words (its code
        from `refusals` first, for calls whose refusals mean something else)."""
        response = await self._client.call(
            method, path, write=write, json=json, params=params, headers=headers
        )
        status = response.status_code
        if status >= 300:
            message = error_message(response, f"Punchh refused the {what} (HTTP {status})")
            # A refusal of a guest's contact details may quote them: then the status only.
            log.info("punchh %s refused: HTTP %s %s", what, status, "" if private else message)
            code = (refusals or {}).get(status) or classify(status, message)
            raise ProviderError(code, message)
        return response

    @staticmethod
    def _read(model: type[_A], response: httpx.Response) -> _A:
        """The answer to a read as `model`; one without even the identifier it needs means the
        service answered something else, which a retry may fix."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            # Field locations only: the values may be a guest's contact details.
            where = [".".join(map(str, e["loc"])) for e in exc.errors()]
            log.warning("punchh answered an unreadable %s at %s", model.__name__, where)
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                "Punchh answered with something the agent cannot read. Try again.",
            ) from None

    @staticmethod
    def _written(model: type[_A], response: httpx.Response) -> _A:
        """The answer to a write that Punchh accepted (2xx): what can be read of it. It applied
        whatever the body says, so an unreadable one is logged, never an error."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            log.warning(
                "punchh accepted the request but its answer is no %s; read as empty",
                model.__name__,
            )
            return model()

    def _amount(self, minor: int) -> float:
        return to_amount(minor, self._decimals)

    def _minor(self, value: Decimal | None) -> int:
        return 0 if value is None else from_amount(value, self._decimals)

    def _guest(self, user: _ApiUser) -> Guest:
        balance = user.balance or _ApiBalance()
        return Guest(
            user_id=user.id,
            first_name=user.first_name or None,
            email_masked=mask_email(user.email) if user.email else None,
            phone_masked=mask(user.phone) if user.phone else None,
            points_balance=None
            if balance.points_balance is None
            else from_amount(balance.points_balance, 0, ROUND_DOWN),
            banked_rewards=self._minor(balance.banked_rewards),
            unredeemed_cards=balance.unredeemed_cards or 0,
            membership_level=balance.membership_level,
            rewards=[
                Reward(
                    reward_id=r.id,
                    name=r.name or "reward",
                    discount_type="redeemable" if r.type == "redeemable" else "reward",
                    amount=None if r.discount_amount is None else self._minor(r.discount_amount),
                    points=None if r.points is None else from_amount(r.points, 0, ROUND_DOWN),
                    expires_at=r.end_date_tz,
                )
                for r in present(user.rewards)
            ],
        )

    def _discount(self, item: _ApiDiscount, *, selected: bool) -> Discount:
        return Discount(
            discount_type=item.discount_type or "unknown",
            discount_id=item.discount_id,
            name=item.name,
            amount=self._minor(
                item.discount_amount if item.discount_amount is not None else item.discount_value
            ),
            qualified=item.qualified,
            selected=selected,
            basket_item_id=item.discount_basket_item_id,
        )

    @staticmethod
    def _user_id(guest: Guest) -> int | str:
        """Punchh user ids are integers on the wire."""
        user_id = guest.user_id
        return int(user_id) if user_id.isascii() and user_id.isdigit() else user_id

    def _order_amounts(self, order: OrderSnapshot, when: datetime | None) -> dict[str, Any]:
        return {
            "receipt_datetime": iso_datetime(when),
            "subtotal_amount": self._amount(order.subtotal),
            "receipt_amount": self._amount(order.subtotal),
        }

    def _receipt(
        self,
        order: OrderSnapshot,
        discounts: Sequence[RedemptionLine],
        *,
        receipt_key: str,
        transaction_no: str,
        when: datetime | None,
    ) -> dict[str, Any]:
        """The check as check-in and receipt details both describe it. Both specs type
        `transaction_no` as an integer (`numeric_id` of the lane's order id)."""
        subtotal, payable = receipt_amounts(order, discounts)
        return {
            "transaction_no": numeric_id(transaction_no),
            "punchh_key": receipt_key,
            "receipt_datetime": iso_datetime(when),
            "subtotal_amount": self._amount(subtotal),
            "receipt_amount": self._amount(subtotal),
            "payable": self._amount(payable),
            "pos_type": self._settings.pos_type,
            "pos_version": self._settings.pos_version,
            "channel": self._settings.channel,
            "revenue_id": self._settings.revenue_id,
            "revenue_code": self._settings.revenue_code,
            "menu_items": menu_items(order, discounts, self._decimals),
        }

    @staticmethod
    def _identifier(kind: str, value: str) -> tuple[str, str]:
        param = SEARCH_PARAMS.get(kind)
        if param is None:
            raise ProviderError(
                ErrorCode.INVALID_REQUEST,
                f"a {kind} cannot identify a Punchh guest; use one of "
                + ", ".join(sorted(SEARCH_PARAMS)),
            )
        return param, value.lower() if kind == "email" else value

    # -- LoyaltyProvider -------------------------------------------------------------------------

    async def _location(self) -> _ApiLocation:
        response = await self._call(
            "GET", "/api/pos/locations/configuration", "location configuration", write=False
        )
        location = self._read(_ApiLocation, response)
        if self._short_key is None:
            self._short_key = location.short_key
        return location

    async def receipt_key(self, check_id: str) -> str:
        """The 12-digit punchh key for this check (`agent.providers.punchh_key`); the location's
        short key comes from the settings, else from the location configuration (read once)."""
        short_key = self._short_key
        if short_key is None:
            short_key = (await self._location()).short_key
        if short_key is None:
            raise ProviderError(
                ErrorCode.NOT_CONFIGURED,
                "Punchh's location configuration has no short_key the agent can read; set "
                "providers.punchh.short_key",
            )
        return punchh_key.generate(check_id, short_key)

    def receipt_barcode(self, receipt_key: str) -> str:
        """Punchh prints the key as an EAN-13 (the 12 digits and their parity digit), or puts
        the same digits in a QR code (`punchh_key.qr_payload`)."""
        return punchh_key.ean13(receipt_key)

    async def find_guest(self, identifier_kind: str, value: str) -> Guest:
        param, clear = self._identifier(identifier_kind, value)
        response = await self._call(
            "GET", "/api/pos/users/search", "guest look-up", write=False, params={param: clear}
        )
        return self._guest(self._read(_ApiUser, response))

    async def lookup_discounts(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        receipt_datetime: datetime | None = None,
    ) -> list[Discount]:
        body = {
            "user_id": self._user_id(guest),
            **self._order_amounts(order, receipt_datetime),
            "line_items": line_items(order, self._decimals),
            "punchh_key": receipt_key,
            "external_uid": external_uid,
        }
        response = await self._call(
            "POST", "/api/pos/discounts/lookup", "discount look-up", write=False, json=body
        )
        found = self._read(_ApiLookup, response)
        return [self._discount(d, selected=True) for d in present(found.selected_discounts)] + [
            self._discount(d, selected=False) for d in present(found.unselected_discounts)
        ]

    async def select(
        self,
        guest: Guest,
        selections: Sequence[tuple[str, str | None, int | None]],
        *,
        external_uid: str,
    ) -> Basket:
        items: list[dict[str, Any]] = []
        for discount_type, discount_id, value in selections:
            item: dict[str, Any] = {"discount_type": discount_type}
            if discount_id is not None:
                item["discount_id"] = discount_id
            if value is not None:
                item["discount_value"] = self._amount(value)
            items.append(item)
        body = {
            "user_id": self._user_id(guest),
            "external_uid": external_uid,
            "discount_basket_items_attributes": items,
        }
        response = await self._call(
            "POST", "/api/pos/discounts/select", "discount selection", write=True, json=body
        )
        basket = self._written(_ApiBasket, response)
        return Basket(
            redemption_ref=basket.redemption_ref,
            # Unsaid: the basket may be locked to external_uid, as the selection asked.
            locked=True if basket.locked is None else basket.locked,
            items=[self._discount(d, selected=True) for d in present(basket.discount_basket_items)],
        )

    async def _batch(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        query: bool,
        external_uid: str,
        receipt_key: str,
        transaction_no: str,
        when: datetime | None,
    ) -> RedemptionOutcome:
        body: dict[str, Any] = {
            "user_id": self._user_id(guest),
            **self._order_amounts(order, when),
            "line_items": line_items(order, self._decimals),
            "punchh_key": receipt_key,
            "transaction_no": str(numeric_id(transaction_no)),  # a string in the R2 spec
            "external_uid": external_uid,
        }
        if query:  # the commit omits the key altogether (Punchh: "do not include query")
            body["query"] = True
        what = "redemption check" if query else "redemption commit"
        response = await self._call(
            "POST", "/api/pos/batch_redemptions", what, write=not query, json=body
        )
        batch = self._written(_ApiBatch, response) if not query else self._read(_ApiBatch, response)
        success = present(batch.success)
        if not query and batch.redemption_ref is None:
            log.warning("punchh committed redemptions without a redemption_ref: no void possible")
        if any(s.discount_amount is None for s in success):
            log.warning("punchh redeemed a discount without a readable discount_amount; taken as 0")
        return RedemptionOutcome(
            redemption_ref=batch.redemption_ref,
            committed=not query,
            success=[
                RedemptionLine(
                    redemption_id=s.redemption_id,
                    discount_type=s.discount_type,
                    discount_id=s.discount_id,
                    name=s.name,
                    amount=self._minor(s.discount_amount),
                )
                for s in success
            ],
            failures=[
                RedemptionFailure(
                    discount_type=f.discount_type,
                    discount_id=f.discount_id,
                    name=f.name,
                    messages=[f.message] if isinstance(f.message, str) else f.message or [],
                )
                for f in present(batch.failures)
            ],
        )

    async def redeem_query(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        transaction_no: str,
        receipt_datetime: datetime | None = None,
    ) -> RedemptionOutcome:
        """The dry run before payment: what the basket takes off this order. Applies nothing."""
        return await self._batch(
            guest,
            order,
            query=True,
            external_uid=external_uid,
            receipt_key=receipt_key,
            transaction_no=transaction_no,
            when=receipt_datetime,
        )

    async def redeem_commit(
        self,
        guest: Guest,
        order: OrderSnapshot,
        *,
        external_uid: str,
        receipt_key: str,
        transaction_no: str,
        receipt_datetime: datetime | None = None,
    ) -> RedemptionOutcome:
        """After payment: deduct the redemptions. Pass the snapshot (and time) of the dry run."""
        return await self._batch(
            guest,
            order,
            query=False,
            external_uid=external_uid,
            receipt_key=receipt_key,
            transaction_no=transaction_no,
            when=receipt_datetime,
        )

    async def unlock(self, guest: Guest, *, external_uid: str) -> None:
        """Release the basket lock on cancel or order edit (nothing committed)."""
        await self._call(
            "PUT",
            "/api/pos/discounts/unlock",
            "basket unlock",
            write=True,
            json={"user_id": self._user_id(guest), "external_uid": external_uid},
        )

    async def void_redemption(self, guest: Guest, redemption_ref: str) -> None:
        """Give back a committed basket (whole basket only). Once the check-in is committed
        Punchh refuses with 410, which this raises as `expired`."""
        await self._call(
            "DELETE",
            f"/api/pos/batch_redemptions/{quote(redemption_ref, safe='')}",
            "redemption void",
            write=True,
            json={"user_id": self._user_id(guest)},
        )

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
    ) -> CheckinResult:
        """The earning event, after payment and commit. `discounts` are the committed lines;
        `order` is the snapshot before them. Retry with the same `external_uid`."""
        param, value = self._identifier(*guest_identifier)
        body = {
            param: value,
            **self._receipt(
                order,
                discounts,
                receipt_key=receipt_key,
                transaction_no=transaction_no,
                when=receipt_datetime,
            ),
            "external_uid": external_uid,
        }
        response = await self._call("POST", "/api/pos/checkins", "check-in", write=True, json=body)
        checkin = self._written(_ApiCheckin, response)
        try:
            guest: Guest | None = self._guest(_ApiUser.model_validate_json(response.content))
        except ValidationError:
            guest = None  # earned all the same: the answer just does not describe the guest
        return CheckinResult(
            guest=guest,
            points_earned=None
            if checkin.points_earned is None
            else from_amount(checkin.points_earned, 0, ROUND_DOWN),
        )

    async def receipt_details(
        self,
        order: OrderSnapshot,
        *,
        receipt_key: str,
        transaction_no: str,
        discounts: Sequence[RedemptionLine] = (),
        receipt_datetime: datetime | None = None,
    ) -> None:
        """Store the receipt (every transaction, loyalty or not) so a later scan of its barcode
        can earn. Note the path: no /api/pos prefix."""
        body = self._receipt(
            order,
            discounts,
            receipt_key=receipt_key,
            transaction_no=transaction_no,
            when=receipt_datetime,
        )
        body["amount"] = body["subtotal_amount"]  # only receipt details has this third copy
        await self._call("POST", "/receipt_details", "receipt details", write=True, json=body)

    # -- identify: one-time passwords and sign-up ----------------------------------------------

    def _contact(self, kind: str, value: str) -> dict[str, str]:
        if kind == "phone":
            return {"phone_ext": self._settings.phone_ext, "phone_number": value}
        return {"email": value.lower()}

    def _otp_headers(self) -> dict[str, str]:
        if self._settings.oauth_client is None:
            raise ProviderError(
                ErrorCode.NOT_CONFIGURED,
                "one-time passwords need Punchh's Advanced Authentication: set "
                "providers.punchh.oauth_client to the OAuth client id the business issued",
            )
        return {"punchh-app-device-id": self._device_id, "Content-Type": "application/json"}

    async def send_otp(self, identifier_kind: str, value: str) -> OtpChallenge:
        """Ask Punchh to send the guest a one-time password (PKCE: the challenge goes now, the
        verifier with the code). Nothing of value changes, so a lost answer is just unanswered:
        sending again sends another password."""
        channel = OTP_CHANNELS.get(identifier_kind)
        if channel is None:
            raise ProviderError(
                ErrorCode.INVALID_REQUEST,
                f"a one-time password goes to a phone or an email, not a {identifier_kind}",
            )
        headers = self._otp_headers()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        challenge_field, method_field, method = PKCE_FIELDS
        body = {
            "client": self._settings.oauth_client,
            **self._contact(identifier_kind, value),
            challenge_field: challenge.rstrip(b"=").decode(),
            method_field: method,
        }
        await self._call(
            "POST",
            SEND_OTP_PATH,
            "one-time password",
            write=False,
            json=body,
            headers=headers,
            refusals=IDENTIFY_REFUSALS,
            private=True,
        )
        return OtpChallenge(identifier_kind, value, verifier, channel)

    async def verify_otp(self, challenge: OtpChallenge, code: str) -> Guest:
        """Check the guest's code (their agreement to the privacy policy and terms is sent: the
        op requires it); Punchh signs a new guest up as it signs one in. Its 2xx is the proof,
        and the guest is then looked up by the contact it proved: the access token it answers
        with is for the guest's own app, and is neither read nor kept."""
        headers = {**self._otp_headers(), "client-type": CLIENT_TYPE}
        body = {
            "client": self._settings.oauth_client,
            **self._contact(challenge.identifier_kind, challenge.value),
            "code_verifier": challenge.verifier,
            OTP_FIELD: code,
            "privacy_policy": True,
            "terms_and_conditions": True,
        }
        await self._call(
            "POST",
            VERIFY_OTP_PATH,
            "one-time password check",
            write=False,
            json=body,
            headers=headers,
            refusals=IDENTIFY_REFUSALS,
            private=True,
        )
        return await self.find_guest(challenge.identifier_kind, challenge.value)

    async def sign_up(self, guest: NewGuest) -> Guest:
        """Create New User (`POST /api/pos/users`, phone required). Its success is the 2xx and
        the new guest's `id`; an answer without a readable one is settled by looking the phone
        up (the guest was created), never reported as unknown."""
        body: dict[str, Any] = {"phone": guest.phone, "signup_channel": "POS"}
        optional = {
            "email": guest.email.lower() if guest.email else None,
            "first_name": guest.first_name,
            "last_name": guest.last_name,
            "birthday": guest.birthday.isoformat() if guest.birthday else None,
        }
        body |= {name: value for name, value in optional.items() if value}
        body["terms_and_conditions"] = guest.terms_and_conditions
        body["send_compliance_sms"] = guest.send_compliance_sms
        response = await self._call(
            "POST",
            "/api/pos/users",
            "sign-up",
            write=True,
            json=body,
            refusals={k: v for k, v in IDENTIFY_REFUSALS.items() if k != 401},
            private=True,
        )
        try:
            return self._guest(_ApiUser.model_validate_json(response.content))
        except ValidationError:
            log.warning("punchh signed the guest up without a readable id; looking them up")
            return await self.find_guest("phone", guest.phone)

    async def check_health(self) -> tuple[bool, str]:
        try:
            location = await self._location()
        except ProviderError as exc:
            return False, exc.message
        return True, f"Punchh location {location.location_name or '?'} answers"

    async def aclose(self) -> None:
        await self._client.aclose()
