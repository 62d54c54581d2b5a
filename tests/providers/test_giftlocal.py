"""The Gift Local adapter against the Gift Local simulator: every operation, every refusal
mapped to the error vocabulary with Gift Local's message, the location rules, exact decimal
amounts, and the failures that must never move money twice. In-process for speed; the tests
marked OVER_BOTH or OVER_LOOPBACK also run over real loopback HTTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.errors import ErrorCode, ProviderError
from agent.money import exponent, to_decimal
from agent.orders import OrderLine, OrderSnapshot
from agent.providers.base import GiftProvider, GiftRef, GiftType, NotRedeemableReason
from agent.providers.giftlocal import (
    TICKET_FIELD,
    VALIDATION_OPTIONS_FIELD,
    GiftLocalProvider,
    json_number,
    to_minor,
)
from agent.providers.settings import GiftLocalSettings
from simulators.giftlocal import (
    BAKERY_KEY,
    BAKERY_MAIN,
    DEFAULT_SEED,
    HARBOR_KEY,
    HARBOR_MARKET,
    HARBOR_PIER,
    REDEEM,
    REVERSE,
    VALIDATE,
    GiftLocalSimulator,
)
from simulators.server import ApiError, Request, Response
from tests.gifts import after
from tests.served import OVER_BOTH, OVER_LOOPBACK, Carrier, Served, served

CREDENTIAL = "giftlocal_api_key"

Json = Any
Make = Callable[..., GiftLocalProvider]

FIFTY = GiftRef(code="100000000001")
COFFEE = GiftRef(code="100000000002")
EXPIRED = GiftRef(code="100000000003")
USED_UP = GiftRef(code="100000000004")
NOT_YET = GiftRef(code="100000000005")
VOIDED = GiftRef(code="100000000006")
LEADING_ZERO = GiftRef(code="012345678901")
HARBOR_40 = GiftRef(code="200000000001")
PASTRY_AT_PIER = GiftRef(code="200000000002")
YEN = GiftRef(code="200000000003")


class Sim(Served):
    """The simulator the adapter reaches, and its `/_sim/` control endpoints."""

    def balance(self, ref: GiftRef) -> int:
        value: int = self.ledger()["gifts"][ref.code]["balance"]
        return value


@contextmanager
def running(simulator: GiftLocalSimulator, carrier: Carrier = "in_process") -> Iterator[Sim]:
    with served(simulator, carrier) as it:
        yield Sim(it.simulator, it.url, it.transport, it.control)


@pytest.fixture
def sim(carrier: Carrier) -> Iterator[Sim]:
    with running(GiftLocalSimulator(), carrier) as sim:
        yield sim


def key_file(directory: Path, key: str = BAKERY_KEY) -> Path:
    path = directory / f"key-{uuid.uuid4().hex}"
    path.write_text(key + "\n")
    return path


def settings(url: str, key: Path | None, **extra: Any) -> GiftLocalSettings:
    return GiftLocalSettings.model_validate(
        {"base_url": url, "api_key_file": key, "timeout": 2.0, **extra}
    )


@pytest.fixture
async def make(sim: Sim, tmp_path: Path) -> AsyncIterator[Make]:
    """Build adapters against the simulator (bakery key unless told); all closed at the end."""
    made: list[GiftLocalProvider] = []

    def build(key: str = BAKERY_KEY, **extra: Any) -> GiftLocalProvider:
        provider = GiftLocalProvider(
            settings(sim.url, key_file(tmp_path, key), **extra), transport=sim.transport
        )
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


@pytest.fixture
def gl(make: Make) -> GiftLocalProvider:
    return make()


async def refused(call: Awaitable[object]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    return caught.value


async def failure(call: Awaitable[object]) -> ErrorCode | None:
    """The code a call failed with; None when it succeeded."""
    try:
        await call
    except ProviderError as exc:
        return exc.code
    return None


def test_the_adapter_is_a_gift_provider(gl: GiftLocalProvider) -> None:
    provider: GiftProvider = gl
    assert provider.name == "giftlocal"


# -- validate -------------------------------------------------------------------------------------


@OVER_BOTH
async def test_validate_a_monetary_gift_by_code(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(FIFTY, location=None)
    assert gift.type is GiftType.MONETARY and gift.currency == "USD"
    assert gift.balance == 5000 and gift.eligible_value == 5000 and gift.eligible_quantity == 0
    assert gift.is_redeemable and gift.reason is None
    assert gift.description == "$50.00 remaining"
    assert (gift.sender, gift.recipient) == ("Maya Chen", "Sam Rivera")
    assert gift.gift_id == sim.ledger()["gifts"]["100000000001"]["voucher_id"]
    (request,) = sim.sent(VALIDATE)
    assert request["headers"]["authorization"] == BAKERY_KEY  # the whole value, no Bearer
    assert request["body"] == '{"voucherCode":"100000000001"}'  # the 12 digits, no location


async def test_validate_by_qr_token_gives_the_same_gift(gl: GiftLocalProvider) -> None:
    by_token = await gl.validate(GiftRef(public_token="gl-bakery-50"), location=None)
    assert by_token == await gl.validate(FIFTY, location=None)


async def test_validate_an_item_gift(gl: GiftLocalProvider) -> None:
    gift = await gl.validate(COFFEE, location=None)
    assert gift.type is GiftType.ITEM and gift.currency is None and gift.balance is None
    assert gift.item_label == "Coffee" and gift.item_quantity == 3
    assert gift.eligible_quantity == 3 and gift.eligible_value == 0
    assert gift.description == "3 × Coffee remaining"


async def test_a_code_with_a_leading_zero_is_sent_whole(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(LEADING_ZERO, location=None)
    assert gift.balance == 3000
    assert json.loads(sim.sent(VALIDATE)[0]["body"])["voucherCode"] == "012345678901"


@pytest.mark.parametrize(
    ("ref", "reason", "balance", "words"),
    [
        (EXPIRED, NotRedeemableReason.EXPIRED, 1000, "expired on"),
        (USED_UP, NotRedeemableReason.DEPLETED, 0, "fully redeemed"),
        (NOT_YET, NotRedeemableReason.NOT_YET_VALID, 1500, "valid from"),
        (VOIDED, NotRedeemableReason.VOIDED, 2000, "voided"),
    ],
)
async def test_unredeemable_gifts_validate_with_the_reason(
    gl: GiftLocalProvider, ref: GiftRef, reason: NotRedeemableReason, balance: int, words: str
) -> None:
    gift = await gl.validate(ref, location=None)
    assert gift.is_redeemable is False and gift.reason is reason
    assert gift.balance == balance and gift.eligible_value == 0
    assert words in gift.description


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        (EXPIRED, ErrorCode.EXPIRED),
        (USED_UP, ErrorCode.NOT_REDEEMABLE),
        (NOT_YET, ErrorCode.NOT_YET_VALID),
        (VOIDED, ErrorCode.NOT_REDEEMABLE),
    ],
)
async def test_redeeming_an_unredeemable_gift_is_refused_and_changes_nothing(
    gl: GiftLocalProvider, sim: Sim, ref: GiftRef, code: ErrorCode
) -> None:
    """Acceptance: validate shows is_redeemable false and the reason; redeem is refused (expired
    and not-yet-valid gifts with their more precise codes) and the ledger does not move."""
    gift = await gl.validate(ref, location=None)
    assert not gift.is_redeemable and gift.reason is not None
    before = sim.ledger()
    error = await refused(gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="k1"))
    assert error.code is code
    assert error.message  # Gift Local's own words, for the cashier
    assert sim.ledger() == before


async def test_unknown_gift_is_not_found_with_the_providers_message(
    gl: GiftLocalProvider,
) -> None:
    for ref in [GiftRef(code="999999999999"), GiftRef(public_token="no-such-token")]:
        error = await refused(gl.validate(ref, location=None))
        assert error.code is ErrorCode.NOT_FOUND and error.message == "Gift not found."


async def test_a_code_that_is_not_12_digits_is_refused_before_sending(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    for code in ["12345678901", "1234567890123", "12345678901٠"]:
        error = await refused(gl.validate(GiftRef(code=code), location=None))
        assert error.code is ErrorCode.INVALID_REQUEST
    assert sim.sent(VALIDATE) == []


# -- locations ------------------------------------------------------------------------------------


async def test_organization_id_setting_is_sent_on_every_call(make: Make, sim: Sim) -> None:
    gl = make(HARBOR_KEY, organization_id=HARBOR_MARKET)
    gift = await gl.validate(HARBOR_40, location="lane-store")
    redemption = await gl.redeem(
        gift.gift_id, amount=500, location="lane-store", idempotency_key="a"
    )
    await gl.reverse(redemption.transaction_id, location="lane-store", idempotency_key="b")
    for path in (VALIDATE, REDEEM, REVERSE):
        (request,) = sim.sent(path)
        assert f'"organizationID":"{HARBOR_MARKET}"' in request["body"]
        assert "pointOfSaleSystemOrganizationIdentifier" not in request["body"]
    record = sim.ledger()["redemptions"][redemption.transaction_id]
    assert record["organization_id"] == HARBOR_MARKET and record["reversed"]


async def test_pos_location_setting_wins_over_the_lane_location(make: Make, sim: Sim) -> None:
    gl = make(HARBOR_KEY, pos_location_id="harbor-pier")
    gift = await gl.validate(PASTRY_AT_PIER, location="lane-store")
    assert gift.is_redeemable and gift.eligible_quantity == 2
    assert (
        '"pointOfSaleSystemOrganizationIdentifier":"harbor-pier"' in sim.sent(VALIDATE)[0]["body"]
    )


async def test_without_settings_the_lane_location_is_the_pos_identifier(
    make: Make, sim: Sim
) -> None:
    gl = make(HARBOR_KEY)
    elsewhere = await gl.validate(PASTRY_AT_PIER, location="harbor-market")
    assert (
        elsewhere.reason is NotRedeemableReason.WRONG_LOCATION and elsewhere.eligible_quantity == 0
    )
    error = await refused(
        gl.redeem(elsewhere.gift_id, quantity=1, location="harbor-market", idempotency_key="k")
    )
    assert error.code is ErrorCode.WRONG_LOCATION
    assert sim.balance(PASTRY_AT_PIER) == 2


async def test_a_multi_location_account_without_a_location_is_not_configured(make: Make) -> None:
    gl = make(HARBOR_KEY)
    error = await refused(gl.validate(HARBOR_40, location=None))
    assert error.code is ErrorCode.NOT_CONFIGURED and "2 locations" in error.message
    error = await refused(gl.validate(HARBOR_40, location="unknown-store"))
    assert error.code is ErrorCode.NOT_CONFIGURED and "unknown-store" in error.message


def test_settings_are_checked(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1"
    with pytest.raises(ValidationError, match="not both"):
        settings(url, None, organization_id=BAKERY_MAIN, pos_location_id="bakery-main")
    for wrong in [{"organizationID": BAKERY_MAIN}, {"organization_id": "main"}, {"currency": "$"}]:
        with pytest.raises(ValidationError):
            settings(url, None, **wrong)
    assert settings(url, None, organization_id=BAKERY_MAIN).currency == "USD"


# -- redeem and reverse ---------------------------------------------------------------------------


@OVER_BOTH
async def test_partial_redemption_of_money(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=1250, location=None, idempotency_key="r1")
    assert redemption.amount == 1250 and redemption.quantity is None
    assert redemption.gift_id == gift.gift_id
    assert after(redemption).balance == 3750 and after(redemption).eligible_value == 3750
    assert redemption.transaction_id in sim.ledger()["redemptions"]
    assert sim.balance(FIFTY) == 3750
    assert '"amount":12.5' in sim.sent(REDEEM)[0]["body"]
    assert f'"voucherID":"{gift.gift_id}"' in sim.sent(REDEEM)[0]["body"]


async def test_whole_dollars_and_yen_go_out_as_integers(make: Make, sim: Sim) -> None:
    gl = make(HARBOR_KEY, organization_id=HARBOR_PIER)
    dollars = await gl.validate(HARBOR_40, location=None)
    await gl.redeem(dollars.gift_id, amount=1000, location=None, idempotency_key="d")
    yen = await gl.validate(YEN, location=None)
    assert yen.currency == "JPY" and yen.balance == 5000
    redemption = await gl.redeem(yen.gift_id, amount=1500, location=None, idempotency_key="y")
    assert redemption.amount == 1500 and after(redemption).balance == 3500
    bodies = [r["body"] for r in sim.sent(REDEEM)]
    assert '"amount":10' in bodies[0] and '"amount":1500' in bodies[1]
    assert sim.balance(HARBOR_40) == 3000 and sim.balance(YEN) == 3500


async def test_a_gift_not_validated_here_is_scaled_by_the_configured_currency(
    make: Make, sim: Sim
) -> None:
    """After a restart the adapter has not seen the gift: `currency` says how to scale."""
    gl = make(HARBOR_KEY, organization_id=HARBOR_PIER, currency="JPY")
    gift_id = sim.ledger()["gifts"][YEN.code]["voucher_id"]
    redemption = await gl.redeem(gift_id, amount=700, location=None, idempotency_key="y")
    assert redemption.amount == 700 and after(redemption).currency == "JPY"
    assert '"amount":700' in sim.sent(REDEEM)[0]["body"]
    assert sim.balance(YEN) == 4300


async def test_item_gifts_are_redeemed_by_quantity(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(COFFEE, location=None)
    redemption = await gl.redeem(gift.gift_id, quantity=2, location=None, idempotency_key="c")
    assert redemption.quantity == 2 and redemption.amount is None
    assert after(redemption).item_quantity == 1 and sim.balance(COFFEE) == 1
    assert '"amount":2' in sim.sent(REDEEM)[0]["body"]


async def test_amount_and_quantity_must_match_the_gift_and_be_positive(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    money = await gl.validate(FIFTY, location=None)
    items = await gl.validate(COFFEE, location=None)
    for gift_id, units in [
        (money.gift_id, {"quantity": 2}),
        (items.gift_id, {"amount": 200}),
        (money.gift_id, {}),
        (money.gift_id, {"amount": 100, "quantity": 1}),
        (money.gift_id, {"amount": 0}),
        (items.gift_id, {"quantity": -1}),
    ]:
        error = await refused(gl.redeem(gift_id, location=None, idempotency_key="x", **units))
        assert error.code is ErrorCode.INVALID_REQUEST
    assert sim.sent(REDEEM) == []


async def test_insufficient_balance_says_what_is_available(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(FIFTY, location=None)
    await gl.redeem(gift.gift_id, amount=3000, location=None, idempotency_key="1")
    before = sim.ledger()
    error = await refused(gl.redeem(gift.gift_id, amount=2001, location=None, idempotency_key="2"))
    assert error.code is ErrorCode.INSUFFICIENT_BALANCE
    assert error.details == {"available": 2000, "currency": "USD"}
    assert "$20.00" in error.message
    assert sim.ledger() == before


async def test_insufficient_quantity_says_how_many_are_left(gl: GiftLocalProvider) -> None:
    gift = await gl.validate(COFFEE, location=None)
    error = await refused(gl.redeem(gift.gift_id, quantity=4, location=None, idempotency_key="q"))
    assert error.code is ErrorCode.INSUFFICIENT_BALANCE and error.details == {"available": 3}


async def test_redeem_of_an_unknown_gift_is_not_found(gl: GiftLocalProvider) -> None:
    error = await refused(
        gl.redeem(
            "8c1e0c4e-0000-4000-8000-000000000000", amount=1, location=None, idempotency_key="u"
        )
    )
    assert error.code is ErrorCode.NOT_FOUND


async def test_reverse_restores_the_value_once(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=999, location=None, idempotency_key="r")
    reversal = await gl.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert reversal.transaction_id == redemption.transaction_id
    assert reversal.gift_id == gift.gift_id and reversal.amount == 999
    assert after(reversal).balance == 5000 and sim.balance(FIFTY) == 5000
    assert (
        f'"redemptionTransactionID":"{redemption.transaction_id}"' in sim.sent(REVERSE)[0]["body"]
    )
    again = await refused(
        gl.reverse(redemption.transaction_id, location=None, idempotency_key="v2")
    )
    assert again.code is ErrorCode.ALREADY_REVERSED and "already reversed" in again.message
    assert sim.balance(FIFTY) == 5000


async def test_reverse_of_an_item_redemption_gives_the_quantity_back(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    gift = await gl.validate(COFFEE, location=None)
    redemption = await gl.redeem(gift.gift_id, quantity=3, location=None, idempotency_key="r")
    assert not after(redemption).is_redeemable
    assert after(redemption).reason is NotRedeemableReason.DEPLETED
    reversal = await gl.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert reversal.quantity == 3 and reversal.amount is None
    assert after(reversal).is_redeemable and sim.balance(COFFEE) == 3


async def test_reverse_of_an_unknown_transaction_is_not_found(gl: GiftLocalProvider) -> None:
    error = await refused(
        gl.reverse("8c1e0c4e-0000-4000-8000-000000000000", location=None, idempotency_key="u")
    )
    assert error.code is ErrorCode.NOT_FOUND


# -- keys and health ------------------------------------------------------------------------------


async def test_a_wrong_key_is_not_configured_and_unhealthy(make: Make) -> None:
    gl = make("gl-sim-revoked")
    error = await refused(gl.validate(FIFTY, location=None))
    assert error.code is ErrorCode.NOT_CONFIGURED
    assert error.message == "Authorization has been denied for this request."
    ok, message = await gl.check_health()
    assert not ok and "refused the API key" in message


async def test_health_probe_accepts_the_key(gl: GiftLocalProvider, sim: Sim) -> None:
    before = sim.ledger()
    ok, message = await gl.check_health()
    assert ok and "reachable" in message
    assert sim.sent(VALIDATE)[0]["body"] == '{"voucherCode":"000000000000"}'
    assert sim.ledger() == before


async def test_health_when_nothing_listens(tmp_path: Path) -> None:
    with served(GiftLocalSimulator(), "loopback") as gone:
        url = gone.url
    gl = GiftLocalProvider(settings(url, key_file(tmp_path)))
    ok, message = await gl.check_health()
    await gl.aclose()
    assert not ok and "cannot be reached" in message


def test_a_missing_key_stops_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    url = "http://127.0.0.1:1"
    with pytest.raises(ProviderError) as caught:
        GiftLocalProvider(settings(url, None))
    assert caught.value.code is ErrorCode.NOT_CONFIGURED
    assert f"LoadCredential={CREDENTIAL}" in caught.value.message
    for path in [tmp_path / "absent", tmp_path, key_file(tmp_path, "")]:
        with pytest.raises(ProviderError) as caught:
            GiftLocalProvider(settings(url, path))
        assert caught.value.code is ErrorCode.NOT_CONFIGURED


async def test_the_key_comes_from_the_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: Sim
) -> None:
    (tmp_path / CREDENTIAL).write_text(BAKERY_KEY)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    gl = GiftLocalProvider(settings(sim.url, None), transport=sim.transport)
    assert (await gl.validate(FIFTY, location=None)).balance == 5000
    await gl.aclose()


# -- failures -------------------------------------------------------------------------------------


@OVER_BOTH
async def test_503_on_redeem_is_provider_unavailable_and_nothing_applied(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    gift = await gl.validate(FIFTY, location=None)
    before = sim.ledger()
    sim.arm(path=REDEEM, kind="error", status=503)
    error = await refused(gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="k"))
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert sim.ledger() == before


@OVER_BOTH
async def test_a_redeem_applied_but_unanswered_is_unknown_outcome_and_not_retried(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    gift = await gl.validate(FIFTY, location=None)
    sim.arm(path=REDEEM, kind="drop_after_apply")
    error = await refused(gl.redeem(gift.gift_id, amount=700, location=None, idempotency_key="k"))
    assert error.code is ErrorCode.UNKNOWN_OUTCOME
    applied = [r for r in sim.ledger()["redemptions"].values() if r["voucher_id"] == gift.gift_id]
    assert [r["units"] for r in applied] == [700]
    assert len(sim.sent(REDEEM)) == 1
    assert sim.balance(FIFTY) == 4300
    # Re-validating shows what happened, which is how the outcome is resolved.
    assert (await gl.validate(FIFTY, location=None)).balance == 4300


async def test_a_500_on_redeem_is_unknown_outcome(gl: GiftLocalProvider, sim: Sim) -> None:
    gift = await gl.validate(FIFTY, location=None)
    sim.arm(path=REDEEM, kind="error", status=500)
    error = await refused(gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="k"))
    assert error.code is ErrorCode.UNKNOWN_OUTCOME


async def test_a_lost_reversal_answer_is_unknown_outcome_and_a_retry_is_safe(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=500, location=None, idempotency_key="r")
    sim.arm(path=REVERSE, kind="drop_after_apply")
    error = await refused(gl.reverse(redemption.transaction_id, location=None, idempotency_key="v"))
    assert error.code is ErrorCode.UNKNOWN_OUTCOME
    again = await refused(gl.reverse(redemption.transaction_id, location=None, idempotency_key="v"))
    assert again.code is ErrorCode.ALREADY_REVERSED
    assert sim.balance(FIFTY) == 5000


@OVER_LOOPBACK
async def test_a_timeout_returns_within_the_configured_timeout(make: Make, sim: Sim) -> None:
    gl = make(timeout=0.5)
    sim.arm(path=VALIDATE, kind="timeout")
    start = time.monotonic()
    error = await refused(gl.validate(FIFTY, location=None))
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert time.monotonic() - start < 5  # the fault holds the request for 60 s
    gift = await gl.validate(FIFTY, location=None)
    sim.arm(path=REDEEM, kind="timeout")
    error = await refused(gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="k"))
    assert error.code is ErrorCode.UNKNOWN_OUTCOME


class Garbled(GiftLocalSimulator):
    """Applies redeems but answers them, and validates, in a shape the adapter cannot read."""

    def redeem(self, request: Request) -> Response:
        super().redeem(request)
        return Response(200, {"voucher": {"voucherID": "x"}})

    def validate(self, request: Request) -> Response:
        answer = super().validate(request)
        answer.body["voucher"]["remainingValue"] = 12.345
        return answer


async def test_unreadable_answers_are_unknown_outcome_after_a_write(tmp_path: Path) -> None:
    with running(Garbled()) as garbled:
        gl = GiftLocalProvider(
            settings(garbled.url, key_file(tmp_path)), transport=garbled.transport
        )
        try:
            error = await refused(gl.validate(FIFTY, location=None))
            assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
            gift_id = garbled.ledger()["gifts"]["100000000001"]["voucher_id"]
            error = await refused(
                gl.redeem(gift_id, amount=100, location=None, idempotency_key="k")
            )
            assert error.code is ErrorCode.UNKNOWN_OUTCOME
        finally:
            await gl.aclose()
        assert garbled.balance(FIFTY) == 4900


# Each example makes several HTTP calls through the adapter: no per-example deadline, fewer
# examples.
settings_for_http = hypothesis.settings(deadline=None, max_examples=25)


# -- amounts --------------------------------------------------------------------------------------


@given(
    minor=st.integers(min_value=0, max_value=10**13),
    currency=st.sampled_from(["USD", "EUR", "JPY", "KWD", "GBP", "KRW"]),
)
def test_minor_units_survive_the_json_number_both_ways(minor: int, currency: str) -> None:
    wire = json.dumps({"amount": json_number(to_decimal(minor, currency))})
    back = json.loads(wire, parse_float=Decimal)["amount"]
    assert to_minor(back, currency) == minor
    assert "e" not in wire.lower()


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**6))
def test_sub_minor_amounts_are_refused_not_rounded(value: Decimal) -> None:
    cents = value.scaleb(2)
    if cents == cents.to_integral_value():
        assert to_minor(value, "USD") == int(cents)
    else:
        with pytest.raises(ValueError, match="decimal places"):
            to_minor(value, "USD")


def test_exponents() -> None:
    assert [exponent(c) for c in ("USD", "EUR", "JPY", "jpy", "KWD", "XYZ")] == [2, 2, 0, 0, 3, 2]


@settings_for_http
@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=6))
async def test_any_sequence_of_redemptions_keeps_the_ledger_exact(
    tmp_path_factory: pytest.TempPathFactory, amounts: list[int]
) -> None:
    key = key_file(tmp_path_factory.mktemp("key"))
    with running(GiftLocalSimulator()) as server:  # a fresh ledger for each example
        gl = GiftLocalProvider(settings(server.url, key), transport=server.transport)
        try:
            gift = await gl.validate(FIFTY, location=None)
            left = 5000
            for n, amount in enumerate(amounts):
                if amount <= left:
                    done = await gl.redeem(
                        gift.gift_id, amount=amount, location=None, idempotency_key=str(n)
                    )
                    left -= amount
                    assert done.amount == amount and after(done).balance == left
                else:
                    error = await refused(
                        gl.redeem(
                            gift.gift_id, amount=amount, location=None, idempotency_key=str(n)
                        )
                    )
                    assert error.code is ErrorCode.INSUFFICIENT_BALANCE
                    assert error.details == {"available": left, "currency": "USD"}
            assert server.balance(FIFTY) == left
        finally:
            await gl.aclose()


# -- answers in the shapes the real service may use ------------------------------------------------
# Gift Local publishes its request bodies (the "Gift Redemption - API Guidance" page) but no answer
# body: seed 003 names four answer fields, the rest is our guess. These tests feed the smallest
# answers the seed describes, and answers with fields nobody told us about.


def seed_answers(sim: Sim) -> None:
    """Have the simulator answer only what seed 003 describes (`Seed.answers`)."""
    sim.control.post("/_sim/seed", json={**DEFAULT_SEED, "answers": "seed"}).raise_for_status()


@OVER_BOTH
async def test_a_validate_answer_with_only_the_seed_named_fields_validates(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    """Acceptance: voucher.isRedeemable, voucherEligibleValue / voucherEligibleItemQuantity and
    voucherPresentValueDescription (plus voucherID, which redeem needs) are enough."""
    seed_answers(sim)
    money = await gl.validate(FIFTY, location=None)
    assert (money.type, money.currency, money.is_redeemable) == (GiftType.MONETARY, "USD", True)
    assert money.eligible_value == money.balance == 5000 and money.description == "$50.00 remaining"
    assert money.gift_id == sim.ledger()["gifts"][FIFTY.code]["voucher_id"]
    items = await gl.validate(COFFEE, location=None)
    assert (items.type, items.eligible_quantity, items.item_quantity) == (GiftType.ITEM, 3, 3)
    expired = await gl.validate(EXPIRED, location=None)
    assert not expired.is_redeemable and expired.eligible_value == 0
    assert expired.balance is None and "expired on" in expired.description


@OVER_BOTH
async def test_a_redeem_answered_without_an_amount_redeemed_the_amount_asked(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    seed_answers(sim)
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=1250, location=None, idempotency_key="r")
    assert redemption.amount == 1250 and redemption.gift_id == gift.gift_id
    assert redemption.transaction_id in sim.ledger()["redemptions"]
    assert after(redemption).eligible_value == 3750 and sim.balance(FIFTY) == 3750


@OVER_BOTH
async def test_a_reversal_answered_with_the_transaction_record_alone_is_reversed(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    """Acceptance: seed 003's reversal answer is "Redemption transaction record data"."""
    seed_answers(sim)
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=1250, location=None, idempotency_key="r")
    reversal = await gl.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    assert reversal.transaction_id == redemption.transaction_id and reversal.gift is None
    assert reversal.gift_id == gift.gift_id and reversal.amount == 1250
    assert sim.balance(FIFTY) == 5000
    assert sim.ledger()["redemptions"][redemption.transaction_id]["reversed"]


