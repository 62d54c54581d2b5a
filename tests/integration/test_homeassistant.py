"""Home Assistant discovery with the agent as a process against a real mosquitto: the configs are
retained on the broker when switched on, an earlier run's config for a device since removed is
cleared (another program's is not), and nothing is published when it is off (the default); and
under the documented ACL with docs/security/homeassistant.acl added, a lane publishes only its own
node and Home Assistant's user reads what it needs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import load_config
from agent.homeassistant import discovery_messages
from tests.conftest import REPO, AgentFactory, Broker, Probe
from tests.integration.secure_broker import (
    Clients,
    Pki,
    SecureBroker,
    lane_config,
    lane_passwords,
    password_file,
)
from tests.integration.test_security import Agents, forged, forgeries, mark

BASE = "lane-agent/s1/l1"
NODE = "homeassistant/sensor/l1"
HA_ACL = REPO / "docs" / "security" / "homeassistant.acl"
HA_USER = "homeassistant"
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


async def test_under_the_acl_a_lane_publishes_only_its_own_node_for_home_assistant(
    tmp_path: Path, pki: Pki, agents: Agents
) -> None:
    passwords = lane_passwords() | {HA_USER: secrets.token_hex(16)}
    broker = SecureBroker(tmp_path / "broker", pki, passwords, acl="\n" + HA_ACL.read_text())
    broker.start()
    clients = Clients(broker)
    try:
        ha = await clients.connect(
            HA_USER,
            "homeassistant/#",
            "lane-agent/s1/+/state",
            "lane-agent/s1/+/devices/+",
            base_topic=BASE,
        )
        ours = f"{NODE}/removed_scans/config"
        await ha.client.publish(
            ours, json.dumps({"unique_id": f"{BASE}/removed/scans"}), qos=1, retain=True
        )
        config = lane_config(
            tmp_path / "lane.toml",
            broker,
            password_file=password_file(tmp_path, broker, "l1"),
            extra=fifo(tmp_path) + "[homeassistant]\ndiscovery = true\n",
        )
        agent = agents(config)
        agent.start()
        await until_records(ha)
        await ha.wait_raw(exactly(ours, b""))
        await ha.topic("state", lambda d: d["state"] == "online")
        expected = discovery_messages(
            load_config(config), [("keyed", "keyed"), ("tech", "fifo")], __version__
        )
        received = {(t, p) for t, p, _ in ha.messages}
        assert set(expected.items()) <= received

        # Lane l1 cannot put entities under lane l2's node.
        l1 = await clients.connect("l1")
        await l1.client.publish("homeassistant/sensor/l2/fake/config", forged(), qos=1, retain=True)
        await mark(ha, "homeassistant/marker", ha)
        assert forgeries(ha) == []
        assert "Traceback" not in agent.log()
    finally:
        await clients.close()
        broker.stop()
