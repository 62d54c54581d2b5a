"""Gift card payment (seed 000, K-Series style): a scanned card's balance is shown at once; on
`gift.redeem` the agent debits the card for the order and answers with the payment the POS adds
(`pos_addPayment(amount_cents, payment_method_code, cb)`), or `insufficient_balance` carrying
the available amount so the POS can offer a partial payment.

The amount defaults to what is left of the open order's total (tax included, as K-Series'
`pos_getCurrentAccount` gives it). Each debit goes out under the request's `request_id` as the
provider's idempotency reference, so a retried request can never debit twice, and a debit whose
answer was lost is looked up by that reference before the POS hears anything. The order's card
payments are kept with the order: `order.void` reverses them.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Final

from pydantic import BaseModel

from agent.contract import (
    CardBalanceData,
    CardInvalidData,
    CardPaidData,
    CardReversedData,
    ErrorBody,
    Event,
    GiftRedeemParams,
    GiftReverseParams,
    GiftValidateParams,
    PaymentInstruction,
    RedeemResult,
    ReverseResult,
    StepOutcome,
    ValidateResult,
)
from agent.errors import ErrorCode, LaneError, out_of_space
from agent.flows.base import FlowContext, Handler
from agent.flows.orders import outcome
from agent.money import shown
from agent.normalise import Token
from agent.orders import Order
from agent.providers.cards import CardProvider, CardRedemption, CardReversal
from agent.tenders import Tender, TenderState
from agent.tokens import display

log = logging.getLogger(__name__)

FLOW: Final = "card"


class CardPayments(BaseModel):
    """The card payments taken for one order (flow state in the order book)."""

    redemptions: list[CardRedemption] = []
    reversed: list[str] = []  # transaction ids
    # References of debits sent but not yet recorded here: written before the debit, so a
    # crash (or a full disk) can never leave a debit this lane does not know to look for.
    pending: list[str] = []

    def kept(self) -> list[CardRedemption]:
        return [r for r in self.redemptions if r.transaction_id not in self.reversed]

    def paid(self) -> int:
        return sum(r.amount for r in self.kept())


class CardFlow:
    name = FLOW

    def __init__(self, provider: CardProvider, ctx: FlowContext) -> None:
        self.provider = provider
        # request ids are unique per POS, not per card backend: the lane makes them global.
        self._prefix = ctx.lane_ref
        self._reference = ctx.reference
        self._vault = ctx.vault
        self._book = ctx.book
        self._tenders = ctx.book.tenders
        self._emit = ctx.emit
        self._kinds = ctx.kinds(FLOW)
        # Orders' payments the disk had no room for (`_keep`), until their next save.
        self._unsaved: dict[str, CardPayments] = {}

    async def on_scan(self, token: Token, token_id: str) -> None:
        """Look the card up so the POS can show its balance before anyone asks to pay."""
        shown = display(token)
        try:
            card = await self.provider.balance(token.value)
        except LaneError as exc:
            log.info("card %s (%s) not found: %s", shown, token_id, exc.code)
            invalid = CardInvalidData(
                token_id=token_id,
                display=shown,
                provider=self.provider.name,
                error=ErrorBody.of(exc),
            )
            self._emit(Event(type="card.invalid", data=invalid.model_dump(mode="json")))
            return
        data = CardBalanceData(
            token_id=token_id, display=shown, provider=self.provider.name, card=card
        )
        self._emit(Event(type="card.balance", data=data.model_dump(mode="json")))

    def handlers(self) -> dict[str, Handler]:
        """None of its own: the POS pays by card with the gift ops, which the app dispatches by
        the token's flow (`handles`, `owns`)."""
        return {}

    def handles(self, token_id: str) -> bool:
        entry = self._vault.get(token_id)
        return entry is not None and entry.token.kind in self._kinds

    async def validate(self, params: GiftValidateParams) -> ValidateResult:
        token = self._vault.require(params.token_id, self._kinds, "a gift card")
        card = await self.provider.balance(token.value)
        return ValidateResult(provider=self.provider.name, card=card)

    def resumes(self, request_id: str) -> bool:
        """Whether the open order has a debit sent under this request: its retry after a
        restart (which forgot the token) is answered from that debit, never debited again."""
        order = self._book.current()
        if order is None:
            return False
        state, reference = self._state(order), self._reference(request_id)
        return reference in state.pending or any(
            r.reference == reference for r in state.redemptions
        )

    async def redeem(self, params: GiftRedeemParams) -> RedeemResult:
        if self.resumes(params.request_id):
            order = self._book.require_open()
            state = self._state(order)
            earlier = await self._earlier(order, state, self._reference(params.request_id))
            if earlier is not None:
                return self._paid(params, order, state, earlier, earlier.masked_number)
        token = self._vault.require(params.token_id, self._kinds, "a gift card")
        if params.quantity is not None:
            raise LaneError(ErrorCode.INVALID_REQUEST, "a gift card pays an amount, not items")
        order = self._book.require_open()
        state = self._state(order)
        left = order.snapshot.total - state.paid()
        if left <= 0:
            raise LaneError(
                ErrorCode.INVALID_REQUEST, f"order {order.order_id} has nothing left to pay"
            )
        amount = left if params.amount is None else params.amount
        if amount > left:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"amount {amount} is more than the {left} left to pay on order {order.order_id}",
                details={"left": left, "currency": order.snapshot.currency},
            )
        reference = self._reference(params.request_id)
        if reference not in state.pending:
            state.pending.append(reference)
        with self._book.transaction():  # fails (e.g. disk full) before any money moves
            self._tenders.begin(
                reference,
                order_id=order.order_id,
                flow=FLOW,
                provider=self.provider.name,
                display=display(token),
                amount=amount,
                currency=order.snapshot.currency,
            )
            self._save(order, state)
        self._unsaved.pop(order.order_id, None)  # saved with this payment's reference
        try:
            redemption = await self._debit(token, amount, order.snapshot.currency, reference)
        except LaneError as exc:
            if exc.code is not ErrorCode.UNKNOWN_OUTCOME:  # refused: nothing was taken
                state.pending.remove(reference)
                self._keep(order, state)
            raise
        self._record(state, reference, redemption)
        self._keep(order, state)
        return self._paid(params, order, state, redemption, display(token))

    async def _earlier(
        self, order: Order, state: CardPayments, reference: str
    ) -> CardRedemption | None:
        """The debit already made under `reference`, recorded or found at the provider; None
        when it was never made (then it is a new payment, which needs the scanned card)."""
        done = next((r for r in state.redemptions if r.reference == reference), None)
        if done is not None:
            return done
        try:
            found = await self.provider.find_redemption(reference)
        except LaneError as exc:
            raise LaneError(
                ErrorCode.UNKNOWN_OUTCOME,
                "an earlier attempt of this payment may have debited the card and the card "
                f"service cannot tell now ({exc.message}); voiding the order gives it back",
            ) from exc
        if found is None:
            state.pending.remove(reference)
        else:
            self._record(state, reference, found)
        self._keep(order, state)
        return found

    def _paid(
        self,
        params: GiftRedeemParams,
        order: Order,
        state: CardPayments,
        redemption: CardRedemption,
        shown: str,
    ) -> RedeemResult:
        remaining = order.snapshot.total - state.paid()
        payment = PaymentInstruction(
            amount_cents=redemption.amount,
            payment_method_code=self.provider.payment_method_code,
            currency=redemption.currency,
        )
        log.info(
            "card %s paid %d on order %s (transaction %s)",
            shown,
            redemption.amount,
            order.order_id,
            redemption.transaction_id,
        )
        paid = CardPaidData(
            token_id=params.token_id,
            display=shown,
            provider=self.provider.name,
            order_id=order.order_id,
            payment=payment,
            redemption=redemption,
            remaining=remaining,
        )
        self._emit(Event(type="card.paid", data=paid.model_dump(mode="json")))
        return RedeemResult(
            provider=self.provider.name, card=redemption, payment=payment, remaining=remaining
        )

    async def _debit(
        self, token: Token, amount: int, currency: str, reference: str
    ) -> CardRedemption:
        """Debit once. When the answer is lost, the reference tells whether the debit happened:
        found, it is the answer; not found, nothing was taken and the POS may simply retry."""
        try:
            return await self.provider.redeem(
                token.value, amount=amount, currency=currency, reference=reference
            )
        except LaneError as exc:
            if exc.code is not ErrorCode.UNKNOWN_OUTCOME:
                raise
            log.warning("card debit %s: answer lost; looking it up by reference", reference)
            try:
                found = await self.provider.find_redemption(reference)
            except LaneError:
                raise exc from None
            if found is None:
                raise LaneError(
                    ErrorCode.PROVIDER_UNAVAILABLE,
                    "the card service did not answer and took nothing; try again",
                ) from exc
            return found

    async def reverse(self, params: GiftReverseParams, tender: Tender) -> ReverseResult:
        """Give one payment back, e.g. when `pos_addPayment` failed after the debit; its order
        may be open or closed."""
        order = self._book.require(tender.order_id or "")
        state = self._state(order)
        if params.transaction_id in state.reversed:
            raise LaneError(
                ErrorCode.ALREADY_REVERSED, f"payment {params.transaction_id} is already reversed"
            )
        reversal = await self.provider.reverse(
            params.transaction_id, reference=f"{self._prefix}:{params.request_id}"
        )
        state.reversed.append(params.transaction_id)
        self._keep(order, state)
        self._reversed(order, reversal)
        return ReverseResult(provider=self.provider.name, card=reversal)

    def _reversed(self, order: Order, reversal: CardReversal) -> None:
        log.info("card payment %s reversed on order %s", reversal.transaction_id, order.order_id)
        data = CardReversedData(
            provider=self.provider.name, order_id=order.order_id, reversal=reversal
        )
        self._emit(Event(type="card.reversed", data=data.model_dump(mode="json")))

    async def on_update(self, order: Order) -> None:
        """Nothing to tell the card backend about an order until it pays or is voided."""

    async def on_paid(self, order: Order) -> list[StepOutcome]:
        return []

    async def on_void(self, order: Order) -> list[StepOutcome]:
        """Give the order's card payments back: the sale did not happen."""
        state = self._state(order)
        steps = await self._recover(order, state)
        return steps + await self._give_back(order, state, state.kept())

    on_abandoned = on_void
    """A replaced order leaves nothing taken: the POS must send `order.paid` for a sale."""

    async def on_refund(self, order: Order) -> list[StepOutcome]:
        state = self._state(order)
        asked = {
            t.transaction_id
            for t in self._tenders.of_order(order.order_id, FLOW)
            if t.state is TenderState.REFUNDING
        }
        return await self._give_back(
            order, state, [r for r in state.kept() if r.transaction_id in asked]
        )

    async def _give_back(
        self, order: Order, state: CardPayments, payments: list[CardRedemption]
    ) -> list[StepOutcome]:
        steps = []
        for redemption in payments:
            back = shown(redemption.amount, redemption.currency)
            what = f"{back} back onto card {redemption.masked_number}"
            try:
                reversal = await self.provider.reverse(
                    redemption.transaction_id,
                    reference=f"{self._prefix}:void:{redemption.transaction_id}",
                )
            except LaneError as exc:
                steps.append(outcome(FLOW, self.provider.name, "reverse", what, exc))
                continue
            state.reversed.append(redemption.transaction_id)
            self._keep(order, state)
            self._reversed(order, reversal)
            steps.append(outcome(FLOW, self.provider.name, "reverse", what))
        return steps

    async def _recover(self, order: Order, state: CardPayments) -> list[StepOutcome]:
        """Debits whose answer this lane never recorded: ask the provider by reference."""
        steps = []
        for reference in list(state.pending):
            try:
                found = await self.provider.find_redemption(reference)
            except LaneError as exc:
                steps.append(outcome(FLOW, self.provider.name, "lookup", reference, exc))
                continue
            if found is not None:
                self._record(state, reference, found)
            else:
                state.pending.remove(reference)
            self._keep(order, state)
        return steps

    @staticmethod
    def _record(state: CardPayments, reference: str, redemption: CardRedemption) -> None:
        if all(r.transaction_id != redemption.transaction_id for r in state.redemptions):
            state.redemptions.append(redemption)
        if reference in state.pending:
            state.pending.remove(reference)

    def view(self, order: Order) -> None:
        """Card payments are the order's tenders: `order.get` lists them already."""
        return None

    def _save(self, order: Order, state: CardPayments) -> None:
        """Save the payments and bring the order's tender records in line with them."""
        with self._book.transaction():
            self._book.save_flow_state(order.order_id, FLOW, state)
            for tender in self._tenders.of_order(order.order_id, FLOW):
                self._project(tender, state)

    def _keep(self, order: Order, state: CardPayments) -> None:
        """Save what a provider call did. With no room on the disk the payments are kept in
        memory instead, read back by the order's next step and saved by its next save: the POS
        is told what happened all the same (a refusal of a debit that was made would have the
        cashier take it twice). The debit's reference was saved before the call, so even a
        restart meanwhile finds it at the provider."""
        try:
            self._save(order, state)
        except (sqlite3.Error, OSError) as exc:
            if not out_of_space(exc):
                raise
            log.error(
                "card payments of order %s: no room on the disk, kept in memory", order.order_id
            )
            self._unsaved[order.order_id] = state
        else:
            self._unsaved.pop(order.order_id, None)

    def _project(self, tender: Tender, state: CardPayments) -> None:
        taken = next((r for r in state.redemptions if r.reference == tender.reference), None)
        if taken is not None and taken.transaction_id in state.reversed:
            new = TenderState.REVERSED
        elif taken is not None and tender.state is TenderState.REFUNDING:
            new = TenderState.REFUNDING
        elif taken is not None:
            new = TenderState.TAKEN
        elif tender.reference in state.pending:
            new = TenderState.PENDING
        else:
            new = TenderState.FAILED
        changes: dict[str, object] = {"state": new}
        if taken is not None:
            changes |= {"transaction_id": taken.transaction_id, "amount": taken.amount}
            changes["display"] = taken.masked_number
        if any(getattr(tender, k) != v for k, v in changes.items()):
            self._tenders.update(tender, **changes)

    def _state(self, order: Order) -> CardPayments:
        unsaved = self._unsaved.get(order.order_id)
        if unsaved is not None:
            return unsaved
        return self._book.flow_state(order.order_id, FLOW, CardPayments) or CardPayments()
