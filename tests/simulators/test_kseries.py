"""The card API simulator enforces its contract over real loopback HTTP: bearer auth, JSON bodies
with exact field names, the error shape, and a ledger in which a reference debits at most once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.__main__ import load
from simulators.kseries import API_KEY, CardSimulator
from simulators.server import Running, serve

CARD = "6006490000000001"  # 50.00 USD, active
LOW = "6006490000000002"  # 12.50 USD
BLOCKED = "6006490000000003"
EXPIRED = "6006490000000004"
EUR = "6006490000000005"

Json = dict[str, Any]


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(CardSimulator()) as running:
        yield running


@pytest.fixture
def api(running: Running) -> Iterator[httpx.Client]:
    httpx.post(f"{running.url}/_sim/reset").raise_for_status()
    with httpx.Client(
        base_url=running.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as client:
        yield client


def ledger(api: httpx.Client) -> Json:
    body: Json = api.get("/_sim/ledger").json()
    return body


def redeem(api: httpx.Client, reference: str, amount: int, card: str = CARD) -> httpx.Response:
    body = {"card_number": card, "amount": amount, "currency": "USD", "reference": reference}
    return api.post("/v1/redemptions", json=body)


def error(response: httpx.Response) -> Json:
    body: Json = response.json()["error"]
    return body


def test_missing_or_wrong_bearer_key_is_401_and_moves_nothing(
    running: Running, api: httpx.Client
) -> None:
    body = {"card_number": CARD, "amount": 100, "currency": "USD", "reference": "r1"}
    missing = httpx.post(f"{running.url}/v1/redemptions", json=body)
    wrong = api.post("/v1/redemptions", json=body, headers={"Authorization": "Bearer nope"})
    scheme = api.post("/v1/redemptions", json=body, headers={"Authorization": API_KEY})
    assert [r.status_code for r in (missing, wrong, scheme)] == [401, 401, 401]
    assert error(missing) == {"code": "unauthorized", "message": "Missing bearer API key"}
    assert error(wrong) == {"code": "unauthorized", "message": "Invalid API key"}
    assert ledger(api)["cards"][CARD]["balance"] == 5000
    assert ledger(api)["redemptions"] == {}


def test_a_post_body_must_be_declared_json(api: httpx.Client) -> None:
    answer = api.post(
        "/v1/cards/lookup",
        content=f'{{"number": "{CARD}"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 415
    assert error(answer)["code"] == "unsupported_media_type"


def test_unknown_paths_and_methods_answer_in_the_error_shape(api: httpx.Client) -> None:
    # The card number never goes in a path: there is no GET /v1/cards/{number}.
    assert error(api.get(f"/v1/cards/{CARD}"))["code"] == "not_found"
    wrong_method = api.get("/v1/cards/lookup")
    assert wrong_method.status_code == 405
    assert error(wrong_method)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"card_number": CARD, "amout": 100, "currency": "USD", "reference": "r"}, "amout"),
        ({"card": CARD, "amount": 100, "currency": "USD", "reference": "r"}, "card_number"),
        ({"card_number": CARD, "amount": "1.00", "currency": "USD", "reference": "r"}, "amount"),
        ({"card_number": CARD, "amount": 1.5, "currency": "USD", "reference": "r"}, "amount"),
        ({"card_number": CARD, "amount": 0, "currency": "USD", "reference": "r"}, "amount"),
        ({"card_number": CARD, "amount": 100, "currency": "usd", "reference": "r"}, "currency"),
        ({"card_number": CARD, "amount": 100, "currency": "USD"}, "reference"),
        ({"card_number": CARD, "amount": 100, "currency": "USD", "reference": "a b"}, "reference"),
        ({"card_number": "6006-4900", "amount": 100, "currency": "USD", "reference": "r"}, "card"),
    ],
)
def test_misnamed_missing_or_mistyped_fields_are_400_naming_the_field(
    api: httpx.Client, body: Json, named: str
) -> None:
    answer = api.post("/v1/redemptions", json=body)
    assert answer.status_code == 400
    assert error(answer)["code"] == "invalid_request"
    assert named in error(answer)["message"]
    assert ledger(api)["redemptions"] == {}


def test_a_body_that_is_not_a_json_object_is_400(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for content in ("{", "[]", ""):
        answer = api.post("/v1/cards/lookup", content=content, headers=headers)
        assert (answer.status_code, error(answer)["code"]) == (400, "invalid_request")


def test_lookup_reports_balance_status_and_only_the_last_four_digits(api: httpx.Client) -> None:
    answer = api.post("/v1/cards/lookup", json={"number": CARD})
    assert answer.status_code == 200
    assert answer.json() == {
        "last4": "0001",
        "balance": 5000,
        "currency": "USD",
        "status": "active",
        "expires_on": "2099-12-31",
    }
    assert CARD not in answer.text
    statuses = [
        api.post("/v1/cards/lookup", json={"number": n}).json()["status"]
        for n in (BLOCKED, EXPIRED)
    ]
    assert statuses == ["blocked", "expired"]
    nfc = api.post("/v1/cards/lookup", json={"number": "04A1B2C3D4E5F6"}).json()
    assert (nfc["last4"], nfc["balance"]) == ("E5F6", 2000)
    missing = api.post("/v1/cards/lookup", json={"number": "6006499999999999"})
    assert missing.status_code == 404
    assert error(missing) == {"code": "card_not_found", "message": "Card not found"}


def test_redemption_debits_once_per_reference(api: httpx.Client) -> None:
    first = redeem(api, "lane1:order7:r1", 1250)
    assert first.status_code == 201
    body = first.json()
    assert body["card_last4"] == "0001" and CARD not in first.text
    assert (body["amount"], body["currency"], body["balance_after"]) == (1250, "USD", 3750)
    assert (body["status"], body["reversal_id"]) == ("completed", None)
    again = redeem(api, "lane1:order7:r1", 1250)
    assert (again.status_code, again.json()) == (200, body)
    assert ledger(api)["cards"][CARD]["balance"] == 3750
    assert list(ledger(api)["redemptions"]) == [body["id"]]


def test_a_reference_reused_for_another_amount_or_card_is_409(api: httpx.Client) -> None:
    first = redeem(api, "r1", 1000).json()
    for answer in (redeem(api, "r1", 999), redeem(api, "r1", 1000, card=LOW)):
        assert answer.status_code == 409
        assert error(answer)["code"] == "reference_conflict"
        assert error(answer)["redemption_id"] == first["id"]
    assert ledger(api)["cards"][CARD]["balance"] == 4000
    assert ledger(api)["cards"][LOW]["balance"] == 1250


def test_insufficient_funds_says_what_is_available_and_binds_no_reference(
    api: httpx.Client,
) -> None:
    short = redeem(api, "r1", 1300, card=LOW)
    assert short.status_code == 422
    assert error(short) == {
        "code": "insufficient_funds",
        "message": "Insufficient funds: 12.50 USD available",
        "available": 1250,
        "currency": "USD",
    }
    # The partial payment the POS then offers may reuse the reference: the refusal bound nothing.
    partial = redeem(api, "r1", 1250, card=LOW)
    assert (partial.status_code, partial.json()["balance_after"]) == (201, 0)


@pytest.mark.parametrize(
    ("card", "currency", "code", "message"),
    [
        (BLOCKED, "USD", "card_blocked", "Card is blocked"),
        (EXPIRED, "USD", "card_expired", "Card expired on 2020-12-31"),
        (EUR, "USD", "currency_mismatch", "Card is in EUR, not USD"),
        ("6006499999999999", "USD", "card_not_found", "Card not found"),
    ],
)
def test_cards_that_cannot_pay_are_refused(
    api: httpx.Client, card: str, currency: str, code: str, message: str
) -> None:
    body = {"card_number": card, "amount": 100, "currency": currency, "reference": "r"}
    answer = api.post("/v1/redemptions", json=body)
    assert answer.status_code == (404 if code == "card_not_found" else 422)
    assert (error(answer)["code"], error(answer)["message"]) == (code, message)
    assert ledger(api)["redemptions"] == {}


def test_reversal_restores_once_and_is_idempotent_by_reference(api: httpx.Client) -> None:
    redemption = redeem(api, "r1", 2000).json()
    path = f"/v1/redemptions/{redemption['id']}/reversal"
    first = api.post(path, json={"reference": "r1:void"})
    assert first.status_code == 201
    reversal = first.json()
    assert (reversal["redemption_id"], reversal["amount"], reversal["balance_after"]) == (
        redemption["id"],
        2000,
        5000,
    )
    again = api.post(path, json={"reference": "r1:void"})
    assert (again.status_code, again.json()) == (200, reversal)
    other = api.post(path, json={"reference": "r1:void-2"})
    assert other.status_code == 409
    assert error(other)["code"] == "already_reversed"
    assert error(other)["reversal_id"] == reversal["id"]
    state = ledger(api)
    assert state["cards"][CARD]["balance"] == 5000
    assert state["redemptions"][redemption["id"]]["status"] == "reversed"
    assert list(state["reversals"]) == [reversal["id"]]


def test_reversal_of_an_unknown_redemption_or_with_a_used_reference(api: httpx.Client) -> None:
    unknown = api.post("/v1/redemptions/red_nope/reversal", json={"reference": "x"})
    assert (unknown.status_code, error(unknown)["code"]) == (404, "redemption_not_found")
    one, two = redeem(api, "r1", 100).json(), redeem(api, "r2", 100).json()
    api.post(f"/v1/redemptions/{one['id']}/reversal", json={"reference": "void"})
    reused = api.post(f"/v1/redemptions/{two['id']}/reversal", json={"reference": "void"})
    assert (reused.status_code, error(reused)["code"]) == (409, "reference_conflict")
    misnamed = api.post(f"/v1/redemptions/{two['id']}/reversal", json={"ref": "void2"})
    assert misnamed.status_code == 400 and "ref" in error(misnamed)["message"]
    assert ledger(api)["cards"][CARD]["balance"] == 4900


def test_find_by_reference(api: httpx.Client) -> None:
    made = redeem(api, "order7/r1", 500).json()
    found = api.get("/v1/redemptions", params={"reference": "order7/r1"})
    assert (found.status_code, found.json()) == (200, {"data": [made]})
    none = api.get("/v1/redemptions", params={"reference": "never"})
    assert none.json() == {"data": []}
    for params in ({}, {"reference": "a", "card_number": CARD}, {"ref": "order7/r1"}):
        answer = api.get("/v1/redemptions", params=params)
        assert (answer.status_code, error(answer)["code"]) == (400, "invalid_request")


def test_seed_adds_cards_and_reset_restores_the_default_ledger(api: httpx.Client) -> None:
    seeded = {"cards": [{"number": "7777000011112222", "balance": 900, "currency": "CAD"}]}
    assert api.post("/_sim/seed", json=seeded).status_code == 204
    assert (
        api.post("/v1/cards/lookup", json={"number": "7777000011112222"}).json()["balance"] == 900
    )
    bad = api.post("/_sim/seed", json={"cards": [{"number": "12", "balance": 1}]})
    assert bad.status_code == 400
    redeem(api, "r1", 100)
    api.post("/_sim/reset").raise_for_status()
    state = ledger(api)
    assert "7777000011112222" not in state["cards"]
    assert state["cards"][CARD]["balance"] == 5000 and state["redemptions"] == {}


def test_injected_faults_use_the_error_shape(api: httpx.Client) -> None:
    faults = [{"path": "/v1/redemptions", "kind": "error", "status": 429}]
    api.post("/_sim/faults", json=faults).raise_for_status()
    answer = redeem(api, "r1", 100)
    assert (answer.status_code, error(answer)["code"]) == (429, "rate_limited")
    assert ledger(api)["redemptions"] == {}


def test_the_cli_loads_it_with_a_usable_seed() -> None:
    simulator = load("kseries")
    assert isinstance(simulator, CardSimulator)
    lines = simulator.usage()
    assert lines[0] == f"Authorization: Bearer {API_KEY}"
    assert any(CARD in line and "50.00 USD" in line and "active" in line for line in lines)


# One step of a random session: debit (reference index, amount) or reverse (reference index).
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("redeem"), st.integers(0, 3), st.integers(1, 3000)),
        st.tuples(st.just("reverse"), st.integers(0, 3), st.just(0)),
    ),
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_the_ledger_always_adds_up_and_a_reference_debits_at_most_once(
    api: httpx.Client, ops: list[tuple[str, int, int]]
) -> None:
    api.post("/_sim/reset").raise_for_status()
    made: dict[int, str] = {}
    for op, ref, amount in ops:
        if op == "redeem":
            answer = redeem(api, f"ref{ref}", amount)
            assert answer.status_code in (200, 201, 409, 422)
            if answer.status_code in (200, 201):
                assert made.setdefault(ref, answer.json()["id"]) == answer.json()["id"]
        elif ref in made:
            path = f"/v1/redemptions/{made[ref]}/reversal"
            assert api.post(path, json={"reference": f"v{ref}"}).status_code in (200, 201)
    state = ledger(api)
    redemptions = state["redemptions"].values()
    assert sorted(r["reference"] for r in redemptions) == sorted(f"ref{ref}" for ref in made)
    outstanding = sum(r["amount"] for r in redemptions if r["status"] == "completed")
    assert state["cards"][CARD]["balance"] == 5000 - outstanding >= 0
    assert len(state["reversals"]) == sum(r["status"] == "reversed" for r in redemptions)
