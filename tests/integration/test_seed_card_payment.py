"""Seed 000, the K-Series style gift card payment, driven only over MQTT as a POS would, against
the card API simulator on loopback: scan → balance → order → pay (partial, then the rest) →
paid; and a voided order giving its card payments back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulators.kseries import API_KEY
from simulators.server import Running
from tests.conftest import (
    AgentFactory,
    AgentProcess,
    Probe,
    Simulators,
    sim_faults,
    sim_get,
)
from tests.integration.test_lane_agent import BASE, ProbeFactory, started
from tests.integration.test_orders import event, order

CARD_1250 = "6006490000000002"  # $12.50
CARD_5000 = "6006490000000001"  # $50.00
BLOCKED = "6006490000000003"


@pytest.fixture
def card_api(simulators: Simulators) -> Running:
    return simulators.start("kseries")


def kseries_toml(tmp_path: Path, api: Running) -> str:
    """The lane's `[providers.kseries]` table for the simulator `api`."""
    key = tmp_path / "kseries.key"
    key.write_text(API_KEY)
    return (
        f'[providers.kseries]\nbase_url = "{api.url}"\napi_key_file = "{key}"\n'
        'payment_method_code = "GIFTCARD"\ntimeout = 3\n'
    )


@pytest.fixture
def agent_process(tmp_path: Path, lane_agents: AgentFactory, card_api: Running) -> AgentProcess:
    return lane_agents(kseries_toml(tmp_path, card_api))


async def scan_card(probe: Probe, number: str) -> tuple[str, dict[str, Any]]:
    """Scan a card and wait for the balance event the POS display shows."""
    answer = await probe.request("scan.inject", {"data": number})
    token_id: str = answer["data"]["token_id"]
    _, found = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") in ("card.balance", "card.invalid")
            and d["data"]["token_id"] == token_id
        )
    )
    return token_id, found


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["status"] == "ok", answer
    data: dict[str, Any] = answer["data"]
    return data


async def test_pay_with_two_cards_partial_then_the_rest(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    small, shown = await scan_card(probe, CARD_1250)
    card = shown["data"]["card"]
    assert shown["type"] == "card.balance"
    assert (card["balance"], card["currency"], card["is_redeemable"]) == (1250, "USD", True)
    assert card["masked_number"].endswith("0002")
    published = [p for t, p, _ in probe.messages if "/request/" not in t]
    assert not any(CARD_1250.encode() in p for p in published)

    ok(await probe.request("order.update", order("K1", 1000, 850, tax=150)))  # total 2000
    short = await probe.request("gift.redeem", {"token_id": small})
    assert short["error"]["code"] == "insufficient_balance"
    assert short["error"]["details"] == {"available": 1250, "currency": "USD"}

    partial = {"request_id": "pay-1", "token_id": small, "amount": 1250}
    first = ok(await probe.request("gift.redeem", partial))
    assert first["payment"] == {
        "amount_cents": 1250,
        "payment_method_code": "GIFTCARD",
        "currency": "USD",
    }
    assert first["remaining"] == 750
    assert ok(await probe.request("gift.redeem", partial)) == first  # a retry pays nothing more

    big, _ = await scan_card(probe, CARD_5000)
    rest = ok(await probe.request("gift.redeem", {"token_id": big}))
    assert (rest["payment"]["amount_cents"], rest["remaining"]) == (750, 0)
    nothing = await probe.request("gift.redeem", {"token_id": big})
    assert "nothing left to pay" in nothing["error"]["message"]

    ok(await probe.request("order.paid", {"order_id": "K1"}))
    await event(probe, "order.committed", "K1")
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_1250]["balance"] == 0
    assert ledger["cards"][CARD_5000]["balance"] == 4250
    assert sorted(r["amount"] for r in ledger["redemptions"].values()) == [750, 1250]


async def test_void_gives_the_card_payments_back(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("K2", 1800, tax=200)))
    ok(await probe.request("gift.redeem", {"token_id": token, "amount": 600}))
    voided = ok(await probe.request("order.void", {"order_id": "K2"}))
    assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("reverse", True)]
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_5000]["balance"] == 5000
    assert len(ledger["reversals"]) == 1


