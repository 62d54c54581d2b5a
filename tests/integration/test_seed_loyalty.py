"""Seed 002, Punchh loyalty, driven only over MQTT as a POS would, against the Punchh simulator
on loopback: identify the guest by every identifier shape; discounts checked before payment and
committed after it with the same line items; check-in and receipt details; a void that unlocks
the basket and commits nothing; a lost commit answer and a crash mid-commit that deduct once; a
basket another lane holds."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import __version__
from agent.providers.punchh import numeric_id
from simulators.punchh import AUTHORIZATION, BUSINESS_KEY, LOCATION_KEY, LOCKED
from simulators.server import Running
from tests.conftest import (
    WAIT,
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
ANA, BEN = "101", "102"  # simulator guests
ANA_PHONE = "5550100001"
BATCH = "/api/pos/batch_redemptions"


@pytest.fixture
def punchh_api(simulators: Simulators) -> Running:
    return simulators.start("punchh")


def punchh_toml(tmp_path: Path, api: Running) -> str:
    """The lane's `[providers.punchh]` table for the simulator `api`."""
    (tmp_path / "location.key").write_text(LOCATION_KEY)
    (tmp_path / "business.key").write_text(BUSINESS_KEY)
    return (
        f'[providers.punchh]\nbase_url = "{api.url}"\n'
        f'location_key_file = "{tmp_path / "location.key"}"\n'
        f'business_key_file = "{tmp_path / "business.key"}"\ntimeout = 3\n'
    )


@pytest.fixture
def agent_process(tmp_path: Path, lane_agents: AgentFactory, punchh_api: Running) -> AgentProcess:
    return lane_agents(punchh_toml(tmp_path, punchh_api))


def order(order_id: str, *lines: tuple[str, str, int], tax: int = 0) -> Json:
    """An order.update: (line id, name, amount) per line; ids `loyalty:n` are discount lines."""
    subtotal = sum(amount for _, _, amount in lines)
    return {
        "order_id": order_id,
        "lines": [
            {"id": i, "name": name, "quantity": 1, "amount": amount} for i, name, amount in lines
        ],
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "currency": "USD",
    }


MEAL = (("1", "Burger", 1000), ("2", "Fries", 500))


def with_discounts(order_id: str, checked: Json, *extra: tuple[str, str, int]) -> Json:
    """The order after the POS added the checked discounts as lines (and `extra` items)."""
    granted = [(d["line_id"], d["name"], d["amount"]) for d in checked["lines"]]
    return order(order_id, *MEAL, *extra, *granted, tax=80)


async def identify(probe: Probe, raw: str) -> tuple[Json, Json]:
    """Scan an identifier (keyed) and wait for the flow's answer to it."""
    scanned = ok(await probe.request("scan.inject", {"data": raw}))
    _, found = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") in ("loyalty.user", "loyalty.invalid")
            and d["data"]["token_id"] == scanned["token_id"]
        )
    )
    return scanned, found


