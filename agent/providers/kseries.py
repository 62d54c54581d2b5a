"""The stored-value card backend behind the Lightspeed K-Series gift card payment.

K-Series has no gift card API of its own: its web extension calls the integrator's application
(here, the lane agent), which checks the card against a stored-value backend, debits it, and
tells the POS what to add with `pos_addPayment(amountCents, paymentMethodCode, cb)`. The backend
API spoken here is OUR design of what such a provider must expose (docs/providers/kseries.md),
not a published API; its paths are the constants below.

Money safety rests on the backend's idempotency by `reference`: the same redemption sent twice
is one debit, so after an `unknown_outcome` the caller can look the reference up
(`find_redemption`) or send the very same redemption again. Card numbers go to the backend in
request bodies only (never in a URL, which HTTP clients and proxies log) and are logged masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ErrorCode, ProviderError
from agent.providers.cards import (
    CardBalance,
    CardRedemption,
    CardReversal,
    CardStatus,
    RedemptionStatus,
)
from agent.providers.http import EndpointCheck, ProviderClient, error_message, probe
from agent.providers.settings import KSeriesSettings
from agent.registry import ProviderEnv
from agent.secrets import read_key

log = logging.getLogger(__name__)

NAME: Final = "kseries"
# How messages name the backend to a cashier.
DISPLAY_NAME: Final = "Gift card service"

# Our design of the card API (no provider publishes one for K-Series): see the docs page.
LOOKUP_PATH: Final = "/v1/cards/lookup"
REDEMPTIONS_PATH: Final = "/v1/redemptions"
REVERSAL_PATH: Final = "/v1/redemptions/{transaction_id}/reversal"
# check_health looks this reference up: an authenticated read that moves nothing.
HEALTH_REFERENCE: Final = "lane-agent-health-check"

# UNCERTAIN: what identifies a K-Series gift card (the barcode and NFC payloads are not
# documented). Printed numbers of 8 to 19 digits (ISO/IEC 7812, the usual gift card GANs) and NFC
# UIDs in upper-case hex (4, 7 or 10 bytes: 8 to 20 characters) both fit this.
CARD_NUMBER: Final = re.compile(r"[0-9A-F]{8,20}")
# Printed and keyed numbers are grouped with spaces or dashes.
_GROUPING = re.compile(r"[\s-]")

_T = TypeVar("_T")

# The API's error codes in the lane's vocabulary; the API's message is kept for the cashier.
ERRORS: Final[dict[str, ErrorCode]] = {
    "invalid_request": ErrorCode.INVALID_REQUEST,
    "unauthorized": ErrorCode.NOT_CONFIGURED,
    "card_not_found": ErrorCode.NOT_FOUND,
    "redemption_not_found": ErrorCode.NOT_FOUND,
    "card_blocked": ErrorCode.NOT_REDEEMABLE,
    "card_expired": ErrorCode.EXPIRED,
    "currency_mismatch": ErrorCode.NOT_REDEEMABLE,
    "insufficient_funds": ErrorCode.INSUFFICIENT_BALANCE,
    "reference_conflict": ErrorCode.INVALID_REQUEST,
    "already_reversed": ErrorCode.ALREADY_REVERSED,
    "rate_limited": ErrorCode.PROVIDER_UNAVAILABLE,
}
# When an error body has no code we know, its status still says something.
_STATUS_ERRORS: Final[dict[int, ErrorCode]] = {
    401: ErrorCode.NOT_CONFIGURED,
    403: ErrorCode.NOT_CONFIGURED,
    429: ErrorCode.PROVIDER_UNAVAILABLE,
}


def normalise_card_number(value: str) -> str:
    """A scanned or keyed card number (or NFC UID) as the API wants it, or `invalid_request`
    before any call."""
    number = _GROUPING.sub("", value)
    # ASCII first: "ﬀ".upper() is "FF".
    if not number.isascii() or not CARD_NUMBER.fullmatch(number.upper()):
        raise ProviderError(
            ErrorCode.INVALID_REQUEST, "A gift card number is 8 to 20 digits (or hex digits)"
        )
    return number.upper()


# -- the API's bodies (extra fields are ignored: the API may grow) --------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Card(_Wire):
    last4: str
    balance: int
    currency: str
    status: CardStatus
    expires_on: date | None = None

    def model(self) -> CardBalance:
        return CardBalance(
            card_last4=self.last4,
            balance=self.balance,
            currency=self.currency,
            status=self.status,
            expires_on=self.expires_on,
        )


class _Redemption(_Wire):
    id: str
    card_last4: str
    amount: int
    currency: str
    reference: str
    balance_after: int
    status: RedemptionStatus
    reversal_id: str | None = None
    created_at: datetime

    def model(self) -> CardRedemption:
        return CardRedemption(
            transaction_id=self.id,
            card_last4=self.card_last4,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            balance_after=self.balance_after,
            status=self.status,
            created_at=self.created_at,
            reversal_id=self.reversal_id,
        )


class _Reversal(_Wire):
    id: str
    redemption_id: str
    card_last4: str
    amount: int
    currency: str
    reference: str
    balance_after: int
    created_at: datetime

    def model(self) -> CardReversal:
        return CardReversal(
            reversal_id=self.id,
            transaction_id=self.redemption_id,
            card_last4=self.card_last4,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            balance_after=self.balance_after,
            created_at=self.created_at,
        )


class _Found(_Wire):
    data: list[_Redemption] = Field(max_length=1, description="a reference names one debit")


class _ErrorDetail(_Wire):
    code: str
    available: int | None = None
    currency: str | None = None


class _Error(_Wire):
    error: _ErrorDetail


def _refusal(response: httpx.Response) -> ProviderError:
    """The API's 4xx answer as a vocabulary error, with its own message."""
    status = response.status_code
    message = error_message(response, f"{DISPLAY_NAME} refused the request (HTTP {status})")
    try:
        detail: _ErrorDetail | None = _Error.model_validate_json(response.content).error
    except ValueError:
        detail = None
    code = ERRORS.get(detail.code) if detail is not None else None
    code = code or _STATUS_ERRORS.get(status, ErrorCode.INTERNAL)
    details: dict[str, Any] | None = None
    if (
        code is ErrorCode.INSUFFICIENT_BALANCE
        and detail is not None
        and detail.available is not None
    ):
        details = {"available": detail.available, "currency": detail.currency}
    return ProviderError(code, message, details=details)


