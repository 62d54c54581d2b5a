"""Gift Local (seed 003) gift redemption adapter: validate-gift, redeem-gift, reversal.

Wire rules it keeps (docs/providers/giftlocal.md has the sources, the table of every field sent
and read, and the UNCERTAIN list):

- the whole API key is the `Authorization` header value, no `Bearer`;
- every call names the location as `organizationID` (a Gift Local GUID) or
  `pointOfSaleSystemOrganizationIdentifier` (the POS's own id), or not at all on a
  single-location account;
- validate succeeds for any gift of the account, even one that cannot be redeemed: the answer's
  `voucher.isRedeemable` and eligible value or quantity decide, never the HTTP status;
- answers are read tolerantly: the fields seed 003 names come first (`voucher.isRedeemable`,
  `voucherEligibleValue` / `voucherEligibleItemQuantity`, `voucherPresentValueDescription`),
  every other field is optional, and fields the adapter does not know are logged and ignored.
  A write succeeded when Gift Local answered 2xx and, for a redeem, named the redemption's
  transaction id; nothing else in the answer can turn a success into `unknown_outcome`;
- redeem sends `amount` as a decimal in the gift's currency for money and as an integer quantity
  for item gifts. The agent's interface is integer minor units; the conversion goes through
  `Decimal` by the currency's exponent, never through float arithmetic;
- Gift Local documents no idempotency key, so there is nothing to send: a redeem or reversal
  whose answer is lost is `unknown_outcome` (from `ProviderClient`) and is never retried here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from agent.errors import ErrorCode, ProviderError
from agent.money import exponent, shown, to_decimal
from agent.orders import OrderSnapshot
from agent.providers.base import (
    GiftRef,
    GiftStatus,
    GiftType,
    NotRedeemableReason,
    Redemption,
    Reversal,
)
from agent.providers.http import ProviderClient, error_message
from agent.providers.settings import GiftLocalSettings
from agent.registry import ProviderEnv
from agent.secrets import read_key
from agent.tokens import mask

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)
_V = TypeVar("_V")

NAME: Final = "giftlocal"
LABEL: Final = "Gift Local"

VALIDATE_PATH: Final = "/api/integration/redemption/validate-gift"
REDEEM_PATH: Final = "/api/integration/redemption/redeem-gift"
REVERSE_PATH: Final = "/api/integration/redemption/reverse-redemption"
"""UNCERTAIN: the docs name a "reversal API" keyed by the redemption transaction id, no path."""

VOUCHER_CODE_AS_TEXT: Final = True
"""UNCERTAIN: Gift Local's example shows `voucherCode` as a bare number, which would drop a
code's leading zero; the adapter sends the 12 digits as a JSON string. A validate answered 400
is asked once more in the form the public guidance page shows (the code as a JSON number, no
`TICKET_FIELD`), and that form is kept for the rest of the process if it is accepted: a guessed
field must never make every gift unusable."""

TICKET_FIELD: Final = "posTicket"
"""UNCERTAIN: the validate field for seed 003's optional "POS ticket data" (the lane's open
order, `_Ticket` has its inner names)."""

VALIDATION_OPTIONS_FIELD: Final = "validationOptions"
"""UNCERTAIN: the field for seed 003's optional "Validation Options" (validate and redeem), an
object holding the `validation_options` setting as given."""

TRANSACTION_FIELD: Final = "redemptionTransaction"
"""UNCERTAIN: the object of a redeem or reversal answer holding the transaction record (its
names are `_Record`'s); a record at the top level of the answer is read too."""

HEALTH_PROBE_CODE: Final = "000000000000"
"""UNCERTAIN: there is no documented health call; `check_health` validates this code, which no
gift should have, and reads 404 as "reachable, key accepted"."""

UNIDENTIFIED: Final = "unidentified:"
"""Prefix of the `gift_id` of a gift whose validate answer named no `voucherID` (which redeem
needs, per the public guidance page): the gift shows, and a redeem of it is refused unsent."""

GIFT_TYPES: Final[Mapping[str, GiftType]] = {"Monetary": GiftType.MONETARY, "Item": GiftType.ITEM}
"""UNCERTAIN: `voucher.voucherType` values; only read when neither eligible field is > 0 (the
seed's rule for telling the types apart)."""

REASONS: Final[Mapping[str, NotRedeemableReason]] = {
    "Expired": NotRedeemableReason.EXPIRED,
    "NotYetValid": NotRedeemableReason.NOT_YET_VALID,
    "FullyRedeemed": NotRedeemableReason.DEPLETED,
    "NotValidAtLocation": NotRedeemableReason.WRONG_LOCATION,
    "Voided": NotRedeemableReason.VOIDED,
}
"""UNCERTAIN: `voucher.redeemableStatus` of a gift that is not redeemable. An unknown value
leaves `reason` empty (the flow then refuses with `not_redeemable`)."""

ERROR_CODES: Final[Mapping[str, ErrorCode]] = {
    "VoucherNotFound": ErrorCode.NOT_FOUND,
    "RedemptionNotFound": ErrorCode.NOT_FOUND,
    "Expired": ErrorCode.EXPIRED,
    "NotYetValid": ErrorCode.NOT_YET_VALID,
    "NotValidAtLocation": ErrorCode.WRONG_LOCATION,
    "FullyRedeemed": ErrorCode.NOT_REDEEMABLE,
    "Voided": ErrorCode.NOT_REDEEMABLE,
    "InsufficientBalance": ErrorCode.INSUFFICIENT_BALANCE,
    "RedemptionAlreadyReversed": ErrorCode.ALREADY_REVERSED,
    "LocationRequired": ErrorCode.NOT_CONFIGURED,  # set organization_id or pos_location_id
    "InvalidLocation": ErrorCode.NOT_CONFIGURED,
    "ValidationFailed": ErrorCode.INVALID_REQUEST,
}
"""UNCERTAIN: the `errorCode` of an error body `{"message", "errorCode"}`; a redeem refused for a
reason uses the same words as `redeemableStatus`. Read before `STATUS_CODES`."""

STATUS_CODES: Final[Mapping[int, ErrorCode]] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.NOT_CONFIGURED,  # the API key is wrong or revoked
    403: ErrorCode.NOT_CONFIGURED,  # the key lacks the permission or the location
    404: ErrorCode.NOT_FOUND,  # no such gift (validate) or redemption (reverse)
    409: ErrorCode.ALREADY_REVERSED,
    422: ErrorCode.NOT_REDEEMABLE,
    429: ErrorCode.PROVIDER_UNAVAILABLE,  # throttled: nothing applied, try again
}
"""UNCERTAIN: statuses for an error body without a known `errorCode`; others: invalid_request
(not_configured for a redirect)."""