TX = "5f0c8a52-9d3e-4b1a-8c77-2e6f4a1b9d10"
GIFT_ID = "8c1e0c4e-1111-4000-8000-000000000001"
SEED_GIFT: Json = {
    "voucher": {"voucherID": GIFT_ID, "isRedeemable": True},
    "voucherEligibleValue": 25.5,
    "voucherEligibleItemQuantity": 0,
    "voucherPresentValueDescription": "$25.50 available",
}


@contextmanager
def answering(tmp_path: Path, *answers: Json | httpx.Response, **extra: Any) -> Iterator[Fed]:
    """An adapter whose HTTP calls get `answers` in turn (a JSON body with 200 unless a whole
    response is given): the shapes no simulator of ours would invent."""
    queue = list(answers)
    fed = Fed(provider=None, sent=[])

    def answer(request: httpx.Request) -> httpx.Response:
        fed.sent.append(json.loads(request.content))
        given = queue.pop(0)
        return given if isinstance(given, httpx.Response) else httpx.Response(200, json=given)

    fed.provider = GiftLocalProvider(
        settings("https://giftlocal.test", key_file(tmp_path), **extra),
        transport=httpx.MockTransport(answer),
    )
    yield fed


@dataclass
class Fed:
    provider: GiftLocalProvider | None
    sent: list[Json]

    @property
    def gl(self) -> GiftLocalProvider:
        assert self.provider is not None
        return self.provider


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(SEED_GIFT, id="seed-named-fields-only"),
        pytest.param(
            {
                "voucher": {
                    **SEED_GIFT["voucher"],
                    **{k: v for k, v in SEED_GIFT.items() if k != "voucher"},
                }
            },
            id="all-inside-voucher",
        ),
        pytest.param(
            {
                **SEED_GIFT,
                "voucher": {**SEED_GIFT["voucher"], "voucherCategory": {"id": 7}, "tags": []},
                "apiVersion": "2.3",
                "links": [{"rel": "self"}],
            },
            id="unknown-fields",
        ),
        pytest.param(
            {
                **SEED_GIFT,
                "voucher": {
                    **SEED_GIFT["voucher"],
                    "voucherType": 1,
                    "remainingValue": "lots",
                    "currencyCode": "dollars",
                    "validFrom": "soon",
                    "senderName": {"first": "Ana"},
                },
            },
            id="guessed-fields-in-other-forms",
        ),
        pytest.param(
            {**SEED_GIFT, "voucher": {**SEED_GIFT["voucher"], "voucherType": "Item"}},
            id="guessed-type-disagrees-with-the-seed-rule",
        ),
    ],
)
async def test_validate_reads_the_seed_fields_whatever_else_comes(
    tmp_path: Path, answer: Json
) -> None:
    with answering(tmp_path, answer) as fed:
        gift = await fed.gl.validate(FIFTY, location=None)
        await fed.gl.aclose()
    assert (gift.gift_id, gift.type, gift.currency) == (GIFT_ID, GiftType.MONETARY, "USD")
    assert gift.is_redeemable and gift.eligible_value == gift.balance == 2550
    assert gift.description == "$25.50 available" and gift.sender is None


