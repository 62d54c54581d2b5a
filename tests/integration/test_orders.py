"""The lane's order context over MQTT with a real agent process: open, update, replace, close,
and survive a SIGKILL."""

from __future__ import annotations

import signal
from typing import Any

from tests.conftest import AgentProcess, Probe
from tests.integration.test_lane_agent import BASE, ProbeFactory, started


def order(order_id: str, *amounts: int, tax: int = 0) -> dict[str, Any]:
    lines = [
        {"id": str(n), "name": f"Item {n}", "quantity": 1, "amount": amount}
        for n, amount in enumerate(amounts, start=1)
    ]
    subtotal = sum(amounts)
    return {
        "order_id": order_id,
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "currency": "USD",
    }


async def event(probe: Probe, kind: str, order_id: str, start: int = 0) -> dict[str, Any]:
    _, found = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") == kind
            and d["data"]["order"]["order_id"] == order_id
        ),
        start=start,
    )
    data: dict[str, Any] = found["data"]
    return data


async def test_update_then_paid_then_paid_again(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    first = await probe.request("order.update", order("A1", 1000, 250, tax=100))
    assert first["status"] == "ok", first
    assert first["data"]["order"] == {
        "order_id": "A1",
        "status": "open",
        "total": 1350,
        "currency": "USD",
        "lines": 2,
    }
    grown = await probe.request("order.update", order("A1", 1000, 250, 75, tax=100))
    assert grown["data"]["order"]["total"] == 1425
    assert (await event(probe, "order.updated", "A1"))["replaced"] is None
    paid = await probe.request("order.paid", {"order_id": "A1"})
    assert paid["data"]["order"]["status"] == "paid", paid
    committed = await event(probe, "order.committed", "A1")
    assert committed["order"]["status"] == "paid"
    again = await probe.request("order.paid", {"order_id": "A1"})
    assert again["data"]["reason"] == "already paid" and again["data"]["steps"] == []
    late = await probe.request("order.update", order("A1", 5))
    assert late["error"]["code"] == "invalid_request" and "already paid" in late["error"]["message"]
    void = await probe.request("order.void", {"order_id": "A1"})
    assert void["error"]["code"] == "invalid_request"


async def test_a_new_order_id_abandons_the_open_one(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    await probe.request("order.update", order("B1", 500))
    second = await probe.request("order.update", order("B2", 700))
    assert second["data"]["replaced"] == "B1"
    abandoned = await event(probe, "order.abandoned", "B1")
    assert abandoned["order"]["status"] == "abandoned"
    assert abandoned["reason"] == "replaced by order B2"
    voided = await probe.request("order.void", {"order_id": "B2"})
    assert voided["data"]["order"]["status"] == "void"
    assert (await event(probe, "order.voided", "B2"))["order"]["total"] == 700


async def test_bad_orders_are_refused_with_the_reason(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    wrong_total = order("C1", 500, tax=50) | {"total": 500}
    answer = await probe.request("order.update", wrong_total)
    assert answer["error"]["code"] == "invalid_request"
    assert "total 500 is not subtotal 500 + tax 50" in answer["error"]["message"]
    bad_currency = await probe.request("order.update", order("C1", 500) | {"currency": "usd"})
    assert "currency" in bad_currency["error"]["message"]
    unknown = await probe.request("order.paid", {"order_id": "nope"})
    assert unknown["error"]["code"] == "not_found"
    assert "order.update" in unknown["error"]["message"]


async def test_the_open_order_survives_sigkill(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    await probe.request("order.update", order("D1", 1999, tax=160))
    agent_process.signal(signal.SIGKILL)
    mark = len(probe.messages)
    agent_process.start()
    await probe.topic("state", lambda d: d["state"] == "online", start=mark)
    paid = await probe.request("order.paid", {"order_id": "D1"})
    assert paid["data"]["order"] == {
        "order_id": "D1",
        "status": "paid",
        "total": 2159,
        "currency": "USD",
        "lines": 1,
    }