_KNOWN_GIFTS: Final = 4096  # gift kinds remembered between validate and redeem


def to_minor(value: Decimal | int, currency: str) -> int:
    """A decimal amount as integer minor units: 12.5 USD → 1250."""
    return _whole(value, exponent(currency))


def _whole(value: Decimal | int, places: int = 0) -> int:
    """`value` × 10^places as an int; ValueError rather than rounding money away."""
    scaled = Decimal(value).scaleb(places)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {places} decimal places")
    return int(scaled)


def json_number(value: Decimal) -> int | float:
    """`value` as a JSON number that says it exactly. httpx serialises with `json.dumps`, which
    knows no Decimal; a float's shortest repr is the decimal itself up to 15 significant digits,
    which is checked, so 12.50 goes out as `12.5` and never as `12.4999...`."""
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} cannot be sent exactly as a JSON number")
    return number


# -- wire models: Gift Local's field names, in one place ------------------------------------------


def _or_none(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """An optional field Gift Local sent in a form we did not expect reads as absent."""
    try:
        return handler(value)
    except ValidationError:
        log.info("%s answer: ignored unreadable value %.40r", LABEL, value)
        return None


_Optional = Annotated[_V | None, WrapValidator(_or_none)]
_Id = str | int  # a GUID in every example; a number would do as well


class _Read(BaseModel):
    """An answer part: every field optional, unknown ones kept aside to be logged."""

    model_config = ConfigDict(extra="allow", populate_by_name=False)


class _Gift(_Read):
    """The gift in a validate answer (and in redeem and reversal answers when they carry it),
    read from the answer's top level and its `voucher` object merged: the seed writes
    `voucher.isRedeemable` but the other three of its names bare. UNCERTAIN: every name but the
    seed's four and `voucherID`."""

    # seed 003
    is_redeemable: _Optional[bool] = Field(None, alias="isRedeemable")
    eligible_value: _Optional[Decimal] = Field(None, alias="voucherEligibleValue")
    eligible_item_quantity: _Optional[int] = Field(None, alias="voucherEligibleItemQuantity")
    present_value_description: _Optional[str] = Field(None, alias="voucherPresentValueDescription")
    # the public guidance page: redeem's `voucherID` "is retrieved during the validation call"
    voucher_id: _Optional[_Id] = Field(None, alias="voucherID")
    # our guesses, each optional
    voucher_type: _Optional[str] = Field(None, alias="voucherType")
    currency_code: _Optional[Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]] = Field(
        None, alias="currencyCode"
    )
    remaining_value: _Optional[Decimal] = Field(None, alias="remainingValue")
    item_label: _Optional[str] = Field(None, alias="itemLabel")
    remaining_item_quantity: _Optional[int] = Field(None, alias="remainingItemQuantity")
    redeemable_status: _Optional[str] = Field(None, alias="redeemableStatus")
    valid_from: _Optional[datetime] = Field(None, alias="validFrom")
    expires_on: _Optional[datetime] = Field(None, alias="expiresOn")
    sender_name: _Optional[str] = Field(None, alias="senderName")
    recipient_name: _Optional[str] = Field(None, alias="recipientName")


