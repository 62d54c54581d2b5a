"""Home Assistant MQTT discovery: the lane and its input devices as Home Assistant entities.

Off unless `[homeassistant] discovery = true`. Each entity is one retained config on
`<prefix>/<component>/<lane id>/<object id>/config` (Home Assistant's single-component discovery)
that points at topics the agent publishes anyway: the lane's retained `state` and each device's
retained record. Nothing new is published for Home Assistant beyond the configs, so its entities
show exactly what a POS screen sees. docs/homeassistant.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from agent.bus import Bus
from agent.config import Config
from agent.contract import DeviceCounters
from drivers.base import DeviceState

log = logging.getLogger(__name__)

ORIGIN = "lane-agent"
# What Home Assistant shows as each input device's model, by driver type.
KIND_MODELS = {
    "keyed": "keyed entry from the POS",
    "fifo": "named pipe",
    "evdev": "keyboard-wedge scanner",
    "serial": "serial scanner",
    "hidpos": "USB HID-POS scanner",
    "nfc": "NFC reader",
}
# Counters a cashier's manager watches; the others are for a technician.
PRIMARY_COUNTERS = {"scans"}

Json = dict[str, Any]


def topic_id(text: str) -> str:
    """`text` as a discovery topic level, which Home Assistant limits to [a-zA-Z0-9_-]: other
    characters become `_` and a short hash keeps two ids that differ only there apart."""
    clean = re.sub(r"[^a-zA-Z0-9_-]", "_", text)
    if clean == text:
        return text
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _template(path: str) -> str:
    return "{{ value_json." + path + " }}"


def _device_sensors(record_topic: str) -> dict[str, Json]:
    """A device record's sensors by object id: its state, every counter, its last error."""
    sensors: dict[str, Json] = {
        "state": {
            "name": "State",
            "value_template": _template("state"),
            "device_class": "enum",
            "options": [state.value for state in DeviceState],
            "json_attributes_topic": record_topic,
        }
    }
    for counter in DeviceCounters.model_fields:
        sensors[counter] = {
            "name": counter.replace("_", " ").capitalize(),
            "value_template": _template(f"counters.{counter}"),
            "state_class": "total_increasing",
        }
        if counter not in PRIMARY_COUNTERS:
            sensors[counter]["entity_category"] = "diagnostic"
    # A sensor's state holds at most 255 characters.
    sensors["last_error"] = {
        "name": "Last error",
        "value_template": "{{ (value_json.last_error or 'none')[:255] }}",
        "entity_category": "diagnostic",
    }
    return sensors


def discovery_messages(
    config: Config, devices: Iterable[tuple[str, str]], version: str
) -> dict[str, bytes]:
    """Topic -> retained config payload for the lane and each `(device_id, kind)`.

    Unique ids and device identifiers are built from the lane's base topic, unique on a broker
    and across a fleet (docs/fleet.md)."""
    base = config.base_topic
    prefix = config.homeassistant.prefix
    node = topic_id(config.lane.lane)
    state_topic = f"{base}/state"
    origin = {"name": ORIGIN, "sw_version": version}
    lane_device = {
        "identifiers": [base],
        "name": f"Lane {config.lane.store}/{config.lane.lane}",
        "manufacturer": ORIGIN,
        "model": "checkout lane agent",
        "sw_version": version,
    }
    # The lane agent's own state: `offline` is its last will, so this needs no availability.
    messages: dict[str, Json] = {
        f"{prefix}/binary_sensor/{node}/agent/config": {
            "name": "Agent",
            "unique_id": f"{base}/agent",
            "device_class": "connectivity",
            "state_topic": state_topic,
            "value_template": _template("state"),
            "payload_on": "online",
            "payload_off": "offline",
            "json_attributes_topic": state_topic,
            "qos": 1,
            "device": lane_device,
            "origin": origin,
        }
    }
    # A device's entities are available while the agent is online: the agent keeps its record.
    availability = [
        {
            "topic": state_topic,
            "value_template": _template("state"),
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    for device_id, kind in devices:
        record_topic = f"{base}/devices/{device_id}"
        common = {
            "state_topic": record_topic,
            "availability": availability,
            "qos": 1,
            "device": {
                "identifiers": [f"{base}/{device_id}"],
                "name": f"{config.lane.store}/{config.lane.lane} {device_id}",
                "manufacturer": ORIGIN,
                "model": KIND_MODELS.get(kind, kind),
                "sw_version": version,
                "via_device": base,
            },
            "origin": origin,
        }
        for what, options in _device_sensors(record_topic).items():
            topic = f"{prefix}/sensor/{node}/{topic_id(device_id)}_{what}/config"
            messages[topic] = {"unique_id": f"{base}/{device_id}/{what}", **common, **options}
    return {topic: json.dumps(payload).encode() for topic, payload in messages.items()}


class Discovery:
    """Keeps the lane's discovery configs on the broker: published retained (again after every
    reconnect), and those an earlier run published for devices no longer configured cleared with
    an empty retained payload, which makes Home Assistant remove the entity."""

    def __init__(self, config: Config, devices: Iterable[tuple[str, str]], version: str) -> None:
        self.messages = discovery_messages(config, devices, version)
        self.filter = f"{config.homeassistant.prefix}/+/{topic_id(config.lane.lane)}/+/config"
        self._owned = f"{config.base_topic}/"
        self._bus: Bus | None = None

    def attach(self, bus: Bus) -> None:
        self._bus = bus
        for topic, payload in self.messages.items():
            bus.retain(topic, payload)
        bus.watch(self.filter, self._seen)

    def _seen(self, topic: str, payload: bytes) -> None:
        """A config under this lane's node: clear it if this lane published it and no longer
        has the device. Another program's configs under the same node are left alone."""
        if topic in self.messages or not payload or self._bus is None:
            return
        try:
            unique_id = json.loads(payload).get("unique_id")
        except (ValueError, AttributeError):
            return
        if isinstance(unique_id, str) and unique_id.startswith(self._owned):
            log.info("Home Assistant: removing %s, its device is no longer configured", topic)
            self._bus.retain(topic, b"")
