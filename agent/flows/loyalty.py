"""Punchh loyalty (seed 002): identify the guest, check their chosen discounts against the order
before payment (Redemptions 2.0 `query: true`), commit exactly that check after `order.paid`, then
check in and store the receipt details; `order.void` unlocks the basket and commits nothing.

What Punchh needs kept per order lives in the order book (`LoyaltyState`), written before any
call depends on it: one `external_uid` (locks the basket, makes a repeated commit or check-in
safe), one receipt key (every call, and the printed barcode), and the last check's snapshot and
`receipt_datetime`, which the commit resends so its `line_items` are byte-identical.

The POS adds the granted discounts to its order as lines whose id starts with `loyalty:`. The
agent takes those out again to see the order as it was checked: only a change to the other lines
(or the subtotal) makes it check again. The guest's identifier (a phone, a code...) is needed in
clear for the check-in, so it is held in memory only, never on disk: after an agent restart the
guest earns by scanning the receipt instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar

from pydantic import BaseModel

from agent.contract import ErrorBody, Event, StepOutcome
from agent.contract.loyalty import (
    LINE_PREFIX,
    DiscountLine,
    LoyaltyCheck,
    LoyaltyDiscountsData,
    LoyaltyInvalidData,
    LoyaltyLookupParams,
    LoyaltyOtpSendParams,
    LoyaltyOtpSentData,
    LoyaltyOtpVerifyParams,
    LoyaltyReceiptData,
    LoyaltySelection,
    LoyaltySelectParams,
    LoyaltySignupParams,
    LoyaltyStaleData,
    LoyaltyUserData,
    LoyaltyView,
)
from agent.errors import ErrorCode, LaneError
from agent.flows.base import FlowContext, Handler
from agent.flows.orders import outcome
from agent.normalise import Token
from agent.orders import Order, OrderLine, OrderSnapshot
from agent.providers.loyalty import (
    Discount,
    Guest,
    LoyaltyProvider,
    NewGuest,
    OtpChallenge,
    RedemptionFailure,
    RedemptionLine,
    RedemptionOutcome,
    Selection,
)
from agent.tokens import display, mask

log = logging.getLogger(__name__)

FLOW: Final = "loyalty"
SPENT_BY_COMMIT: Final = frozenset({"loyalty_redemption_code"})
"""Identifier kinds a commit may use up; another identifier of the same guest is preferred for
the check-in (whether Punchh finds a guest by a spent code is UNCERTAIN; the simulator does not)."""

PENDING_PASSWORDS: Final = 32
"""One-time passwords sent and not yet verified that the flow remembers (the oldest goes first):
a lane rarely has more than one guest at the counter."""

_T = TypeVar("_T")
_Item = TypeVar("_Item", Discount, RedemptionLine, RedemptionFailure)


class Check(BaseModel):
    """The last redemption check and exactly what it sent: the commit sends it again."""

    snapshot: OrderSnapshot
    receipt_datetime: datetime
    outcome: RedemptionOutcome


class LoyaltyState(BaseModel):
    """One order's loyalty transaction (flow state in the order book)."""

    external_uid: str
    receipt_key: str
    guest: Guest | None = None
    locked: bool = False  # a selection was sent: the basket may be locked to external_uid
    # The request whose selections Punchh put in the basket: sent again (its answer lost in a
    # restart), it only checks again; Punchh refuses a discount already in the basket.
    selected_by: str | None = None
    check: Check | None = None
    paid_at: datetime | None = None  # the receipt time of check-in and receipt details
    committed: RedemptionOutcome | None = None
    checked_in: bool = False
    points_earned: int | None = None
    receipt_sent: bool = False


def split(order: OrderSnapshot) -> tuple[OrderSnapshot, list[OrderLine]]:
    """The order as it was before the POS added the loyalty discounts, and those lines."""
    ours = [line for line in order.lines if line.id.startswith(LINE_PREFIX) and line.amount <= 0]
    if not ours:
        return order, []
    back = -sum(line.amount for line in ours)
    base = order.model_copy(
        update={
            "lines": [line for line in order.lines if line not in ours],
            "subtotal": order.subtotal + back,
            "total": order.total + back,
        }
    )
    return base, ours


