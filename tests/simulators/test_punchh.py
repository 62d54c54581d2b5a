"""The Punchh simulator enforces the POS API contract (headers, auth, field names, error shapes)
and keeps a ledger; raw HTTP over loopback, no adapter involved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.punchh import AUTHORIZATION, PunchhSimulator
from simulators.server import Running, serve

HEADERS = {
    "Authorization": AUTHORIZATION,
    "User-Agent": "Tests/POS/1.0",
    "Accept": "application/json",
}
ANA, BEN = 101, 102
WHEN = "2025-03-01T12:30:00-05:00"


@pytest.fixture
def sim() -> Iterator[Running]:
    with serve(PunchhSimulator()) as running:
        yield running


def call(
    sim: Running,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.request(
        method,
        sim.url + path,
        json=json,
        params=params,
        headers=HEADERS if headers is None else headers,
    )


def ledger(sim: Running) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{sim.url}/_sim/ledger").json()
    return body


def line(**overrides: Any) -> dict[str, Any]:
    item = {
        "item_name": "Burger",
        "item_qty": 1,
        "amount": 10.0,
        "item_type": "M",
        "item_id": 101,
        "item_family": "",
        "item_group": "",
        "serial_number": "1.0",
    }
    return {**item, **overrides}


def menu(name: str, amount: float, kind: str, n: int) -> dict[str, Any]:
    return {
        "item_name": name,
        "item_qty": 1,
        "item_amount": amount,
        "menu_item_type": kind,
        "menu_item_id": n,
        "menu_family": "",
        "menu_major_group": "",
        "serial_number": f"{n}.0",
    }


def batch(user: int = ANA, uid: str = "tx-1", **overrides: Any) -> dict[str, Any]:
    body = {
        "user_id": user,
        "receipt_datetime": WHEN,
        "subtotal_amount": 10.0,
        "receipt_amount": 10.0,
        "line_items": [line()],
        "punchh_key": "000000000001",
        "transaction_no": "T1",
        "external_uid": uid,
    }
    return {**body, **overrides}


def checkin(uid: str = "tx-1", **overrides: Any) -> dict[str, Any]:
    body = {
        "phone": "5550100001",
        "transaction_no": 1001,
        "receipt_datetime": WHEN,
        "subtotal_amount": 6.5,
        "receipt_amount": 6.5,
        "payable": 7.0,
        "punchh_key": "000000000001",
        "pos_type": "Proprietary POS",
        "pos_version": "1.0",
        "channel": "pos",
        "revenue_id": "2",
        "revenue_code": "To Go",
        "external_uid": uid,
        "menu_items": [
            menu("Burger", 10.0, "M", 1),
            menu("Free Coffee", 3.5, "D", 2),
            menu("Tax", 0.5, "T", 3),
            menu("Payment", 7.0, "P", 4),
        ],
    }
    return {**body, **overrides}


def select(
    sim: Running, *items: dict[str, Any], uid: str = "tx-1", user: int = ANA
) -> httpx.Response:
    body = {"user_id": user, "external_uid": uid, "discount_basket_items_attributes": list(items)}
    return call(sim, "POST", "/api/pos/discounts/select", json=body)


# -- headers and auth -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Token token=wrong, btoken=3b0a4a3e-6f38-4a53-9d5c-2f6c8e1e7a10",
        AUTHORIZATION.replace("btoken=3b", "btoken=4b"),
        AUTHORIZATION.replace(", ", " "),
    ],
)
def test_bad_keys_are_refused_with_punchhs_array_body(
    sim: Running, authorization: str | None
) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = call(sim, "GET", "/api/pos/locations/configuration", headers=headers)
    assert (answer.status_code, answer.json()) == (401, ["Invalid LocationKey"])


@pytest.mark.parametrize("agent", [None, "python-httpx/0.28", "Tests/Kiosk", "Tests/Till/1.0"])
def test_a_missing_or_ill_formed_user_agent_is_refused(sim: Running, agent: str | None) -> None:
    headers = {**HEADERS, "User-Agent": agent or ""}
    answer = call(sim, "GET", "/api/pos/locations/configuration", headers=headers)
    assert answer.status_code == 400 and "User-Agent" in answer.json()["error"]


def test_r2_calls_need_json_content_type_and_accept(sim: Running) -> None:
    path = "/api/pos/batch_redemptions"
    as_form = httpx.post(sim.url + path, data={"user_id": "101"}, headers=HEADERS)
    assert as_form.status_code == 400 and "Content-Type" in as_form.json()["error"]
    no_accept = call(sim, "POST", path, json=batch(), headers={**HEADERS, "Accept": "*/*"})
    assert no_accept.status_code == 400 and "Accept" in no_accept.json()["error"]
    # Non-R2 calls need neither.
    plain = {**HEADERS, "Accept": "*/*"}
    assert call(sim, "GET", "/api/pos/users/search?phone=5550100001", headers=plain).is_success


def test_unknown_paths_and_methods_answer_in_punchhs_shape(sim: Running) -> None:
    assert call(sim, "GET", "/api/pos/nowhere").status_code == 404
    wrong = call(sim, "GET", "/api/pos/checkins")
    assert wrong.status_code == 405 and "error" in wrong.json()
    # The ISL endpoint has no /api/pos prefix.
    assert call(sim, "POST", "/api/pos/receipt_details", json={}).status_code == 404


def test_location_configuration_gives_the_short_key(sim: Running) -> None:
    config = call(sim, "GET", "/api/pos/locations/configuration").json()
    assert config["short_key"] == "6624" and config["print_barcodes"] == "1"


# -- look-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "user"),
    [
        ("phone", "5550100001", ANA),
        ("email", "ANA@example.com", ANA),
        ("card_number", "6000000000000002", BEN),
        ("user_as_qrcode", "PunchhBEN102QRPunchh", BEN),
        ("user_as_qrcode", "S1234567", 103),
        ("single_scan_code", "a1b2c3d4e5f6", BEN),
        ("redemption_code", "7654321", 103),
    ],
)
def test_every_identifier_finds_its_seeded_guest(
    sim: Running, param: str, value: str, user: int
) -> None:
    answer = call(sim, "GET", "/api/pos/users/search", params={param: value})
    assert answer.status_code == 200 and answer.json()["id"] == user


def test_look_up_refusals_use_punchhs_shapes(sim: Running) -> None:
    unknown = call(sim, "GET", "/api/pos/users/search", params={"phone": "5559999999"})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "User not found"})
    none = call(sim, "GET", "/api/pos/users/search")
    assert none.status_code == 400 and none.json()["error"].startswith("Required parameter")
    two = call(sim, "GET", "/api/pos/users/search?phone=5550100001&email=ana@example.com")
    assert two.status_code == 400
    typo = call(sim, "GET", "/api/pos/users/search", params={"phone_number": "5550100001"})
    assert typo.json() == {"error": "Unknown parameter: phone_number"}


def test_look_up_shows_rewards_affordable_redeemables_and_banked_currency(sim: Running) -> None:
    ana = call(sim, "GET", "/api/pos/users/search", params={"phone": "5550100001"}).json()
    assert ana["balance"]["banked_rewards"] == "5.00"
    assert ana["balance"]["points_balance"] == 240
    assert [(r["id"], r["type"]) for r in ana["rewards"]] == [
        (7001, "reward"),
        (501, "redeemable"),
        (502, "redeemable"),
    ]


# -- field names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "named"),
    [
        (line(menu_item_type="M"), "Unknown parameter: menu_item_type_0"),
        ({**line(), "item_amount": 10.0}, "Unknown parameter: item_amount_0"),
        ({k: v for k, v in line().items() if k != "item_name"}, "item_name_0"),
        (line(item_name=""), "item_name_0"),
    ],
)
def test_r2_line_items_refuse_menu_item_names_and_missing_fields(
    sim: Running, item: dict[str, Any], named: str
) -> None:
    answer = call(sim, "POST", "/api/pos/batch_redemptions", json=batch(line_items=[item]))
    assert answer.status_code == 400 and named in answer.json()["error"]


def test_r2_calls_refuse_a_menu_items_list_and_discount_lines(sim: Running) -> None:
    body = batch(menu_items=[menu("Burger", 10.0, "M", 1)])
    answer = call(sim, "POST", "/api/pos/discounts/lookup", json=body)
    assert answer.json() == {"error": "Unknown parameter: menu_items"}
    discount = batch(line_items=[line(), line(item_type="D", serial_number="2.0")])
    refused = call(sim, "POST", "/api/pos/batch_redemptions", json=discount)
    assert refused.status_code == 400 and "item_type_1" in refused.json()["error"]
    wrong_type = batch(line_items=[line(item_qty="1")])
    assert call(sim, "POST", "/api/pos/batch_redemptions", json=wrong_type).status_code == 400


def test_check_in_refuses_line_items_and_r2_item_names(sim: Running) -> None:
    answer = call(sim, "POST", "/api/pos/checkins", json=checkin(line_items=[line()]))
    assert answer.json() == {"error": "Unknown parameter: line_items"}
    items = checkin()["menu_items"]
    items[0] = {**items[0], "amount": 10.0}
    renamed = call(sim, "POST", "/api/pos/checkins", json=checkin(menu_items=items))
    assert renamed.json() == {"error": "Unknown parameter: amount_0"}
    assert ledger(sim)["checkins"] == []


def test_check_in_follows_the_public_spec_not_the_receipt(sim: Running) -> None:
    """Check-in takes no `amount` (receipt details does), needs revenue_id/revenue_code, and
    an integer transaction_no."""
    extra = call(sim, "POST", "/api/pos/checkins", json=checkin(amount=6.5))
    assert extra.json() == {"error": "Unknown parameter: amount"}
    body = {k: v for k, v in checkin().items() if k != "revenue_id"}
    missing = call(sim, "POST", "/api/pos/checkins", json=body)
    assert missing.json() == {
        "error": "Required parameter missing or the value is empty: revenue_id"
    }
    text = call(sim, "POST", "/api/pos/checkins", json=checkin(transaction_no="T1"))
    assert text.json() == {"error": "transaction_no must be an integer"}
    assert ledger(sim)["checkins"] == []


def test_check_in_must_balance_and_carry_an_offset(sim: Running) -> None:
    unbalanced = call(sim, "POST", "/api/pos/checkins", json=checkin(payable=7.5))
    assert unbalanced.status_code == 400 and "balance" in unbalanced.json()["error"]
    naive = call(
        sim, "POST", "/api/pos/checkins", json=checkin(receipt_datetime="2025-03-01T12:30:00")
    )
    assert naive.status_code == 400 and "offset" in naive.json()["error"]
    negative = checkin()
    negative["menu_items"][1]["item_amount"] = -3.5
    assert call(sim, "POST", "/api/pos/checkins", json=negative).status_code == 400


# -- Redemptions 2.0 ---------------------------------------------------------------------------


def test_select_locks_the_basket_to_its_external_uid(sim: Running) -> None:
    chosen = select(sim, {"discount_type": "reward", "discount_id": "7001"})
    assert chosen.status_code == 200
    assert chosen.json()["locked"] is True and chosen.json()["redemption_ref"]
    other = select(sim, {"discount_type": "redeemable", "discount_id": "501"}, uid="tx-2")
    assert other.status_code == 422
    assert other.json() == {
        "error": "Unable to access the user's Discount Basket, the Basket is currently locked"
    }
    assert (
        call(sim, "POST", "/api/pos/batch_redemptions", json=batch(uid="tx-2")).status_code == 422
    )
    unlock = {"user_id": ANA, "external_uid": "tx-1"}
    assert call(sim, "PUT", "/api/pos/discounts/unlock", json=unlock).status_code == 200
    assert select(sim, {"discount_type": "redeemable", "discount_id": "501"}, uid="tx-2").is_success
    assert ledger(sim)["guests"]["101"]["basket"]["items"] == [
        ["reward", "7001"],
        ["redeemable", "501"],
    ]


def test_an_invalid_selection_fails_the_whole_request(sim: Running) -> None:
    answer = select(
        sim,
        {"discount_type": "reward", "discount_id": "7001"},
        {"discount_type": "redeemable", "discount_id": "501"},
        uid="tx-1",
        user=BEN,
    )
    assert answer.status_code == 422 and "not accessible" in answer.json()["error"]
    poor = select(sim, {"discount_type": "redeemable", "discount_id": "501"}, user=BEN)
    assert "Points Balance is insufficient" in poor.json()["error"]
    unsupported = select(sim, {"discount_type": "fuel_reward", "discount_id": "1"})
    assert "does not support this feature" in unsupported.json()["error"]
    assert ledger(sim)["guests"]["102"]["basket"]["items"] == []


def test_lookup_prices_the_basket_and_the_other_offers(sim: Running) -> None:
    select(sim, {"discount_type": "reward", "discount_id": "7001"})
    found = call(sim, "POST", "/api/pos/discounts/lookup", json=batch()).json()
    assert [(d["discount_id"], d["discount_amount"]) for d in found["selected_discounts"]] == [
        ("7001", 3.5)
    ]
    unselected = found["unselected_discounts"]
    assert [(d["discount_type"], d["discount_amount"]) for d in unselected] == [
        ("redeemable", 5.0),
        ("redeemable", 1.99),
        ("discount_amount", 5.0),
    ]
    select(sim, {"discount_type": "redeemable", "discount_id": "501"})
    found = call(sim, "POST", "/api/pos/discounts/lookup", json=batch()).json()
    # Only 1.50 of the receipt is left after 3.50 + 5.00.
    assert [d["discount_amount"] for d in found["unselected_discounts"]] == [1.5, 1.5]
    select(sim, {"discount_type": "discount_amount", "discount_value": 1.5})
    found = call(sim, "POST", "/api/pos/discounts/lookup", json=batch()).json()
    assert [d["qualified"] for d in found["unselected_discounts"]] == [False]
    zero = call(sim, "POST", "/api/pos/discounts/lookup", json=batch(receipt_amount=0))
    assert (zero.status_code, zero.json()) == (422, {"error": "Invalid Receipt Amount"})


def test_query_applies_nothing_and_commit_deducts_once(sim: Running) -> None:
    select(
        sim,
        {"discount_type": "reward", "discount_id": "7001"},
        {"discount_type": "redeemable", "discount_id": "502"},
        {"discount_type": "discount_amount", "discount_value": 2.0},
    )
    query = call(sim, "POST", "/api/pos/batch_redemptions", json=batch(query=True)).json()
    assert [s["discount_amount"] for s in query["success"]] == [3.5, 1.99, 2.0]
    assert ledger(sim)["guests"]["101"]["points_balance"] == 240
    first = call(sim, "POST", "/api/pos/batch_redemptions", json=batch())
    again = call(sim, "POST", "/api/pos/batch_redemptions", json=batch())
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["redemption_ref"] == query["redemption_ref"]
    ana = ledger(sim)["guests"]["101"]
    assert (ana["points_balance"], ana["banked_rewards"], ana["rewards"]) == (190, "3.00", [])
    assert ana["basket"]["items"] == [] and ana["basket"]["locked_by"] is None
    assert len(ledger(sim)["redemptions"]) == 1


def test_commit_must_omit_query_and_repeat_the_line_items(sim: Running) -> None:
    select(sim, {"discount_type": "reward", "discount_id": "7001"})
    call(sim, "POST", "/api/pos/batch_redemptions", json=batch(query=True))
    false = call(sim, "POST", "/api/pos/batch_redemptions", json=batch(query=False))
    assert false.status_code == 400 and "omit" in false.json()["error"]
    changed = batch(line_items=[line(amount=10.5)], receipt_amount=10.5, subtotal_amount=10.5)
    refused = call(sim, "POST", "/api/pos/batch_redemptions", json=changed)
    assert refused.status_code == 422 and "same line_items" in refused.json()["error"]
    assert ledger(sim)["guests"]["101"]["rewards"] == ["7001"]
    assert call(sim, "POST", "/api/pos/batch_redemptions", json=batch()).status_code == 200
    assert ledger(sim)["guests"]["101"]["rewards"] == []


def test_batch_without_a_basket_is_no_basket_found(sim: Running) -> None:
    answer = call(sim, "POST", "/api/pos/batch_redemptions", json=batch(query=True))
    assert (answer.status_code, answer.json()) == (422, {"error": "No Basket found"})
    stranger = call(sim, "POST", "/api/pos/batch_redemptions", json=batch(user=999))
    assert (stranger.status_code, stranger.json()) == (404, {"error": "User not found"})


def test_void_gives_everything_back_until_the_check_in(sim: Running) -> None:
    select(
        sim,
        {"discount_type": "redeemable", "discount_id": "501"},
        {"discount_type": "reward", "discount_id": "7001"},
    )
    ref = call(sim, "POST", "/api/pos/batch_redemptions", json=batch()).json()["redemption_ref"]
    assert ledger(sim)["guests"]["101"]["points_balance"] == 140
    void = call(sim, "DELETE", f"/api/pos/batch_redemptions/{ref}", json={"user_id": ANA})
    assert void.status_code == 202
    again = call(sim, "DELETE", f"/api/pos/batch_redemptions/{ref}", json={"user_id": ANA})
    assert again.status_code == 202
    ana = ledger(sim)["guests"]["101"]
    assert (ana["points_balance"], ana["rewards"]) == (240, ["7001"])
    assert ledger(sim)["redemptions"][ref]["voided"] is True
    unknown = call(sim, "DELETE", "/api/pos/batch_redemptions/nope", json={"user_id": ANA})
    assert unknown.status_code == 404


def test_void_after_the_check_in_is_410_with_the_nested_error_shape(sim: Running) -> None:
    select(sim, {"discount_type": "reward", "discount_id": "7001"})
    ref = call(sim, "POST", "/api/pos/batch_redemptions", json=batch()).json()["redemption_ref"]
    assert call(sim, "POST", "/api/pos/checkins", json=checkin()).status_code == 200
    void = call(sim, "DELETE", f"/api/pos/batch_redemptions/{ref}", json={"user_id": ANA})
    assert void.status_code == 410
    assert void.json() == {
        "error": {
            "message": "Checkin associated with external_uid tx-1 has been committed.",
            "code": "commited",
        }
    }


def test_voiding_an_uncommitted_basket_drops_it(sim: Running) -> None:
    ref = select(sim, {"discount_type": "reward", "discount_id": "7001"}).json()["redemption_ref"]
    void = call(sim, "DELETE", f"/api/pos/batch_redemptions/{ref}", json={"user_id": ANA})
    assert void.status_code == 202
    basket = ledger(sim)["guests"]["101"]["basket"]
    assert basket["items"] == [] and basket["locked_by"] is None
    assert ledger(sim)["guests"]["101"]["rewards"] == ["7001"]


def test_a_redemption_code_is_used_up_by_the_commit(sim: Running) -> None:
    chosen = select(sim, {"discount_type": "redemption_code", "discount_id": "1234567"}, user=BEN)
    assert chosen.status_code == 200
    call(sim, "POST", "/api/pos/batch_redemptions", json=batch(user=BEN))
    assert ledger(sim)["guests"]["102"]["redemption_codes"] == []
    gone = call(sim, "GET", "/api/pos/users/search", params={"redemption_code": "1234567"})
    assert gone.status_code == 404


# -- check-in and receipt details ------------------------------------------------------------


def test_check_in_earns_once_per_external_uid(sim: Running) -> None:
    first = call(sim, "POST", "/api/pos/checkins", json=checkin())
    again = call(sim, "POST", "/api/pos/checkins", json=checkin())
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["points_earned"] == 6
    assert ledger(sim)["guests"]["101"]["points_balance"] == 246
    assert len(ledger(sim)["checkins"]) == 1
    stranger = call(sim, "POST", "/api/pos/checkins", json=checkin(phone="5559999999"))
    assert (stranger.status_code, stranger.json()) == (404, ["User not found"])
    both = call(sim, "POST", "/api/pos/checkins", json=checkin(email="ana@example.com"))
    assert both.status_code == 400


def test_receipt_details_are_stored_as_versions_per_key(sim: Running) -> None:
    body = {k: v for k, v in checkin(amount=6.5).items() if k not in {"phone", "external_uid"}}
    assert call(sim, "POST", "/receipt_details", json=body).status_code == 200
    assert call(sim, "POST", "/receipt_details", json={**body, "status": "void"}).is_success
    versions = ledger(sim)["receipts"]["000000000001"]
    assert [v["status"] for v in versions] == ["closed", "void"]
    missing = call(sim, "POST", "/receipt_details", json={**body, "pos_type": ""})
    assert missing.json() == {"error": "Required parameter missing or the value is empty: pos_type"}


# -- fixtures ----------------------------------------------------------------------------------


def test_seed_adds_guests_and_reset_restores_the_default(sim: Running) -> None:
    guest = {"id": 200, "first_name": "Dee", "phone": "5550100200", "points_balance": 10}
    assert httpx.post(f"{sim.url}/_sim/seed", json={"guests": [guest]}).status_code == 204
    assert call(sim, "GET", "/api/pos/users/search", params={"phone": "5550100200"}).is_success
    bad = httpx.post(f"{sim.url}/_sim/seed", json={"guests": [{"id": 1, "nmae": "x"}]})
    assert bad.status_code == 400
    httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
    assert "200" not in ledger(sim)["guests"]
    assert ledger(sim)["guests"]["101"]["points_balance"] == 240


def test_usage_prints_the_keys_and_every_seeded_identifier() -> None:
    text = "\n".join(PunchhSimulator().usage())
    assert "sim-location-key-0001" in text and "short_key 6624" in text
    for value in ("5550100001", "6000000000000002", "S1234567", "1234567", "a1b2c3d4e5f6"):
        assert value in text