class _Record(_Read):
    """UNCERTAIN, every name: the redemption transaction record (seed 003: a reversal answers
    with it; a redeem answer names the "Redemption transaction identifier")."""

    transaction_id: _Optional[_Id] = Field(None, alias="redemptionTransactionID")
    voucher_id: _Optional[_Id] = Field(None, alias="voucherID")
    amount: _Optional[Decimal] = None
    reversed_on: _Optional[datetime] = Field(None, alias="reversedOn")


class _Sent(BaseModel):
    model_config = ConfigDict(frozen=True)


class _TicketLine(_Sent):
    line_id: str = Field(serialization_alias="lineID")
    description: str
    sku: str | None = None
    quantity: int
    amount: int | float


class _Ticket(_Sent):
    """UNCERTAIN, every name: seed 003's "POS ticket data (optional)" for validate, from the
    lane's open order; amounts as decimals in the order's currency, as every Gift Local amount."""

    ticket_id: str = Field(serialization_alias="ticketID")
    currency_code: str = Field(serialization_alias="currencyCode")
    subtotal: int | float
    tax: int | float
    total: int | float
    lines: list[_TicketLine] = Field(serialization_alias="items")

    @classmethod
    def of(cls, order: OrderSnapshot) -> _Ticket:
        def amount(minor: int) -> int | float:
            return json_number(to_decimal(minor, order.currency))

        return cls(
            ticket_id=order.order_id,
            currency_code=order.currency,
            subtotal=amount(order.subtotal),
            tax=amount(order.tax),
            total=amount(order.total),
            lines=[
                _TicketLine(
                    line_id=line.id,
                    description=line.name,
                    sku=line.sku,
                    quantity=line.quantity,
                    amount=amount(line.amount),
                )
                for line in order.lines
            ],
        )


_NESTED: Final = frozenset({"voucher", TRANSACTION_FIELD})
# Every name some part of the adapter reads: a top-level record is also offered to `_Gift`.
_KNOWN: Final = _NESTED | {
    field.alias or name for model in (_Gift, _Record) for name, field in model.model_fields.items()
}


def _object(data: object, field: str | None = None) -> dict[str, Any]:
    """`data` (or its `field`) if it is a JSON object, else an empty one."""
    if field is not None and isinstance(data, dict):
        data = data.get(field)
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class _Kind:
    """What validate told us about a gift that redeem needs: how to express its amount."""

    type: GiftType
    currency: str | None


