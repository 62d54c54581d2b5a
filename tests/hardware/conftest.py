"""Fixtures for tests on real kernel devices; collected only inside the test VM.

`scripts/vm-test` (also `make test-hardware`, and the last step of `make test`) boots the VM
and sets LANE_AGENT_VM=1; on the host this directory is left out of collection, not skipped,
since the host kernel has no uinput or USB gadget support. The parent conftest's `broker`,
`probe_factory` and `agent_process` work unchanged in the VM (a real mosquitto on loopback).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import pytest

from tests.conftest import AgentProcess, Broker, Probe, write_config
from tests.hardware.gadgets import AcmGadget, HidGadget, UInputKeyboard, UsbGadget

P = ParamSpec("P")
G = TypeVar("G", bound=UsbGadget)

IN_VM = os.environ.get("LANE_AGENT_VM") == "1"
BASE = "lane-agent/s1/l1"

ProbeFactory = Callable[..., Awaitable[Probe]]
Lane = Callable[[str], Awaitable[Probe]]
HERE = Path(__file__).parent

if not IN_VM:
    collect_ignore_glob = ["*"]


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Say why tests/hardware ran nothing on the host, rather than leave it silent."""
    return None if IN_VM else "tests/hardware: runs only in the test VM (scripts/vm-test)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/hardware carries the `hardware` marker (`-m 'not hardware'`)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.hardware)


class KeyboardFactory(Protocol):
    def __call__(
        self,
        name: str = "Test Barcode Scanner",
        vendor: int = 0x0C2E,
        product: int = 0x0B61,
        version: int = 1,
    ) -> UInputKeyboard: ...


@pytest.fixture
def uinput_keyboard() -> Iterator[KeyboardFactory]:
    """Make uinput keyboards: `uinput_keyboard(name=..., vendor=..., product=...)`."""
    made: list[UInputKeyboard] = []

    def make(
        name: str = "Test Barcode Scanner",
        vendor: int = 0x0C2E,
        product: int = 0x0B61,
        version: int = 1,
    ) -> UInputKeyboard:
        keyboard = UInputKeyboard(name, vendor, product, version)
        made.append(keyboard)
        return keyboard

    yield make
    for keyboard in made:
        keyboard.close()


class GadgetFactory:
    """Makes USB gadgets with any identity or descriptor; all are removed at teardown."""

    def __init__(self) -> None:
        self.made: list[UsbGadget] = []

    def make(self, kind: Callable[P, G], /, *args: P.args, **kwargs: P.kwargs) -> G:
        """`usb_gadgets.make(HidGadget, report_descriptor=KEYBOARD_REPORT_DESCRIPTOR, ...)`."""
        gadget = kind(*args, **kwargs)
        self.made.append(gadget)
        return gadget

    def destroy_all(self) -> None:
        while self.made:
            self.made.pop().destroy()


@pytest.fixture
def usb_gadgets() -> Iterator[GadgetFactory]:
    """For gadgets other than the defaults, or several at once (four loopback ports)."""
    factory = GadgetFactory()
    yield factory
    factory.destroy_all()


@pytest.fixture
def acm_gadget(usb_gadgets: GadgetFactory) -> AcmGadget:
    """A plugged CDC-ACM serial scanner (0c2e:0b6a "Serial Barcode Scanner")."""
    return usb_gadgets.make(AcmGadget)


@pytest.fixture
def hid_gadget(usb_gadgets: GadgetFactory) -> HidGadget:
    """A plugged HID-POS barcode scanner (0c2e:0b6b, report ID 2, 64-byte input report)."""
    return usb_gadgets.make(HidGadget)


@pytest.fixture
async def lane(tmp_path: Path, broker: Broker, probe_factory: ProbeFactory) -> AsyncIterator[Lane]:
    """`await lane(devices_toml)` starts the agent with those device tables and returns a probe
    subscribed to the lane once it is online. At teardown the agent must stop on SIGTERM with
    exit code 0: a driver thread stuck in a read would otherwise hang every lane's shutdown."""
    agents: list[AgentProcess] = []

    async def start(devices: str) -> Probe:
        config = write_config(tmp_path / "lane.toml", broker.port, extra=devices)
        agent = AgentProcess(config, tmp_path / "agent.log")
        agents.append(agent)
        probe = await probe_factory(BASE)
        agent.start(PYTHONFAULTHANDLER="1")
        await probe.topic("state", lambda d: d["state"] == "online")
        return probe

    yield start
    for agent in agents:
        if agent.process is None:
            continue
        try:
            code = agent.signal(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            agent.process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            agent.process.wait(timeout=15)
            agent.process = None
            pytest.fail(f"the agent did not stop on SIGTERM; its log:\n{agent.log()}")
        assert code == 0, f"the agent exited with {code} on SIGTERM; its log:\n{agent.log()}"


async def scan_of(probe: Probe, device: str = "scanner", start: int = 0) -> dict[str, Any]:
    """The first scan message from `device` at or after message index `start`."""
    _, scan = await probe.wait_for(
        lambda t, d: t == f"{BASE}/scan" and d["device_id"] == device, start=start
    )
    return scan


async def connected(probe: Probe, device: str = "scanner", start: int = 0) -> dict[str, Any]:
    """The device's first retained record saying connected, at or after message index `start`."""
    return await probe.topic(f"devices/{device}", lambda d: d["state"] == "connected", start)


def scan_values(probe: Probe, device: str, start: int = 0) -> list[str | None]:
    """Values of `device`'s scans published so far (from message index `start`), in order."""
    return [
        json.loads(payload)["value"]
        for topic, payload, _ in probe.messages[start:]
        if topic == f"{BASE}/scan" and json.loads(payload)["device_id"] == device
    ]