async def check(probe: Probe, *selections: Json) -> Json:
    return ok(await probe.request("loyalty.select", {"selections": list(selections)}))


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll the simulator until `condition` holds: its state is only reachable over HTTP, so
    there is nothing to wait on but its answers."""
    async with asyncio.timeout(WAIT):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def bodies(log: list[Json], path: str, method: str = "POST") -> list[Json]:
    return [json.loads(r["body"]) for r in log if r["path"] == path and r["method"] == method]


def raw_field(raw: str, name: str) -> str:
    """The exact JSON text of one top-level field of a raw body, as sent on the wire."""
    start = raw.index(f'"{name}"')
    value = raw.index(":", start) + 1
    while raw[value] == " ":
        value += 1
    _, end = json.JSONDecoder().raw_decode(raw, value)
    return raw[value:end]


def ean13_check_digit(digits: str) -> int:
    weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return (10 - weighted % 10) % 10


def published(probe: Probe) -> bytes:
    """Everything the agent published (the POS's own requests left out)."""
    return b"\n".join(p for t, p, _ in probe.messages if "/request/" not in t)


@pytest.mark.parametrize(
    ("raw", "kind", "param", "user_id"),
    [
        ("(555) 010-0001", "phone", "phone", ANA),
        ("Ana@Example.com", "email", "email", ANA),
        ("6000000000000002", "loyalty_card", "card_number", BEN),
        ("P1A2B3C4D", "loyalty_user_qr", "user_as_qrcode", ANA),
        ("PunchhBEN102QRPunchh", "loyalty_user_qr", "user_as_qrcode", BEN),
        ("S1234567", "loyalty_user_qr", "user_as_qrcode", "103"),
        ("9f1c2e3a-4b5d-4e6f-8a7b-1c2d3e4f5a6b", "loyalty_single_scan", "single_scan_code", ANA),
        ("1234567", "loyalty_redemption_code", "redemption_code", BEN),
    ],
)
async def test_every_identifier_shape_finds_its_guest(
    agent_process: AgentProcess,
    probe_factory: ProbeFactory,
    punchh_api: Running,
    raw: str,
    kind: str,
    param: str,
    user_id: str,
) -> None:
    probe = await started(agent_process, probe_factory)
    scanned, found = await identify(probe, raw)
    assert scanned["kind"] == kind
    assert found["type"] == "loyalty.user", found
    assert found["data"]["guest"]["user_id"] == user_id
    assert found["data"]["order_id"] is None  # no order open: attached to none
    searches = [r for r in await sim_get(punchh_api, "requests") if r["path"].endswith("search")]
    assert [list(r["query"]) for r in searches] == [[param]]
    value = searches[0]["query"][param][0]
    assert value.encode() not in published(probe) and raw.encode() not in published(probe)


async def test_unknown_guest_is_reported_without_the_code(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    _, found = await identify(probe, "5559999999")
    assert found["type"] == "loyalty.invalid"
    assert (found["data"]["error"]["code"], found["data"]["error"]["message"]) == (
        "not_found",
        "User not found",
    )
    assert b"5559999999" not in published(probe)


async def test_seed_002_identify_check_pay_commit_checkin_receipt(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("P1", *MEAL, tax=120)))
    _, found = await identify(probe, ANA_PHONE)
    user = found["data"]
    assert (user["order_id"], user["guest"]["first_name"]) == ("P1", "Ana")
    assert user["guest"]["phone_masked"] == "••••••••01"
    assert ANA_PHONE.encode() not in published(probe)
    offered = {(d["discount_type"], d["discount_id"]): d["amount"] for d in user["discounts"]}
    assert offered[("reward", "7001")] == 350 and offered[("redeemable", "501")] == 500

    checked = await check(
        probe,
        {"discount_type": "reward", "discount_id": "7001"},
        {"discount_type": "redeemable", "discount_id": "501"},
    )
    assert [(d["line_id"], d["name"], d["amount"]) for d in checked["lines"]] == [
        ("loyalty:1", "Free Coffee", -350),
        ("loyalty:2", "$5 Off", -500),
    ]
    assert (checked["total"], checked["failures"]) == (850, [])
    key = checked["receipt_key"]
    assert len(key) == 12 and key.isdigit()
    assert checked["barcode"] == f"{key}{ean13_check_digit(key)}"
    shown = await probe.topic("event", lambda d: d["type"] == "loyalty.discounts")
    assert shown["data"] == checked

    # The POS applies the discounts as lines (and recomputes tax): the check still stands.
    ok(await probe.request("order.update", with_discounts("P1", checked)))
    paid = ok(await probe.request("order.paid", {"order_id": "P1"}))
    assert [(s["flow"], s["step"], s["ok"]) for s in paid["steps"]] == [
        ("loyalty", "commit", True),
        ("loyalty", "checkin", True),
        ("loyalty", "receipt", True),
    ], paid["steps"]
    receipt = await probe.topic("event", lambda d: d["type"] == "loyalty.receipt")
    assert receipt["data"] == {
        "order_id": "P1",
        "provider": "punchh",
        "receipt_key": key,
        "barcode": checked["barcode"],
        "checked_in": True,
        "points_earned": 6,  # the simulator earns a point per whole dollar of the $6.50
    }

    ledger = await sim_get(punchh_api)
    ana = ledger["guests"][ANA]
    assert ana["rewards"] == []  # Free Coffee used
    assert ana["points_balance"] == 240 - 100 + 6
    (redemption,) = ledger["redemptions"].values()
    assert [line["amount"] for line in redemption["lines"]] == ["3.50", "5.00"]
    (checkin,) = ledger["checkins"]
    assert (checkin["punchh_key"], checkin["receipt_amount"]) == (key, "6.50")
    assert ledger["receipts"][key] == [
        {
            "transaction_no": numeric_id("P1"),
            "subtotal_amount": "6.50",
            "payable": "7.30",
            "status": "closed",
        }
    ]

    log = await sim_get(punchh_api, "requests")
    assert {r["headers"]["authorization"] for r in log} == {AUTHORIZATION}
    assert {r["headers"]["user-agent"] for r in log} == {f"LaneAgent/POS/{__version__}"}
    query_raw, commit_raw = [r["body"] for r in log if r["path"] == BATCH]
    assert raw_field(commit_raw, "line_items") == raw_field(query_raw, "line_items")
    query, commit = json.loads(query_raw), json.loads(commit_raw)
    assert query["query"] is True and "query" not in commit
    assert commit == {k: v for k, v in query.items() if k != "query"}
    uid = commit["external_uid"]
    calls = [json.loads(r["body"]) for r in log if r["method"] != "GET"]
    assert {c["external_uid"] for c in calls if "external_uid" in c} == {uid}
    assert {c["punchh_key"] for c in calls if "punchh_key" in c} == {key}
    assert [r["path"] for r in log if r["method"] != "GET"] == [
        "/api/pos/discounts/lookup",
        "/api/pos/discounts/select",
        BATCH,
        BATCH,
        "/api/pos/checkins",
        "/receipt_details",
    ]
    checkin_body = bodies(log, "/api/pos/checkins")[0]
    assert checkin_body["phone"] == ANA_PHONE
    assert ("Free Coffee", 3.5, "D") in {
        (m["item_name"], m["item_amount"], m["menu_item_type"]) for m in checkin_body["menu_items"]
    }

    again = ok(await probe.request("order.paid", {"order_id": "P1"}))
    # Asked again, the agent says what was done and does nothing twice.
    assert (again["reason"], again["steps"], again["queued"]) == ("already paid", paid["steps"], [])
    assert await sim_get(punchh_api) == ledger


async def test_a_changed_order_is_checked_again_and_the_commit_repeats_the_last_check(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("P2", *MEAL, tax=120)))
    await identify(probe, "ana@example.com")
    first = await check(probe, {"discount_type": "discount_amount", "discount_value": 500})
    assert first["total"] == 500

    mark = len(probe.messages)
    ok(await probe.request("order.update", with_discounts("P2", first, ("3", "Shake", 400))))
    second = (await probe.topic("event", lambda d: d["type"] == "loyalty.discounts", mark))["data"]
    assert second["total"] == 500 and second["receipt_key"] == first["receipt_key"]
    ok(await probe.request("order.update", with_discounts("P2", second, ("3", "Shake", 400))))
    ok(await probe.request("order.paid", {"order_id": "P2"}))

    batches = [r["body"] for r in await sim_get(punchh_api, "requests") if r["path"] == BATCH]
    assert len(batches) == 3  # two checks, one commit
    lines = [raw_field(b, "line_items") for b in batches]
    assert lines[0] != lines[1] and lines[2] == lines[1]
    assert "Shake" in lines[2]
    assert raw_field(batches[2], "receipt_datetime") == raw_field(batches[1], "receipt_datetime")
    assert (await sim_get(punchh_api))["guests"][ANA]["banked_rewards"] == "0.00"


