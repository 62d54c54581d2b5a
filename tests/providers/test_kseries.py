"""The K-Series card adapter against the card API simulator: every operation, every documented
error in the lane's vocabulary, and the money-safety cases (nothing applied on 503, applied
exactly once when the answer is lost, bounded by the timeout). In-process for speed; the tests
marked OVER_BOTH or OVER_LOOPBACK also run over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.errors import ErrorCode, ProviderError
from agent.providers.cards import CardProvider, CardStatus, RedemptionStatus
from agent.providers.kseries import (
    KSeriesCardProvider,
    normalise_card_number,
)
from agent.providers.settings import KSeriesSettings
from simulators.kseries import API_KEY, CardSimulator
from simulators.server import Request, Response
from tests.served import OVER_BOTH, OVER_LOOPBACK, Carrier, Served, served

CREDENTIAL = "kseries_api_key"

CARD = "6006490000000001"  # 50.00 USD, active, expires 2099-12-31
LOW = "6006490000000002"  # 12.50 USD
BLOCKED = "6006490000000003"
EXPIRED = "6006490000000004"
EUR = "6006490000000005"


@pytest.fixture
def running(carrier: Carrier) -> Iterator[Served]:
    with served(CardSimulator(), carrier) as running:
        yield running


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kseries.key"
    path.write_text(API_KEY + "\n", encoding="utf-8")
    return path


def make_settings(running: Served, key_file: Path, **overrides: Any) -> KSeriesSettings:
    values: dict[str, Any] = {
        "base_url": running.url,
        "api_key_file": key_file,
        "payment_method_code": "GIFTCARD",
        "timeout": 2.0,
    }
    return KSeriesSettings.model_validate(values | overrides)


@pytest.fixture
async def cards(running: Served, key_file: Path) -> AsyncIterator[CardProvider]:
    provider: CardProvider = KSeriesCardProvider(
        make_settings(running, key_file), transport=running.transport
    )
    yield provider
    await provider.aclose()


async def refused(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    return caught.value


# -- settings and construction --------------------------------------------------------------------


def test_settings_need_the_payment_method_code_and_default_the_currency(
    running: Served, key_file: Path
) -> None:
    settings_ = make_settings(running, key_file)
    assert (settings_.payment_method_code, settings_.currency) == ("GIFTCARD", "USD")
    with pytest.raises(ValidationError, match="payment_method_code"):
        KSeriesSettings.model_validate({"base_url": running.url})
    with pytest.raises(ValidationError, match="currency"):
        make_settings(running, key_file, currency="usd")
    with pytest.raises(ValidationError, match="paymentMethodCode"):
        make_settings(running, key_file, paymentMethodCode="X")


def test_a_missing_key_is_a_clear_error_at_construction(
    running: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    no_key = KSeriesSettings.model_validate(
        {"base_url": running.url, "payment_method_code": "GIFTCARD"}
    )
    with pytest.raises(ProviderError) as caught:
        KSeriesCardProvider(no_key)
    assert caught.value.code == ErrorCode.NOT_CONFIGURED
    assert f"LoadCredential={CREDENTIAL}" in caught.value.message
    with pytest.raises(ProviderError) as unreadable:
        KSeriesCardProvider(make_settings(running, tmp_path / "absent.key"))
    assert unreadable.value.code == ErrorCode.NOT_CONFIGURED


async def test_the_key_comes_from_the_systemd_credential(
    running: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / CREDENTIAL).write_text(API_KEY, encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    provider = KSeriesCardProvider(
        KSeriesSettings.model_validate({"base_url": running.url, "payment_method_code": "GC"}),
        transport=running.transport,
    )
    assert (await provider.balance(CARD)).balance == 5000
    assert provider.payment_method_code == "GC"
    await provider.aclose()


# -- balance --------------------------------------------------------------------------------------


@OVER_BOTH
async def test_balance_of_an_active_card(cards: CardProvider, running: Served) -> None:
    card = await cards.balance("6006 4900-0000 0001")
    assert (card.balance, card.currency, card.status) == (5000, "USD", CardStatus.ACTIVE)
    assert card.is_redeemable and str(card.expires_on) == "2099-12-31"
    assert card.masked_number == "••••••••••••0001"
    assert running.sent()[0]["path"] == "/v1/cards/lookup"
    assert json.loads(running.sent()[0]["body"]) == {"number": CARD}


async def test_an_nfc_card_is_known_by_its_uid(cards: CardProvider, running: Served) -> None:
    card = await cards.balance("04a1b2c3d4e5f6")
    assert (card.balance, card.card_last4) == (2000, "E5F6")
    assert json.loads(running.sent()[0]["body"]) == {"number": "04A1B2C3D4E5F6"}


async def test_blocked_and_expired_cards_are_found_but_not_redeemable(cards: CardProvider) -> None:
    blocked, expired = await cards.balance(BLOCKED), await cards.balance(EXPIRED)
    assert (blocked.status, blocked.is_redeemable) == (CardStatus.BLOCKED, False)
    assert (expired.status, expired.is_redeemable) == (CardStatus.EXPIRED, False)
    assert expired.balance == 10000


async def test_unknown_card_is_not_found(cards: CardProvider) -> None:
    error = await refused(cards.balance("6006499999999999"))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "Card not found")


async def test_a_malformed_card_number_is_refused_before_any_call(
    cards: CardProvider, running: Served
) -> None:
    for bad in (
        "",
        "1234",
        "6006x49000000001",
        "1" * 21,
        "6006 4900 0000 0001 ✓",
        "6006490000000ﬀ",
    ):
        error = await refused(cards.balance(bad))
        assert error.code == ErrorCode.INVALID_REQUEST
    assert running.sent() == []


# -- redeem ---------------------------------------------------------------------------------------


@OVER_BOTH
async def test_redeem_debits_the_card(cards: CardProvider, running: Served) -> None:
    paid = await cards.redeem(CARD, amount=1250, currency="USD", reference="s1:l1:o7:r2")
    assert (paid.amount, paid.currency, paid.balance_after) == (1250, "USD", 3750)
    assert (paid.reference, paid.status, paid.card_last4) == (
        "s1:l1:o7:r2",
        RedemptionStatus.COMPLETED,
        "0001",
    )
    assert json.loads(running.sent()[0]["body"]) == {
        "card_number": CARD,
        "amount": 1250,
        "currency": "USD",
        "reference": "s1:l1:o7:r2",
    }
    assert running.ledger()["cards"][CARD]["balance"] == 3750


async def test_redeem_again_with_the_same_reference_debits_once(
    cards: CardProvider, running: Served
) -> None:
    first = await cards.redeem(CARD, amount=1000, currency="USD", reference="r1")
    again = await cards.redeem(CARD, amount=1000, currency="USD", reference="r1")
    assert again == first
    assert list(running.ledger()["redemptions"]) == [first.transaction_id]
    assert running.ledger()["cards"][CARD]["balance"] == 4000


async def test_a_reference_reused_for_another_amount_is_invalid(cards: CardProvider) -> None:
    await cards.redeem(CARD, amount=1000, currency="USD", reference="r1")
    error = await refused(cards.redeem(CARD, amount=500, currency="USD", reference="r1"))
    assert error.code == ErrorCode.INVALID_REQUEST
    assert "already used" in error.message


async def test_insufficient_balance_says_what_is_available(
    cards: CardProvider, running: Served
) -> None:
    error = await refused(cards.redeem(LOW, amount=3000, currency="USD", reference="r1"))
    assert error.code == ErrorCode.INSUFFICIENT_BALANCE
    assert error.message == "Insufficient funds: 12.50 USD available"
    assert error.details == {"available": 1250, "currency": "USD"}
    # The POS offers the partial payment; it goes through.
    partial = await cards.redeem(LOW, amount=1250, currency="USD", reference="r1")
    assert partial.balance_after == 0
    assert running.ledger()["cards"][LOW]["balance"] == 0


@pytest.mark.parametrize(
    ("card", "currency", "code", "message"),
    [
        (BLOCKED, "USD", ErrorCode.NOT_REDEEMABLE, "Card is blocked"),
        (EXPIRED, "USD", ErrorCode.EXPIRED, "Card expired on 2020-12-31"),
        (EUR, "USD", ErrorCode.NOT_REDEEMABLE, "Card is in EUR, not USD"),
        ("6006499999999999", "USD", ErrorCode.NOT_FOUND, "Card not found"),
    ],
)
async def test_cards_that_cannot_pay_map_to_the_vocabulary(
    cards: CardProvider,
    running: Served,
    card: str,
    currency: str,
    code: ErrorCode,
    message: str,
) -> None:
    error = await refused(cards.redeem(card, amount=100, currency=currency, reference="r1"))
    assert (error.code, error.message, error.details) == (code, message, None)
    assert running.ledger()["redemptions"] == {}


async def test_invalid_amounts_are_refused_by_the_api_as_invalid_requests(
    cards: CardProvider, running: Served
) -> None:
    for amount in (0, -5):
        error = await refused(cards.redeem(CARD, amount=amount, currency="USD", reference="r1"))
        assert error.code == ErrorCode.INVALID_REQUEST and "amount" in error.message
    assert running.ledger()["redemptions"] == {}


# -- reverse and find -----------------------------------------------------------------------------


async def test_reverse_restores_the_value_once(cards: CardProvider, running: Served) -> None:
    paid = await cards.redeem(CARD, amount=2000, currency="USD", reference="r1")
    back = await cards.reverse(paid.transaction_id, reference="r1:void")
    assert (back.transaction_id, back.amount, back.balance_after) == (
        paid.transaction_id,
        2000,
        5000,
    )
    assert back.masked_number == "••••••••••••0001"
    assert await cards.reverse(paid.transaction_id, reference="r1:void") == back
    error = await refused(cards.reverse(paid.transaction_id, reference="other"))
    assert error.code == ErrorCode.ALREADY_REVERSED
    assert error.message == f"Redemption {paid.transaction_id} was already reversed"
    assert running.ledger()["cards"][CARD]["balance"] == 5000
    assert len(running.ledger()["reversals"]) == 1


async def test_reverse_of_an_unknown_transaction(cards: CardProvider) -> None:
    error = await refused(cards.reverse("red_unknown", reference="v1"))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "Redemption not found")
    # An id with URL syntax in it stays one path segment.
    error = await refused(cards.reverse("../cards/lookup", reference="v1"))
    assert error.code == ErrorCode.NOT_FOUND
    error = await refused(cards.reverse("", reference="v1"))
    assert error.code == ErrorCode.INVALID_REQUEST


async def test_find_redemption_by_reference(cards: CardProvider) -> None:
    assert await cards.find_redemption("r1") is None
    paid = await cards.redeem(CARD, amount=700, currency="USD", reference="r1")
    assert await cards.find_redemption("r1") == paid
    await cards.reverse(paid.transaction_id, reference="r1:void")
    found = await cards.find_redemption("r1")
    assert found is not None and found.status is RedemptionStatus.REVERSED
    assert found.reversal_id is not None


# -- auth, health, faults -------------------------------------------------------------------------


async def test_a_wrong_key_is_not_configured(running: Served, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("nope", encoding="utf-8")
    provider = KSeriesCardProvider(make_settings(running, wrong), transport=running.transport)
    error = await refused(provider.balance(CARD))
    assert (error.code, error.message) == (ErrorCode.NOT_CONFIGURED, "Invalid API key")
    ok, detail = await provider.check_health()
    assert not ok and "Invalid API key" in detail
    await provider.aclose()


async def test_health_is_an_authenticated_read(cards: CardProvider, running: Served) -> None:
    ok, detail = await cards.check_health()
    assert ok and "reachable" in detail
    assert [(r["method"], r["path"]) for r in running.sent()] == [("GET", "/v1/redemptions")]


async def test_health_of_an_unreachable_backend(key_file: Path) -> None:
    with served(CardSimulator(), "loopback") as gone:
        settings_ = make_settings(gone, key_file)
    provider = KSeriesCardProvider(settings_)
    ok, detail = await provider.check_health()
    assert not ok and "provider_unavailable" in detail
    await provider.aclose()


async def test_rate_limited_is_provider_unavailable(cards: CardProvider, running: Served) -> None:
    running.arm(path="/v1/redemptions", kind="error", status=429)
    error = await refused(cards.redeem(CARD, amount=100, currency="USD", reference="r1"))
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert running.ledger()["redemptions"] == {}


async def test_an_undocumented_refusal_is_internal_with_the_backend_words(
    cards: CardProvider, running: Served
) -> None:
    running.arm(path="/v1/redemptions", kind="error", status=409)
    error = await refused(cards.redeem(CARD, amount=100, currency="USD", reference="r1"))
    assert (error.code, error.message) == (ErrorCode.INTERNAL, "injected fault")
    assert running.ledger()["redemptions"] == {}


@OVER_BOTH
async def test_503_applies_nothing_and_is_provider_unavailable(
    cards: CardProvider, running: Served
) -> None:
    running.arm(path="/v1/redemptions", kind="error", status=503)
    error = await refused(cards.redeem(CARD, amount=100, currency="USD", reference="r1"))
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert running.ledger()["redemptions"] == {}
    assert running.ledger()["cards"][CARD]["balance"] == 5000


@OVER_BOTH
async def test_a_lost_answer_is_unknown_outcome_and_the_debit_happened_once(
    cards: CardProvider, running: Served
) -> None:
    running.arm(path="/v1/redemptions", method="POST", kind="drop_after_apply")
    error = await refused(cards.redeem(CARD, amount=1500, currency="USD", reference="r1"))
    assert error.code == ErrorCode.UNKNOWN_OUTCOME
    applied = running.ledger()["redemptions"]
    assert len(applied) == 1 and running.ledger()["cards"][CARD]["balance"] == 3500
    # Resolved by reference, or by sending the very same redemption again: still one debit.
    found = await cards.find_redemption("r1")
    assert found is not None and found.transaction_id in applied
    again = await cards.redeem(CARD, amount=1500, currency="USD", reference="r1")
    assert again.transaction_id == found.transaction_id
    assert running.ledger()["cards"][CARD]["balance"] == 3500


async def test_a_lost_reversal_answer_is_unknown_outcome_and_restores_once(
    cards: CardProvider, running: Served
) -> None:
    paid = await cards.redeem(CARD, amount=1500, currency="USD", reference="r1")
    running.arm(path=r"/v1/redemptions/[^/]+/reversal", kind="drop_after_apply")
    error = await refused(cards.reverse(paid.transaction_id, reference="r1:void"))
    assert error.code == ErrorCode.UNKNOWN_OUTCOME
    again = await cards.reverse(paid.transaction_id, reference="r1:void")
    assert again.balance_after == 5000
    assert running.ledger()["cards"][CARD]["balance"] == 5000


@OVER_LOOPBACK
async def test_a_backend_that_never_answers_is_bounded_by_the_timeout(
    running: Served, key_file: Path
) -> None:
    provider = KSeriesCardProvider(
        make_settings(running, key_file, timeout=0.3), transport=running.transport
    )
    running.arm(kind="timeout", count=2)  # held for 60 s unless the client gives up
    async with asyncio.timeout(10):
        write = await refused(provider.redeem(CARD, amount=100, currency="USD", reference="r1"))
        read = await refused(provider.balance(CARD))
    assert (write.code, read.code) == (ErrorCode.UNKNOWN_OUTCOME, ErrorCode.PROVIDER_UNAVAILABLE)
    assert running.ledger()["redemptions"] == {}
    await provider.aclose()


# -- tolerant reading (issue 12) ------------------------------------------------------------------
#
# Seed 000 names one answer field, the card's balance; the rest of the card API is our design. A
# real service that answers with less, or more, must not turn a debit it made into
# `unknown_outcome`, nor a card it found into an error.

EXTRA = {"loyaltyTier": "gold", "links": {"self": "/x"}, "balance_cents": 1}
"""Fields the adapter has never heard of, as a real service may add them."""


class Minimal(CardSimulator):
    """Answers with only what each read needs: a card's balance (seed 000), a debit's `id`,
    nothing at all for a reversal (its 201 says it all); the state changes as usual."""

    def lookup(self, request: Request) -> Response:
        answer = super().lookup(request)
        if answer.status != 200:
            return answer
        return Response(200, {"balance": answer.body["balance"]})

    def redeem(self, request: Request) -> Response:
        answer = super().redeem(request)
        return Response(answer.status, {"id": answer.body["id"]}) if answer.status < 300 else answer

    def reverse(self, request: Request) -> Response:
        answer = super().reverse(request)
        return Response(answer.status, {}) if answer.status < 300 else answer


class Extra(CardSimulator):
    """Every answer as documented plus fields the adapter does not know."""

    def lookup(self, request: Request) -> Response:
        answer = super().lookup(request)
        return Response(answer.status, {**answer.body, **EXTRA})

    def redeem(self, request: Request) -> Response:
        answer = super().redeem(request)
        return Response(answer.status, {**answer.body, **EXTRA})

    def reverse(self, request: Request) -> Response:
        answer = super().reverse(request)
        return Response(answer.status, {**answer.body, **EXTRA})


async def test_minimal_answers_read_as_successes_completed_from_the_request(
    key_file: Path,
) -> None:
    with served(Minimal()) as running:
        provider = KSeriesCardProvider(
            make_settings(running, key_file), transport=running.transport
        )
        card = await provider.balance(CARD)
        paid = await provider.redeem(CARD, amount=1250, currency="USD", reference="r1")
        back = await provider.reverse(paid.transaction_id, reference="r1:void")
        balance = running.ledger()["cards"][CARD]["balance"]
        await provider.aclose()
    assert (card.balance, card.currency, card.status, card.card_last4) == (
        5000,
        "USD",  # the lane's currency
        CardStatus.ACTIVE,  # unsaid: the debit decides
        "0001",  # from the number the lane sent
    )
    assert (paid.amount, paid.currency, paid.reference, paid.card_last4) == (
        1250,
        "USD",
        "r1",
        "0001",
    )
    assert (paid.balance_after, paid.status) == (None, RedemptionStatus.COMPLETED)
    assert (back.transaction_id, back.reference, back.reversal_id) == (
        paid.transaction_id,
        "r1:void",
        None,
    )
    assert (back.amount, back.balance_after, back.masked_number) == (None, None, None)
    assert balance == 5000


async def test_unknown_fields_are_ignored_and_logged_by_name(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.providers.answers")
    with served(Extra()) as running:
        provider = KSeriesCardProvider(
            make_settings(running, key_file), transport=running.transport
        )
        card = await provider.balance(CARD)
        paid = await provider.redeem(CARD, amount=100, currency="USD", reference="r1")
        back = await provider.reverse(paid.transaction_id, reference="r1:void")
        await provider.aclose()
    assert (card.balance, paid.balance_after, back.balance_after) == (5000, 4900, 5000)
    assert "_Card has a field the agent does not read: loyaltyTier" in caplog.text
    assert "gold" not in caplog.text  # names only: values may be personal data


class Garbled(CardSimulator):
    """A backend that applies the debit but answers without its id (and with the whole card
    number where the last four belong), and a lookup without the balance."""

    def redeem(self, request: Request) -> Response:
        answer = super().redeem(request)
        body = {k: v for k, v in answer.body.items() if k != "id"}
        return Response(answer.status, {**body, "card_last4": CARD})

    def lookup(self, request: Request) -> Response:
        answer = super().lookup(request)
        return Response(answer.status, {k: v for k, v in answer.body.items() if k != "balance"})


async def test_a_debit_the_answer_does_not_name_is_unknown_outcome(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with served(Garbled()) as running:
        provider = KSeriesCardProvider(
            make_settings(running, key_file), transport=running.transport
        )
        write = await refused(provider.redeem(CARD, amount=100, currency="USD", reference="r1"))
        read = await refused(provider.balance(CARD))
        assert running.ledger()["cards"][CARD]["balance"] == 4900
        await provider.aclose()
    assert (write.code, read.code) == (ErrorCode.UNKNOWN_OUTCOME, ErrorCode.PROVIDER_UNAVAILABLE)
    assert CARD not in write.message and CARD not in caplog.text


class Unnamed(CardSimulator):
    """A find by reference whose debit says neither its card nor its amount."""

    def find(self, request: Request) -> Response:
        answer = super().find(request)
        return Response(200, {"data": [{"id": d["id"]} for d in answer.body["data"]]})


async def test_a_found_debit_without_its_amount_is_no_answer(key_file: Path) -> None:
    with served(Unnamed()) as running:
        provider = KSeriesCardProvider(
            make_settings(running, key_file), transport=running.transport
        )
        await provider.redeem(CARD, amount=100, currency="USD", reference="r1")
        error = await refused(provider.find_redemption("r1"))
        assert await provider.find_redemption("r2") is None
        await provider.aclose()
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE


class Accepted(CardSimulator):
    """A backend that answers a debit it applied with 202, which our design never uses."""

    def redeem(self, request: Request) -> Response:
        return Response(202, super().redeem(request).body)


async def test_any_success_status_with_the_debit_id_is_a_success(key_file: Path) -> None:
    with served(Accepted()) as running:
        provider = KSeriesCardProvider(
            make_settings(running, key_file), transport=running.transport
        )
        paid = await provider.redeem(CARD, amount=100, currency="USD", reference="r1")
        await provider.aclose()
    assert (paid.amount, paid.balance_after) == (100, 4900)


# -- secrecy --------------------------------------------------------------------------------------


@OVER_BOTH  # the HTTP stack's own logs, too
async def test_card_numbers_never_reach_the_logs(
    cards: CardProvider, running: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running.arm(path="/v1/cards/lookup", kind="error", status=503)
    await refused(cards.balance(CARD))
    paid = await cards.redeem(CARD, amount=100, currency="USD", reference="r1")
    await refused(cards.redeem(LOW, amount=9999, currency="USD", reference="r2"))
    await cards.reverse(paid.transaction_id, reference="v1")
    assert "••••••••••••0001" in caplog.text
    for number in (CARD, LOW):
        assert number not in caplog.text


@settings(max_examples=25, deadline=None)
@given(
    number=st.text("0123456789abcdefABCDEF", min_size=8, max_size=20),
    separators=st.lists(st.sampled_from(["", " ", "-"]), min_size=20, max_size=20),
)
def test_any_grouping_of_a_card_number_reaches_the_backend_as_its_characters(
    number: str, separators: list[str]
) -> None:
    grouped = "".join(c + s for c, s in zip(number, separators, strict=False))
    assert normalise_card_number(f" {grouped} ") == number.upper()
