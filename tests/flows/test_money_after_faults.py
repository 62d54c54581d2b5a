"""Money steps that meet a fault after the provider moved the money (issue 14): a full disk
under the records, a lost answer, an answer that could not be kept. In-process (tests/lane.py):
Gift Local and K-Series simulators behind the real router and flows; the disk is "full" where a
test says so, by making that write fail as SQLite does (SQLITE_FULL).

What must hold: a step that moved money is never answered `storage_full`; the answer and a
`gift.redeemed` / `card.paid` event say what was taken (amount, transaction id); the same
request sent again says it again; a redemption learnt only after a fault is told to every
screen, and holds up another redemption of the gift until the cashier confirms it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.errors import ErrorCode
from agent.requests import ResponseStore
from simulators.giftlocal import BAKERY_KEY, REDEEM, VALIDATE, GiftLocalSimulator
from simulators.kseries import CardSimulator
from simulators.server import Fault
from simulators.transport import BASE_URL
from tests.lane import InProcessLane, order

VOUCHER = "100000000001"  # Gift Local, bakery account: 50.00 USD
CARD = "6006490000000001"  # 50.00 USD


def disk_full_error() -> sqlite3.Error:
    """The error SQLite raises when a write finds no room (SQLITE_FULL), made by SQLite."""
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA max_page_count = 1")
    with pytest.raises(sqlite3.Error) as full:
        db.execute("CREATE TABLE t (x)")  # a second page: there is none
    db.close()
    assert full.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    return full.value


def failing(*_args: object, **_kwargs: object) -> None:
    raise disk_full_error()


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[InProcessLane]:
    made = InProcessLane(
        tmp_path,
        {"giftlocal": GiftLocalSimulator(), "kseries": CardSimulator()},
        flows={"routes": {"loyalty_card": "card"}},
    )
    yield made
    await made.close()


def redemptions(lane: InProcessLane) -> dict[str, Any]:
    found: dict[str, Any] = lane.ledger("giftlocal")["redemptions"]
    return found


def full_after(
    monkeypatch: pytest.MonkeyPatch, lane: InProcessLane, flow: str, fill: Callable[[], None]
) -> None:
    """The disk fills while the provider applies the flow's next money step."""
    provider = lane.agent.tender_flows[flow].provider
    redeem = provider.redeem  # type: ignore[attr-defined]

    async def then_full(*args: Any, **kwargs: Any) -> Any:
        done = await redeem(*args, **kwargs)
        fill()
        return done

    monkeypatch.setattr(provider, "redeem", then_full)