def same_receipt(a: OrderSnapshot, b: OrderSnapshot) -> bool:
    """Whether Punchh would see the same receipt (its R2 calls send the lines and subtotal)."""
    return a.lines == b.lines and a.subtotal == b.subtotal


def now() -> datetime:
    """Local time with its UTC offset, as Punchh wants receipt times; whole seconds."""
    return datetime.now().astimezone().replace(microsecond=0)


def hide_code(item: _Item) -> _Item:
    """A redemption code is a bearer code: only its mask goes on MQTT."""
    if item.discount_type == "redemption_code" and item.discount_id:
        return item.model_copy(update={"discount_id": mask(item.discount_id)})
    return item


def checked(outcome: RedemptionOutcome) -> LoyaltyCheck:
    """A redemption outcome as the POS applies it: one order line per granted discount (their
    codes masked), and the refusals."""
    return LoyaltyCheck(
        redemption_ref=outcome.redemption_ref,
        lines=[
            DiscountLine(
                line_id=f"{LINE_PREFIX}{n}",
                name=line.name,
                amount=-line.amount,
                discount_type=line.discount_type,
                discount_id=hide_code(line).discount_id,
            )
            for n, line in enumerate(outcome.success, start=1)
        ],
        failures=[hide_code(f) for f in outcome.failures],
        total=outcome.total,
    )


async def write_once_more(call: Callable[[], Awaitable[_T]]) -> _T:
    """A write whose answer was lost is sent once more, unchanged. The commit and the check-in
    carry the order's external_uid and receipt details its receipt key, so Punchh does not apply
    the repeat twice (UNCERTAIN for the real commit; the simulator answers the first result)."""
    try:
        return await call()
    except LaneError as exc:
        if exc.code is not ErrorCode.UNKNOWN_OUTCOME:
            raise
        log.warning("punchh write: answer lost; sending it once more")
        return await call()