async def test_fields_the_adapter_does_not_know_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answer = {
        **SEED_GIFT,
        "promotionTerms": "Mon-Fri",
        "voucher": {**SEED_GIFT["voucher"], "pin": 1},
    }
    with answering(tmp_path, answer, answer) as fed, caplog.at_level("INFO"):
        await fed.gl.validate(FIFTY, location=None)
        await fed.gl.validate(FIFTY, location=None)
        await fed.gl.aclose()
    noted = [r.getMessage() for r in caplog.records if "ignored fields" in r.getMessage()]
    assert noted == ["Gift Local gift: ignored fields pin, promotionTerms"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({**SEED_GIFT, "voucher": {"voucherID": GIFT_ID}}, "isRedeemable"),
        ({**SEED_GIFT, "voucherEligibleItemQuantity": 2}, "both"),
        ([SEED_GIFT], "isRedeemable"),
    ],
)
async def test_a_validate_answer_without_what_the_seed_promises_is_unavailable(
    tmp_path: Path, answer: Json, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with answering(tmp_path, answer) as fed:
        error = await refused(fed.gl.validate(FIFTY, location=None))
        await fed.gl.aclose()
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert why in caplog.text


async def test_a_gift_without_a_voucher_id_shows_but_is_not_redeemed(tmp_path: Path) -> None:
    """Redeem needs the voucherID validate gives (public guidance page); without it the gift is
    shown, and a redeem is refused before anything is sent."""
    answer = {**SEED_GIFT, "voucher": {"isRedeemable": True}}
    with answering(tmp_path, answer) as fed:
        gift = await fed.gl.validate(FIFTY, location=None)
        error = await refused(
            fed.gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="k")
        )
        await fed.gl.aclose()
    assert gift.is_redeemable and gift.eligible_value == 2550
    assert error.code is ErrorCode.NOT_REDEEMABLE and "voucherID" in error.message
    assert len(fed.sent) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"redemptionTransaction": {"redemptionTransactionID": TX}}, id="id-only"),
        pytest.param({"redemptionTransactionID": TX}, id="id-at-top-level"),
        pytest.param(
            {**SEED_GIFT, "redemptionTransaction": {"redemptionTransactionID": TX, "fee": 0}},
            id="gift-and-id-and-unknown",
        ),
        pytest.param(
            {"redemptionTransaction": {"redemptionTransactionID": TX, "amount": "12.50"}},
            id="amount-as-text",
        ),
    ],
)
async def test_a_redeem_answer_with_its_transaction_id_is_a_redemption(
    tmp_path: Path, answer: Json
) -> None:
    with answering(tmp_path, SEED_GIFT, answer) as fed:
        await fed.gl.validate(FIFTY, location=None)
        redemption = await fed.gl.redeem(GIFT_ID, amount=1250, location=None, idempotency_key="k")
        await fed.gl.aclose()
    assert (redemption.transaction_id, redemption.gift_id, redemption.amount) == (TX, GIFT_ID, 1250)
    assert fed.sent[1] == {"voucherID": GIFT_ID, "amount": 12.5}


