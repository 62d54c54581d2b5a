"""Seed 001, PETZ coupons, driven only over MQTT as a POS would, against the PETZ simulator on
loopback; what reached PETZ is read from the simulator's ledger and request log afterwards.

Simulator seed: phone 5551234567 is consumer c_1001 with cpn_kibble2 ($2.00 off KIBBLE),
cpn_treats15 (15% off TREATS) and cpn_catnip1 (expired); 5559876543 is c_1002, no coupons.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.petz import DEFAULT_KEY
from simulators.server import Running
from tests.conftest import (
    REPO,
    AgentFactory,
    AgentProcess,
    Probe,
    Simulators,
    sim_faults,
    sim_get,
)
from tests.integration.test_lane_agent import BASE, ProbeFactory, started
from tests.integration.test_orders import event
from tests.integration.test_seed_card_payment import ok

Json = dict[str, Any]

KIBBLE = "012345678905"
TREATS = "036000291452"
OTHER = "041000000638"  # no coupon lists it
PHONE = "5551234567"
FAMILY_PHONE = "5559876543"
CAPTURE = "/posface/auth/capture/"
REDEEM = "/posface/auth/redeem/"


@pytest.fixture
def petz_api(simulators: Simulators) -> Running:
    return simulators.start("petz")


@pytest.fixture
def petz_settings() -> str:
    """Extra `[providers.petz]` lines; a test parametrizes it to change one."""
    return ""


def petz_toml(tmp_path: Path, api: Running, settings: str = "") -> str:
    """The lane's `[providers.petz]` table for the simulator `api`, plus `settings` lines."""
    key = tmp_path / "petz.key"
    key.write_text(DEFAULT_KEY)
    return (
        f'[providers.petz]\nbase_url = "{api.url}"\napi_key_file = "{key}"\n'
        f"timeout = 3\n{settings}\n"
    )


@pytest.fixture
def agent_process(
    tmp_path: Path, lane_agents: AgentFactory, petz_api: Running, petz_settings: str
) -> AgentProcess:
    return lane_agents(petz_toml(tmp_path, petz_api, petz_settings))


def basket(order_id: str, *lines: tuple[str, int], tax: int = 0) -> Json:
    """An `order.update` whose lines carry product codes: (sku, amount) each."""
    items = [
        {"id": str(n), "name": f"Item {n}", "quantity": 1, "amount": amount, "sku": sku}
        for n, (sku, amount) in enumerate(lines, start=1)
    ]
    subtotal = sum(amount for _, amount in lines)
    return {
        "order_id": order_id,
        "lines": items,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "currency": "USD",
    }


async def coupon_event(probe: Probe, kind: str, start: int = 0) -> Json:
    _, found = await probe.wait_for(
        lambda t, d: t == f"{BASE}/event" and d.get("type") == kind, start=start
    )
    data: Json = found["data"]
    return data


async def scan_phone(probe: Probe, phone: str) -> tuple[str, Json]:
    """Key the phone in and wait for what the coupon flow made of it."""
    start = len(probe.messages)
    token_id: str = ok(await probe.request("scan.inject", {"data": phone}))["token_id"]
    _, found = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") in ("coupon.customer", "coupon.invalid")
            and d["data"]["token_id"] == token_id
        ),
        start=start,
    )
    return token_id, found


def by_coupon(authorization: Json) -> dict[str, Json]:
    return {d["coupon_id"]: d for d in authorization["discounts"]}


async def petz_paths(petz_api: Running) -> list[str]:
    return [r["path"] for r in await sim_get(petz_api, "requests")]


def event_types(probe: Probe) -> list[str]:
    return [json.loads(p)["type"] for t, p, _ in probe.messages if t == f"{BASE}/event"]


def steps(closed: Json) -> list[tuple[str, bool]]:
    return [(s["step"], s["ok"]) for s in closed["steps"]]


