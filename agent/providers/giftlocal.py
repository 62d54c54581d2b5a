"""Gift Local (seed 003) gift redemption adapter: validate-gift, redeem-gift, reversal.

Wire rules it keeps (docs/providers/giftlocal.md has the sources and the UNCERTAIN list):

- the whole API key is the `Authorization` header value, no `Bearer`;
- every call names the location as `organizationID` (a Gift Local GUID) or
  `pointOfSaleSystemOrganizationIdentifier` (the POS's own id), or not at all on a
  single-location account;
- validate succeeds for any gift of the account, even one that cannot be redeemed: the answer's
  `voucher.isRedeemable` and eligible value or quantity decide, never the HTTP status;
- redeem sends `amount` as a decimal in the gift's currency for money and as an integer quantity
  for item gifts. The agent's interface is integer minor units; the conversion goes through
  `Decimal` by the currency's exponent, never through float arithmetic;
- Gift Local documents no idempotency key, so there is nothing to send: a redeem or reversal
  whose answer is lost is `unknown_outcome` (from `ProviderClient`) and is never retried here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ErrorCode, ProviderError
from agent.money import exponent, to_decimal
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

_T = TypeVar("_T")

NAME: Final = "giftlocal"
LABEL: Final = "Gift Local"

VALIDATE_PATH: Final = "/api/integration/redemption/validate-gift"
REDEEM_PATH: Final = "/api/integration/redemption/redeem-gift"
REVERSE_PATH: Final = "/api/integration/redemption/reverse-redemption"
"""UNCERTAIN: the docs name a "reversal API" keyed by the redemption transaction id, no path."""

VOUCHER_CODE_AS_NUMBER: Final = True
"""UNCERTAIN: Gift Local's example sends `voucherCode` as a JSON number, which drops a code's
leading zeros; set False to send the 12 digits as a string."""

HEALTH_PROBE_CODE: Final = "000000000000"
"""UNCERTAIN: there is no documented health call; `check_health` validates this code, which no
gift should have, and reads 404 as "reachable, key accepted"."""

GIFT_TYPES: Final[Mapping[str, GiftType]] = {"Monetary": GiftType.MONETARY, "Item": GiftType.ITEM}
"""UNCERTAIN: `voucher.voucherType` values."""

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


# -- wire models: Gift Local's response field names, in one place (UNCERTAIN beyond the four the
# seed names: voucher.isRedeemable, voucherEligibleValue, voucherEligibleItemQuantity,
# voucherPresentValueDescription) ---------------------------------------------------------------


class _Wire(BaseModel):
    # Unknown fields are ignored: the real payload surely carries more than we read.
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


class _Voucher(_Wire):
    voucher_id: str = Field(alias="voucherID")
    voucher_type: str = Field(alias="voucherType")
    currency_code: str | None = Field(None, alias="currencyCode")
    remaining_value: Decimal | None = Field(None, alias="remainingValue")
    item_label: str | None = Field(None, alias="itemLabel")
    remaining_item_quantity: int | None = Field(None, alias="remainingItemQuantity")
    is_redeemable: bool = Field(alias="isRedeemable")
    redeemable_status: str | None = Field(None, alias="redeemableStatus")
    valid_from: datetime | None = Field(None, alias="validFrom")
    expires_on: datetime | None = Field(None, alias="expiresOn")
    sender_name: str | None = Field(None, alias="senderName")
    recipient_name: str | None = Field(None, alias="recipientName")


class _GiftAnswer(_Wire):
    """The validate answer; also the gift part of redeem and reversal answers."""

    voucher: _Voucher
    eligible_value: Decimal = Field(Decimal(0), alias="voucherEligibleValue")
    eligible_item_quantity: int = Field(0, alias="voucherEligibleItemQuantity")
    present_value_description: str | None = Field(None, alias="voucherPresentValueDescription")


class _Transaction(_Wire):
    transaction_id: str = Field(alias="redemptionTransactionID")
    amount: Decimal
    reversed_on: datetime | None = Field(None, alias="reversedOn")


class _TransactionAnswer(_GiftAnswer):
    transaction: _Transaction = Field(alias="redemptionTransaction")


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

    @classmethod
    def create(cls, settings: GiftLocalSettings, env: ProviderEnv) -> GiftLocalProvider:
        return cls(settings, transport=env.transport)

    async def validate(self, ref: GiftRef, *, location: str | None) -> GiftStatus:
        """Look the gift up; success does not mean redeemable (see `GiftStatus.is_redeemable`)."""
        body: dict[str, Any] = self._location_fields(location)
        if ref.code is not None:
            shown = ref.code.strip()
            if not (len(shown) == 12 and shown.isascii() and shown.isdigit()):
                raise ProviderError(ErrorCode.INVALID_REQUEST, "Gift code must be 12 digits")
            body["voucherCode"] = int(shown) if VOUCHER_CODE_AS_NUMBER else shown
        else:
            assert ref.public_token is not None  # GiftRef guarantees exactly one
            shown = ref.public_token.strip()
            body["voucherPublicToken"] = shown
        response = await self._client.call("POST", VALIDATE_PATH, write=False, json=body)
        gift = self._decode(response, self._gift, write=False)
        log.info("%s validate %s: redeemable=%s", LABEL, mask(shown), gift.is_redeemable)
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
        body = {
            **self._location_fields(location),
            "voucherID": gift_id,
            "amount": self._wire_amount(gift_id, amount, quantity),
        }
        response = await self._client.call("POST", REDEEM_PATH, write=True, json=body)
        redemption = self._decode(response, self._redemption, write=True)
        log.info("%s redeemed: transaction %s", LABEL, redemption.transaction_id)
        return redemption

    async def reverse(
        self, transaction_id: str, *, location: str | None, idempotency_key: str
    ) -> Reversal:
        """Restore a redemption's value. A second reversal is refused (`already_reversed`),
        which makes a retry after `unknown_outcome` safe although no key can be sent."""
        body = {**self._location_fields(location), "redemptionTransactionID": transaction_id}
        response = await self._client.call("POST", REVERSE_PATH, write=True, json=body)
        reversal = self._decode(response, self._reversal, write=True)
        log.info("%s reversed: transaction %s", LABEL, transaction_id)
        return reversal

    async def check_health(self) -> tuple[bool, str]:
        """Validate a code no gift has: any answer but 401/403 proves the key is accepted."""
        body = {
            **self._location_fields(None),
            "voucherCode": int(HEALTH_PROBE_CODE) if VOUCHER_CODE_AS_NUMBER else HEALTH_PROBE_CODE,
        }
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
        currency = (kind.currency if kind else None) or self._settings.currency
        try:
            return json_number(to_decimal(amount, currency))
        except ValueError as exc:
            raise ProviderError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    # -- answers --------------------------------------------------------------------------------

    def _decode(self, response: httpx.Response, build: Callable[[Any], _T], *, write: bool) -> _T:
        """A success answer through `build`, or the refusal as a `ProviderError`.

        An answer we cannot read after a write means it was applied but we do not know how:
        `unknown_outcome`. After a read it is just an unusable answer: `provider_unavailable`.
        """
        if not response.is_success:
            raise self._refusal(response)
        try:
            return build(response.json(parse_float=Decimal))
        except ValueError as exc:  # JSON, pydantic validation, or amounts out of scale
            log.warning("%s %s: unreadable answer: %s", LABEL, response.request.url.path, exc)
            if write:
                raise ProviderError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{LABEL} accepted the request but its answer could not be read; "
                    "check the gift before trying again",
                ) from exc
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"{LABEL} answered in an unexpected form"
            ) from exc

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

    def _gift(self, data: object) -> GiftStatus:
        answer = _GiftAnswer.model_validate(data)
        voucher = answer.voucher
        kind = GIFT_TYPES.get(voucher.voucher_type)
        if kind is None:
            raise ValueError(f"unknown voucherType {voucher.voucher_type!r}")
        redeemable = voucher.is_redeemable
        if kind is GiftType.MONETARY:
            currency = voucher.currency_code or self._settings.currency
            if voucher.remaining_value is None:
                raise ValueError("monetary gift without remainingValue")
            balance = to_minor(voucher.remaining_value, currency)
            left = f"{voucher.remaining_value} {currency}"
            amounts: dict[str, Any] = {
                "currency": currency,
                "balance": balance,
                "eligible_value": to_minor(answer.eligible_value, currency) if redeemable else 0,
            }
        else:
            currency = None
            if voucher.remaining_item_quantity is None:
                raise ValueError("item gift without remainingItemQuantity")
            left = f"{voucher.remaining_item_quantity} × {voucher.item_label}"
            amounts = {
                "item_label": voucher.item_label,
                "item_quantity": voucher.remaining_item_quantity,
                "eligible_quantity": answer.eligible_item_quantity if redeemable else 0,
            }
        self._remember(voucher.voucher_id, _Kind(kind, currency))
        return GiftStatus(
            gift_id=voucher.voucher_id,
            type=kind,
            is_redeemable=redeemable,
            reason=None if redeemable else REASONS.get(voucher.redeemable_status or ""),
            description=answer.present_value_description or left,
            valid_from=voucher.valid_from,
            expires_at=voucher.expires_on,
            sender=voucher.sender_name,
            recipient=voucher.recipient_name,
            **amounts,
        )

    def _transaction(self, data: object) -> tuple[_Transaction, GiftStatus, dict[str, int]]:
        """The transaction, the gift after it, and its units as Redemption/Reversal fields."""
        answer = _TransactionAnswer.model_validate(data)
        gift = self._gift(data)
        transaction = answer.transaction
        if gift.currency is not None:
            return transaction, gift, {"amount": to_minor(transaction.amount, gift.currency)}
        return transaction, gift, {"quantity": _whole(transaction.amount)}

    def _redemption(self, data: object) -> Redemption:
        transaction, gift, units = self._transaction(data)
        return Redemption(
            transaction_id=transaction.transaction_id, gift_id=gift.gift_id, gift=gift, **units
        )

    def _reversal(self, data: object) -> Reversal:
        transaction, gift, units = self._transaction(data)
        return Reversal(
            transaction_id=transaction.transaction_id,
            gift_id=gift.gift_id,
            reversed_at=transaction.reversed_on or datetime.now(UTC),
            gift=gift,
            **units,
        )

    def _remember(self, gift_id: str, kind: _Kind) -> None:
        self._kinds.pop(gift_id, None)
        self._kinds[gift_id] = kind
        if len(self._kinds) > _KNOWN_GIFTS:
            del self._kinds[next(iter(self._kinds))]