async def test_a_redeem_answer_names_the_amount_gift_local_took(tmp_path: Path) -> None:
    answer = {**SEED_GIFT, "redemptionTransaction": {"redemptionTransactionID": 42, "amount": 10}}
    with answering(tmp_path, SEED_GIFT, answer) as fed:
        await fed.gl.validate(FIFTY, location=None)
        redemption = await fed.gl.redeem(GIFT_ID, amount=1250, location=None, idempotency_key="k")
        await fed.gl.aclose()
    assert (redemption.transaction_id, redemption.amount) == ("42", 1000)


async def test_a_redeem_answer_without_a_transaction_id_is_unknown_outcome(tmp_path: Path) -> None:
    """Applied, but the lane could never reverse it: the gift flow settles it by the balance."""
    with answering(tmp_path, SEED_GIFT) as fed:
        error = await refused(
            fed.gl.redeem(GIFT_ID, amount=100, location=None, idempotency_key="k")
        )
        await fed.gl.aclose()
    assert error.code is ErrorCode.UNKNOWN_OUTCOME and "transaction id" in error.message


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"redemptionTransactionID": TX, "isReversed": True}, id="record"),
        pytest.param({"redemptionTransaction": {"redemptionTransactionID": TX}}, id="nested"),
        pytest.param({}, id="empty-object"),
        pytest.param(httpx.Response(204), id="no-content"),
        pytest.param(httpx.Response(200, text="OK"), id="not-json"),
        pytest.param({"result": {"state": "Reversed"}, "traceId": "x"}, id="unknown-only"),
    ],
)
async def test_a_reversal_answered_2xx_is_reversed_whatever_its_body(
    tmp_path: Path, answer: Json | httpx.Response
) -> None:
    with answering(tmp_path, answer) as fed:
        reversal = await fed.gl.reverse(TX, location=None, idempotency_key="k")
        await fed.gl.aclose()
    assert reversal.transaction_id == TX and reversal.gift is None
    assert fed.sent == [{"redemptionTransactionID": TX}]


