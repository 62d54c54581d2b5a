"""`fleet ls` over 2,000 lanes: the retained `info` and `state` of 100 stores of 20 lanes on a
real mosquitto, listed by the fleet command's own code. It checks that every lane is listed
with its fields, and prints how long that took (docs/fleet.md quotes it); it asserts no time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiomqtt
import pytest

from agent.config import MqttSettings
from agent.contract import AgentState
from agent.contract.admin import (
    ConfigInfo,
    HealthSummary,
    InfoDevice,
    LaneInfo,
    LogLevelInfo,
    OutboxSummary,
)
from agent.fleet import Central, list_lanes
from drivers.base import DeviceState
from tests.conftest import Broker

STORES, LANES = 100, 20


def info(store: str, lane: str, now: datetime) -> bytes:
    """A lane's record as an agent with a scanner and two providers publishes it."""
    record = LaneInfo(
        store=store,
        lane=lane,
        version="0.1.0",
        started=now,
        uptime_s=86_400,
        config=ConfigInfo(hash="ab" * 32, source="fleet", path="/var/lib/lane-agent/fleet/x"),
        devices=[
            InfoDevice(device_id="keyed", kind="keyed", state=DeviceState.CONNECTED),
            InfoDevice(device_id="scanner1", kind="evdev", state=DeviceState.CONNECTED),
        ],
        providers=["giftlocal", "punchh"],
        flows={"gift": "giftlocal", "loyalty": "punchh"},
        health=HealthSummary(ok=True),
        outbox=OutboxSummary(pending=0, dead=0),
        log=LogLevelInfo(level="info"),
        ts=now,
    )
    return record.model_dump_json().encode()


async def test_fleet_ls_lists_2000_lanes(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    state = AgentState(state="online", version="0.1.0", since=now).model_dump_json().encode()
    size = 0
    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=30) as publisher:
        for s in range(STORES):
            for n in range(LANES):
                base = f"lane-agent/s{s}/l{n}"
                payload = info(f"s{s}", f"l{n}", now)
                size += len(payload) + len(state)
                await publisher.publish(f"{base}/info", payload, qos=1, retain=True)
                await publisher.publish(f"{base}/state", state, qos=1, retain=True)

    settings = MqttSettings(host="127.0.0.1", port=broker.port)
    began = time.perf_counter()
    async with Central.connect(settings) as central:
        rows = await list_lanes(central, None, wait=1.0)
        last = central.last_arrival
    took = time.perf_counter() - began
    assert len(rows) == STORES * LANES
    assert {(r.state, r.version, r.health, r.outbox_pending) for r in rows} == {
        ("online", "0.1.0", "ok", 0)
    }
    with capsys.disabled():
        print(
            f"\nfleet ls: {len(rows)} lanes, {2 * len(rows)} retained messages, "
            f"{size / 1e6:.1f} MB; listed in {took:.2f} s, of which the 1.0 s quiet wait; "
            f"last message {last - began:.2f} s after connecting"
        )
