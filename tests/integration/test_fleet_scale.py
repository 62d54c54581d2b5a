"""`fleet ls` over 2,000 lanes: the retained `info` and `state` of 100 stores of 20 lanes on a
real mosquitto (tests/fleet_lanes.py), listed by the fleet command's own code. It checks that
every lane is listed with its fields, and prints how long that took; it asserts no time.
BENCHMARKS.md reports the same listing, timed as the operator's command (bench/fleet_ls.py)."""

from __future__ import annotations

import time

import pytest

from agent.config import MqttSettings
from agent.fleet import Central, list_lanes
from tests.conftest import Broker
from tests.fleet_lanes import LANES, STORES, VERSION, publish, retained


async def test_fleet_ls_lists_2000_lanes(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = retained()
    await publish(broker.port, messages)

    settings = MqttSettings(host="127.0.0.1", port=broker.port)
    began = time.monotonic()
    async with Central.connect(settings) as central:
        rows = await list_lanes(central, None, wait=1.0)
        last = central.last_arrival
    took = time.monotonic() - began
    assert len(rows) == STORES * LANES
    assert {(r.state, r.version, r.health, r.outbox_pending) for r in rows} == {
        ("online", VERSION, "ok", 0)
    }
    with capsys.disabled():
        size = sum(len(payload) for _, payload in messages)
        print(
            f"\nfleet ls: {len(rows)} lanes, {len(messages)} retained messages, "
            f"{size / 1e6:.1f} MB; listed in {took:.2f} s, of which the 1.0 s quiet wait; "
            f"last message {last - began:.2f} s after connecting"
        )
