"""Seed 000's last step, "listen to real-time notification webhooks for finalized receipt
details", end to end: the card API simulator, a real mosquitto, the lane agent process and the
`lane-agent kseries-notify` process on loopback; the K-Series side is the simulator's
`ReceiptNotifier`. A voided receipt reverses its card debit at the simulator over MQTT, once
however often it is delivered; a forged one is refused and moves nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.kseries_notify import CardOrders
from simulators.kseries import ReceiptNotifier
from tests.conftest import (
    REPO,
    WAIT,
    AgentFactory,
    Broker,
    Simulators,
    free_port,
    sim_get,
    wait_for_port,
)
from tests.integration.test_lane_agent import BASE, ProbeFactory, started
from tests.integration.test_orders import event, order
from tests.integration.test_seed_card_payment import CARD_5000, kseries_toml, ok, scan_card

USER, PASSWORD = "kseries-webhook", "a long webhook password"


@pytest.fixture
def receiver(tmp_path: Path, broker: Broker) -> Iterator[tuple[ReceiptNotifier, Path]]:
    """`lane-agent kseries-notify` as a process; yields K-Series' sender and its index file."""
    port = free_port()
    secret = tmp_path / "notify.password"
    secret.write_text(PASSWORD + "\n")
    state = tmp_path / "notify-state"
    config = tmp_path / "kseries-notify.toml"
    config.write_text(
        f'listen = "127.0.0.1"\nport = {port}\nusername = "{USER}"\n'
        f'password_file = "{secret}"\nanswer_timeout = 10\nstate_dir = "{state}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "svc-kseries-test"\n'
        "reconnect_min = 0.05\nreconnect_max = 0.5\n"
    )
    log = (tmp_path / "notify.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "kseries-notify", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port(port, WAIT)  # it listens once it reads the lanes' events
        url = f"http://127.0.0.1:{port}/kseries/notifications"
        yield ReceiptNotifier(url, USER, PASSWORD), state / "card-orders.sqlite"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def wait_indexed(path: Path, order_id: str) -> None:
    """Until the receiver has read the lane's `card.paid` for the order (a condition)."""
    deadline = time.monotonic() + WAIT
    while True:
        index = CardOrders(path)
        try:
            if index.lanes(order_id) == [("s1", "l1")]:
                return
        finally:
            index.close()
        assert time.monotonic() < deadline, f"card payment of {order_id} never indexed"
        time.sleep(0.02)


async def test_a_voided_receipt_reverses_its_card_debit_over_mqtt(
    tmp_path: Path,
    simulators: Simulators,
    lane_agents: AgentFactory,
    probe_factory: ProbeFactory,
    receiver: tuple[ReceiptNotifier, Path],
) -> None:
    kseries, index = receiver
    card_api = simulators.start("kseries")
    probe = await started(lane_agents(kseries_toml(tmp_path, card_api)), probe_factory)
    token, _ = await scan_card(probe, CARD_5000)
    ok(await probe.request("order.update", order("A77.3", 1800, tax=200)))
    ok(await probe.request("gift.redeem", {"token_id": token, "amount": 1200}))
    await asyncio.to_thread(wait_indexed, index, "A77.3")

    forged = await asyncio.to_thread(
        kseries.send, "A77.3", "voided", auth=(USER, "a guessed password")
    )
    assert forged.status_code == 401
    ledger = await sim_get(card_api)
    assert (ledger["cards"][CARD_5000]["balance"], ledger["reversals"]) == (3800, {})

    delivered = await asyncio.to_thread(kseries.send, "A77.3", "voided", key="rtn-1")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json() == {"result": "s1/l1: order.void ok"}
    voided = await event(probe, "order.voided", "A77.3")
    assert [(s["step"], s["ok"]) for s in voided["steps"]] == [("reverse", True)]
    ledger = await sim_get(card_api)
    assert ledger["cards"][CARD_5000]["balance"] == 5000
    assert len(ledger["reversals"]) == 1

    again = await asyncio.to_thread(kseries.send, "A77.3", "voided", key="rtn-1")
    assert again.json() == {"result": "s1/l1: order already void"}
    assert len((await sim_get(card_api))["reversals"]) == 1
    assert f"{BASE}/request/order.void" in {t for t, _, _ in probe.messages}
