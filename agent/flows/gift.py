"""The gift flow (seed 003): a scanned gift code is validated at once; the POS then redeems an
amount or item quantity by `token_id`, and can reverse a redemption by its transaction id.

A voucher is redeemed when the POS tenders it (`gift.redeem`), so the cashier knows at once what
it covered, and it is a tender of the open order: `order.void`, a replaced order and
`order.refund` reverse it (seed 003 asks to redeem "when a check is closed / payment
processed"; redeeming at tender and reversing on void gives the same end state, and a voucher
found spent or expired is known before the customer leaves). Redeemed with no order open, it
belongs to no order and only `gift.reverse` gives it back.

Validation succeeds for gifts that exist but cannot be redeemed (expired, depleted...): the event
says so with `gift.is_redeemable` and `gift.reason`, and a redeem is refused before it reaches the
provider.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Callable
from typing import Final

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
    StepOutcome,
    ValidateResult,
)
from agent.errors import ErrorCode, LaneError, ProviderError, out_of_space
from agent.flows.base import FlowContext, Handler
from agent.flows.orders import outcome
from agent.journal import UNKNOWN_BALANCE, Intent, IntentState, RedemptionJournal
from agent.money import shown
from agent.normalise import Kind, Token
from agent.orders import Order, OrderSnapshot
from agent.providers.base import (
    GiftProvider,
    GiftRef,
    GiftStatus,
    GiftType,
    Redemption,
    Reversal,
)
from agent.tenders import Tender, TenderState
from agent.tokens import display

log = logging.getLogger(__name__)

FLOW: Final = "gift"

# The transaction id of a redemption known only from the gift's balance (its answer was lost).
UNCONFIRMED = "unconfirmed:"

GIFT_KINDS = frozenset({Kind.GIFT_VOUCHER_CODE.value, Kind.GIFT_VOUCHER_TOKEN.value})


def gift_ref(token: Token) -> GiftRef:
    if token.kind == Kind.GIFT_VOUCHER_TOKEN:
        return GiftRef(public_token=token.value)
    return GiftRef(code=token.value)


class GiftFlow:
    name = FLOW

    def __init__(self, provider: GiftProvider, ctx: FlowContext) -> None:
        self.provider = provider
        self._journal = RedemptionJournal(ctx.book.db)
        self._book = ctx.book
        self._tenders = ctx.book.tenders
        self._reference = ctx.reference
        self._vault = ctx.vault
        self._emit = ctx.emit
        self._kinds = ctx.kinds(FLOW)
        # The provider redeems at the location its settings name (the lane's store by default).
        self._location: str | None = None
        # Steps done whose record the disk had no room for (`_record`), in the order made, and
        # the outcomes among them, by request_id.
        self._unwritten: dict[str, Callable[[], None]] = {}
        self._outcomes: dict[str, tuple[IntentState, Redemption | None]] = {}

    def handles(self, token_id: str) -> bool:
        entry = self._vault.get(token_id)
        return entry is not None and entry.token.kind in self._kinds

    def handlers(self) -> dict[str, Handler]:
        """None of its own: the POS redeems with the gift ops, which the app dispatches by the
        token's flow."""
        return {}

    async def on_update(self, order: Order) -> None:
        """A voucher is redeemed when the POS asks; the order's changes do not touch it."""

    async def on_paid(self, order: Order) -> list[StepOutcome]:
        return []

    async def on_void(self, order: Order) -> list[StepOutcome]:
        """The sale did not happen: every voucher it redeemed is reversed."""
        held = [t for t in self._order_tenders(order) if t.holds_money]
        return await self._give_back(order, held)

    on_abandoned = on_void
    """A replaced order leaves no voucher spent: the POS must send `order.paid` for a sale."""

    async def on_refund(self, order: Order) -> list[StepOutcome]:
        refunding = [t for t in self._order_tenders(order) if t.state is TenderState.REFUNDING]
        return await self._give_back(order, refunding)

    def view(self, order: Order) -> None:
        """Vouchers are the order's tenders: `order.get` lists them already."""
        return None

    def _order_tenders(self, order: Order) -> list[Tender]:
        self._write_unwritten()  # a tender taken on a full disk is given back like any other
        return self._tenders.of_order(order.order_id, FLOW)

    async def _give_back(self, order: Order, tenders: list[Tender]) -> list[StepOutcome]:
        steps = []
        for tender in tenders:
            what = f"voucher {tender.display}: {_units_text(tender)} back"
            transaction_id = tender.transaction_id
            if tender.state is TenderState.PENDING or transaction_id is None:
                # Final, not `unknown_outcome` (which the outbox retries): only the voucher's code
                # can tell, and the lane no longer has it. Retrying for days would hold up the
                # rest of the order's work (its card reversals, the loyalty unlock) behind this.
                lost = ProviderError(
                    ErrorCode.NOT_FOUND,
                    f"its redemption (request {tender.reference}) may have gone through and the "
                    "lane never learnt its transaction id; check the voucher's balance with "
                    f"{self.provider.name} and reverse it there",
                )
                steps.append(outcome(FLOW, self.provider.name, "reverse", what, lost))
                continue
            if transaction_id.startswith(UNCONFIRMED):
                unconfirmed = ProviderError(
                    ErrorCode.NOT_FOUND,
                    f"its answer was lost, so the lane has no transaction id to reverse; "
                    f"reverse it with {self.provider.name} directly",
                )
                steps.append(outcome(FLOW, self.provider.name, "reverse", what, unconfirmed))
                continue
            try:
                reversal = await self.provider.reverse(
                    transaction_id,
                    location=self._location,
                    idempotency_key=f"{tender.reference}:back",
                )
            except LaneError as exc:
                if exc.code is not ErrorCode.ALREADY_REVERSED:
                    steps.append(outcome(FLOW, self.provider.name, "reverse", what, exc))
                    continue
                self._tenders.update(tender, state=TenderState.REVERSED)
                steps.append(outcome(FLOW, self.provider.name, "reverse", f"{what} (already)"))
                continue
            self._tenders.update(tender, state=TenderState.REVERSED)
            self._reversed(reversal, tender)
            steps.append(outcome(FLOW, self.provider.name, "reverse", what))
        return steps

    def _reversed(self, reversal: Reversal, tender: Tender | None) -> None:
        log.info("transaction %s reversed", reversal.transaction_id)
        data = GiftReversedData(
            provider=self.provider.name,
            reversal=reversal,
            order_id=None if tender is None else tender.order_id,
            display=None if tender is None else tender.display,
        )
        self._emit(Event(type="gift.reversed", data=data.model_dump(mode="json")))

    async def on_scan(self, token: Token, token_id: str) -> None:
        """Validate a freshly scanned gift and tell the POS what it is worth."""
        shown = display(token)
        try:
            gift = await self.provider.validate(
                gift_ref(token), location=self._location, ticket=self._ticket()
            )
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

    def _ticket(self) -> OrderSnapshot | None:
        """The open order, for the validations the cashier sees (the provider may check an item
        gift's items against it). Not for those whose balance the redemption journal compares
        (before a redeem, after a lost answer): a ticket could shape what the gift shows."""
        order = self._book.current()
        return None if order is None else order.snapshot

    def _token(self, token_id: str) -> Token:
        return self._vault.require(token_id, GIFT_KINDS, "a gift")

    async def validate(self, params: GiftValidateParams) -> ValidateResult:
        token = self._token(params.token_id)
        gift = await self.provider.validate(
            gift_ref(token), location=self._location, ticket=self._ticket()
        )
        return ValidateResult(provider=self.provider.name, gift=gift)

    async def redeem(self, params: GiftRedeemParams) -> RedeemResult:
        if params.amount is None and params.quantity is None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                "give amount (minor units) for a monetary gift or quantity for an item gift",
            )
        known = self._answered(params.request_id)
        if known is not None:
            return RedeemResult(provider=self.provider.name, redemption=known)
        self._require_written()
        token = self._token(params.token_id)
        ref = gift_ref(token)
        gift = await self.provider.validate(ref, location=self._location)
        shown = display(token)
        earlier = self._settle_untold(gift, params.token_id, shown)
        if earlier and not params.confirm_repeat:
            raise self._earlier_redemption(earlier, gift)
        _check_redeemable(gift)
        units = params.amount if params.amount is not None else params.quantity
        assert units is not None
        order = self._book.current()
        # Written before the call, together: a crash leaves the order owning a pending tender.
        with self._book.transaction():
            tender = self._tenders.begin(
                self._reference(params.request_id),
                order_id=None if order is None else order.order_id,
                flow=FLOW,
                provider=self.provider.name,
                display=shown,
                amount=params.amount,
                quantity=params.quantity,
                currency=gift.currency,
            )
            self._journal.begin(params.request_id, gift.gift_id, units, before=_units(gift))
            self._journal.acknowledge([intent.request_id for intent in earlier])
        try:
            redemption = await self.provider.redeem(
                gift.gift_id,
                amount=params.amount,
                quantity=params.quantity,
                location=self._location,
                idempotency_key=params.request_id,
            )
        except LaneError as exc:
            if exc.code is not ErrorCode.UNKNOWN_OUTCOME:
                self._record(params.request_id, IntentState.FAILED, tender)
                raise
            redemption = await self._resolve_lost(params, ref, exc, tender)
        else:
            self._record(params.request_id, IntentState.APPLIED, tender, redemption)
        log.info("gift %s redeemed: transaction %s", shown, redemption.transaction_id)
        self._redeemed(params.request_id, params.token_id, shown, redemption)
        return RedeemResult(provider=self.provider.name, redemption=redemption)

    def _redeemed(
        self,
        request_id: str,
        token_id: str,
        shown: str,
        redemption: Redemption,
        *,
        late: bool = False,
    ) -> None:
        data = GiftRedeemedData(
            token_id=token_id,
            display=shown,
            provider=self.provider.name,
            redemption=redemption,
            request_id=request_id,
            late=late,
        )
        self._emit(Event(type="gift.redeemed", data=data.model_dump(mode="json")))

    def _record(
        self,
        request_id: str,
        state: IntentState,
        tender: Tender,
        redemption: Redemption | None = None,
        *,
        told: bool = True,
    ) -> None:
        """Write what the provider answered to the journal and the tender record. With no room
        on the disk the outcome is kept in memory instead: the POS is told it all the same (a
        refusal of a step that moved money would have the cashier take it twice), the same
        request is answered from memory, and it is written by the next gift step that finds
        room (no new redemption is made before)."""

        def write() -> None:
            self._journal.mark(request_id, state, told=told, redemption=redemption)
            if redemption is not None:
                self._taken(tender, redemption)
            elif state is IntentState.FAILED:
                self._tenders.update(tender, state=TenderState.FAILED)

        if not self._write(write):
            self._hold(request_id, write)
            self._outcomes[request_id] = (state, redemption)

    def _write(self, write: Callable[[], None]) -> bool:
        """Write in one transaction; False when the disk has no room for it."""
        try:
            with self._book.transaction():
                write()
        except (sqlite3.Error, OSError) as exc:
            if not out_of_space(exc):
                raise
            return False
        return True

    def _hold(self, key: str, write: Callable[[], None]) -> None:
        log.error("gift step %s done, but no room on the disk to record it: kept in memory", key)
        self._unwritten[key] = write

    def _write_unwritten(self) -> bool:
        """Write, in order, the steps the disk had no room for; False while one still does not
        fit. No new money step is taken before: the lane never holds two in memory alone."""
        for key, write in list(self._unwritten.items()):
            if not self._write(write):
                return False
            del self._unwritten[key]
            self._outcomes.pop(key, None)
            log.info("gift step %s recorded now", key)
        return True

    def _require_written(self) -> None:
        if not self._write_unwritten():
            raise LaneError(
                ErrorCode.STORAGE_FULL,
                "the lane device's disk is full: an earlier gift step is not recorded yet, so "
                "this one was not made. Free space, then send the same request again",
            )

    def _answered(self, request_id: str) -> Redemption | None:
        """What an earlier attempt of this request did, if it did anything: a redemption (its
        answer again, also when it was learnt only after a fault), or `unknown_outcome` while the
        lane cannot tell; None when the request never reached the provider or was refused (then
        it is made now). Never `unknown_token` for a request that reached the provider: the POS
        would scan again and redeem under a new request."""
        if request_id in self._outcomes:
            state, redemption = self._outcomes[request_id]
            before_start = False
        else:
            intent = self._journal.get(request_id)
            if intent is None:
                return None
            state, redemption = intent.state, intent.redemption
            before_start = self._journal.before_start(intent)
            if state is IntentState.APPLIED and not intent.told:  # told now, by this answer
                self._write(lambda: self._journal.acknowledge([request_id]))
        if state is IntentState.FAILED:
            return None
        if redemption is not None:
            return redemption
        if state is IntentState.APPLIED:  # recorded before the journal kept answers
            happened = "went through"
        elif state is IntentState.PENDING and before_start:
            happened = "was being made when the agent stopped; it may have gone through"
        else:
            happened = "may have gone through (the provider's answer was lost)"
        raise ProviderError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"this redemption {happened}. Scan the gift again and redeem it under a new "
            "request: the lane reads its balance first and says whether this one was taken",
        )

    def _settle_untold(self, gift: GiftStatus, token_id: str, shown: str) -> list[Intent]:
        """Earlier redemptions of this gift whose outcome no screen knows, after settling those
        the fresh balance explains: one found applied is told to every screen now (a late
        `gift.redeemed`); one found not applied is dropped. What is left holds up a new
        redemption until the cashier confirms it."""
        untold = []
        for intent in self._journal.untold(gift.gift_id):
            state = intent.settle(_units(gift)) if intent.redemption is None else None
            if state is None:  # learnt already, or the balance cannot tell
                untold.append(intent)
                continue
            log.info("gift %s: lost redemption %s was %s", shown, intent.request_id, state)
            tender = self._tenders.get(self._reference(intent.request_id))
            if state is IntentState.FAILED:
                with self._book.transaction():
                    self._journal.mark(intent.request_id, state)
                    if tender is not None and tender.state is TenderState.PENDING:
                        self._tenders.update(tender, state=TenderState.FAILED)
                continue
            monetary = gift.type is GiftType.MONETARY
            redemption = Redemption(
                transaction_id=f"{UNCONFIRMED}{intent.request_id}",
                gift_id=gift.gift_id,
                amount=intent.units if monetary else None,
                quantity=None if monetary else intent.units,
                gift=gift,
            )
            with self._book.transaction():
                self._journal.mark(intent.request_id, state, told=False, redemption=redemption)
                if tender is not None and tender.state is TenderState.PENDING:
                    self._taken(tender, redemption)
            self._redeemed(intent.request_id, token_id, shown, redemption, late=True)
            untold.append(dataclasses.replace(intent, state=state, redemption=redemption))
        return untold

    def _earlier_redemption(self, earlier: list[Intent], gift: GiftStatus) -> LaneError:
        """The refusal of a new redemption while earlier ones are untold: it names them, so the
        cashier can tell a customer's second voucher payment from a repeat of the first."""
        parts, details = [], []
        for intent in earlier:
            what = (
                shown(intent.units, gift.currency)
                if gift.type is GiftType.MONETARY
                else f"{intent.units} items"
            )
            tx = None if intent.redemption is None else intent.redemption.transaction_id
            if tx is not None:
                parts.append(f"{what} went through after a fault (transaction {tx})")
            else:
                parts.append(f"{what} may have gone through and the lane cannot tell")
            details.append(
                {
                    "request_id": intent.request_id,
                    "outcome": "unknown" if tx is None else "applied",
                    "units": intent.units,
                    "currency": gift.currency if gift.type is GiftType.MONETARY else None,
                    "transaction_id": tx,
                }
            )
        return ProviderError(
            ErrorCode.EARLIER_REDEMPTION,
            f"an earlier redemption of this gift on this lane: {'; '.join(parts)}. Nothing was "
            f"redeemed now; check the gift's balance with {self.provider.name}, and redeem "
            "again only if that is meant: send a new request with confirm_repeat: true",
            details={"earlier": details},
        )

    def _taken(self, tender: Tender, redemption: Redemption) -> None:
        self._tenders.update(
            tender, state=TenderState.TAKEN, transaction_id=redemption.transaction_id
        )

    async def _resolve_lost(
        self, params: GiftRedeemParams, ref: GiftRef, lost: LaneError, tender: Tender
    ) -> Redemption:
        """The redeem was sent and its answer lost: the balance now says whether it happened.
        When it cannot tell, the intent stays untold: it holds up the gift until a screen
        knows."""
        try:
            fresh = await self.provider.validate(ref, location=self._location)
        except LaneError:
            self._record(params.request_id, IntentState.UNKNOWN, tender, told=False)
            raise lost from None
        intent = self._journal.get(params.request_id)
        assert intent is not None  # written by redeem() before the call
        state = intent.settle(_units(fresh))
        if state is IntentState.FAILED:
            self._record(params.request_id, state, tender)
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                "the provider did not answer and the gift's balance is unchanged: nothing was "
                "redeemed; try again",
            ) from lost
        if state is None:
            self._record(params.request_id, IntentState.UNKNOWN, tender, told=False)
            raise lost
        log.warning("redeem %s: answer lost, the balance shows it went through", params.request_id)
        redemption = Redemption(
            transaction_id=f"{UNCONFIRMED}{params.request_id}",
            gift_id=fresh.gift_id,
            amount=params.amount,
            quantity=params.quantity,
            gift=fresh,
        )
        self._record(params.request_id, IntentState.APPLIED, tender, redemption)
        return redemption

    async def reverse(self, params: GiftReverseParams, tender: Tender) -> ReverseResult:
        """Give one redemption back, e.g. a voucher the customer took off the sale."""
        if tender.state is TenderState.REVERSED:
            already = f"redemption {params.transaction_id} is already reversed"
            raise LaneError(ErrorCode.ALREADY_REVERSED, already)
        if params.transaction_id.startswith(UNCONFIRMED):
            raise LaneError(
                ErrorCode.NOT_FOUND,
                "this redemption's answer was lost, so the lane has no transaction id to "
                f"reverse; reverse it with {self.provider.name} directly",
            )
        self._require_written()
        try:
            reversal = await self.provider.reverse(
                params.transaction_id, location=self._location, idempotency_key=params.request_id
            )
        except LaneError as exc:
            if exc.code is ErrorCode.ALREADY_REVERSED:
                self._tenders.update(tender, state=TenderState.REVERSED)
            raise

        def write() -> None:
            self._tenders.update(tender, state=TenderState.REVERSED)

        if not self._write(write):
            self._hold(f"{params.request_id} (reversal)", write)
        self._reversed(reversal, tender)
        return ReverseResult(provider=self.provider.name, reversal=reversal)


def _units(gift: GiftStatus) -> int:
    """What a redemption takes from: minor units of a monetary gift, items of an item gift;
    UNKNOWN_BALANCE when the provider did not say, so that no balance comparison can judge a
    redemption whose answer was lost (an unknown "before" and "after" would look unchanged,
    i.e. failed, and invite a second redemption)."""
    units = gift.balance if gift.type is GiftType.MONETARY else gift.item_quantity
    return UNKNOWN_BALANCE if units is None else units


def _units_text(tender: Tender) -> str:
    return (
        f"{tender.quantity} items"
        if tender.amount is None
        else shown(tender.amount, tender.currency)
    )


def _check_redeemable(gift: GiftStatus) -> None:
    """Refuse before calling redeem, so nothing reaches the provider. One code for every reason
    (the POS branches on it once); `details.reason` says which: expired, depleted..."""
    if gift.is_redeemable:
        return
    reason = {"reason": gift.reason.value} if gift.reason is not None else None
    raise ProviderError(ErrorCode.NOT_REDEEMABLE, gift.description, details=reason)
