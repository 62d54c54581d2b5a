"""One benchmark run's shared parts: the broker, the subscriber, the scanner, the work dirs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Broker, Received, Subscriber
from bench.daemons import (
    BARCODE_TOPIC,
    LANE_BASE,
    NFC2MQTT_TOPIC,
    BarcodeServer,
    Daemon,
    LaneAgent,
    barcode_value,
    lane_scan_value,
)

# Generous: the VM emulates its CPU (TCG), where a Python daemon needs ~10-20 s to start.
START_TIMEOUT = 180.0

ValueOf = Callable[[str, bytes], str | None]


@dataclass
class Run:
    workdir: Path
    broker: Broker
    subscriber: Subscriber
    serial: int = 0
    notes: list[str] = field(default_factory=list)

    def next_serial(self) -> int:
        """Scan numbers never repeat within a run, so a late message can't pass for a new one."""
        self.serial += 1
        return self.serial


@contextmanager
def run_context(workdir: Path) -> Iterator[Run]:
    broker = Broker(workdir / "broker")
    broker.start()
    subscriber = Subscriber(broker.port, [f"{LANE_BASE}/#", BARCODE_TOPIC, f"{NFC2MQTT_TOPIC}/#"])
    try:
        yield Run(workdir, broker, subscriber)
    finally:
        subscriber.close()
        broker.stop()


@dataclass
class Contender:
    """A daemon reading the bench's keyboard, and how to read a scanned value off its messages."""

    label: str
    daemon: Daemon
    value_of: ValueOf
    since: int = 0  # the subscriber's message index when the daemon was started

    def carrying(self, code: str) -> Callable[[Received], bool]:
        return lambda message: self.value(message) == code

    def value(self, message: Received) -> str | None:
        try:
            return self.value_of(message.topic, message.payload)
        except (ValueError, AttributeError):
            return None


def lane_keyboard(run: Run, tag: str, usb_id: str) -> Contender:
    """lane-agent with one evdev scanner: its defaults (grab, US layout, Enter terminates) but
    for `inter_key_timeout = 0`: a scan ends on Enter only, as in barcode-server. The default
    (0.1 s) ends a scan that sends no terminator; under emulation the bench's typist itself
    sometimes stalls longer than that inside a scan (counted as writer stalls), and lane-agent
    would rightly split that scan, which measures the bench, not the daemon."""
    devices = f'[devices.scanner]\ntype = "evdev"\nusb_id = "{usb_id}"\ninter_key_timeout = 0\n'
    agent = LaneAgent(run.workdir / f"{tag}-lane-agent", run.broker.port, devices)
    return Contender("lane-agent", agent, lane_scan_value)


def start_lane_keyboard(run: Run, contender: Contender) -> None:
    agent = contender.daemon
    assert isinstance(agent, LaneAgent)
    mark = run.subscriber.mark()
    contender.since = mark
    agent.start()
    agent.wait_ready(START_TIMEOUT)
    connected = run.subscriber.wait_for(
        lambda m: (
            m.topic == f"{LANE_BASE}/devices/scanner"
            and json.loads(m.payload).get("state") == "connected"
        ),
        START_TIMEOUT,
        mark,
    )
    if connected is None:
        agent.check_alive()
        raise TimeoutError("lane-agent never reported the scanner connected")


def barcode_keyboard(run: Run, tag: str, device_name: str) -> Contender:
    server = BarcodeServer(run.workdir / f"{tag}-barcode-server", run.broker.port, device_name)
    return Contender("barcode-server", server, barcode_value)


def start_barcode_keyboard(contender: Contender, device_path: str) -> None:
    server = contender.daemon
    assert isinstance(server, BarcodeServer)
    server.start()
    server.wait_ready(START_TIMEOUT)
    server.wait_reading(device_path, START_TIMEOUT)


def lane_drops(run: Run, start: int) -> int:
    """Input the lane's scanner driver reported lost (SYN_DROPPED) since message `start`."""
    drops = 0
    for message in run.subscriber.since(start):
        if message.topic == f"{LANE_BASE}/devices/scanner":
            record: dict[str, Any] = json.loads(message.payload)
            drops = max(drops, int(record.get("counters", {}).get("drops", 0)))
    return drops