async def test_a_payment_the_pos_could_not_add_is_reversed_alone(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    """pos_addPayment failed after the debit: gift.reverse gives that one payment back."""
    probe = await started(agent_process, probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("K6", 2000)))
    paid = ok(await probe.request("gift.redeem", {"token_id": token, "amount": 700}))
    reversed_ = ok(
        await probe.request("gift.reverse", {"transaction_id": paid["card"]["transaction_id"]})
    )
    assert (reversed_["card"]["amount"], reversed_["card"]["balance_after"]) == (700, 5000)
    again = await probe.request("gift.reverse", {"transaction_id": paid["card"]["transaction_id"]})
    assert again["error"]["code"] == "already_reversed"
    voided = ok(await probe.request("order.void", {"order_id": "K6"}))
    assert voided["steps"] == []  # nothing left to give back
    assert len((await sim_get(card_api))["reversals"]) == 1


async def test_blocked_card_and_unknown_card_tell_the_cashier_why(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    blocked, shown = await scan_card(probe, BLOCKED)
    assert shown["data"]["card"]["status"] == "blocked"
    assert shown["data"]["card"]["is_redeemable"] is False
    ok(await probe.request("order.update", order("K3", 900)))
    refused = await probe.request("gift.redeem", {"token_id": blocked})
    assert refused["status"] == "error" and refused["error"]["code"] != "internal"
    _, unknown = await scan_card(probe, "6006499999999999")
    assert unknown["type"] == "card.invalid"
    assert unknown["data"]["error"]["code"] == "not_found"


async def test_a_lost_answer_is_resolved_by_reference_and_never_debits_twice(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("K4", 1500)))
    await sim_faults(card_api, {"path": "/v1/redemptions", "kind": "drop_after_apply"})
    paid = ok(await probe.request("gift.redeem", {"token_id": token}))
    assert paid["payment"]["amount_cents"] == 1500
    ledger = await sim_get(card_api)
    assert len(ledger["redemptions"]) == 1
    assert ledger["cards"][CARD_5000]["balance"] == 3500


async def test_a_card_service_that_never_answers_still_gets_the_pos_an_answer(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(agent_process, probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("K5", 1500)))
    await sim_faults(
        card_api,
        {"path": "/v1/redemptions", "method": "POST", "kind": "timeout", "delay": 10},
        {"path": "/v1/redemptions", "method": "GET", "kind": "timeout", "delay": 10},
    )
    answer = await probe.request("gift.redeem", {"token_id": token})
    assert answer["error"]["code"] == "unknown_outcome"
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 5000
    # Nothing reached the card: voiding finds no debit under the reference, reverses nothing.
    voided = ok(await probe.request("order.void", {"order_id": "K5"}))
    assert voided["steps"] == [] and (await sim_get(card_api))["reversals"] == {}


async def test_a_debit_the_lane_never_heard_back_about_is_found_and_given_back_on_void(
    agent_process: AgentProcess, probe_factory: ProbeFactory, card_api: Running
) -> None:
    """The debit went through, its answer and the look-up by reference were both lost: the
    lane kept the reference, so voiding the order finds the debit and reverses it."""
    probe = await started(agent_process, probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("K7", 1200)))
    await sim_faults(
        card_api,
        {"path": "/v1/redemptions", "method": "POST", "kind": "drop_after_apply"},
        {"path": "/v1/redemptions", "method": "GET", "kind": "timeout", "delay": 10},
    )
    lost = await probe.request("gift.redeem", {"token_id": token})
    assert lost["error"]["code"] == "unknown_outcome"
    assert (await sim_get(card_api))["cards"][CARD_5000]["balance"] == 3800
    voided = ok(await probe.request("order.void", {"order_id": "K7"}))
    assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("reverse", True)]
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_5000]["balance"] == 5000 and len(ledger["reversals"]) == 1
