"""Home Assistant discovery configs: built from the config and the device list, pointing at the
topics and fields the agent really publishes.

Home Assistant itself is not run here: its templates are Jinja, and what is checked is that each
`value_json.<path>` names a field of the payload model that topic carries.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agent.config import Config, ConfigError, parse_config
from agent.contract import AgentState, DeviceCounters, DeviceRecord, utc_now
from agent.homeassistant import discovery_messages, topic_id
from drivers.base import DeviceState

BASE = "lane-agent/s1/l1"
DEVICES = [("keyed", "keyed"), ("scanner", "evdev")]
TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor)/l1/[a-zA-Z0-9_-]+/config$")


def config(extra: dict[str, Any] | None = None) -> Config:
    return parse_config({"lane": {"store": "s1", "lane": "l1"}, **(extra or {})})


def configs(lane: Config | None = None) -> dict[str, dict[str, Any]]:
    built = discovery_messages(
        lane or config({"homeassistant": {"discovery": True}}), DEVICES, "9.9"
    )
    return {topic: json.loads(payload) for topic, payload in built.items()}


def resolve(template: str, payload: dict[str, Any]) -> Any:
    """The field a `{{ value_json.a.b ... }}` template reads from `payload`."""
    found = re.search(r"value_json\.([a-z_.]+)", template)
    assert found, template
    value: Any = payload
    for key in found.group(1).split("."):
        assert isinstance(value, dict) and key in value, f"{template}: no {key} in {value}"
        value = value[key]
    return value


def test_discovery_is_off_unless_switched_on() -> None:
    assert config().homeassistant.discovery is False
    assert config().homeassistant.prefix == "homeassistant"
    with pytest.raises(ConfigError) as info:
        config({"homeassistant": {"prefix": "homeassistant/#"}})
    assert info.value.problems[0].startswith("homeassistant.prefix: must be a topic prefix")


def test_one_entity_per_topic_under_the_lanes_node_each_with_its_own_unique_id() -> None:
    found = configs()
    counters = len(DeviceCounters.model_fields)
    assert len(found) == 1 + len(DEVICES) * (1 + counters + 1)  # agent; state, counters, error
    assert all(TOPIC.match(topic) for topic in found), sorted(found)
    unique_ids = [entity["unique_id"] for entity in found.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(uid.startswith(f"{BASE}/") for uid in unique_ids)
    assert all(
        entity["origin"] == {"name": "lane-agent", "sw_version": "9.9"} for entity in found.values()
    )


def test_the_lane_is_a_connectivity_sensor_on_its_retained_state() -> None:
    lane = configs()["homeassistant/binary_sensor/l1/agent/config"]
    assert lane["device_class"] == "connectivity"
    assert lane["state_topic"] == f"{BASE}/state"
    for state, payload in (("online", "payload_on"), ("offline", "payload_off")):
        assert (
            resolve(lane["value_template"], AgentState(state=state).model_dump(mode="json"))
            == (lane[payload])
        )
    assert "availability" not in lane, "the lane's own state must show offline, not unavailable"
    assert lane["device"] == {
        "identifiers": [BASE],
        "name": "Lane s1/l1",
        "manufacturer": "lane-agent",
        "model": "checkout lane agent",
        "sw_version": "9.9",
    }


def test_device_sensors_read_the_devices_record_while_the_lane_is_online() -> None:
    record = DeviceRecord(
        device_id="scanner", kind="evdev", state=DeviceState.ERROR, since=utc_now()
    ).model_dump(mode="json")
    online = AgentState(state="online").model_dump(mode="json")
    sensors = {t: e for t, e in configs().items() if "/scanner_" in t}
    assert set(sensors) == {
        f"homeassistant/sensor/l1/scanner_{what}/config"
        for what in ("state", "last_error", *DeviceCounters.model_fields)
    }
    for entity in sensors.values():
        assert entity["state_topic"] == f"{BASE}/devices/scanner"
        assert entity["device"]["identifiers"] == [f"{BASE}/scanner"]
        assert entity["device"]["via_device"] == BASE
        assert entity["device"]["model"] == "keyboard-wedge scanner"
        (available,) = entity["availability"]
        assert available["topic"] == f"{BASE}/state"
        assert resolve(available["value_template"], online) == available["payload_available"]
        resolve(entity["value_template"], record)
    state = sensors["homeassistant/sensor/l1/scanner_state/config"]
    assert resolve(state["value_template"], record) == "error"
    assert state["options"] == ["connected", "disconnected", "error"]
    scans = sensors["homeassistant/sensor/l1/scanner_scans/config"]
    assert resolve(scans["value_template"], record) == 0
    assert scans["state_class"] == "total_increasing" and "entity_category" not in scans


def test_the_discovery_prefix_is_the_configured_one() -> None:
    lane = config({"homeassistant": {"discovery": True, "prefix": "ha/discovery"}})
    assert all(topic.startswith("ha/discovery/") for topic in configs(lane))


def test_ids_outside_home_assistants_characters_are_made_safe_and_kept_apart() -> None:
    assert topic_id("lane-07_b") == "lane-07_b"
    dotted, underscored = topic_id("l.1"), topic_id("l_1")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", dotted) and dotted != underscored
    odd = config({"lane": {"store": "s1", "lane": "kasse 1"}})
    assert {topic.split("/")[2] for topic in configs(odd)} == {topic_id("kasse 1")}
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", topic_id("kasse 1"))
