"""The gift flow (seed 003): a scanned gift code is validated at once; the POS then redeems an
amount or item quantity by `token_id`, and can reverse a redemption by its transaction id.

Validation succeeds for gifts that exist but cannot be redeemed (expired, depleted...): the event
says so with `gift.is_redeemable` and `gift.reason`, and a redeem is refused before it reaches the
provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.contract import (
    ErrorBody,
    Event,
    GiftInvalidData,
    GiftRedeemedData,
    GiftRedeemParams,
    GiftReversedData,
    GiftReverseParams,
    GiftValidatedData,
    GiftValidateParams,
    RedeemResult,
    ReverseResult,
    ValidateResult,
)
from agent.errors import ErrorCode, LaneError, ProviderError
from agent.normalise import Kind, Token
from agent.providers.base import GiftProvider, GiftRef, GiftStatus
from agent.tokens import TokenVault, display

log = logging.getLogger(__name__)

GIFT_KINDS = frozenset({Kind.GIFT_VOUCHER_CODE.value, Kind.GIFT_VOUCHER_TOKEN.value})


def gift_ref(token: Token) -> GiftRef:
    if token.kind == Kind.GIFT_VOUCHER_TOKEN:
        return GiftRef(public_token=token.value)
    return GiftRef(code=token.value)


class GiftFlow:
    def __init__(
        self,
        provider: GiftProvider,
        vault: TokenVault,
        emit: Callable[[Event], None],
        *,
        location: str | None = None,
    ) -> None:
        self.provider = provider
        self._vault = vault
        self._emit = emit
        self._location = location

    async def on_scan(self, token: Token, token_id: str) -> None:
        """Validate a freshly scanned gift and tell the POS what it is worth."""
        shown = display(token)
        try:
            gift = await self.provider.validate(gift_ref(token), location=self._location)
        except LaneError as exc:
            log.info("gift %s (%s) not validated: %s", shown, token_id, exc.code)
            data = GiftInvalidData(
                token_id=token_id,
                display=shown,
                provider=self.provider.name,
                error=ErrorBody.of(exc),
            )
            self._emit(Event(type="gift.invalid", data=data.model_dump(mode="json")))
            return
        log.info("gift %s (%s) validated: redeemable=%s", shown, token_id, gift.is_redeemable)
        validated = GiftValidatedData(
            token_id=token_id, display=shown, provider=self.provider.name, gift=gift
        )
        self._emit(Event(type="gift.validated", data=validated.model_dump(mode="json")))

    def _token(self, token_id: str) -> Token:
        return self._vault.require(token_id, GIFT_KINDS, "a gift")

    async def validate(self, params: GiftValidateParams) -> ValidateResult:
        token = self._token(params.token_id)
        gift = await self.provider.validate(gift_ref(token), location=self._location)
        return ValidateResult(provider=self.provider.name, gift=gift)

    async def redeem(self, params: GiftRedeemParams) -> RedeemResult:
        if params.amount is None and params.quantity is None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                "give amount (minor units) for a monetary gift or quantity for an item gift",
            )
        token = self._token(params.token_id)
        gift = await self.provider.validate(gift_ref(token), location=self._location)
        _check_redeemable(gift)
        redemption = await self.provider.redeem(
            gift.gift_id,
            amount=params.amount,
            quantity=params.quantity,
            location=self._location,
            idempotency_key=params.request_id,
        )
        shown = display(token)
        log.info("gift %s redeemed: transaction %s", shown, redemption.transaction_id)
        data = GiftRedeemedData(
            token_id=params.token_id,
            display=shown,
            provider=self.provider.name,
            redemption=redemption,
        )
        self._emit(Event(type="gift.redeemed", data=data.model_dump(mode="json")))
        return RedeemResult(provider=self.provider.name, redemption=redemption)

    async def reverse(self, params: GiftReverseParams) -> ReverseResult:
        reversal = await self.provider.reverse(
            params.transaction_id, location=self._location, idempotency_key=params.request_id
        )
        log.info("transaction %s reversed", reversal.transaction_id)
        data = GiftReversedData(provider=self.provider.name, reversal=reversal)
        self._emit(Event(type="gift.reversed", data=data.model_dump(mode="json")))
        return ReverseResult(provider=self.provider.name, reversal=reversal)


def _check_redeemable(gift: GiftStatus) -> None:
    """Refuse before calling redeem, so nothing reaches the provider. One code for every reason
    (the POS branches on it once); `details.reason` says which: expired, depleted..."""
    if gift.is_redeemable:
        return
    reason = {"reason": gift.reason.value} if gift.reason is not None else None
    raise ProviderError(ErrorCode.NOT_REDEEMABLE, gift.description, details=reason)
