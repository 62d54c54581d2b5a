"""Home Assistant discovery with the agent as a process against a real mosquitto: the configs are
retained on the broker when switched on, an earlier run's config for a device since removed is
cleared (another program's is not), and nothing is published when it is off (the default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import load_config
from agent.homeassistant import discovery_messages
from tests.conftest import AgentFactory, Broker, Probe
from tests.integration.test_security import mark

BASE = "lane-agent/s1/l1"
NODE = "homeassistant/sensor/l1"
ProbeFactory = Callable[..., Any]


def fifo(tmp_path: Path) -> str:
    return f'[devices.tech]\ntype = "fifo"\npath = "{tmp_path / "scan.fifo"}"\n'


def exactly(topic: str, payload: bytes) -> Callable[[str, bytes], bool]:
    return lambda t, p: t == topic and p == payload


async def until_records(probe: Probe) -> None:
    """Once the device records are out: the agent publishes its discovery configs before them."""
    await probe.topic("devices/tech")


async def test_discovery_configs_are_retained_and_stale_ones_of_this_lane_cleared(
    tmp_path: Path, lane_agents: AgentFactory, probe_factory: ProbeFactory, broker: Broker
) -> None:
    agent = lane_agents(fifo(tmp_path) + "[homeassistant]\ndiscovery = true\n")
    ours = f"{NODE}/removed_scans/config"  # a device an earlier run had
    theirs = f"{NODE}/thermometer/config"  # another program under the same node
    probe: Probe = await probe_factory(BASE)
    await probe.client.publish(
        ours, json.dumps({"unique_id": f"{BASE}/removed/scans"}), retain=True, qos=1
    )
    await probe.client.publish(theirs, json.dumps({"unique_id": "elsewhere/1"}), retain=True, qos=1)
    agent.start()
    await until_records(probe)
    await probe.wait_raw(exactly(ours, b""))

    expected = discovery_messages(
        load_config(agent.config), [("keyed", "keyed"), ("tech", "fifo")], __version__
    )
    late: Probe = await probe_factory(BASE)  # every topic: its retained messages come first
    await mark(probe, "homeassistant/marker", late)
    retained = {t: p for t, p, kept in late.messages if kept and t.startswith("homeassistant/")}
    assert retained == expected | {theirs: json.dumps({"unique_id": "elsewhere/1"}).encode()}

    # A broker that lost everything (no persistence) gets them again on the next connect.
    broker.stop()
    broker.start()
    again: Probe = await probe_factory(BASE)
    for topic, payload in expected.items():
        await again.wait_raw(exactly(topic, payload))
    assert "Traceback" not in agent.log()


async def test_nothing_is_published_for_home_assistant_by_default(
    tmp_path: Path, lane_agents: AgentFactory, probe_factory: ProbeFactory
) -> None:
    agent = lane_agents(fifo(tmp_path))
    probe: Probe = await probe_factory(BASE)
    agent.start()
    await until_records(probe)
    assert [t for t, _, _ in probe.messages if t.startswith("homeassistant/")] == []