async def test_void_unlocks_the_basket_and_commits_nothing(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("V1", *MEAL)))
    await identify(probe, "6000000000000002")
    await check(probe, {"discount_type": "reward", "discount_id": "7002"})
    before = await sim_get(punchh_api)
    assert before["guests"][BEN]["basket"]["locked_by"] is not None

    voided = ok(await probe.request("order.void", {"order_id": "V1"}))
    assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("unlock", True)]
    ledger = await sim_get(punchh_api)
    ben = ledger["guests"][BEN]
    assert ben["basket"]["locked_by"] is None
    assert (ben["rewards"], ben["points_balance"]) == (["7002"], 40)
    assert (ledger["redemptions"], ledger["checkins"], ledger["receipts"]) == ({}, [], {})
    log = await sim_get(punchh_api, "requests")
    (unlock,) = bodies(log, "/api/pos/discounts/unlock", "PUT")
    assert unlock["external_uid"] == bodies(log, "/api/pos/discounts/select")[0]["external_uid"]
    assert all(b.get("query") is True for b in bodies(log, BATCH))


async def test_a_lost_commit_answer_is_sent_once_more_and_deducts_once(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("L1", *MEAL)))
    await identify(probe, ANA_PHONE)
    checked = await check(probe, {"discount_type": "reward", "discount_id": "7001"})
    ok(await probe.request("order.update", with_discounts("L1", checked)))
    await sim_faults(punchh_api, {"path": BATCH, "method": "POST", "kind": "drop_after_apply"})

    paid = ok(await probe.request("order.paid", {"order_id": "L1"}))
    assert [(s["step"], s["ok"]) for s in paid["steps"]] == [
        ("commit", True),
        ("checkin", True),
        ("receipt", True),
    ]
    retried = ok(await probe.request("order.paid", {"order_id": "L1"}))
    assert (retried["reason"], retried["steps"]) == ("already paid", paid["steps"])
    ledger = await sim_get(punchh_api)
    assert len(ledger["redemptions"]) == 1 and ledger["guests"][ANA]["rewards"] == []
    assert ledger["guests"][ANA]["banked_rewards"] == "5.00"
    log = await sim_get(punchh_api, "requests")
    commits = [r for r in log if r["path"] == BATCH and '"query"' not in r["body"]]
    assert [r["status"] for r in commits] == [None, 200]  # dropped, then answered
    assert commits[0]["body"] == commits[1]["body"]