class KSeriesCardProvider:
    """`CardProvider` over the card API: balance, redeem, reverse, find by reference."""

    name = NAME

    def __init__(
        self, settings: KSeriesSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        key = read_key(f"providers.{NAME}", settings, "api_key_file")
        self.payment_method_code = settings.payment_method_code
        self.currency = settings.currency
        self._base_url = str(settings.base_url)
        self._client = ProviderClient(
            DISPLAY_NAME,
            settings,
            headers={"Authorization": f"Bearer {key.reveal()}", "Accept": "application/json"},
            transport=transport,
        )

    @classmethod
    def create(cls, settings: KSeriesSettings, env: ProviderEnv) -> KSeriesCardProvider:
        return cls(settings, transport=env.transport)

    async def balance(self, card_number: str) -> CardBalance:
        """The card's balance and status; found is not redeemable (see `is_redeemable`)."""
        body = {"number": normalise_card_number(card_number)}
        response = await self._client.call("POST", LOOKUP_PATH, write=False, json=body)
        return _answer(response, {200}, lambda b: _Card.model_validate(b).model(), write=False)

    async def redeem(
        self, card_number: str, *, amount: int, currency: str, reference: str
    ) -> CardRedemption:
        """Debit `amount` minor units. The same `reference` again returns the first debit and
        moves nothing; `insufficient_balance` carries the available amount in `details`."""
        body = {
            "card_number": normalise_card_number(card_number),
            "amount": amount,
            "currency": currency,
            "reference": reference,
        }
        response = await self._client.call("POST", REDEMPTIONS_PATH, write=True, json=body)
        redemption = _answer(
            response, {200, 201}, lambda b: _Redemption.model_validate(b).model(), write=True
        )
        log.info(
            "%s: card %s debited %s %s under %s (%s), balance %s",
            NAME,
            redemption.masked_number,
            redemption.amount,
            redemption.currency,
            redemption.reference,
            redemption.transaction_id,
            redemption.balance_after,
        )
        return redemption

    async def reverse(self, transaction_id: str, *, reference: str) -> CardReversal:
        """Put a debit's amount back on the card; the same `reference` again returns the first
        reversal, another one for a reversed debit is `already_reversed`."""
        if not transaction_id:
            raise ProviderError(ErrorCode.INVALID_REQUEST, "A transaction id is required")
        path = REVERSAL_PATH.format(transaction_id=quote(transaction_id, safe=""))
        response = await self._client.call("POST", path, write=True, json={"reference": reference})
        reversal = _answer(
            response, {200, 201}, lambda b: _Reversal.model_validate(b).model(), write=True
        )
        log.info(
            "%s: card %s credited %s %s back, reversing %s (%s)",
            NAME,
            reversal.masked_number,
            reversal.amount,
            reversal.currency,
            reversal.transaction_id,
            reversal.reversal_id,
        )
        return reversal

    async def find_redemption(self, reference: str) -> CardRedemption | None:
        """The debit made under `reference`, if any: how a lost answer is resolved."""
        response = await self._client.call(
            "GET", REDEMPTIONS_PATH, write=False, params={"reference": reference}
        )
        found = _answer(response, {200}, _Found.model_validate, write=False)
        return found.data[0].model() if found.data else None

    async def check_health(self) -> tuple[bool, str]:
        try:
            await self.find_redemption(HEALTH_REFERENCE)
        except ProviderError as exc:
            return False, f"{self._base_url}: {exc.code}: {exc.message}"
        return True, f"{self._base_url}: reachable, API key accepted"

    async def check_endpoints(self) -> list[EndpointCheck]:
        """The look-up with an empty body (400 where it exists) and the find with the health
        reference (200). The reversal path is not tried: only a real debit's id could tell a
        wrong path from an unknown debit."""
        return [
            await probe(self._client, "card look-up (LOOKUP_PATH)", "POST", LOOKUP_PATH, json={}),
            await probe(
                self._client,
                "find a debit by reference (REDEMPTIONS_PATH)",
                "GET",
                REDEMPTIONS_PATH,
                params={"reference": HEALTH_REFERENCE},
            ),
        ]

    async def aclose(self) -> None:
        await self._client.aclose()


def _answer(
    response: httpx.Response, ok: set[int], convert: Callable[[Any], _T], *, write: bool
) -> _T:
    """`convert(body)` for an expected status; a refusal for a 4xx; anything else (an odd 2xx
    or 3xx, a body we cannot read) leaves a write's outcome unknown."""
    status = response.status_code
    if status >= 400:
        raise _refusal(response)
    try:
        if status in ok:
            return convert(response.json())
        problem = f"unexpected HTTP {status}"
    except ValueError as exc:  # not JSON, or pydantic's ValidationError
        problem = f"unreadable answer ({type(exc).__name__})"
    log.error("%s: %s %s: %s", NAME, response.request.method, response.request.url.path, problem)
    if write:
        raise ProviderError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"{DISPLAY_NAME} gave an {problem}; it may have applied the request. "
            "Do not retry until it is checked.",
        )
    raise ProviderError(
        ErrorCode.PROVIDER_UNAVAILABLE, f"{DISPLAY_NAME} gave an {problem}. Try again."
    )