class GiftLocalProvider:
    """`GiftProvider` for Gift Local; one instance per lane, holding one HTTP client."""

    name = NAME

    def __init__(
        self, settings: GiftLocalSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Read the API key now, so a missing one stops start-up with a clear message."""
        key = read_key(f"providers.{NAME}", settings, "api_key_file")
        self._settings = settings
        self._client = ProviderClient(
            LABEL, settings, headers={"Authorization": key.reveal()}, transport=transport
        )
        self._kinds: dict[str, _Kind] = {}
        # Set once Gift Local refused the full validate form and took the documented one.
        self._plain = False
        self._unknown_fields: set[str] = set()

    @classmethod
    def create(cls, settings: GiftLocalSettings, env: ProviderEnv) -> GiftLocalProvider:
        return cls(settings, transport=env.transport)

    async def validate(
        self, ref: GiftRef, *, location: str | None, ticket: OrderSnapshot | None = None
    ) -> GiftStatus:
        """Look the gift up; success does not mean redeemable (see `GiftStatus.is_redeemable`)."""
        if ref.code is not None:
            shown_ref = ref.code.strip()
            if not (len(shown_ref) == 12 and shown_ref.isascii() and shown_ref.isdigit()):
                raise ProviderError(ErrorCode.INVALID_REQUEST, "Gift code must be 12 digits")
        else:
            assert ref.public_token is not None  # GiftRef guarantees exactly one
            shown_ref = ref.public_token.strip()
        full = self._validate_body(ref, location, ticket, plain=self._plain)
        response = await self._client.call("POST", VALIDATE_PATH, write=False, json=full)
        plain = self._validate_body(ref, location, ticket, plain=True)
        if (
            response.status_code == 400 and full != plain
        ):  # a guess refused: see VOUCHER_CODE_AS_TEXT
            response = await self._client.call("POST", VALIDATE_PATH, write=False, json=plain)
            if response.status_code != 400:
                log.warning(
                    "%s refused our guessed validate fields (the code as text, %s); "
                    "sending the documented form from now on",
                    LABEL,
                    TICKET_FIELD,
                )
                self._plain = True
        data = self._answer(response)
        try:
            gift = self._gift(data)
        except ValueError as exc:
            log.warning("%s validate: unreadable answer: %s", LABEL, exc)
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"{LABEL} answered in an unexpected form"
            ) from exc
        log.info("%s validate %s: redeemable=%s", LABEL, mask(shown_ref), gift.is_redeemable)
        return gift

    async def redeem(
        self,
        gift_id: str,
        *,
        amount: int | None = None,
        quantity: int | None = None,
        location: str | None,
        idempotency_key: str,
    ) -> Redemption:
        """Redeem `amount` minor units of a monetary gift or `quantity` of an item gift.

        Gift Local has no idempotency key, so `idempotency_key` goes nowhere; the request-id
        cache in front of the flows stops repeats, and a lost answer is `unknown_outcome`.
        """
        if gift_id.startswith(UNIDENTIFIED):
            raise ProviderError(
                ErrorCode.NOT_REDEEMABLE,
                f"{LABEL} did not say which gift this is (no voucherID in its answer), so this "
                "lane cannot redeem it; redeem it in the Gift Local app",
            )
        body = {
            **self._location_fields(location),
            "voucherID": gift_id,
            "amount": self._wire_amount(gift_id, amount, quantity),
            **self._options(),
        }
        response = await self._client.call("POST", REDEEM_PATH, write=True, json=body)
        redemption = self._redemption(self._answer(response), gift_id, amount, quantity)
        log.info("%s redeemed: transaction %s", LABEL, redemption.transaction_id)
        return redemption

    async def reverse(
        self, transaction_id: str, *, location: str | None, idempotency_key: str
    ) -> Reversal:
        """Restore a redemption's value. A second reversal is refused (`already_reversed`),
        which makes a retry after `unknown_outcome` safe although no key can be sent."""
        body = {**self._location_fields(location), "redemptionTransactionID": transaction_id}
        response = await self._client.call("POST", REVERSE_PATH, write=True, json=body)
        reversal = self._reversal(self._answer(response), transaction_id)
        log.info("%s reversed: transaction %s", LABEL, transaction_id)
        return reversal

    async def check_health(self) -> tuple[bool, str]:
        """Validate a code no gift has: any answer but 401/403 proves the key is accepted."""
        body = self._validate_body(
            GiftRef(code=HEALTH_PROBE_CODE), None, None, plain=self._plain, options=False
        )
        try:
            response = await self._client.call("POST", VALIDATE_PATH, write=False, json=body)
        except ProviderError as exc:
            return False, exc.message
        where = f"{LABEL} at {self._settings.base_url}"
        if response.status_code in (401, 403):
            reason = error_message(response, f"HTTP {response.status_code}")
            return False, f"{where} refused the API key: {reason}"
        return True, f"{where} reachable, API key accepted"

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests -------------------------------------------------------------------------------

    def _location_fields(self, location: str | None) -> dict[str, Any]:
        """The configured location, else the lane's, else none (single-location account)."""
        if self._settings.organization_id is not None:
            return {"organizationID": str(self._settings.organization_id)}
        pos_id = self._settings.pos_location_id or location
        return {} if pos_id is None else {"pointOfSaleSystemOrganizationIdentifier": pos_id}

    def _options(self) -> dict[str, Any]:
        options = self._settings.validation_options
        return {VALIDATION_OPTIONS_FIELD: dict(options)} if options else {}

    def _validate_body(
        self,
        ref: GiftRef,
        location: str | None,
        ticket: OrderSnapshot | None,
        *,
        plain: bool,
        options: bool = True,
    ) -> dict[str, Any]:
        """The validate request; `plain`: only what the public guidance page shows (and the
        configured options, which the operator chose)."""
        body: dict[str, Any] = self._location_fields(location)
        if ref.code is not None:
            code = ref.code.strip()
            body["voucherCode"] = code if VOUCHER_CODE_AS_TEXT and not plain else int(code)
        else:
            assert ref.public_token is not None
            body["voucherPublicToken"] = ref.public_token.strip()
        if ticket is not None and not plain:
            body[TICKET_FIELD] = _Ticket.of(ticket).model_dump(by_alias=True, exclude_none=True)
        return {**body, **self._options()} if options else body

    def _wire_amount(self, gift_id: str, amount: int | None, quantity: int | None) -> int | float:
        """Gift Local's `amount`: a decimal for money, a count for items."""
        if (amount is None) == (quantity is None):
            raise ProviderError(
                ErrorCode.INVALID_REQUEST,
                "Give an amount for a monetary gift or a quantity for an item gift",
            )
        units = amount if amount is not None else quantity
        assert units is not None
        if units <= 0:
            raise ProviderError(ErrorCode.INVALID_REQUEST, "Redemption must be greater than zero")
        # The API cannot tell 2 items from 2.00 of money: refuse the mix-up we can see.
        kind = self._kinds.get(gift_id)
        if kind is not None and (kind.type is GiftType.MONETARY) != (amount is not None):
            by = "amount" if kind.type is GiftType.MONETARY else "quantity"
            raise ProviderError(
                ErrorCode.INVALID_REQUEST, f"A {kind.type.value} gift is redeemed by {by}"
            )
        if amount is None:
            return units
        try:
            return json_number(to_decimal(amount, self._currency(gift_id)))
        except ValueError as exc:
            raise ProviderError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    def _currency(self, gift_id: str | None, gift: GiftStatus | None = None) -> str:
        """The gift's currency: from its answer, else from its last validate, else the
        account's (the `currency` setting)."""
        kind = self._kinds.get(gift_id) if gift_id is not None else None
        known = (gift.currency if gift is not None else None) or (kind and kind.currency)
        return known or self._settings.currency

    # -- answers --------------------------------------------------------------------------------

    def _answer(self, response: httpx.Response) -> object:
        """A success answer's JSON (None if it has none), or the refusal as a `ProviderError`."""
        if not response.is_success:
            raise self._refusal(response)
        try:
            return response.json(parse_float=Decimal)
        except ValueError:
            log.warning("%s %s: answer is not JSON", LABEL, response.request.url.path)
            return None

    def _refusal(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            body = None
        provider_code = body.get("errorCode") if isinstance(body, dict) else None
        # A redirect means base_url points somewhere else than the API.
        fallback = ErrorCode.NOT_CONFIGURED if response.is_redirect else ErrorCode.INVALID_REQUEST
        code = (ERROR_CODES.get(provider_code) if isinstance(provider_code, str) else None) or (
            STATUS_CODES.get(status, fallback)
        )
        message = error_message(response, f"{LABEL} refused the request (HTTP {status})")
        log.info("%s %s: HTTP %s %s", LABEL, response.request.url.path, status, code.value)
        details = self._available(body) if code is ErrorCode.INSUFFICIENT_BALANCE else None
        return ProviderError(code, message, details=details)

    def _available(self, body: object) -> dict[str, Any] | None:
        """What is left, from the gift an insufficient-balance refusal carries, if it does."""
        try:
            gift = self._gift(body)
        except ValueError:
            return None
        if gift.type is GiftType.ITEM:
            return {"available": gift.eligible_quantity}
        return {"available": gift.eligible_value, "currency": gift.currency}

    def _read(self, model: type[_M], data: dict[str, Any], what: str) -> _M:
        """`data` as `model` (which cannot fail: every field is optional); the names the adapter
        does not know are logged once each, so a real answer's shape shows in the log."""
        part = model.model_validate(data)
        unknown = set(part.model_extra or ()) - _KNOWN - self._unknown_fields
        if unknown:
            self._unknown_fields |= unknown
            log.info("%s %s: ignored fields %s", LABEL, what, ", ".join(sorted(unknown)))
        return part

    def _gift(self, data: object) -> GiftStatus:
        """The gift an answer describes; ValueError without the seed's `voucher.isRedeemable`."""
        flat = {
            **{k: v for k, v in _object(data).items() if k not in _NESTED},
            **_object(data, "voucher"),
        }
        answer = self._read(_Gift, flat, "gift")
        redeemable = answer.is_redeemable
        if redeemable is None:
            raise ValueError("no voucher.isRedeemable")
        kind = self._gift_type(answer)
        gift_type = kind or GiftType.MONETARY  # neither eligible nor typed: shows as money
        gift_id = (
            str(answer.voucher_id)
            if answer.voucher_id is not None
            else f"{UNIDENTIFIED}{uuid.uuid4().hex}"
        )
        if gift_type is GiftType.MONETARY:
            currency = answer.currency_code or self._currency(gift_id)
            eligible = to_minor(answer.eligible_value or 0, currency) if redeemable else 0
            balance = (
                to_minor(answer.remaining_value, currency)
                if answer.remaining_value is not None
                else (eligible if redeemable else None)
            )
            left = None if balance is None else f"{shown(balance, currency)} remaining"
            amounts: dict[str, Any] = {
                "currency": currency,
                "balance": balance,
                "eligible_value": eligible,
            }
        else:
            currency = None
            eligible = (answer.eligible_item_quantity or 0) if redeemable else 0
            count = answer.remaining_item_quantity
            count = count if count is not None else (eligible if redeemable else None)
            label = answer.item_label or "items"
            left = None if count is None else f"{count} × {label} remaining"
            amounts = {
                "item_label": answer.item_label,
                "item_quantity": count,
                "eligible_quantity": eligible,
            }
        if kind is not None and answer.voucher_id is not None:
            self._remember(gift_id, _Kind(kind, currency))
        return GiftStatus(
            gift_id=gift_id,
            type=gift_type,
            is_redeemable=redeemable,
            reason=None if redeemable else REASONS.get(answer.redeemable_status or ""),
            description=answer.present_value_description
            or left
            or ("Redeemable" if redeemable else "Not redeemable"),
            valid_from=answer.valid_from,
            expires_at=answer.expires_on,
            sender=answer.sender_name,
            recipient=answer.recipient_name,
            **amounts,
        )

    @staticmethod
    def _gift_type(answer: _Gift) -> GiftType | None:
        """Seed 003: whichever of the eligible value and quantity is > 0; only when both are 0
        (a gift not redeemable now), the guessed `voucherType`, then which remainder is given."""
        value = answer.eligible_value or 0
        count = answer.eligible_item_quantity or 0
        if value > 0 and count > 0:
            raise ValueError("both voucherEligibleValue and voucherEligibleItemQuantity are > 0")
        by_seed = GiftType.MONETARY if value > 0 else GiftType.ITEM if count > 0 else None
        guessed = GIFT_TYPES.get(answer.voucher_type or "") or (
            GiftType.MONETARY
            if answer.remaining_value is not None
            else GiftType.ITEM
            if answer.remaining_item_quantity is not None
            else None
        )
        if by_seed is not None and guessed is not None and by_seed is not guessed:
            log.warning(
                "%s: gift's eligible amount says %s, voucherType %r", LABEL, by_seed, guessed
            )
        return by_seed or guessed

    def _gift_or_none(self, data: object, what: str) -> GiftStatus | None:
        """The gift a write's answer describes, if it does: the write stands without it."""
        try:
            return self._gift(data)
        except ValueError as exc:
            log.info("%s %s answer: no gift read (%s)", LABEL, what, exc)
            return None

    def _record(self, data: object) -> _Record:
        """The transaction record: `TRANSACTION_FIELD`, else the answer's top level."""
        record = _object(data, TRANSACTION_FIELD) or _object(data)
        return self._read(_Record, record, "transaction record")

    def _units(
        self, record: _Record, monetary: bool, currency: str, asked: int | None
    ) -> int | None:
        """The record's amount in the agent's units; `asked` when it has none we can read."""
        if record.amount is None:
            return asked
        try:
            return to_minor(record.amount, currency) if monetary else _whole(record.amount)
        except ValueError:
            log.warning("%s: transaction amount %s unreadable", LABEL, record.amount)
            return asked

    def _redemption(
        self, data: object, gift_id: str, amount: int | None, quantity: int | None
    ) -> Redemption:
        """Applied (2xx) with its transaction id: a redemption, whatever else the answer lacks.
        Without the id the lane could never reverse it: `unknown_outcome`, which the gift flow
        settles from the gift's balance."""
        record = self._record(data)
        if record.transaction_id is None:
            raise ProviderError(
                ErrorCode.UNKNOWN_OUTCOME,
                f"{LABEL} accepted the redemption but its answer named no transaction id; "
                "check the gift before trying again",
            )
        gift = self._gift_or_none(data, "redeem")
        currency = self._currency(gift_id, gift)
        # Without a readable amount in the record, what was redeemed is what was asked: Gift
        # Local applies the amount sent or refuses the redeem (seed 003: "Redeem Gift ...
        # using a specified amount"); it never redeems another amount silently.
        if amount is not None:
            units = {"amount": self._units(record, True, currency, amount)}
        else:
            units = {"quantity": self._units(record, False, currency, quantity)}
        return Redemption(
            transaction_id=str(record.transaction_id), gift_id=gift_id, gift=gift, **units
        )

    def _reversal(self, data: object, transaction_id: str) -> Reversal:
        """Seed 003: a reversal answers "Redemption transaction record data"; the 2xx status
        says it was reversed, and the record or gift, if readable, add what they can."""
        record = self._record(data)
        if record.transaction_id is not None and str(record.transaction_id) != transaction_id:
            log.warning(
                "%s reversal of %s answered for transaction %s",
                LABEL,
                transaction_id,
                record.transaction_id,
            )
        gift = self._gift_or_none(data, "reversal")
        gift_id = str(record.voucher_id) if record.voucher_id is not None else None
        if gift is not None and not gift.gift_id.startswith(UNIDENTIFIED):
            gift_id = gift_id or gift.gift_id
        kind = self._kinds.get(gift_id) if gift_id is not None else None
        gift_type = gift.type if gift is not None else kind.type if kind is not None else None
        units: dict[str, int | None] = {}
        if gift_type is not None:
            monetary = gift_type is GiftType.MONETARY
            value = self._units(record, monetary, self._currency(gift_id, gift), None)
            units = {"amount": value} if monetary else {"quantity": value}
        return Reversal(
            transaction_id=transaction_id,
            gift_id=gift_id,
            reversed_at=record.reversed_on or datetime.now(UTC),
            gift=gift,
            **units,
        )

    def _remember(self, gift_id: str, kind: _Kind) -> None:
        self._kinds.pop(gift_id, None)
        self._kinds[gift_id] = kind
        if len(self._kinds) > _KNOWN_GIFTS:
            del self._kinds[next(iter(self._kinds))]