async def test_paid_again_after_a_crash_mid_commit_deducts_once(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    """The agent dies while Punchh applies the commit; the POS sends order.paid again to the
    restarted agent, which resends the commit from the saved check."""
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("C1", *MEAL)))
    await identify(probe, ANA_PHONE)
    checked = await check(probe, {"discount_type": "reward", "discount_id": "7001"})
    ok(await probe.request("order.update", with_discounts("C1", checked)))
    await sim_faults(punchh_api, {"path": BATCH, "method": "POST", "kind": "slow", "delay": 2})
    pay = {"request_id": "pay-C1", "order_id": "C1"}
    await probe.client.publish(f"{BASE}/request/order.paid", json.dumps(pay), qos=1)

    async def commit_sent() -> bool:
        log = await sim_get(punchh_api, "requests")
        return any(r["path"] == BATCH and '"query"' not in r["body"] for r in log)

    async def commit_applied() -> bool:
        return len((await sim_get(punchh_api))["redemptions"]) == 1

    await until(commit_sent)
    agent_process.signal(signal.SIGKILL)
    await until(commit_applied)
    mark = len(probe.messages)
    agent_process.start()
    await probe.topic("state", lambda d: d["state"] == "online", mark)

    paid = ok(await probe.request("order.paid", pay))
    assert [(s["step"], s["ok"]) for s in paid["steps"]] == [
        ("commit", True),
        ("checkin", False),  # the guest's phone was only ever in the dead agent's memory
        ("receipt", True),
    ]
    assert paid["steps"][1]["error"]["code"] == "unknown_token"
    ledger = await sim_get(punchh_api)
    assert len(ledger["redemptions"]) == 1 and ledger["guests"][ANA]["rewards"] == []
    assert list(ledger["receipts"]) == [checked["receipt_key"]]
    commits = [r["body"] for r in await sim_get(punchh_api, "requests") if r["path"] == BATCH]
    assert len(commits) == 3 and commits[1] == commits[2]  # check, lost commit, resent commit


