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
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, NoReturn, TypeVar
from urllib.parse import quote

import httpx
from pydantic import Field, ValidationError

from agent.errors import ErrorCode, ProviderError
from agent.providers.answers import Answer, Lenient
from agent.providers.cards import (
    LAST4,
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


# -- the API's answers ----------------------------------------------------------------------------
#
# Tolerant readers (issue 12): seed 000 names one thing the card service answers, a card's
# balance ("check the balance of the gift card"); the rest of the card API is our design. So each
# read requires only what it cannot do without, every other field is `Lenient` and filled from
# what the lane sent when the answer leaves it out, and unknown fields are ignored (logged by
# name). A debit's success is a 2xx answer with the one identifier the lane needs to give it
# back (`id`); a reversal's is a 2xx answer alone (it names the debit the lane sent).


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Last4 = Annotated[str, Field(pattern=LAST4)]
_A = TypeVar("_A", bound=Answer)


class _Card(Answer):
    provider = NAME
    balance: int = Field(ge=0)
    currency: Lenient[Currency] = None
    status: Lenient[str] = None
    expires_on: Lenient[date] = None


class _Redemption(Answer):
    provider = NAME
    id: str = Field(min_length=1)
    card_last4: Lenient[Last4] = None
    amount: Lenient[Annotated[int, Field(gt=0)]] = None
    currency: Lenient[Currency] = None
    reference: Lenient[str] = None
    balance_after: Lenient[Annotated[int, Field(ge=0)]] = None
    status: Lenient[str] = None
    reversal_id: Lenient[str] = None
    created_at: Lenient[datetime] = None


class _Reversal(Answer):
    provider = NAME
    id: Lenient[Annotated[str, Field(min_length=1)]] = None
    redemption_id: Lenient[str] = None
    card_last4: Lenient[Last4] = None
    amount: Lenient[Annotated[int, Field(gt=0)]] = None
    currency: Lenient[Currency] = None
    balance_after: Lenient[Annotated[int, Field(ge=0)]] = None
    created_at: Lenient[datetime] = None


class _Found(Answer):
    provider = NAME
    data: list[_Redemption] = Field(max_length=1, description="a reference names one debit")


def _card_status(value: str | None) -> CardStatus:
    """The card's status; absent or unknown, the card is offered and the debit decides (the
    service refuses a card that cannot pay), so a name we guessed never blocks a good card."""
    try:
        return CardStatus(value or CardStatus.ACTIVE)
    except ValueError:
        log.warning("%s: unknown card status %.20r; the debit decides", NAME, value)
        return CardStatus.ACTIVE


def _redemption(
    answer: _Redemption,
    *,
    reference: str,
    card_number: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> CardRedemption:
    """A debit as the service described it, completed from what the lane sent (`card_number`,
    `amount`, `currency`: absent for a debit found by its reference)."""
    if amount is not None and answer.amount not in (None, amount):
        log.warning("%s: debit %s of %s answered as %s", NAME, answer.id, amount, answer.amount)
    reversed_ = answer.status == RedemptionStatus.REVERSED or answer.reversal_id is not None
    # Validated: a debit found by reference without its card or amount is unreadable (a read).
    return CardRedemption.model_validate(
        {
            "transaction_id": answer.id,
            "card_last4": card_number[-4:] if card_number else answer.card_last4,
            "amount": answer.amount or amount,
            "currency": answer.currency or currency,
            "reference": answer.reference or reference,
            "balance_after": answer.balance_after,
            "status": RedemptionStatus.REVERSED if reversed_ else RedemptionStatus.COMPLETED,
            "created_at": answer.created_at or datetime.now(UTC),
            "reversal_id": answer.reversal_id,
        }
    )


class _ErrorDetail(Answer):
    provider = NAME
    code: str
    available: int | None = None
    currency: str | None = None


class _Error(Answer):
    provider = NAME
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
        number = normalise_card_number(card_number)
        response = await self._client.call(
            "POST", LOOKUP_PATH, write=False, json={"number": number}
        )
        card = _read(_Card, response)
        return CardBalance(
            card_last4=number[-4:],
            balance=card.balance,
            currency=card.currency or self.currency,
            status=_card_status(card.status),
            expires_on=card.expires_on,
        )

    async def redeem(
        self, card_number: str, *, amount: int, currency: str, reference: str
    ) -> CardRedemption:
        """Debit `amount` minor units. The same `reference` again returns the first debit and
        moves nothing; `insufficient_balance` carries the available amount in `details`."""
        number = normalise_card_number(card_number)
        body = {
            "card_number": number,
            "amount": amount,
            "currency": currency,
            "reference": reference,
        }
        response = await self._client.call("POST", REDEMPTIONS_PATH, write=True, json=body)
        redemption = _redemption(
            _read(_Redemption, response, write=True),
            reference=reference,
            card_number=number,
            amount=amount,
            currency=currency,
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
        _accepted(response, write=True)
        try:
            answer = _Reversal.model_validate_json(response.content)
        except ValueError:  # not a JSON object: the 2xx alone says it is done
            log.warning(
                "%s: reversal of %s accepted with an unreadable answer", NAME, transaction_id
            )
            answer = _Reversal()
        if answer.redemption_id not in (None, transaction_id):
            log.warning("%s: reversal of %s answered for another debit", NAME, transaction_id)
        reversal = CardReversal(
            reversal_id=answer.id,
            transaction_id=transaction_id,
            card_last4=answer.card_last4,
            amount=answer.amount,
            currency=answer.currency,
            reference=reference,
            balance_after=answer.balance_after,
            created_at=answer.created_at or datetime.now(UTC),
        )
        log.info(
            "%s: card %s credited %s %s back, reversing %s (%s)",
            NAME,
            reversal.masked_number or "?",
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
        found = _read(_Found, response)
        if not found.data:
            return None
        try:
            return _redemption(found.data[0], reference=reference, currency=self.currency)
        except ValidationError:
            log.warning("%s: the debit found for %s lacks its card or amount", NAME, reference)
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{DISPLAY_NAME} found the payment but did not say its card or amount. Try again.",
            ) from None

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


def _accepted(response: httpx.Response, *, write: bool) -> None:
    """Return for a 2xx; a refusal for a 4xx; anything else (a 3xx) leaves a write's outcome
    unknown."""
    status = response.status_code
    if status >= 400:
        raise _refusal(response)
    if status >= 300:
        _unsure(response, f"unexpected HTTP {status}", write=write)


def _read(model: type[_A], response: httpx.Response, *, write: bool = False) -> _A:
    """A 2xx answer as `model`. Without what `model` requires, a read may be retried; a write
    is accepted but cannot be named, so its outcome is unknown."""
    _accepted(response, write=write)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:  # not JSON, or without a required field
        # Field locations only: the values may be card numbers.
        where = [".".join(map(str, e["loc"])) for e in exc.errors()]
        _unsure(response, "unreadable answer", write=write, detail=f"at {where}")


def _unsure(response: httpx.Response, problem: str, *, write: bool, detail: str = "") -> NoReturn:
    request = response.request
    log.error("%s: %s %s: %s %s", NAME, request.method, request.url.path, problem, detail)
    if write:
        raise ProviderError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"{DISPLAY_NAME} gave an {problem}; it may have applied the request. "
            "Do not retry until it is checked.",
        )
    raise ProviderError(
        ErrorCode.PROVIDER_UNAVAILABLE, f"{DISPLAY_NAME} gave an {problem}. Try again."
    )
