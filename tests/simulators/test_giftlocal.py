"""The Gift Local simulator enforces the documented contract over real loopback HTTP: the whole
API key as Authorization, exact field names, one voucher and at most one location per call,
validate succeeding for unredeemable gifts, exact decimal amounts, and a ledger that moves only
on a successful redeem or reversal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    voucher_code,
)
from simulators.server import serve

Json = Any


@pytest.fixture(scope="module")
def server() -> Iterator[httpx.Client]:
    """One simulator for the module, and one client to it (its base_url is the simulator)."""
    with serve(GiftLocalSimulator()) as running, httpx.Client(base_url=running.url) as client:
        yield client


@pytest.fixture
def sim(server: httpx.Client) -> httpx.Client:
    server.post("/_sim/reset").raise_for_status()
    return server


def post(
    sim: httpx.Client, path: str, body: object, key: str | None = BAKERY_KEY
) -> httpx.Response:
    headers = {} if key is None else {"Authorization": key}
    return sim.post(path, json=body, headers=headers)


def ledger(sim: httpx.Client) -> Json:
    return sim.get("/_sim/ledger").json()


def validate(sim: httpx.Client, code: str, key: str = BAKERY_KEY, **location: str) -> Json:
    answer = post(sim, VALIDATE, {"voucherCode": int(code), **location}, key)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize(
    "key", [None, "", f"Bearer {BAKERY_KEY}", "gl-sim-wrong", BAKERY_KEY.upper()]
)
def test_anything_but_the_whole_key_is_401(sim: httpx.Client, key: str | None) -> None:
    before = ledger(sim)
    for path, body in [(VALIDATE, {"voucherCode": 100000000001}), (REDEEM, {"amount": 1})]:
        answer = post(sim, path, body, key)
        assert answer.status_code == 401
        assert answer.json() == {"message": "Authorization has been denied for this request."}
    assert ledger(sim) == before


def test_unknown_path_and_wrong_method_answer_in_the_error_shape(sim: httpx.Client) -> None:
    answer = post(sim, "/api/integration/redemption/validate", {"voucherCode": 1})
    assert answer.status_code == 404 and "message" in answer.json()
    answer = sim.get(VALIDATE, headers={"Authorization": BAKERY_KEY})
    assert answer.status_code == 405 and "message" in answer.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"voucherCodee": 100000000001}, "voucherCodee"),
        ({"voucher_code": 100000000001}, "voucher_code"),
        ({"voucherCode": 100000000001, "organizationId": BAKERY_MAIN}, "organizationId"),
        ({"voucherCode": 100000000001, "ticket": {}}, "ticket"),
        ({"voucherCode": 100000000001, "organizationID": "main"}, "organizationID"),
        ({"voucherCode": True}, "voucherCode"),
        ({"voucherCode": 100000000001, "voucherPublicToken": "gl-bakery-50"}, "exactly one"),
        ({}, "exactly one"),
        (
            {
                "voucherCode": 100000000001,
                "organizationID": BAKERY_MAIN,
                "pointOfSaleSystemOrganizationIdentifier": "bakery-main",
            },
            "not both",
        ),
        ([100000000001], "JSON object"),
    ],
)
def test_validate_refuses_wrong_field_names_and_shapes(
    sim: httpx.Client, body: object, field: str
) -> None:
    answer = post(sim, VALIDATE, body)
    assert answer.status_code == 400
    error = answer.json()
    assert error["errorCode"] == "ValidationFailed" and field in error["message"]


def test_body_that_is_not_json_is_400(sim: httpx.Client) -> None:
    answer = sim.post(VALIDATE, content=b"{voucherCode:", headers={"Authorization": BAKERY_KEY})
    assert answer.status_code == 400 and answer.json()["errorCode"] == "ValidationFailed"


def test_a_redeemable_monetary_gift_validates_with_its_eligible_value(sim: httpx.Client) -> None:
    answer = validate(sim, "100000000001")
    voucher = answer["voucher"]
    assert voucher["voucherType"] == "Monetary" and voucher["currencyCode"] == "USD"
    assert voucher["isRedeemable"] is True and voucher["redeemableStatus"] == "Redeemable"
    assert voucher["remainingValue"] == 50.0 and answer["voucherEligibleValue"] == 50.0
    assert answer["voucherEligibleItemQuantity"] == 0
    assert answer["voucherPresentValueDescription"] == "$50.00 remaining"
    assert voucher["senderName"] == "Maya Chen" and voucher["recipientName"] == "Sam Rivera"


@pytest.mark.parametrize(
    "body",
    [
        {"voucherCode": 100000000001},
        {"voucherCode": "100000000001"},
        {"voucherPublicToken": "gl-bakery-50"},
        {"voucherPublicToken": "https://giftlocal.com/g/gl-bakery-50"},
        {"voucherPublicToken": "https://www.giftlocal.com/g/gl-bakery-50/"},
    ],
)
def test_code_as_number_or_string_and_token_or_whole_url_find_the_gift(
    sim: httpx.Client, body: Json
) -> None:
    answer = post(sim, VALIDATE, body)
    assert answer.status_code == 200
    voucher_id = ledger(sim)["gifts"]["100000000001"]["voucher_id"]
    assert answer.json()["voucher"]["voucherID"] == voucher_id


def test_a_code_with_leading_zero_sent_as_a_number_is_found(sim: httpx.Client) -> None:
    assert validate(sim, "012345678901")["voucher"]["remainingValue"] == 30.0


@given(st.from_regex(r"[0-9]{12}", fullmatch=True))
def test_both_code_encodings_name_the_same_12_digits(code: str) -> None:
    assert voucher_code(int(code)) == voucher_code(code) == code


@pytest.mark.parametrize("value", [-1, 10**12, "12345678901", "1234567890123", "12345678901a"])
def test_a_code_that_is_not_12_digits_is_refused(sim: httpx.Client, value: int | str) -> None:
    answer = post(sim, VALIDATE, {"voucherCode": value})
    assert answer.status_code == 400 and "12-digit" in answer.json()["message"]


def test_unknown_and_other_accounts_gifts_are_404(sim: httpx.Client) -> None:
    for body, key in [
        ({"voucherCode": 999999999999}, BAKERY_KEY),
        ({"voucherPublicToken": "nope"}, BAKERY_KEY),
        ({"voucherCode": 100000000001, "organizationID": HARBOR_PIER}, HARBOR_KEY),
    ]:
        answer = post(sim, VALIDATE, body, key)
        assert answer.status_code == 404
        assert answer.json() == {"message": "Gift not found.", "errorCode": "VoucherNotFound"}


@pytest.mark.parametrize(
    ("code", "status", "text"),
    [
        ("100000000003", "Expired", "expired on"),
        ("100000000004", "FullyRedeemed", "fully redeemed"),
        ("100000000005", "NotYetValid", "valid from"),
        ("100000000006", "Voided", "voided"),
    ],
)
def test_unredeemable_gifts_validate_with_the_reason_and_nothing_eligible(
    sim: httpx.Client, code: str, status: str, text: str
) -> None:
    answer = validate(sim, code)
    assert answer["voucher"]["isRedeemable"] is False
    assert answer["voucher"]["redeemableStatus"] == status
    assert answer["voucherEligibleValue"] == 0
    assert text in answer["voucherPresentValueDescription"]


def test_multi_location_account_needs_a_location(sim: httpx.Client) -> None:
    answer = post(sim, VALIDATE, {"voucherCode": 200000000001}, HARBOR_KEY)
    assert answer.status_code == 400 and answer.json()["errorCode"] == "LocationRequired"
    by_org = validate(sim, "200000000001", HARBOR_KEY, organizationID=HARBOR_MARKET)
    by_pos = validate(
        sim, "200000000001", HARBOR_KEY, pointOfSaleSystemOrganizationIdentifier="harbor-market"
    )
    assert by_org == by_pos and by_org["voucher"]["isRedeemable"] is True
    for location in [
        {"organizationID": BAKERY_MAIN},
        {"pointOfSaleSystemOrganizationIdentifier": "harbor-nowhere"},
    ]:
        answer = post(sim, VALIDATE, {"voucherCode": 200000000001, **location}, HARBOR_KEY)
        assert answer.status_code == 400 and answer.json()["errorCode"] == "InvalidLocation"


def test_single_location_account_takes_its_location_or_none(sim: httpx.Client) -> None:
    assert validate(sim, "100000000001") == validate(
        sim, "100000000001", organizationID=BAKERY_MAIN
    )


def test_a_gift_restricted_to_another_location_is_not_redeemable_here(sim: httpx.Client) -> None:
    here = validate(sim, "200000000002", HARBOR_KEY, organizationID=HARBOR_MARKET)
    assert here["voucher"]["redeemableStatus"] == "NotValidAtLocation"
    assert here["voucherEligibleItemQuantity"] == 0
    there = validate(sim, "200000000002", HARBOR_KEY, organizationID=HARBOR_PIER)
    assert there["voucher"]["isRedeemable"] is True and there["voucherEligibleItemQuantity"] == 2


def redeem(
    sim: httpx.Client, code: str, amount: object, key: str = BAKERY_KEY, **extra: str
) -> Any:
    voucher_id = ledger(sim)["gifts"][code]["voucher_id"]
    return post(sim, REDEEM, {"voucherID": voucher_id, "amount": amount, **extra}, key)


def test_partial_redemptions_decrement_the_ledger_until_depleted(sim: httpx.Client) -> None:
    first = redeem(sim, "100000000001", 12.5)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["voucher"]["remainingValue"] == 37.5 and body["voucherEligibleValue"] == 37.5
    transaction = body["redemptionTransaction"]
    assert transaction["amount"] == 12.5 and transaction["isReversed"] is False
    assert transaction["organizationID"] == BAKERY_MAIN
    assert redeem(sim, "100000000001", 37.5).json()["voucher"]["isRedeemable"] is False
    state = ledger(sim)
    assert state["gifts"]["100000000001"]["balance"] == 0
    gift_id = body["voucher"]["voucherID"]
    units = [r["units"] for r in state["redemptions"].values() if r["voucher_id"] == gift_id]
    assert sorted(units) == [1250, 3750]
    again = redeem(sim, "100000000001", 1)
    assert again.status_code == 422 and again.json()["errorCode"] == "FullyRedeemed"


def test_item_gifts_redeem_whole_quantities(sim: httpx.Client) -> None:
    answer = redeem(sim, "100000000002", 2)
    assert answer.status_code == 200
    assert answer.json()["voucher"]["remainingItemQuantity"] == 1
    assert answer.json()["redemptionTransaction"]["amount"] == 2
    assert ledger(sim)["gifts"]["100000000002"]["balance"] == 1
    for amount in [1.0, 1.5, "1", 0, -1]:
        assert redeem(sim, "100000000002", amount).status_code == 400


@pytest.mark.parametrize("amount", [12.505, "12.50", 0, -5.0, True])
def test_monetary_amounts_must_be_positive_numbers_in_whole_cents(
    sim: httpx.Client, amount: object
) -> None:
    before = ledger(sim)
    answer = redeem(sim, "100000000001", amount)
    assert answer.status_code == 400 and answer.json()["errorCode"] == "ValidationFailed"
    assert ledger(sim) == before


def test_a_zero_decimal_currency_takes_whole_yen(sim: httpx.Client) -> None:
    extra = {"organizationID": HARBOR_PIER}
    assert redeem(sim, "200000000003", 1500.5, HARBOR_KEY, **extra).status_code == 400
    answer = redeem(sim, "200000000003", 1500, HARBOR_KEY, **extra)
    assert answer.status_code == 200 and answer.json()["voucher"]["remainingValue"] == 3500
    assert ledger(sim)["gifts"]["200000000003"]["balance"] == 3500


def test_more_than_the_balance_is_refused_with_what_is_left(sim: httpx.Client) -> None:
    before = ledger(sim)
    answer = redeem(sim, "100000000001", 50.01)
    assert answer.status_code == 422
    body = answer.json()
    assert body["errorCode"] == "InsufficientBalance" and "$50.00" in body["message"]
    assert body["voucherEligibleValue"] == 50.0
    assert ledger(sim) == before


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("100000000003", "Expired"),
        ("100000000004", "FullyRedeemed"),
        ("100000000005", "NotYetValid"),
        ("100000000006", "Voided"),
    ],
)
def test_redeeming_an_unredeemable_gift_is_422_and_moves_nothing(
    sim: httpx.Client, code: str, status: str
) -> None:
    before = ledger(sim)
    answer = redeem(sim, code, 1)
    assert answer.status_code == 422 and answer.json()["errorCode"] == status
    assert ledger(sim) == before


def test_redeem_checks_location_voucher_and_field_names(sim: httpx.Client) -> None:
    wrong_place = redeem(sim, "200000000002", 1, HARBOR_KEY, organizationID=HARBOR_MARKET)
    assert wrong_place.status_code == 422
    assert wrong_place.json()["errorCode"] == "NotValidAtLocation"
    assert redeem(sim, "200000000001", 1, HARBOR_KEY).json()["errorCode"] == "LocationRequired"
    other_account = redeem(sim, "200000000001", 1, BAKERY_KEY)
    assert other_account.status_code == 404
    unknown = post(sim, REDEEM, {"voucherID": "8c1e0c4e-0000-4000-8000-000000000000", "amount": 1})
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == "VoucherNotFound"
    voucher_id = ledger(sim)["gifts"]["100000000001"]["voucher_id"]
    for body in [
        {"voucherId": voucher_id, "amount": 1},
        {"voucherID": voucher_id, "amount": 1, "idempotencyKey": "k"},
        {"voucherID": "100000000001", "amount": 1},
        {"voucherID": voucher_id},
    ]:
        assert post(sim, REDEEM, body).status_code == 400


def test_reverse_restores_once_then_says_already_reversed(sim: httpx.Client) -> None:
    redeemed = redeem(sim, "100000000001", 20).json()["redemptionTransaction"]
    body = {"redemptionTransactionID": redeemed["redemptionTransactionID"]}
    first = post(sim, REVERSE, body)
    assert first.status_code == 200
    assert first.json()["redemptionTransaction"]["isReversed"] is True
    assert first.json()["voucher"]["remainingValue"] == 50.0
    second = post(sim, REVERSE, body)
    assert second.status_code == 409
    assert second.json()["errorCode"] == "RedemptionAlreadyReversed"
    state = ledger(sim)
    assert state["gifts"]["100000000001"]["balance"] == 5000
    assert state["redemptions"][redeemed["redemptionTransactionID"]]["reversed"] is True


def test_reverse_of_unknown_or_foreign_transactions_is_404(sim: httpx.Client) -> None:
    redeemed = redeem(sim, "100000000001", 5).json()["redemptionTransaction"]
    foreign = post(
        sim,
        REVERSE,
        {
            "redemptionTransactionID": redeemed["redemptionTransactionID"],
            "organizationID": HARBOR_PIER,
        },
        HARBOR_KEY,
    )
    assert foreign.status_code == 404 and foreign.json()["errorCode"] == "RedemptionNotFound"
    unknown = post(
        sim, REVERSE, {"redemptionTransactionID": "8c1e0c4e-0000-4000-8000-00000000000a"}
    )
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == "RedemptionNotFound"
    for body in [
        {"redemptionTransactionID": "txn-1"},
        {"transactionID": redeemed["redemptionTransactionID"]},
    ]:
        assert post(sim, REVERSE, body).status_code == 400


def test_seed_replaces_the_fixtures_and_reset_goes_back_to_them(sim: httpx.Client) -> None:
    seed = {
        "accounts": [
            {
                "id": "solo",
                "name": "Solo",
                "api_key": "solo-key",
                "locations": [{"organization_id": BAKERY_MAIN, "name": "Only"}],
            }
        ],
        "gifts": [
            {
                "account": "solo",
                "code": "300000000001",
                "type": "monetary",
                "currency": "EUR",
                "value": 999,
                "redeemed": 99,
            }
        ],
    }
    try:
        sim.post("/_sim/seed", json=seed).raise_for_status()
        assert post(sim, VALIDATE, {"voucherCode": 100000000001}).status_code == 401
        answer = validate(sim, "300000000001", "solo-key")
        assert answer["voucherEligibleValue"] == 9.0
        assert answer["voucherPresentValueDescription"] == "€9.00 remaining"
        redeem(sim, "300000000001", 4)
        sim.post("/_sim/reset").raise_for_status()
        assert ledger(sim)["gifts"]["300000000001"]["balance"] == 900
        assert len(ledger(sim)["redemptions"]) == 1  # the seeded one
    finally:
        sim.post("/_sim/seed", json=DEFAULT_SEED).raise_for_status()


@pytest.mark.parametrize(
    "seed",
    [
        {"accounts": []},
        {"accounts": [{"id": "a", "name": "A", "api_key": "k", "locations": []}]},
        {
            "accounts": [
                {
                    "id": "a",
                    "name": "A",
                    "api_key": "k",
                    "locations": [{"organization_id": BAKERY_MAIN, "name": "x"}],
                }
            ],
            "gifts": [{"account": "b", "code": "300000000001", "type": "item", "value": 1}],
        },
    ],
)
def test_bad_seeds_are_refused_with_the_reason(sim: httpx.Client, seed: Json) -> None:
    answer = sim.post("/_sim/seed", json=seed)
    assert answer.status_code == 400 and answer.json()["error"]


def test_usage_names_the_keys_locations_and_gifts() -> None:
    text = "\n".join(GiftLocalSimulator().usage())
    for needle in [BAKERY_KEY, HARBOR_KEY, HARBOR_PIER, "harbor-market", "100000000003: $10.00,"]:
        assert needle in text
    assert "Expired" in text and "only at Pier" in text and "no Bearer" in text


TICKET: Json = {
    "ticketID": "A1",
    "currencyCode": "USD",
    "subtotal": 12.5,
    "tax": 0,
    "total": 12.5,
    "items": [{"lineID": "1", "description": "Latte", "quantity": 1, "amount": 12.5}],
}


def test_our_guessed_optional_inputs_are_accepted_and_checked(sim: httpx.Client) -> None:
    """`posTicket` (validate) and `validationOptions` (validate, redeem) are our guesses at seed
    003's optional inputs: checked for shape, never acted on."""
    options = {"validationOptions": {"strict": True, "channel": "pos"}}
    body = {"voucherCode": "100000000001", "posTicket": TICKET, **options}
    gift = post(sim, VALIDATE, body).json()
    redeemed = post(
        sim, REDEEM, {"voucherID": gift["voucher"]["voucherID"], "amount": 1, **options}
    )
    assert redeemed.status_code == 200
    wrong_line = {**TICKET, "items": [{**TICKET["items"][0], "qty": 1}]}
    answer = post(sim, VALIDATE, {"voucherCode": "100000000001", "posTicket": wrong_line})
    assert answer.status_code == 400 and "qty" in answer.json()["message"]
    transaction = redeemed.json()["redemptionTransaction"]["redemptionTransactionID"]
    answer = post(sim, REVERSE, {"redemptionTransactionID": transaction, **options})
    assert answer.status_code == 400 and "validationOptions" in answer.json()["message"]