async def test_a_basket_another_lane_holds_is_reported_in_punchhs_words(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    headers = {
        "Authorization": AUTHORIZATION,
        "User-Agent": "OtherPos/POS/1.0",
        "Accept": "application/json",
    }
    async with httpx.AsyncClient(base_url=punchh_api.url, headers=headers) as other_lane:
        held = await other_lane.post(
            "/api/pos/discounts/select",
            json={
                "user_id": int(ANA),
                "external_uid": "another-lane-order",
                "discount_basket_items_attributes": [
                    {"discount_type": "reward", "discount_id": "7001"}
                ],
            },
        )
        held.raise_for_status()
    ok(await probe.request("order.update", order("B1", *MEAL)))
    _, found = await identify(probe, ANA_PHONE)
    assert found["data"]["discounts_error"]["code"] == "basket_locked"

    refused = await probe.request(
        "loyalty.select", {"selections": [{"discount_type": "redeemable", "discount_id": "502"}]}
    )
    assert refused["status"] == "error"
    assert (refused["error"]["code"], refused["error"]["message"]) == ("basket_locked", LOCKED)
    voided = ok(await probe.request("order.void", {"order_id": "B1"}))
    assert voided["steps"] == []  # this lane never held the basket: nothing to unlock
    ledger = await sim_get(punchh_api)
    assert ledger["guests"][ANA]["basket"]["locked_by"] == "another-lane-order"


async def test_a_redemption_code_is_selected_by_its_scan_and_never_shown(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    """The code identifies Ben and is redeemed by its token_id; the commit spends it, so his
    card, scanned too, is what checks him in."""
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("R1", *MEAL)))
    code, _ = await identify(probe, "1234567")
    await identify(probe, "6000000000000002")
    checked = await check(probe, {"discount_type": "redemption_code", "token_id": code["token_id"]})
    assert [(d["name"], d["amount"]) for d in checked["lines"]] == [("$2 Off", -200)]
    assert checked["lines"][0]["discount_id"] != "1234567"
    clear = await probe.request(
        "loyalty.select",
        {"selections": [{"discount_type": "redemption_code", "discount_id": "1234567"}]},
    )
    assert clear["error"]["code"] == "invalid_request"
    held = ok(await probe.request("order.get", {}))["flows"]["loyalty"]  # a screen rebuilding
    assert held["check"]["lines"] == checked["lines"]
    paid = ok(await probe.request("order.paid", {"order_id": "R1"}))
    assert [(s["step"], s["ok"]) for s in paid["steps"]] == [
        ("commit", True),
        ("checkin", True),
        ("receipt", True),
    ]
    ledger = await sim_get(punchh_api)
    assert ledger["guests"][BEN]["redemption_codes"] == []
    log = await sim_get(punchh_api, "requests")
    assert bodies(log, "/api/pos/checkins")[0]["card_number"] == "6000000000000002"
    done = ok(await probe.request("order.get", {"order_id": "R1"}))["flows"]["loyalty"]
    assert done["committed"]["lines"] == checked["lines"]
    assert b"1234567" not in published(probe)


async def test_an_order_without_a_guest_still_stores_its_receipt(
    agent_process: AgentProcess, probe_factory: ProbeFactory, punchh_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    ok(await probe.request("order.update", order("N1", *MEAL, tax=120)))
    paid = ok(await probe.request("order.paid", {"order_id": "N1"}))
    assert [(s["step"], s["ok"]) for s in paid["steps"]] == [("receipt", True)]
    receipt = (await probe.topic("event", lambda d: d["type"] == "loyalty.receipt"))["data"]
    assert (receipt["checked_in"], receipt["barcode"][:12]) == (False, receipt["receipt_key"])
    committed = await event(probe, "order.committed", "N1")
    assert committed["steps"] == paid["steps"]
    ledger = await sim_get(punchh_api)
    assert ledger["checkins"] == [] and ledger["redemptions"] == {}
    assert ledger["receipts"][receipt["receipt_key"]][0]["payable"] == "16.20"
