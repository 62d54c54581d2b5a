"""2,000 simulated lanes for `fleet ls` at scale: the retained `info` and `state` that 100 stores
of 20 agents keep on the central broker, published to a real mosquitto. One source for the test
(tests/integration/test_fleet_scale.py) and the benchmark (bench/fleet_ls.py), so both list the
same fleet."""

from __future__ import annotations

from datetime import UTC, datetime

import aiomqtt

from agent.contract import AgentState
from agent.contract.admin import (
    ConfigInfo,
    HealthSummary,
    InfoDevice,
    LaneInfo,
    LogLevelInfo,
    OutboxSummary,
)
from drivers.base import DeviceState

STORES, LANES = 100, 20
VERSION = "0.1.0"


def info(store: str, lane: str, now: datetime) -> bytes:
    """A lane's record as an agent with a scanner and two providers publishes it."""
    record = LaneInfo(
        store=store,
        lane=lane,
        version=VERSION,
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


def retained(stores: int = STORES, lanes: int = LANES) -> list[tuple[str, bytes]]:
    """(topic, payload) of every lane's `info` and `state`: all online, healthy, nothing queued."""
    now = datetime.now(UTC)
    state = AgentState(state="online", version=VERSION, since=now).model_dump_json().encode()
    messages = []
    for s in range(stores):
        for n in range(lanes):
            base = f"lane-agent/s{s}/l{n}"
            messages += [(f"{base}/info", info(f"s{s}", f"l{n}", now)), (f"{base}/state", state)]
    return messages


async def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Each message retained, at QoS 1, on the broker at 127.0.0.1:`port`."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=30) as publisher:
        for topic, payload in messages:
            await publisher.publish(topic, payload, qos=1, retain=True)