async def test_a_disk_full_once_the_voucher_is_redeemed_answers_what_was_taken(
    lane: InProcessLane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gift Local took it and the disk has no room to record it, nor to keep the answer: the
    POS is told the redemption (never `storage_full`), so is every screen, and the same
    request sent again is answered the same, from memory, until the disk has room."""
    await lane.ok("order.update", **order("F1", ("Bread", 3000, None)))
    token = await lane.scan(VOUCHER)
    seeded = set(redemptions(lane))

    def fill() -> None:
        monkeypatch.setattr(lane.agent.tenders, "update", failing)
        monkeypatch.setattr(ResponseStore, "put", failing)

    full_after(monkeypatch, lane, "gift", fill)
    redeem: dict[str, Any] = {"request_id": "F1-redeem", "token_id": token, "amount": 300}
    answer = await lane.ask("gift.redeem", **redeem)
    assert answer.status == "ok" and answer.data is not None, answer
    [taken] = set(redemptions(lane)) - seeded
    redemption = answer.data["redemption"]
    assert redemption["transaction_id"] == taken and redemption["amount"] == 300
    [event] = lane.events("gift.redeemed")
    assert event["redemption"]["transaction_id"] == taken and event["redemption"]["amount"] == 300
    assert event["request_id"] == "F1-redeem" and event["late"] is False

    assert (await lane.ask("gift.redeem", **redeem)).data == answer.data  # still full: memory
    refused = await lane.refused(ErrorCode.STORAGE_FULL, "gift.redeem", token_id=token, amount=1)
    assert "not recorded yet" in refused.message  # no new money step before it is written
    assert set(redemptions(lane)) - seeded == {taken}

    monkeypatch.undo()  # space freed: the next step writes it first
    voided = await lane.ok("order.void", order_id="F1")
    assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("reverse", True)]
    assert redemptions(lane)[taken]["reversed"] is True


async def test_a_disk_full_once_the_card_is_debited_answers_the_payment(
    lane: InProcessLane, monkeypatch: pytest.MonkeyPatch
) -> None:
    await lane.ok("order.update", **order("F2", ("Bread", 2000, None)))
    token = await lane.scan(CARD)
    book = lane.agent.orders.book
    full_after(
        monkeypatch, lane, "card", lambda: monkeypatch.setattr(book, "save_flow_state", failing)
    )
    paid = await lane.ok("gift.redeem", token_id=token, amount=1500)
    debits = lane.ledger("kseries")["redemptions"]
    [debit] = debits.values()
    assert paid["card"]["transaction_id"] == debit["id"] and paid["card"]["amount"] == 1500
    assert paid["remaining"] == 500
    [event] = lane.events("card.paid")
    assert event["redemption"]["transaction_id"] == debit["id"]
    # The rest of the order, still on a full disk: the payment kept in memory counts.
    refused = await lane.ask("gift.redeem", token_id=token, amount=1000)
    assert refused.error is not None and refused.error.details == {"left": 500, "currency": "USD"}
    monkeypatch.undo()
    assert (await lane.ok("gift.redeem", token_id=token))["remaining"] == 0
    assert len(lane.ledger("kseries")["redemptions"]) == 2
    view = await lane.ok("order.get", order_id="F2")
    assert [(t["state"], t["amount"]) for t in view["tenders"]] == [("taken", 1500), ("taken", 500)]


async def test_a_redemption_found_applied_later_is_told_and_holds_up_a_second_one(
    lane: InProcessLane,
) -> None:
    """The redeem's answer is lost and the balance cannot be read at once: `unknown_outcome`.
    The cashier scans the voucher again; the lane reads the balance, finds the first redemption
    went through, tells every screen (a late `gift.redeemed`) and refuses a second one until
    the cashier confirms it; the first request sent again is answered with the redemption."""
    gift_local = lane.simulators["giftlocal"]
    await lane.ok("order.update", **order("F3", ("Cake", 4000, None)))
    token = await lane.scan(VOUCHER)
    gift_local.arm(
        [Fault(path=REDEEM, kind="drop_after_apply"), Fault(path=VALIDATE, kind="error", after=1)]
    )
    first = {"request_id": "F3-redeem", "token_id": token, "amount": 1250}
    await lane.refused(ErrorCode.UNKNOWN_OUTCOME, "gift.redeem", **first)
    assert lane.events("gift.redeemed") == []

    again = await lane.scan(VOUCHER)
    refused = await lane.refused(
        ErrorCode.EARLIER_REDEMPTION, "gift.redeem", request_id="F3-b", token_id=again, amount=1250
    )
    assert refused.details == {
        "earlier": [
            {
                "request_id": "F3-redeem",
                "outcome": "applied",
                "units": 1250,
                "currency": "USD",
                "transaction_id": "unconfirmed:F3-redeem",
            }
        ]
    }
    assert "12.50 USD went through" in refused.message and "confirm_repeat" in refused.message
    [late] = lane.events("gift.redeemed")
    assert late["late"] is True and late["request_id"] == "F3-redeem"
    assert late["redemption"]["amount"] == 1250
    assert late["redemption"]["transaction_id"] == "unconfirmed:F3-redeem"
    assert len([r for r in redemptions(lane).values() if r["units"] == 1250]) == 1

    told = await lane.ok("gift.redeem", **first)  # the same request again: what happened
    assert told["redemption"]["transaction_id"] == "unconfirmed:F3-redeem"
    assert told["redemption"]["amount"] == 1250

    confirmed = await lane.ok(
        "gift.redeem", request_id="F3-c", token_id=again, amount=1250, confirm_repeat=True
    )
    assert confirmed["redemption"]["gift"]["balance"] == 5000 - 2 * 1250
    assert (await lane.ok("gift.redeem", token_id=again, amount=100))["redemption"]
    view = await lane.ok("order.get", order_id="F3")
    assert [t["state"] for t in view["tenders"]] == ["taken"] * 3


async def test_an_outcome_the_balance_cannot_tell_holds_up_the_gift_until_confirmed(
    lane: InProcessLane,
) -> None:
    gift_local = lane.simulators["giftlocal"]
    token = await lane.scan(VOUCHER)
    gift_local.arm(
        [Fault(path=REDEEM, kind="drop_after_apply"), Fault(path=VALIDATE, kind="error", after=1)]
    )
    await lane.refused(ErrorCode.UNKNOWN_OUTCOME, "gift.redeem", token_id=token, amount=500)
    # Another lane redeems from the gift meanwhile: the balance no longer explains the first.
    voucher_id = lane.ledger("giftlocal")["gifts"][VOUCHER]["voucher_id"]
    async with httpx.AsyncClient(
        transport=lane.transports["giftlocal"], base_url=BASE_URL
    ) as other:
        spent = await other.post(
            REDEEM,
            json={"voucherID": voucher_id, "amount": 10.0},
            headers={"Authorization": BAKERY_KEY},
        )
        assert spent.status_code == 200, spent.text
    refused = await lane.refused(
        ErrorCode.EARLIER_REDEMPTION, "gift.redeem", token_id=token, amount=500
    )
    assert refused.details is not None
    assert [e["outcome"] for e in refused.details["earlier"]] == ["unknown"]
    assert "may have gone through" in refused.message
    await lane.ok("gift.redeem", token_id=token, amount=500, confirm_repeat=True)


async def test_a_redeem_whose_answer_was_not_kept_is_answered_from_the_journal(
    lane: InProcessLane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow recorded the redemption, but its answer was not kept (the agent killed in
    between, or no room for it): the same request again, also after a restart, is answered
    with that redemption, not `unknown_outcome`."""
    token = await lane.scan(VOUCHER)
    monkeypatch.setattr(ResponseStore, "put", failing)
    redeem = {"request_id": "F5-redeem", "token_id": token, "amount": 700}
    first = await lane.ok("gift.redeem", **redeem)
    assert (await lane.ok("gift.redeem", **redeem))["redemption"] == first["redemption"]
    restarted = InProcessLane(tmp_path, lane.simulators)
    try:
        again = await restarted.ok("gift.redeem", **redeem)
    finally:
        await restarted.close()
    assert again["redemption"] == first["redemption"]
    assert len([r for r in redemptions(lane).values() if r["units"] == 700]) == 1