class LoyaltyFlow:
    name = FLOW

    def __init__(self, provider: LoyaltyProvider, ctx: FlowContext) -> None:
        self.provider = provider
        self._vault = ctx.vault
        self._book = ctx.book
        self._emit = ctx.emit
        self._kinds = provider.identifier_kinds
        # order id → the identifier that found its guest, in clear for the check-in: memory only.
        self._identifiers: dict[str, Token] = {}
        # token id → the one-time password sent to it, until verified: memory only (it holds the
        # guest's contact in clear and the PKCE verifier).
        self._passwords: OrderedDict[str, OtpChallenge] = OrderedDict()
        # Scans, requests and order hooks all change an order's state: one at a time.
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "loyalty.lookup": self.lookup,
            "loyalty.otp_send": self.otp_send,
            "loyalty.otp_verify": self.otp_verify,
            "loyalty.signup": self.signup,
            "loyalty.select": self.select,
        }

    # -- identify ---------------------------------------------------------------------------------

    async def on_scan(self, token: Token, token_id: str) -> None:
        try:
            await self._identify(token, token_id)
        except LaneError as exc:
            log.info("loyalty %s (%s) found no guest: %s", display(token), token_id, exc.code)
            invalid = LoyaltyInvalidData(
                token_id=token_id,
                display=display(token),
                provider=self.provider.name,
                error=ErrorBody.of(exc),
            )
            self._emit(Event(type="loyalty.invalid", data=invalid.model_dump(mode="json")))

    async def lookup(self, params: LoyaltyLookupParams) -> LoyaltyUserData:
        token = self._vault.require(params.token_id, self._kinds, "a loyalty identifier")
        return await self._identify(token, params.token_id)

    async def otp_send(self, params: LoyaltyOtpSendParams) -> LoyaltyOtpSentData:
        """Send the guest a one-time password (seed 002: "Send OTP ... to sign up / sign in")."""
        token = self._vault.require(params.token_id, self.provider.otp_kinds, "a phone or email")
        challenge = await self.provider.send_otp(token.kind, token.value)
        self._passwords.pop(params.token_id, None)
        self._passwords[params.token_id] = challenge
        while len(self._passwords) > PENDING_PASSWORDS:
            self._passwords.popitem(last=False)
        log.info("loyalty: one-time password sent to %s by %s", display(token), challenge.channel)
        return LoyaltyOtpSentData(
            token_id=params.token_id,
            display=display(token),
            provider=self.provider.name,
            channel=challenge.channel,
        )

    async def otp_verify(self, params: LoyaltyOtpVerifyParams) -> LoyaltyUserData:
        """The guest the password proves ("Verify OTP"), identified as a scan would; a wrong
        code leaves the password pending for another try."""
        token = self._vault.require(params.token_id, self.provider.otp_kinds, "a phone or email")
        challenge = self._passwords.get(params.token_id)
        if challenge is None:
            raise LaneError(
                ErrorCode.UNKNOWN_TOKEN,
                f"no one-time password is pending for token {params.token_id}: send one first "
                "(loyalty.otp_send)",
            )
        data = await self._identify(
            token, params.token_id, lambda: self.provider.verify_otp(challenge, params.code)
        )
        self._passwords.pop(params.token_id, None)
        return data

    async def signup(self, params: LoyaltySignupParams) -> LoyaltyUserData:
        """Sign a new guest up by phone ("Create New User") and identify them."""
        phone = self._vault.require(params.token_id, {"phone"}, "a phone number")
        email = None
        if params.email_token_id is not None:
            email = self._vault.require(params.email_token_id, {"email"}, "an email").value
        new = NewGuest(
            phone=phone.value,
            email=email,
            first_name=params.first_name,
            last_name=params.last_name,
            birthday=params.birthday,
            terms_and_conditions=params.accepted_terms,
            send_compliance_sms=params.marketing_sms,
        )
        return await self._identify(phone, params.token_id, lambda: self.provider.sign_up(new))

    async def _identify(
        self,
        token: Token,
        token_id: str,
        find: Callable[[], Awaitable[Guest]] | None = None,
    ) -> LoyaltyUserData:
        """Find the guest (by `token`, unless `find` does it another way), attach them to the
        open order and look up their discounts for it."""
        async with self._lock:
            guest = await (find or (lambda: self.provider.find_guest(token.kind, token.value)))()
            order = self._book.current()
            discounts: list[Discount] = []
            error = None
            if order is not None:
                state = await self._attach(order, guest, token)
                base, _ = split(order.snapshot)
                if base.subtotal > 0:  # Punchh refuses a look-up for an empty receipt
                    try:
                        found = await self.provider.lookup_discounts(
                            guest,
                            base,
                            external_uid=state.external_uid,
                            receipt_key=state.receipt_key,
                        )
                        discounts = [hide_code(d) for d in found]
                    except LaneError as exc:
                        error = ErrorBody.of(exc)
        log.info(
            "loyalty %s: guest %s on order %s",
            display(token),
            guest.user_id,
            order.order_id if order else "-",
        )
        data = LoyaltyUserData(
            token_id=token_id,
            display=display(token),
            provider=self.provider.name,
            order_id=None if order is None else order.order_id,
            guest=guest,
            discounts=discounts,
            discounts_error=error,
        )
        self._emit(Event(type="loyalty.user", data=data.model_dump(mode="json")))
        return data

    async def _attach(self, order: Order, guest: Guest, token: Token) -> LoyaltyState:
        state = await self._state(order)
        if state.committed is not None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST, f"order {order.order_id} has committed its redemptions"
            )
        if state.guest is not None and state.guest.user_id != guest.user_id:
            if state.locked:  # the previous guest's basket must not stay locked to this order
                await self.provider.unlock(state.guest, external_uid=state.external_uid)
            state = state.model_copy(update={"locked": False, "check": None, "selected_by": None})
            self._identifiers.pop(order.order_id, None)
        held = self._identifiers.get(order.order_id)
        if held is None or (held.kind in SPENT_BY_COMMIT and token.kind not in SPENT_BY_COMMIT):
            self._identifiers[order.order_id] = token
        state.guest = guest
        self._save(order.order_id, state)
        return state

    # -- select and check -------------------------------------------------------------------------

    async def select(self, params: LoyaltySelectParams) -> LoyaltyDiscountsData:
        async with self._lock:
            order = self._book.require_open()
            state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
            if state is None or state.guest is None:
                raise LaneError(
                    ErrorCode.INVALID_REQUEST,
                    f"order {order.order_id} has no loyalty guest: scan their identifier first",
                )
            retried = state.selected_by == params.request_id
            picks = [] if retried else [self._selection(s) for s in params.selections]
            if picks:
                held = state.locked
                state.locked = True  # before the call: a lost answer may have locked it
                self._save(order.order_id, state)
                try:
                    await self.provider.select(state.guest, picks, external_uid=state.external_uid)
                except LaneError as exc:
                    if exc.code is not ErrorCode.UNKNOWN_OUTCOME:  # refused: nothing locked
                        state.locked = held
                        self._save(order.order_id, state)
                    raise
                state.selected_by = params.request_id
                self._save(order.order_id, state)
            base, _ = split(order.snapshot)
            return await self._check(order.order_id, state, base)

    def _selection(self, selection: LoyaltySelection) -> Selection:
        discount_id = selection.discount_id
        if selection.token_id is not None:
            code = self._vault.require(
                selection.token_id, SPENT_BY_COMMIT, "a scanned redemption code"
            )
            discount_id = code.value
        return Selection(selection.discount_type, discount_id, selection.discount_value)

    async def _check(
        self, order_id: str, state: LoyaltyState, base: OrderSnapshot
    ) -> LoyaltyDiscountsData:
        """The dry run on `base`, kept as the check the commit will repeat."""
        if state.guest is None or state.committed is not None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST, f"order {order_id} has no redemptions left to check"
            )
        when = now()
        result = await self.provider.redeem_query(
            state.guest,
            base,
            external_uid=state.external_uid,
            receipt_key=state.receipt_key,
            transaction_no=order_id,
            receipt_datetime=when,
        )
        state.check = Check(snapshot=base, receipt_datetime=when, outcome=result)
        self._save(order_id, state)
        check = checked(result)
        data = LoyaltyDiscountsData(
            order_id=order_id,
            provider=self.provider.name,
            redemption_ref=check.redemption_ref,
            lines=check.lines,
            failures=check.failures,
            total=check.total,
            receipt_key=state.receipt_key,
            barcode=self.provider.receipt_barcode(state.receipt_key),
        )
        log.info(
            "loyalty check on order %s: %d off, %d refused",
            order_id,
            data.total,
            len(data.failures),
        )
        self._emit(Event(type="loyalty.discounts", data=data.model_dump(mode="json")))
        return data

    # -- the order --------------------------------------------------------------------------------

    async def on_update(self, order: Order) -> None:
        """Check again when the order changed under a check; the POS adding the granted lines
        is no change."""
        async with self._lock:
            state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
            if state is None or state.check is None or state.committed is not None:
                return
            base, _ = split(order.snapshot)
            if same_receipt(state.check.snapshot, base):
                return
            try:
                await self._check(order.order_id, state, base)
            except LaneError as exc:
                log.warning("loyalty re-check of order %s failed: %s", order.order_id, exc.code)
                stale = LoyaltyStaleData(
                    order_id=order.order_id, provider=self.provider.name, error=ErrorBody.of(exc)
                )
                self._emit(Event(type="loyalty.stale", data=stale.model_dump(mode="json")))

    async def on_paid(self, order: Order) -> list[StepOutcome]:
        """Commit the check, check in, store the receipt. Steps done before a crash are not
        repeated (their flags are saved as each one completes)."""
        async with self._lock:
            try:
                state = await self._state(order)
            except LaneError as exc:
                return [outcome(FLOW, self.provider.name, "receipt", "receipt key", exc)]
            if state.paid_at is None:
                state.paid_at = now()
                self._save(order.order_id, state)
            base, applied = split(order.snapshot)
            steps: list[StepOutcome] = []
            earns = state.guest is not None
            if state.guest is not None and state.check is not None:
                earns = await self._commit(order.order_id, state, base, steps)
            if state.locked and state.committed is None:
                steps.append(await self._unlock(order.order_id, state))
            discounts = (
                state.committed.success
                if state.committed is not None
                else [RedemptionLine(name=line.name, amount=-line.amount) for line in applied]
            )
            if earns:
                steps.append(await self._checkin(order.order_id, state, base, discounts))
            steps.append(await self._receipt(order.order_id, state, base, discounts))
            if all(step.ok for step in steps):  # else the outbox retries: the check-in needs it
                self._identifiers.pop(order.order_id, None)
        receipt = LoyaltyReceiptData(
            order_id=order.order_id,
            provider=self.provider.name,
            receipt_key=state.receipt_key,
            barcode=self.provider.receipt_barcode(state.receipt_key),
            checked_in=state.checked_in,
            points_earned=state.points_earned,
        )
        self._emit(Event(type="loyalty.receipt", data=receipt.model_dump(mode="json")))
        return steps

    async def _commit(
        self, order_id: str, state: LoyaltyState, base: OrderSnapshot, steps: list[StepOutcome]
    ) -> bool:
        """Commit the last check, resending its snapshot and time. False when nothing was
        committed: the guest is then not checked in (the receipt shows discounts Punchh did not
        grant)."""
        guest, check = state.guest, state.check
        assert guest is not None and check is not None
        what = f"redemptions (ref {check.outcome.redemption_ref})"
        if state.committed is None:
            try:
                if not same_receipt(check.snapshot, base):
                    raise LaneError(
                        ErrorCode.INVALID_REQUEST,
                        "the order changed after the last redemption check; nothing was redeemed "
                        "and the guest was not checked in",
                    )
                state.committed = await write_once_more(
                    lambda: self.provider.redeem_commit(
                        guest,
                        check.snapshot,
                        external_uid=state.external_uid,
                        receipt_key=state.receipt_key,
                        transaction_no=order_id,
                        receipt_datetime=check.receipt_datetime,
                    )
                )
            except LaneError as exc:
                steps.append(outcome(FLOW, self.provider.name, "commit", what, exc))
                return False
            self._save(order_id, state)
        done = state.committed
        detail = f"{what}: {len(done.success)} redeemed, {done.total} off"
        if done.failures:
            detail += f", {len(done.failures)} refused"
        steps.append(outcome(FLOW, self.provider.name, "commit", detail))
        return True

    async def _checkin(
        self,
        order_id: str,
        state: LoyaltyState,
        base: OrderSnapshot,
        discounts: Sequence[RedemptionLine],
    ) -> StepOutcome:
        what = f"check-in of guest {state.guest.user_id if state.guest else '?'}"
        token = self._identifiers.get(order_id)
        if not state.checked_in:
            if token is None:
                lost = LaneError(
                    ErrorCode.UNKNOWN_TOKEN,
                    "the guest's identifier was lost when the agent restarted; they can earn by "
                    "scanning the receipt",
                )
                return outcome(FLOW, self.provider.name, "checkin", what, lost)
            paid_at = state.paid_at
            try:
                result = await write_once_more(
                    lambda: self.provider.checkin(
                        (token.kind, token.value),
                        base,
                        receipt_key=state.receipt_key,
                        external_uid=state.external_uid,
                        transaction_no=order_id,
                        discounts=discounts,
                        receipt_datetime=paid_at,
                    )
                )
            except LaneError as exc:
                return outcome(FLOW, self.provider.name, "checkin", what, exc)
            state.checked_in, state.points_earned = True, result.points_earned
            self._save(order_id, state)
        earned = "?" if state.points_earned is None else state.points_earned
        return outcome(FLOW, self.provider.name, "checkin", f"{what}: {earned} points earned")

    async def _receipt(
        self,
        order_id: str,
        state: LoyaltyState,
        base: OrderSnapshot,
        discounts: Sequence[RedemptionLine],
    ) -> StepOutcome:
        what = f"receipt details (receipt key {state.receipt_key})"
        if not state.receipt_sent:
            paid_at = state.paid_at
            try:
                await write_once_more(
                    lambda: self.provider.receipt_details(
                        base,
                        receipt_key=state.receipt_key,
                        transaction_no=order_id,
                        discounts=discounts,
                        receipt_datetime=paid_at,
                    )
                )
            except LaneError as exc:
                return outcome(FLOW, self.provider.name, "receipt", what, exc)
            state.receipt_sent = True
            self._save(order_id, state)
        return outcome(FLOW, self.provider.name, "receipt", f"{what}: stored")

    async def on_void(self, order: Order) -> list[StepOutcome]:
        """Nothing is redeemed: unlock the basket. Redemptions committed before a crash are
        given back (whole basket)."""
        async with self._lock:
            self._identifiers.pop(order.order_id, None)
            state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
            if state is None or state.guest is None:
                return []
            if state.committed is None:
                return [await self._unlock(order.order_id, state)] if state.locked else []
            ref = state.committed.redemption_ref
            what = f"redemptions (ref {ref}) given back"
            try:
                if ref is None:
                    raise LaneError(ErrorCode.NOT_FOUND, "Punchh gave no redemption_ref")
                await self.provider.void_redemption(state.guest, ref)
            except LaneError as exc:
                return [outcome(FLOW, self.provider.name, "void", what, exc)]
            return [outcome(FLOW, self.provider.name, "void", what)]

    async def on_abandoned(self, order: Order) -> list[StepOutcome]:
        """Release the basket; redemptions committed (after a crash mid-payment) are kept, as
        the order may have been paid: voiding the order gives them back."""
        async with self._lock:
            self._identifiers.pop(order.order_id, None)
            state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
            if state is None or state.guest is None:
                return []
            if state.committed is not None:
                ref = state.committed.redemption_ref
                kept = f"redemptions (ref {ref}) were kept; void the order to give them back"
                return [outcome(FLOW, self.provider.name, "kept", kept)]
            return [await self._unlock(order.order_id, state)] if state.locked else []

    async def on_refund(self, order: Order) -> list[StepOutcome]:
        """A refunded sale gives its committed redemptions back, as a voided one does, while
        the provider still takes them back: Punchh refuses to void redemptions once the guest's
        check-in is committed (410, CONFIRMED in its R2 spec), so then the step says what the
        cashier does instead and the call is not made."""
        state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
        if state is None or state.guest is None or not state.checked_in:
            return await self.on_void(order)
        committed = state.committed
        if committed is None or not committed.success:
            return []
        manual = LaneError(
            ErrorCode.NOT_CONFIGURED,
            f"{self.provider.name} keeps redemptions once the guest is checked in: give guest "
            f"{state.guest.user_id} back {committed.total} of rewards (ref "
            f"{committed.redemption_ref}) and the {state.points_earned or 0} points earned in "
            "the loyalty dashboard",
        )
        return [outcome(FLOW, self.provider.name, "void", "redemptions of the sale", manual)]

    def view(self, order: Order) -> LoyaltyView | None:
        state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
        if state is None:
            return None
        return LoyaltyView(
            guest=state.guest,
            receipt_key=state.receipt_key,
            barcode=self.provider.receipt_barcode(state.receipt_key),
            locked=state.locked,
            check=None if state.check is None else checked(state.check.outcome),
            committed=None if state.committed is None else checked(state.committed),
            checked_in=state.checked_in,
            points_earned=state.points_earned,
        )

    async def _unlock(self, order_id: str, state: LoyaltyState) -> StepOutcome:
        what = "the guest's discount basket"
        assert state.guest is not None
        try:
            await self.provider.unlock(state.guest, external_uid=state.external_uid)
        except LaneError as exc:
            return outcome(FLOW, self.provider.name, "unlock", what, exc)
        state.locked = False
        self._save(order_id, state)
        return outcome(FLOW, self.provider.name, "unlock", f"{what}: unlocked, nothing redeemed")

    # -- state ------------------------------------------------------------------------------------

    async def _state(self, order: Order) -> LoyaltyState:
        """The order's transaction, created (and saved) at its first use."""
        state = self._book.flow_state(order.order_id, FLOW, LoyaltyState)
        if state is None:
            external_uid = str(uuid.uuid4())
            state = LoyaltyState(
                external_uid=external_uid,
                receipt_key=await self.provider.receipt_key(external_uid),
            )
            self._save(order.order_id, state)
        return state

    def _save(self, order_id: str, state: LoyaltyState) -> None:
        self._book.save_flow_state(order_id, FLOW, state)
