"""The PETZ simulator enforces its contract (auth header, paths, field names, error shape) and
keeps an honest coupon ledger: holds, replacement, release on void, idempotent capture."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.petz import (
    DEFAULT_KEY,
    Coupon,
    Identifier,
    Line,
    PetzSimulator,
    evaluate,
    gtin_key,
)
from simulators.server import serve

KIBBLE = "012345678905"  # cpn_kibble2: $2.00 off
TREATS = "036000291452"  # cpn_treats15: 15% off
CATNIP = "081234000004"  # cpn_catnip1: expired
OTHER = "041000000638"  # no coupon


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with (
        serve(PetzSimulator()) as running,
        httpx.Client(
            base_url=running.url, headers={"Authorization": f"Token {DEFAULT_KEY}"}
        ) as client,
    ):
        yield client


def line(ref: str, upc: str, amount: str = "10.00", kind: str = "upc") -> dict[str, Any]:
    return {
        "line_ref": ref,
        "name": f"item {ref}",
        "quantity": 1,
        "amount": amount,
        "identifiers": [{"type": kind, "value": upc}],
    }


def order(ref: str, *lines: dict[str, Any], status: str = "open", **extra: Any) -> dict[str, Any]:
    total = sum(Decimal(x["amount"]) for x in lines)
    return {
        "device_ref": "lane-1",
        "order_ref": ref,
        "status": status,
        "currency": "USD",
        "subtotal": str(total),
        "tax": "0.00",
        "total": str(total),
        "lines": list(lines),
        **extra,
    }


def authorize(api: httpx.Client, ref: str, consumer: str = "c_1001") -> httpx.Response:
    return api.post(
        "/posface/auth/create/",
        json={"device_ref": "lane-1", "order_ref": ref, "consumer_id": consumer},
    )


def capture(
    api: httpx.Client, ref: str, auth_id: str, path: str = "/posface/auth/capture/"
) -> httpx.Response:
    return api.post(path, json={"device_ref": "lane-1", "order_ref": ref, "auth_id": auth_id})


def ledger(api: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = api.get("/_sim/ledger").json()
    return body


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# -- contract -----------------------------------------------------------------------------------


def test_auth_header_is_required_in_the_token_scheme(api: httpx.Client) -> None:
    body = {"device_ref": "lane-1", "current_phone": "5551234567"}
    path = "/posface/customer/set/"
    assert error(api.post(path, json=body, headers={"Authorization": ""})) == (
        401,
        "not_authenticated",
    )
    wrong = api.post(path, json=body, headers={"Authorization": "Token nope"})
    assert error(wrong) == (401, "authentication_failed")
    assert wrong.json()["error"]["message"] == "Invalid token."
    bearer = api.post(path, json=body, headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
    assert error(bearer) == (401, "authentication_failed")
    assert api.post(path, json=body).status_code == 200


def test_unknown_paths_and_methods_answer_in_petz_shape(api: httpx.Client) -> None:
    assert error(api.post("/posface/auth/void/", json={})) == (404, "not_found")
    assert error(api.post("/posface/customer/set", json={})) == (404, "not_found")  # no slash
    assert error(api.get("/posface/order/set/")) == (405, "method_not_allowed")


def test_misspelled_and_missing_fields_are_named(api: httpx.Client) -> None:
    answer = api.post("/posface/customer/set/", json={"device_ref": "lane-1", "phone": "555"})
    assert error(answer) == (400, "invalid")
    fields = answer.json()["error"]["fields"]
    assert fields["phone"] == ["Unknown field."]
    assert "current_phone" in fields
    assert "current_phone" in answer.json()["error"]["message"]


def test_money_must_be_a_decimal_string(api: httpx.Client) -> None:
    body = order("o-1", line("1", KIBBLE))
    body["total"] = 10.0
    answer = api.post("/posface/order/set/", json=body)
    assert error(answer) == (400, "invalid")
    assert "total" in answer.json()["error"]["fields"]


def test_body_must_be_json(api: httpx.Client) -> None:
    form = api.post("/posface/customer/set/", data={"current_phone": "5551234567"})
    assert error(form) == (415, "unsupported_media_type")
    broken = api.post(
        "/posface/customer/set/", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert error(broken) == (400, "invalid")


def test_injected_faults_use_the_error_shape(api: httpx.Client) -> None:
    api.post("/_sim/faults", json=[{"path": "/posface/auth/create/", "kind": "error"}])
    assert error(authorize(api, "o-1")) == (503, "service_unavailable")


# -- customers ----------------------------------------------------------------------------------


def test_customer_by_phone_returns_the_wallet_and_joins_the_order(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE)))
    answer = api.post(
        "/posface/customer/set/",
        json={"device_ref": "lane-1", "order_ref": "o-1", "current_phone": "5551234567"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["consumer_id"] == "c_1001"
    assert [c["coupon_id"] for c in body["wallet"]] == [
        "cpn_kibble2",
        "cpn_treats15",
        "cpn_catnip1",
    ]
    assert body["wallet"][0]["upcs"] == [KIBBLE] and body["wallet"][0]["amount_off"] == "2.00"
    assert ledger(api)["orders"]["o-1"]["consumer_id"] == "c_1001"


def test_unknown_phone_is_customer_not_found(api: httpx.Client) -> None:
    answer = api.post(
        "/posface/customer/set/", json={"device_ref": "lane-1", "current_phone": "5550000000"}
    )
    assert error(answer) == (404, "customer_not_found")


def test_customer_before_the_order_creates_it_empty(api: httpx.Client) -> None:
    api.post(
        "/posface/customer/set/",
        json={"device_ref": "lane-1", "order_ref": "o-9", "current_phone": "5559876543"},
    )
    assert ledger(api)["orders"]["o-9"] == {
        "device_ref": "lane-1",
        "status": "open",
        "consumer_id": "c_1002",
        "currency": "USD",
        "total": "0",
        "lines": [],
    }


# -- authorization and capture ------------------------------------------------------------------


def test_authorize_matches_coupons_by_upc_with_reasons(api: httpx.Client) -> None:
    api.post(
        "/posface/order/set/",
        json=order(
            "o-1",
            line("1", KIBBLE, "12.99"),
            line("2", "0" + TREATS, "4.99", kind="ean"),  # EAN-13 form of the UPC
            line("3", CATNIP, "3.00"),
        ),
    )
    answer = authorize(api, "o-1")
    assert answer.status_code == 201
    body = answer.json()
    assert body["status"] == "authorized"
    by_id = {c["coupon_id"]: c for c in body["coupons"]}
    assert by_id["cpn_kibble2"] == {
        "coupon_id": "cpn_kibble2",
        "title": "$2.00 off Acme Kibble 5 lb",
        "status": "applied",
        "discount": "2.00",
        "line_refs": ["1"],
        "reason_code": None,
        "reason": None,
    }
    assert (by_id["cpn_treats15"]["discount"], by_id["cpn_treats15"]["line_refs"]) == (
        "0.75",  # 15% of 4.99, half up
        ["2"],
    )
    assert (by_id["cpn_catnip1"]["status"], by_id["cpn_catnip1"]["reason_code"]) == (
        "rejected",
        "expired",
    )
    assert body["total_discount"] == "2.75"
    assert ledger(api)["authorizations"][body["auth_id"]]["status"] == "authorized"


def test_nothing_applicable_is_422_with_the_reasons(api: httpx.Client) -> None:
    api.post(
        "/posface/order/set/", json=order("o-1", line("1", OTHER), line("2", KIBBLE, kind="sku"))
    )
    answer = authorize(api, "o-1")
    assert error(answer) == (422, "no_applicable_coupons")
    reasons = {c["coupon_id"]: c["reason_code"] for c in answer.json()["error"]["coupons"]}
    assert reasons == {
        "cpn_kibble2": "product_mismatch",  # a SKU never matches a UPC
        "cpn_treats15": "product_mismatch",
        "cpn_catnip1": "expired",
    }
    assert ledger(api)["authorizations"] == {}


def test_authorize_needs_a_known_open_order_and_consumer(api: httpx.Client) -> None:
    assert error(authorize(api, "o-404")) == (404, "order_not_found")
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE), status="paid"))
    assert error(authorize(api, "o-1")) == (409, "order_closed")
    assert error(authorize(api, "o-1", consumer="c_nobody")) == (404, "customer_not_found")


def test_a_held_coupon_is_in_use_on_another_order(api: httpx.Client) -> None:
    for ref in ("o-1", "o-2"):
        api.post("/posface/order/set/", json=order(ref, line("1", KIBBLE), line("2", TREATS)))
    assert authorize(api, "o-1").status_code == 201
    answer = authorize(api, "o-2")
    assert error(answer) == (422, "no_applicable_coupons")
    reasons = {c["coupon_id"]: c["reason_code"] for c in answer.json()["error"]["coupons"]}
    assert reasons["cpn_kibble2"] == reasons["cpn_treats15"] == "in_use"


def test_reauthorizing_releases_the_previous_authorization(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE)))
    first = authorize(api, "o-1").json()["auth_id"]
    second = authorize(api, "o-1").json()["auth_id"]
    auths = ledger(api)["authorizations"]
    assert (auths[first]["status"], auths[first]["released_reason"]) == ("released", "replaced")
    assert auths[second]["status"] == "authorized"
    assert error(capture(api, "o-1", first)) == (409, "authorization_released")


def test_capture_redeems_once_on_either_path(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE), line("2", OTHER)))
    auth_id = authorize(api, "o-1").json()["auth_id"]
    first = capture(api, "o-1", auth_id)
    assert first.status_code == 200
    assert first.json()["coupon_ids"] == ["cpn_kibble2"]
    again = capture(api, "o-1", auth_id, path="/posface/auth/redeem/")
    assert again.json() == first.json()
    state = ledger(api)
    assert state["consumers"]["c_1001"] == {
        "wallet": ["cpn_treats15", "cpn_catnip1"],
        "redeemed": ["cpn_kibble2"],
    }
    assert [(r["coupon_id"], r["amount"]) for r in state["redemptions"]] == [
        ("cpn_kibble2", "2.00")
    ]


def test_capture_of_an_unknown_or_foreign_auth_is_not_found(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE)))
    auth_id = authorize(api, "o-1").json()["auth_id"]
    assert error(capture(api, "o-1", "pa_nope")) == (404, "authorization_not_found")
    assert error(capture(api, "o-2", auth_id)) == (404, "authorization_not_found")


def test_void_releases_the_open_authorization_and_closes_the_order(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE)))
    auth_id = authorize(api, "o-1").json()["auth_id"]
    voided = api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE), status="void"))
    assert voided.json()["authorizations"] == [{"auth_id": auth_id, "status": "released"}]
    again = api.post("/posface/order/set/", json=order("o-1", status="void"))
    assert again.json() == voided.json()
    assert error(api.post("/posface/order/set/", json=order("o-1", status="paid"))) == (
        409,
        "order_closed",
    )
    assert error(capture(api, "o-1", auth_id)) == (409, "authorization_released")
    assert ledger(api)["consumers"]["c_1001"]["redeemed"] == []


def test_order_set_keeps_or_removes_the_customer(api: httpx.Client) -> None:
    api.post("/posface/order/set/", json=order("o-1", consumer_id="c_1001"))
    api.post("/posface/order/set/", json=order("o-1", line("1", KIBBLE)))
    assert ledger(api)["orders"]["o-1"]["consumer_id"] == "c_1001"
    api.post("/posface/order/set/", json=order("o-1", consumer_id=None))
    assert ledger(api)["orders"]["o-1"]["consumer_id"] is None
    unknown = api.post("/posface/order/set/", json=order("o-1", consumer_id="c_nobody"))
    assert error(unknown) == (404, "customer_not_found")


# -- fixtures -----------------------------------------------------------------------------------


def test_seed_adds_consumers_and_keys_and_reset_restores_the_default(api: httpx.Client) -> None:
    seed = {
        "api_keys": ["other-key"],
        "consumers": [
            {
                "consumer_id": "c_7",
                "phone": "5557777777",
                "coupons": [{"coupon_id": "x", "title": "x", "upcs": [OTHER], "percent_off": "50"}],
            }
        ],
    }
    assert api.post("/_sim/seed", json=seed).status_code == 204
    assert error(api.post("/posface/customer/set/", json={})) == (401, "authentication_failed")
    headers = {"Authorization": "Token other-key"}
    found = api.post(
        "/posface/customer/set/",
        json={"device_ref": "d", "current_phone": "5557777777"},
        headers=headers,
    )
    assert found.json()["wallet"][0]["percent_off"] == "50"
    bad = {"consumers": [{"consumer_id": "c", "phone": "1", "coupons": []}]}
    assert api.post("/_sim/seed", json=bad).status_code == 400
    api.post("/_sim/reset")
    assert set(ledger(api)["consumers"]) == {"c_1001", "c_1002"}


def test_usage_names_the_key_and_the_seeded_data() -> None:
    text = "\n".join(PetzSimulator().usage())
    assert f"Token {DEFAULT_KEY}" in text
    assert "5551234567" in text and KIBBLE in text and "15% off" in text


# -- pricing properties -------------------------------------------------------------------------

NOW = datetime(2025, 1, 1, tzinfo=UTC)
UPCS = [KIBBLE, TREATS, CATNIP, OTHER]


@st.composite
def coupons(draw: st.DrawFn) -> Coupon:
    percent = draw(st.booleans())
    value = draw(st.integers(1, 3000))
    return Coupon(
        coupon_id=f"c{draw(st.integers(0, 10**6))}",
        title="t",
        upcs=tuple(draw(st.lists(st.sampled_from(UPCS), min_size=1, max_size=2))),
        amount_off=None if percent else Decimal(value).scaleb(-2),
        percent_off=Decimal(value % 100 + 1) if percent else None,
        expires_at=draw(st.sampled_from([None, NOW - timedelta(days=1), NOW + timedelta(1)])),
    )


@st.composite
def lines(draw: st.DrawFn) -> Line:
    return Line(
        line_ref=str(draw(st.integers(0, 10**6))),
        name="n",
        quantity=1,
        amount=str(Decimal(draw(st.integers(-500, 5000))).scaleb(-2)),
        identifiers=[Identifier(type="upc", value=draw(st.sampled_from(UPCS)))],
    )


@given(
    st.lists(coupons(), max_size=5, unique_by=lambda c: c.coupon_id),
    st.lists(lines(), max_size=5, unique_by=lambda x: x.line_ref),
)
def test_discounts_never_exceed_their_coupon_or_the_lines(
    wallet: list[Coupon], order_lines: list[Line]
) -> None:
    outcomes = evaluate(wallet, order_lines, held=set(), now=NOW)
    assert [o.coupon for o in outcomes] == wallet
    for outcome in outcomes:
        coupon = outcome.coupon
        if outcome.reason_code is not None:
            assert outcome.discount == 0 and not outcome.line_refs
            continue
        assert outcome.discount > 0 and outcome.line_refs
        assert coupon.expires_at is None or coupon.expires_at > NOW
        if coupon.amount_off is not None:
            assert outcome.discount <= coupon.amount_off
    applied = sum((o.discount for o in outcomes), Decimal(0))
    eligible = sum((max(Decimal(x.amount), Decimal(0)) for x in order_lines), Decimal(0))
    assert applied <= eligible


@given(st.from_regex(r"[0-9]{11}", fullmatch=True))
def test_upc_and_its_ean13_form_are_one_product(body: str) -> None:
    assert gtin_key(body + "0") == gtin_key("0" + body + "0") == gtin_key("00" + body + "0")
    assert gtin_key("ABC") is None and gtin_key(body) is None