# Any JSON a provider could send: the decoders' inputs.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
UNKNOWN_NAMES = st.from_regex(r"zz[A-Za-z]{0,8}", fullmatch=True)


@settings_for_http
@given(
    top=st.dictionaries(UNKNOWN_NAMES, JSON_VALUES, max_size=4),
    inner=st.dictionaries(UNKNOWN_NAMES, JSON_VALUES, max_size=4),
)
async def test_unknown_fields_never_change_what_a_seed_answer_says(
    tmp_path_factory: pytest.TempPathFactory, top: Json, inner: Json
) -> None:
    answer = {**SEED_GIFT, **top, "voucher": {**SEED_GIFT["voucher"], **inner}}
    with answering(tmp_path_factory.mktemp("k"), SEED_GIFT, answer) as fed:
        plain = await fed.gl.validate(FIFTY, location=None)
        noisy = await fed.gl.validate(FIFTY, location=None)
        await fed.gl.aclose()
    assert noisy == plain


@settings_for_http
@given(body=JSON_VALUES)
async def test_any_answer_to_a_write_that_succeeded_is_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, body: Json
) -> None:
    """Decoders: any 2xx JSON is a gift or `provider_unavailable` (validate), a redemption or
    `unknown_outcome` (redeem without an id), and always a reversal."""
    with answering(tmp_path_factory.mktemp("k"), body, body, body) as fed:
        validated = await failure(fed.gl.validate(FIFTY, location=None))
        assert validated in (None, ErrorCode.PROVIDER_UNAVAILABLE)
        redeemed = await failure(
            fed.gl.redeem(GIFT_ID, amount=100, location=None, idempotency_key="k")
        )
        assert redeemed in (None, ErrorCode.UNKNOWN_OUTCOME)
        assert (await fed.gl.reverse(TX, location=None, idempotency_key="v")).transaction_id == TX
        await fed.gl.aclose()