async def test_seed_workflow_phone_authorize_discounts_paid_captured(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", basket("P1", (KIBBLE, 1299), (TREATS, 1299), tax=200)))

    _, shown = await scan_phone(probe, PHONE)
    assert shown["type"] == "coupon.customer", shown
    found = shown["data"]
    assert (found["display"], found["order_id"], found["provider"]) == ("••••••••67", "P1", "petz")
    customer = found["customer"]
    assert customer["consumer_id"] == "c_1001"
    assert customer["wallet_url"]
    wallet = {c["coupon_id"]: c for c in customer["wallet"]}
    assert set(wallet) == {"cpn_kibble2", "cpn_treats15", "cpn_catnip1"}
    assert wallet["cpn_kibble2"]["amount_off"] == 200
    assert wallet["cpn_kibble2"]["description"] == "$2.00 off Acme Kibble 5 lb"
    assert wallet["cpn_kibble2"]["expires_at"]

    # The customer opts to pay: store promotions first, then the coupons.
    promoted = basket("P1", (KIBBLE, 1299), (TREATS, 1199), tax=200)
    ok(await probe.request("order.update", promoted))
    start = len(probe.messages)
    authorized = ok(await probe.request("coupon.authorize", {"order_id": "P1"}))
    auth = authorized["authorization"]
    assert (await coupon_event(probe, "coupon.authorized", start)) == authorized
    coupons = by_coupon(auth)
    assert (coupons["cpn_kibble2"]["amount"], coupons["cpn_kibble2"]["line_ids"]) == (200, ["1"])
    assert (coupons["cpn_treats15"]["amount"], coupons["cpn_treats15"]["line_ids"]) == (180, ["2"])
    assert coupons["cpn_catnip1"]["amount"] == 0
    assert coupons["cpn_catnip1"]["rejected"] == "expired"
    assert auth["total_discount"] == 380

    # The POS applies the discounts; the authorization stands and asking again changes nothing.
    discounted = basket("P1", (KIBBLE, 1099), (TREATS, 1019), tax=200)
    ok(await probe.request("order.update", discounted))
    ok(await probe.request("order.update", discounted))
    again = ok(await probe.request("coupon.authorize", {}))
    assert again["authorization"]["auth_id"] == auth["auth_id"]

    start = len(probe.messages)
    paid = ok(await probe.request("order.paid", {"order_id": "P1"}))
    assert steps(paid) == [("capture", True), ("order", True)]
    captured = await coupon_event(probe, "coupon.captured", start)
    assert captured["capture"]["auth_id"] == auth["auth_id"]
    assert sorted(captured["capture"]["coupon_ids"]) == ["cpn_kibble2", "cpn_treats15"]
    await event(probe, "order.committed", "P1")

    ledger = await sim_get(petz_api)
    assert ledger["consumers"]["c_1001"]["wallet"] == ["cpn_catnip1"]
    assert sorted(r["coupon_id"] for r in ledger["redemptions"]) == ["cpn_kibble2", "cpn_treats15"]
    assert ledger["authorizations"][auth["auth_id"]]["status"] == "captured"
    petz_order = ledger["orders"]["P1"]
    assert (petz_order["status"], petz_order["consumer_id"]) == ("paid", "c_1001")
    assert petz_order["total"] == "23.18"  # PETZ holds the order as it was paid
    # Nothing went to PETZ before it had a customer, an unchanged order was not sent twice,
    # and the standing authorization was not asked for again.
    assert await petz_paths(petz_api) == [
        "/posface/customer/set/",
        "/posface/order/set/",  # the order, with its customer
        "/posface/order/set/",  # after store promotions
        "/posface/order/set/",  # authorize: this exact snapshot...
        "/posface/auth/create/",  # ...then the authorization
        "/posface/order/set/",  # the discounts applied
        CAPTURE,
        "/posface/order/set/",  # paid
    ]
    assert "coupon.invalidated" not in event_types(probe)
    published = [p for t, p, _ in probe.messages if "/request/" not in t]
    assert not any(PHONE.encode() in p for p in published)


async def authorized_order(probe: Probe, order_id: str, *lines: tuple[str, int]) -> Json:
    """An order with the seed customer and its coupons authorized: the authorization."""
    ok(await probe.request("order.update", basket(order_id, *lines)))
    _, shown = await scan_phone(probe, PHONE)
    assert shown["type"] == "coupon.customer", shown
    authorization: Json = ok(await probe.request("coupon.authorize", {}))["authorization"]
    return authorization


async def test_a_voided_order_releases_its_coupons_and_captures_nothing(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    auth = await authorized_order(probe, "V1", (KIBBLE, 1299))
    voided = ok(await probe.request("order.void", {"order_id": "V1"}))
    assert steps(voided) == [("release", True)]
    ledger = await sim_get(petz_api)
    assert ledger["authorizations"][auth["auth_id"]]["status"] == "released"
    assert ledger["orders"]["V1"]["status"] == "void"
    assert ledger["redemptions"] == []
    assert "cpn_kibble2" in ledger["consumers"]["c_1001"]["wallet"]
    assert CAPTURE not in await petz_paths(petz_api)


async def test_a_replaced_order_lets_its_coupons_go_to_the_next_one(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    first = await authorized_order(probe, "R1", (KIBBLE, 1299))
    ok(await probe.request("order.update", basket("R2", (KIBBLE, 1299))))
    abandoned = await event(probe, "order.abandoned", "R1")
    assert steps(abandoned) == [("release", True)]
    _, shown = await scan_phone(probe, PHONE)
    assert shown["data"]["order_id"] == "R2"
    second = ok(await probe.request("coupon.authorize", {"order_id": "R2"}))["authorization"]
    assert by_coupon(second)["cpn_kibble2"]["amount"] == 200  # not held by R1 any more
    ledger = await sim_get(petz_api)
    assert ledger["authorizations"][first["auth_id"]]["status"] == "released"
    voided = ok(await probe.request("order.void", {"order_id": "R1"}))
    assert voided["steps"] == []  # released already


async def test_a_coupon_for_products_not_in_the_order_is_rejected_with_a_reason(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    auth = await authorized_order(probe, "M1", (KIBBLE, 1299), (OTHER, 500))
    coupons = by_coupon(auth)
    assert (coupons["cpn_kibble2"]["amount"], coupons["cpn_kibble2"]["rejected"]) == (200, None)
    mismatch = coupons["cpn_treats15"]
    assert (mismatch["amount"], mismatch["rejected"]) == (0, "product_mismatch")
    assert mismatch["reason"] == "No item in this order matches the coupon's products."
    assert mismatch["line_ids"] == []
    assert auth["total_discount"] == 200


async def test_no_customer_no_order_or_no_applicable_coupon_tell_the_cashier_why(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    _, early = await scan_phone(probe, PHONE)
    assert early["type"] == "coupon.invalid"
    assert early["data"]["error"]["code"] == "invalid_request"
    assert "send order.update first" in early["data"]["error"]["message"]

    ok(await probe.request("order.update", basket("N1", (KIBBLE, 1299))))
    nobody = await probe.request("coupon.authorize", {})
    assert nobody["error"]["code"] == "invalid_request"
    assert "scan the customer's phone first" in nobody["error"]["message"]
    token_id, unknown = await scan_phone(probe, "5550000000")
    assert unknown["type"] == "coupon.invalid"
    assert unknown["data"]["display"] == "••••••••00"
    assert unknown["data"]["error"] == {
        "code": "not_found",
        "message": "No PETZ account matches this phone number. Check the number with the customer.",
        "details": None,
    }
    again = await probe.request("coupon.customer", {"token_id": token_id})
    assert again["error"]["code"] == "not_found"

    _, family = await scan_phone(probe, FAMILY_PHONE)
    assert family["data"]["customer"]["wallet"] == []
    empty = await probe.request("coupon.authorize", {})
    assert empty["error"]["code"] == "not_redeemable"
    assert empty["error"]["message"] == (
        "No PETZ coupon in the customer's wallet applies to this order."
    )
    assert (await sim_get(petz_api))["authorizations"] == {}


async def test_petz_down_at_authorize_gives_provider_unavailable_and_holds_nothing(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", basket("D1", (KIBBLE, 1299))))
    await scan_phone(probe, PHONE)
    # An order sync PETZ refuses does not hold the POS: the order is sent again later.
    await sim_faults(petz_api, {"path": "/posface/order/set/", "kind": "error", "status": 503})
    ok(await probe.request("order.update", basket("D1", (KIBBLE, 1299), (OTHER, 300))))
    await sim_faults(petz_api, {"path": "/posface/auth/create/", "kind": "error", "status": 503})
    down = await probe.request("coupon.authorize", {})
    assert down["status"] == "error"
    assert down["error"]["code"] == "provider_unavailable"
    assert (await sim_get(petz_api))["authorizations"] == {}
    retried = ok(await probe.request("coupon.authorize", {}))
    assert retried["authorization"]["total_discount"] == 200
    assert len((await sim_get(petz_api))["orders"]["D1"]["lines"]) == 2


async def test_a_capture_that_never_answers_still_closes_the_order_and_can_be_retried(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    auth = await authorized_order(probe, "T1", (KIBBLE, 1299))
    # Both the capture and its one retry go unanswered (the agent's timeout is 3 s).
    await sim_faults(petz_api, {"path": CAPTURE, "kind": "timeout", "delay": 30, "count": 2})
    paid = ok(await probe.request("order.paid", {"order_id": "T1"}))
    assert steps(paid) == [("capture", False), ("order", True)]
    assert paid["steps"][0]["error"]["code"] == "unknown_outcome"
    assert paid["order"]["status"] == "paid"
    assert (await sim_get(petz_api))["redemptions"] == []

    retried = ok(await probe.request("coupon.capture", {"order_id": "T1"}))
    assert retried["capture"]["coupon_ids"] == ["cpn_kibble2"]
    assert ok(await probe.request("coupon.capture", {"order_id": "T1"})) == retried
    ledger = await sim_get(petz_api)
    assert [r["coupon_id"] for r in ledger["redemptions"]] == ["cpn_kibble2"]
    assert ledger["authorizations"][auth["auth_id"]]["status"] == "captured"
    assert (await petz_paths(petz_api)).count(CAPTURE) == 3


@pytest.mark.parametrize("petz_settings", [f'capture_path = "{REDEEM}"'])
async def test_the_redeem_path_setting_captures_through_auth_redeem(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    await authorized_order(probe, "X1", (KIBBLE, 1299))
    paid = ok(await probe.request("order.paid", {"order_id": "X1"}))
    assert steps(paid) == [("capture", True), ("order", True)]
    paths = await petz_paths(petz_api)
    assert REDEEM in paths and CAPTURE not in paths
    assert (await sim_get(petz_api))["consumers"]["c_1001"]["redeemed"] == ["cpn_kibble2"]


async def test_new_products_invalidate_the_authorization_until_it_is_renewed(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    first = await authorized_order(probe, "C1", (KIBBLE, 1299))
    start = len(probe.messages)
    ok(await probe.request("order.update", basket("C1", (KIBBLE, 1299), (TREATS, 1000))))
    invalidated = await coupon_event(probe, "coupon.invalidated", start)
    assert (invalidated["auth_id"], invalidated["order_id"]) == (first["auth_id"], "C1")
    assert invalidated["reason"] == "the order's products changed"

    renewed = ok(await probe.request("coupon.authorize", {}))["authorization"]
    assert renewed["auth_id"] != first["auth_id"]
    assert renewed["total_discount"] == 350
    paid = ok(await probe.request("order.paid", {"order_id": "C1"}))
    assert steps(paid) == [("capture", True), ("order", True)]
    ledger = await sim_get(petz_api)
    assert ledger["authorizations"][first["auth_id"]]["status"] == "released"
    assert ledger["authorizations"][renewed["auth_id"]]["status"] == "captured"


async def test_a_new_customer_invalidates_and_a_stale_authorization_is_not_captured(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    """A shared family phone: the cashier scans the other number after authorizing."""
    probe = await started(agent_process, probe_factory)
    first = await authorized_order(probe, "F1", (KIBBLE, 1299))
    start = len(probe.messages)
    _, family = await scan_phone(probe, FAMILY_PHONE)
    assert family["data"]["customer"]["consumer_id"] == "c_1002"
    invalidated = await coupon_event(probe, "coupon.invalidated", start)
    assert (invalidated["auth_id"], invalidated["reason"]) == (
        first["auth_id"],
        "the customer changed",
    )
    paid = ok(await probe.request("order.paid", {"order_id": "F1"}))
    assert steps(paid) == [("capture", False), ("order", True)]
    assert paid["steps"][0]["error"]["code"] == "not_redeemable"
    ledger = await sim_get(petz_api)
    assert ledger["redemptions"] == []
    assert ledger["orders"]["F1"]["consumer_id"] == "c_1002"
    assert CAPTURE not in await petz_paths(petz_api)


# --- the outbox, seen through the coupon flow -----------------------------------------------
# Work an order's closing owes survives provider failures, is retried in the background until
# done, and what cannot be done is dead-lettered, listed and retried or dropped by a person
# with `lane-agent outbox`.


def outbox_cli(config: Path, *args: str, answer: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "outbox", "--config", str(config), *args],
        cwd=REPO,
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


async def outbox_event(probe: Any, kind: str) -> dict[str, Any]:
    _, found = await probe.wait_for(lambda t, d: t == f"{BASE}/event" and d.get("type") == kind)
    data: dict[str, Any] = found["data"]
    return data


async def test_a_capture_failing_for_now_is_retried_until_it_is_done(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    await authorized_order(probe, "Q1", (KIBBLE, 1299))
    await sim_faults(petz_api, {"path": CAPTURE, "kind": "error", "status": 503, "count": 2})
    paid = ok(await probe.request("order.paid", {"order_id": "Q1"}))
    assert paid["order"]["status"] == "paid" and paid["queued"] == ["coupons"]
    assert paid["steps"][0]["error"]["code"] == "provider_unavailable"
    delivered = await outbox_event(probe, "outbox.delivered")
    assert delivered["entry"]["order_id"] == "Q1" and delivered["entry"]["attempts"] >= 2
    assert next(s["step"] for s in delivered["steps"] if s["ok"]) == "capture"
    ledger = await sim_get(petz_api)
    assert [r["coupon_id"] for r in ledger["redemptions"]] == ["cpn_kibble2"]
    again = ok(await probe.request("order.paid", {"order_id": "Q1"}))
    assert again["queued"] == [] and again["reason"] == "already paid"


async def test_work_that_fails_for_good_is_dead_lettered_and_a_person_can_retry_it(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    await authorized_order(probe, "Q2", (KIBBLE, 1299))
    await sim_faults(petz_api, {"path": CAPTURE, "kind": "error", "status": 400})
    ok(await probe.request("order.paid", {"order_id": "Q2"}))
    dead = await outbox_event(probe, "outbox.dead")
    assert dead["entry"]["flow"] == "coupons" and dead["error"].startswith("invalid_request")
    listing = outbox_cli(agent_process.config, "list")
    assert "Q2:coupons:paid" in listing and "dead" in listing and "invalid_request" in listing

    entry = str(dead["entry"]["id"])
    assert "kept" in outbox_cli(agent_process.config, "drop", entry, answer="n\n")
    assert "tried again now" in outbox_cli(agent_process.config, "retry", entry)
    delivered = await outbox_event(probe, "outbox.delivered")
    assert delivered["entry"]["id"] == dead["entry"]["id"]
    assert len((await sim_get(petz_api))["redemptions"]) == 1
    assert "nothing owed" in outbox_cli(agent_process.config, "list")


async def test_a_dropped_entry_is_never_done(
    agent_process: AgentProcess, probe_factory: ProbeFactory, petz_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    await authorized_order(probe, "Q3", (KIBBLE, 1299))
    await sim_faults(petz_api, {"path": CAPTURE, "kind": "error", "status": 400})
    ok(await probe.request("order.paid", {"order_id": "Q3"}))
    dead = await outbox_event(probe, "outbox.dead")
    dropped = outbox_cli(agent_process.config, "drop", str(dead["entry"]["id"]), "--yes")
    assert f"dropped entry {dead['entry']['id']}" in dropped
    assert "nothing owed" in outbox_cli(agent_process.config, "list")
    assert (await sim_get(petz_api))["redemptions"] == []