def test_seed_answers_carry_only_what_seed_003_describes(sim: httpx.Client) -> None:
    sim.post("/_sim/seed", json={**DEFAULT_SEED, "answers": "seed"}).raise_for_status()
    try:
        gift = validate(sim, "100000000001")
        assert gift == {
            "voucher": {"voucherID": gift["voucher"]["voucherID"], "isRedeemable": True},
            "voucherEligibleValue": 50,
            "voucherEligibleItemQuantity": 0,
            "voucherPresentValueDescription": "$50.00 remaining",
        }
        redeemed = post(sim, REDEEM, {"voucherID": gift["voucher"]["voucherID"], "amount": 5})
        transaction = redeemed.json()["redemptionTransaction"]
        assert list(transaction) == ["redemptionTransactionID"]
        assert redeemed.json()["voucherEligibleValue"] == 45
        reversed_ = post(
            sim, REVERSE, {"redemptionTransactionID": transaction["redemptionTransactionID"]}
        )
        record = reversed_.json()  # "Redemption transaction record data", nothing else
        assert record["redemptionTransactionID"] == transaction["redemptionTransactionID"]
        assert record["isReversed"] is True and "voucher" not in record
        assert ledger(sim)["gifts"]["100000000001"]["balance"] == 5000
    finally:
        sim.post("/_sim/seed", json=DEFAULT_SEED).raise_for_status()