# -- the optional inputs: POS ticket data and validation options ----------------------------------

TICKET = OrderSnapshot(
    order_id="A1",
    lines=[
        OrderLine(id="1", name="Latte", quantity=2, amount=950, sku="0001"),
        OrderLine(id="2", name="Bagel", quantity=1, amount=300),
    ],
    subtotal=1250,
    tax=100,
    total=1350,
    currency="USD",
)


async def test_validate_sends_the_open_order_as_the_pos_ticket(
    gl: GiftLocalProvider, sim: Sim
) -> None:
    gift = await gl.validate(LEADING_ZERO, location=None, ticket=TICKET)
    assert gift.balance == 3000
    body = json.loads(sim.sent(VALIDATE)[0]["body"])
    assert body["voucherCode"] == "012345678901"
    assert body[TICKET_FIELD] == {
        "ticketID": "A1",
        "currencyCode": "USD",
        "subtotal": 12.5,
        "tax": 1,
        "total": 13.5,
        "items": [
            {"lineID": "1", "description": "Latte", "sku": "0001", "quantity": 2, "amount": 9.5},
            {"lineID": "2", "description": "Bagel", "quantity": 1, "amount": 3},
        ],
    }


async def test_validation_options_go_with_validate_and_redeem_only(make: Make, sim: Sim) -> None:
    options = {"checkTerms": True, "channel": "pos", "level": 2}
    gl = make(validation_options=options)
    gift = await gl.validate(FIFTY, location=None)
    redemption = await gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="r")
    await gl.reverse(redemption.transaction_id, location=None, idempotency_key="v")
    await gl.check_health()
    bodies = {p: [json.loads(r["body"]) for r in sim.sent(p)] for p in (VALIDATE, REDEEM, REVERSE)}
    validate, probe = bodies[VALIDATE]
    assert validate[VALIDATION_OPTIONS_FIELD] == options
    assert bodies[REDEEM][0][VALIDATION_OPTIONS_FIELD] == options
    assert VALIDATION_OPTIONS_FIELD not in bodies[REVERSE][0]
    assert VALIDATION_OPTIONS_FIELD not in probe


