"""The sandbox ledger: Gift Local validate/redeem/reverse semantics on a real SQLite file."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.errors import ErrorCode, ProviderError
from agent.providers.base import GiftProvider, GiftRef, GiftType, NotRedeemableReason
from agent.providers.sandbox import SandboxLedger
from agent.providers.settings import SandboxSettings
from agent.registry import ProviderEnv
from tests.gifts import after

NOW = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)
FIFTY, TWENTY_FIVE, COFFEE = "100000000001", "100000000002", "100000000003"
EXPIRED, FUTURE, USED, S2_ONLY, VOIDED = (
    "100000000004",
    "100000000005",
    "100000000006",
    "100000000007",
    "100000000008",
)


class Clock:
    """A clock the test moves by hand, so expiry and validity windows need no sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sandbox.sqlite"


@pytest.fixture
async def ledger(db: Path, clock: Clock) -> AsyncIterator[SandboxLedger]:
    ledger = SandboxLedger(db, location="s1", load_demo=True, now=clock)
    yield ledger
    await ledger.aclose()


async def gift_id(ledger: SandboxLedger, code: str) -> str:
    return (await ledger.validate(GiftRef(code=code), location=None)).gift_id


def audit(db: Path) -> dict[str, tuple[int, int]]:
    """Per code: (balance, initial - unreversed redemptions), read by a separate connection."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT g.code, g.balance, g.initial - COALESCE(SUM(CASE WHEN r.reversed_at IS NULL"
            " THEN COALESCE(r.amount, r.quantity) END), 0)"
            " FROM gifts g LEFT JOIN redemptions r USING (gift_id) GROUP BY g.gift_id"
        ).fetchall()
    return {code: (balance, expected) for code, balance, expected in rows}


async def test_ledger_is_a_gift_provider(tmp_path: Path) -> None:
    provider: GiftProvider = SandboxLedger(tmp_path / "l.sqlite", location="s1", load_demo=False)
    assert provider.name == "sandbox"
    await provider.aclose()


# --- validate ---------------------------------------------------------------------------------


async def test_validate_monetary_gift_by_code(ledger: SandboxLedger) -> None:
    status = await ledger.validate(GiftRef(code=FIFTY), location=None)
    assert status.type is GiftType.MONETARY
    assert status.is_redeemable
    assert status.reason is None
    assert (status.currency, status.balance, status.eligible_value) == ("USD", 5000, 5000)
    assert status.eligible_quantity == 0
    assert status.description == "$50.00 available"
    assert (status.sender, status.recipient) == ("Maya Chen", "Sam Rivera")


@pytest.mark.parametrize(
    "token",
    ["demo-gift-50", "https://gift.example/v/demo-gift-50", "https://g.example/demo-gift-50/"],
)
async def test_validate_by_public_token_or_whole_qr_url(ledger: SandboxLedger, token: str) -> None:
    by_token = await ledger.validate(GiftRef(public_token=token), location=None)
    assert by_token == await ledger.validate(GiftRef(code=FIFTY), location=None)


async def test_validate_item_gift(ledger: SandboxLedger) -> None:
    status = await ledger.validate(GiftRef(code=COFFEE), location=None)
    assert status.type is GiftType.ITEM
    assert (status.item_label, status.item_quantity, status.eligible_quantity) == ("Coffee", 3, 3)
    assert (status.currency, status.balance, status.eligible_value) == (None, None, 0)
    assert status.description == "3 × Coffee available"


@pytest.mark.parametrize(
    "ref", [GiftRef(code="999999999999"), GiftRef(public_token="no-such-gift")]
)
async def test_validate_unknown_gift_is_not_found(ledger: SandboxLedger, ref: GiftRef) -> None:
    with pytest.raises(ProviderError) as err:
        await ledger.validate(ref, location=None)
    assert err.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "code", ["12345", "1000000000011", "10000000000a", "１００００００００００１"]
)
async def test_validate_malformed_code_is_invalid(ledger: SandboxLedger, code: str) -> None:
    with pytest.raises(ProviderError) as err:
        await ledger.validate(GiftRef(code=code), location=None)
    assert err.value.code is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    ("code", "reason", "description"),
    [
        (EXPIRED, NotRedeemableReason.EXPIRED, "Expired on 2026-06-05"),
        (FUTURE, NotRedeemableReason.NOT_YET_VALID, "Valid from 2026-06-22"),
        (USED, NotRedeemableReason.DEPLETED, "Fully redeemed"),
        (S2_ONLY, NotRedeemableReason.WRONG_LOCATION, "Not valid at this location"),
        (VOIDED, NotRedeemableReason.VOIDED, "Voided"),
    ],
)
async def test_found_but_not_redeemable_is_a_success_with_reason(
    ledger: SandboxLedger, code: str, reason: NotRedeemableReason, description: str
) -> None:
    status = await ledger.validate(GiftRef(code=code), location=None)
    assert not status.is_redeemable
    assert status.reason is reason
    assert status.description == description
    assert (status.eligible_value, status.eligible_quantity) == (0, 0)


async def test_location_restricted_gift_redeems_at_its_location(
    ledger: SandboxLedger, db: Path, clock: Clock
) -> None:
    assert (await ledger.validate(GiftRef(code=S2_ONLY), location="s2")).is_redeemable
    store_two = SandboxLedger(db, location="s2", load_demo=True, now=clock)
    try:
        status = await store_two.validate(GiftRef(code=S2_ONLY), location=None)
        assert status.description == "$30.00 available"
        redemption = await store_two.redeem(
            status.gift_id, amount=100, location=None, idempotency_key="k"
        )
        assert after(redemption).balance == 2900
    finally:
        await store_two.aclose()


async def test_validity_window_follows_the_clock(ledger: SandboxLedger, clock: Clock) -> None:
    future = GiftRef(code=FUTURE)
    clock.now = datetime(2026, 6, 22, tzinfo=UTC) - timedelta(microseconds=1)
    assert not (await ledger.validate(future, location=None)).is_redeemable
    clock.now = datetime(2026, 6, 22, tzinfo=UTC)
    assert (await ledger.validate(future, location=None)).is_redeemable
    clock.now = datetime(2026, 7, 22, tzinfo=UTC)
    status = await ledger.validate(future, location=None)
    assert (status.reason, status.description) == (
        NotRedeemableReason.EXPIRED,
        "Expired on 2026-07-22",
    )


# --- redeem -----------------------------------------------------------------------------------


async def test_partial_redemptions_until_depleted(ledger: SandboxLedger) -> None:
    gid = await gift_id(ledger, FIFTY)
    first = await ledger.redeem(gid, amount=1250, location=None, idempotency_key="a")
    assert first.transaction_id.startswith("txn_")
    assert (first.gift_id, first.amount, first.quantity) == (gid, 1250, None)
    assert after(first).description == "$37.50 available"
    last = await ledger.redeem(gid, amount=3750, location=None, idempotency_key="b")
    assert last.transaction_id != first.transaction_id
    assert (after(last).balance, after(last).is_redeemable) == (0, False)
    assert after(last).description == "Fully redeemed"
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(gid, amount=1, location=None, idempotency_key="c")
    assert err.value.code is ErrorCode.NOT_REDEEMABLE


async def test_item_gift_redeems_by_quantity(ledger: SandboxLedger) -> None:
    gid = await gift_id(ledger, COFFEE)
    redemption = await ledger.redeem(gid, quantity=2, location=None, idempotency_key="a")
    assert (redemption.amount, redemption.quantity) == (None, 2)
    assert after(redemption).description == "1 × Coffee available"
    assert after(redemption).eligible_quantity == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (EXPIRED, ErrorCode.EXPIRED),
        (FUTURE, ErrorCode.NOT_YET_VALID),
        (S2_ONLY, ErrorCode.WRONG_LOCATION),
        (USED, ErrorCode.NOT_REDEEMABLE),
        (VOIDED, ErrorCode.NOT_REDEEMABLE),
    ],
)
async def test_redeem_refuses_what_validate_reports_unredeemable(
    ledger: SandboxLedger, db: Path, code: str, error: ErrorCode
) -> None:
    before = audit(db)
    status = await ledger.validate(GiftRef(code=code), location=None)
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(status.gift_id, amount=100, location=None, idempotency_key="k")
    assert err.value.code is error
    assert err.value.message == status.description
    assert audit(db) == before


async def test_insufficient_balance_names_the_available_amount(
    ledger: SandboxLedger, db: Path
) -> None:
    gid = await gift_id(ledger, TWENTY_FIVE)
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(gid, amount=2501, location=None, idempotency_key="k")
    assert err.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert "$25.00" in err.value.message
    coffee = await gift_id(ledger, COFFEE)
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(coffee, quantity=4, location=None, idempotency_key="k2")
    assert err.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert "3 × Coffee" in err.value.message
    assert audit(db)[TWENTY_FIVE] == (2500, 2500)
    # A refused request stored nothing: the same key may carry the corrected amount.
    ok = await ledger.redeem(gid, amount=2500, location=None, idempotency_key="k")
    assert after(ok).balance == 0


@pytest.mark.parametrize(
    ("code", "amount", "quantity"),
    [
        (COFFEE, 100, None),
        (FIFTY, None, 1),
        (FIFTY, 0, None),
        (FIFTY, -5, None),
        (COFFEE, None, 0),
        (FIFTY, 100, 1),
        (FIFTY, None, None),
    ],
)
async def test_malformed_redemption_is_invalid(
    ledger: SandboxLedger, db: Path, code: str, amount: int | None, quantity: int | None
) -> None:
    before = audit(db)
    gid = await gift_id(ledger, code)
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(
            gid, amount=amount, quantity=quantity, location=None, idempotency_key="k"
        )
    assert err.value.code is ErrorCode.INVALID_REQUEST
    assert audit(db) == before


async def test_empty_idempotency_key_is_invalid(ledger: SandboxLedger) -> None:
    gid = await gift_id(ledger, FIFTY)
    with pytest.raises(ProviderError) as err:
        await ledger.redeem(gid, amount=1, location=None, idempotency_key="")
    assert err.value.code is ErrorCode.INVALID_REQUEST


async def test_redeem_unknown_gift_is_not_found(ledger: SandboxLedger) -> None:
    with pytest.raises(ProviderError) as err:
        await ledger.redeem("no-such-id", amount=1, location=None, idempotency_key="k")
    assert err.value.code is ErrorCode.NOT_FOUND


# --- reverse ----------------------------------------------------------------------------------


async def test_reverse_restores_value_once(ledger: SandboxLedger, clock: Clock) -> None:
    gid = await gift_id(ledger, FIFTY)
    redemption = await ledger.redeem(gid, amount=2000, location=None, idempotency_key="r")
    clock.now = NOW + timedelta(minutes=5)
    reversal = await ledger.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert (reversal.transaction_id, reversal.gift_id) == (redemption.transaction_id, gid)
    assert (reversal.amount, reversal.quantity) == (2000, None)
    assert reversal.reversed_at == clock.now
    assert after(reversal).balance == 5000
    with pytest.raises(ProviderError) as err:
        await ledger.reverse(redemption.transaction_id, location=None, idempotency_key="v2")
    assert err.value.code is ErrorCode.ALREADY_REVERSED
    assert (await ledger.validate(GiftRef(code=FIFTY), location=None)).balance == 5000


async def test_reverse_item_redemption_and_depleted_demo_gift(
    ledger: SandboxLedger, db: Path
) -> None:
    coffee = await gift_id(ledger, COFFEE)
    redemption = await ledger.redeem(coffee, quantity=3, location=None, idempotency_key="r")
    reversal = await ledger.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert (reversal.quantity, after(reversal).item_quantity) == (3, 3)
    with closing(sqlite3.connect(db)) as conn:
        (shipped_txn,) = conn.execute(
            "SELECT transaction_id FROM redemptions JOIN gifts USING (gift_id) WHERE code = ?",
            (USED,),
        ).fetchone()
    restored = await ledger.reverse(shipped_txn, location=None, idempotency_key="v-used")
    assert after(restored).description == "$20.00 available"


async def test_reverse_unknown_transaction_is_not_found(ledger: SandboxLedger) -> None:
    with pytest.raises(ProviderError) as err:
        await ledger.reverse("txn_nope", location=None, idempotency_key="k")
    assert err.value.code is ErrorCode.NOT_FOUND


# --- idempotency ------------------------------------------------------------------------------


async def test_repeated_redeem_returns_first_result_and_changes_nothing(
    ledger: SandboxLedger, db: Path, clock: Clock
) -> None:
    gid = await gift_id(ledger, FIFTY)
    first = await ledger.redeem(gid, amount=700, location=None, idempotency_key="same")
    await ledger.redeem(gid, amount=300, location=None, idempotency_key="other")
    clock.now = NOW + timedelta(hours=1)
    again = await ledger.redeem(gid, amount=700, location="s1", idempotency_key="same")
    assert again == first
    assert audit(db)[FIFTY] == (4000, 4000)


async def test_repeated_reverse_returns_first_result(ledger: SandboxLedger, db: Path) -> None:
    gid = await gift_id(ledger, FIFTY)
    redemption = await ledger.redeem(gid, amount=700, location=None, idempotency_key="r")
    first = await ledger.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert await ledger.reverse(redemption.transaction_id, location=None, idempotency_key="v") == (
        first
    )
    assert audit(db)[FIFTY] == (5000, 5000)


async def test_key_reused_for_a_different_request_is_invalid(
    ledger: SandboxLedger, db: Path
) -> None:
    gid = await gift_id(ledger, FIFTY)
    other = await gift_id(ledger, TWENTY_FIVE)
    redemption = await ledger.redeem(gid, amount=700, location=None, idempotency_key="k")
    attempts = [
        ledger.redeem(gid, amount=701, location=None, idempotency_key="k"),
        ledger.redeem(other, amount=700, location=None, idempotency_key="k"),
        ledger.redeem(gid, amount=700, location="s9", idempotency_key="k"),
        ledger.reverse(redemption.transaction_id, location=None, idempotency_key="k"),
    ]
    for attempt in attempts:
        with pytest.raises(ProviderError) as err:
            await attempt
        assert err.value.code is ErrorCode.INVALID_REQUEST
    assert audit(db)[FIFTY] == (4300, 4300)
    assert audit(db)[TWENTY_FIVE] == (2500, 2500)


# --- money safety -----------------------------------------------------------------------------


async def test_concurrent_redeems_from_two_lanes_never_overspend(
    ledger: SandboxLedger, db: Path, clock: Clock
) -> None:
    other_lane = SandboxLedger(db, location="s1", load_demo=True, now=clock)
    try:
        gid = await gift_id(ledger, FIFTY)
        lanes = [ledger, other_lane] * 10
        results = await asyncio.gather(
            *(
                lane.redeem(gid, amount=1500, location=None, idempotency_key=f"k{i}")
                for i, lane in enumerate(lanes)
            ),
            return_exceptions=True,
        )
    finally:
        await other_lane.aclose()
    refused = [r for r in results if isinstance(r, ProviderError)]
    assert len(refused) == 17
    assert {r.code for r in refused} == {ErrorCode.INSUFFICIENT_BALANCE}
    assert audit(db)[FIFTY] == (500, 500)


@pytest.mark.parametrize("seed", range(5))
async def test_balance_equals_initial_minus_unreversed_after_random_operations(
    ledger: SandboxLedger, db: Path, seed: int
) -> None:
    """A model of the ledger predicts every outcome; the file must agree with it and itself."""
    rng = random.Random(seed)
    codes = [FIFTY, TWENTY_FIVE, COFFEE, USED]
    ids = {code: await gift_id(ledger, code) for code in codes}
    balances = {FIFTY: 5000, TWENTY_FIVE: 2500, COFFEE: 3, USED: 0}
    transactions: list[tuple[str, str, int]] = []  # (txn id, code, units)
    reversal_keys: dict[str, str] = {}  # txn id -> key of its first reversal
    for step in range(150):
        if transactions and rng.random() < 0.3:
            txn, code, units = rng.choice(transactions)
            key = reversal_keys.get(txn, f"rev-{step}") if rng.random() < 0.5 else f"rev-{step}"
            if txn not in reversal_keys:
                await ledger.reverse(txn, location=None, idempotency_key=key)
                reversal_keys[txn] = key
                balances[code] += units
            elif key == reversal_keys[txn]:
                await ledger.reverse(txn, location=None, idempotency_key=key)
            else:
                with pytest.raises(ProviderError) as err:
                    await ledger.reverse(txn, location=None, idempotency_key=key)
                assert err.value.code is ErrorCode.ALREADY_REVERSED
            continue
        code = rng.choice(codes)
        units = rng.randint(1, 3) if code == COFFEE else rng.randint(1, 2000)
        amount, quantity = (None, units) if code == COFFEE else (units, None)
        key = f"red-{step}"
        if units > balances[code]:
            with pytest.raises(ProviderError) as err:
                await ledger.redeem(
                    ids[code], amount=amount, quantity=quantity, location=None, idempotency_key=key
                )
            assert err.value.code is (
                ErrorCode.NOT_REDEEMABLE if balances[code] == 0 else ErrorCode.INSUFFICIENT_BALANCE
            )
            continue
        redemption = await ledger.redeem(
            ids[code], amount=amount, quantity=quantity, location=None, idempotency_key=key
        )
        balances[code] -= units
        transactions.append((redemption.transaction_id, code, units))
        replay = await ledger.redeem(
            ids[code], amount=amount, quantity=quantity, location=None, idempotency_key=key
        )
        assert replay == redemption
    ledger_view = audit(db)
    for code in codes:
        assert ledger_view[code] == (balances[code], balances[code])
        status = await ledger.validate(GiftRef(code=code), location=None)
        assert (status.balance if code != COFFEE else status.item_quantity) == balances[code]


# --- persistence, set-up, health --------------------------------------------------------------


async def test_second_ledger_on_the_same_file_sees_the_same_balances(
    ledger: SandboxLedger, db: Path, clock: Clock
) -> None:
    gid = await gift_id(ledger, FIFTY)
    await ledger.redeem(gid, amount=1500, location=None, idempotency_key="k")
    await ledger.aclose()
    reopened = SandboxLedger(db, location="s1", load_demo=True, now=clock)
    try:
        status = await reopened.validate(GiftRef(code=FIFTY), location=None)
        assert (status.gift_id, status.balance) == (gid, 3500)
        assert await reopened.check_health() == (True, f"ledger at {db}: 8 gifts")
    finally:
        await reopened.aclose()


async def test_ledger_file_uses_wal(ledger: SandboxLedger, db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_empty_ledger_without_demo_data(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "ledger.sqlite"
    ledger = SandboxLedger(db, location="s1", load_demo=False)
    try:
        assert db.exists()
        assert await ledger.check_health() == (True, f"ledger at {db}: 0 gifts")
        with pytest.raises(ProviderError) as err:
            await ledger.validate(GiftRef(code=FIFTY), location=None)
        assert err.value.code is ErrorCode.NOT_FOUND
    finally:
        await ledger.aclose()


async def test_closed_ledger_reports_unhealthy_and_unavailable(ledger: SandboxLedger) -> None:
    await ledger.aclose()
    await ledger.aclose()
    healthy, reason = await ledger.check_health()
    assert not healthy
    assert "closed" in reason
    with pytest.raises(ProviderError) as err:
        await ledger.validate(GiftRef(code=FIFTY), location=None)
    assert err.value.code is ErrorCode.PROVIDER_UNAVAILABLE


def test_unopenable_file_is_provider_unavailable(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite"
    not_a_db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(ProviderError) as err:
        SandboxLedger(not_a_db, location="s1", load_demo=True)
    assert err.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert str(not_a_db) in err.value.message


def test_settings_are_valid_empty_and_refuse_unknown_keys() -> None:
    assert SandboxSettings() == SandboxSettings(db=None, demo_data=True, location=None)
    with pytest.raises(ValidationError):
        SandboxSettings.model_validate({"dbpath": "x.sqlite"})


async def test_create_defaults_to_state_dir_and_store_id(tmp_path: Path) -> None:
    ledger = SandboxLedger.create(SandboxSettings(), ProviderEnv("s2", "l1", tmp_path / "state"))
    try:
        assert (tmp_path / "state" / "sandbox.sqlite").exists()
        assert (await ledger.validate(GiftRef(code=S2_ONLY), location=None)).is_redeemable
    finally:
        await ledger.aclose()


async def test_create_honours_explicit_values(tmp_path: Path) -> None:
    settings = SandboxSettings(db=tmp_path / "mine.sqlite", demo_data=False, location="s9")
    ledger = SandboxLedger.create(settings, ProviderEnv("s1", "l1", tmp_path / "unused"))
    try:
        assert await ledger.check_health() == (
            True,
            f"ledger at {tmp_path / 'mine.sqlite'}: 0 gifts",
        )
        assert not (tmp_path / "unused").exists()
    finally:
        await ledger.aclose()