class Documented(GiftLocalSimulator):
    """Refuses what the public guidance page does not show: a code as text, a ticket."""

    def validate(self, request: Request) -> Response:
        body = json.loads(request.body)
        if isinstance(body.get("voucherCode"), str) or TICKET_FIELD in body:
            raise ApiError(
                400, {"message": "The request is invalid.", "errorCode": "ValidationFailed"}
            )
        return super().validate(request)


async def test_a_service_refusing_our_guesses_gets_the_documented_form(tmp_path: Path) -> None:
    with running(Documented()) as strict:
        gl = GiftLocalProvider(settings(strict.url, key_file(tmp_path)), transport=strict.transport)
        first = await gl.validate(LEADING_ZERO, location=None, ticket=TICKET)
        again = await gl.validate(FIFTY, location=None, ticket=TICKET)
        await gl.aclose()
        bodies = [json.loads(r["body"]) for r in strict.sent(VALIDATE)]
    assert (first.balance, again.balance) == (3000, 5000)
    assert bodies == [
        {"voucherCode": "012345678901", TICKET_FIELD: bodies[0][TICKET_FIELD]},
        {"voucherCode": 12345678901},  # the service proved it reads the code as a number
        {"voucherCode": 100000000001},  # kept: no second refusal per call
    ]
