"""The service tier: the installed .deb run by systemd as PID 1 (scripts/vm-service).

Collected only inside that VM (LANE_AGENT_SERVICE_VM=1); on the host this directory is left out
of collection, not skipped: the host has no systemd as PID 1, no uinput and no USB gadgets. The
tests run as root in the guest and work the service as an operator and a technician would:
systemctl, journalctl, the config file, credentials in /etc/credstore, udev, and the devices (a
uinput keyboard, a CDC-ACM and a HID-POS gadget). The agent under test is the package's
(/usr/bin/lane-agent), never this checkout; the checkout only supplies the tests, the gadget
helpers, a Gift Local simulator and a POS-screen stand-in talking to the guest's mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from simulators.__main__ import load as load_simulator
from simulators.giftlocal import BAKERY_KEY
from simulators.server import Running, serve
from tests.conftest import Probe
from tests.hardware.gadgets import AcmGadget, HidGadget, UInputKeyboard

IN_SERVICE_VM = os.environ.get("LANE_AGENT_SERVICE_VM") == "1"
HERE = Path(__file__).parent
UNIT = "lane-agent.service"
BASE = "lane-agent/store1/lane1"
CONFIG = Path("/etc/lane-agent/lane-agent.toml")
CREDSTORE = Path("/etc/credstore")
# A TCG-emulated guest starts the agent in about ten seconds; a watchdog kill takes 30 s more.
SLOW = 120.0

if not IN_SERVICE_VM:
    collect_ignore_glob = ["*"]


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Say why tests/service ran nothing on the host, rather than leave it silent."""
    if IN_SERVICE_VM:
        return None
    return "tests/service: runs only in the service VM (scripts/vm-service)"


def run(*args: str, check: bool = True, timeout: float = SLOW) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


class Service:
    """lane-agent.service as systemctl sees it."""

    def prop(self, name: str) -> str:
        return run("systemctl", "show", "-p", name, "--value", UNIT).stdout.strip()

    def props(self, *names: str) -> dict[str, str]:
        return {name: self.prop(name) for name in names}

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("systemctl", *args, UNIT, check=check)

    async def actl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ctl` off the event loop, so a screen keeps collecting what the lane publishes
        meanwhile (a restart's offline and online among it)."""
        return await asyncio.to_thread(self.ctl, *args, check=check)

    def wait(self, name: str, want: Callable[[str], bool], within: float = SLOW) -> str:
        """Poll a unit property until `want` holds: systemd has no wait-for-property call."""
        deadline = time.monotonic() + within
        while True:
            value = self.prop(name)
            if want(value):
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"{UNIT} {name}={value!r} after {within:.0f} s\n{self.journal()}")
            time.sleep(0.2)

    def journal(self, lines: int = 40) -> str:
        return run("journalctl", "-b", "-u", UNIT, "--no-pager", "-n", str(lines)).stdout

    def restarts(self) -> int:
        return int(self.prop("NRestarts") or 0)


@pytest.fixture(scope="session")
def service() -> Service:
    return Service()


@dataclass
class Devices:
    keyboard: UInputKeyboard
    acm: AcmGadget
    hid: HidGadget


@pytest.fixture(scope="session")
def devices() -> Iterator[Devices]:
    """One of each scanner kind, plugged for the whole boot, as on a lane."""
    keyboard = UInputKeyboard("Test Barcode Scanner", 0x0C2E, 0x0B61, 1)
    acm = AcmGadget()
    hid = HidGadget()
    yield Devices(keyboard, acm, hid)
    hid.destroy()
    acm.destroy()
    keyboard.close()


@pytest.fixture(scope="session")
def gift_api() -> Iterator[Running]:
    """Gift Local's simulator on loopback, as the lane's gift provider."""
    with serve(load_simulator("giftlocal")) as running:
        yield running


def lane_config(devices: Devices, gift_api: Running) -> str:
    """The config an operator writes: every device by what identifies it, the Gift Local key
    through a systemd credential (no api_key_file), state where systemd puts it."""
    assert devices.acm.by_id is not None, "no /dev/serial/by-id link for the ACM gadget"
    return (
        '[lane]\nstore = "store1"\nlane = "lane1"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 1883\n'
        '[devices.keyboard]\ntype = "evdev"\nusb_id = "0c2e:0b61"\n'
        f'[devices.counter]\ntype = "serial"\nport = "{devices.acm.by_id}"\nframing = "cr"\n'
        '[devices.handheld]\ntype = "hidpos"\nvendor_id = "0c2e"\nproduct_id = "0b6b"\n'
        f'[providers.giftlocal]\nbase_url = "{gift_api.url}"\ntimeout = 5\n'
        '[flows]\ngift = "giftlocal"\n'
    )


def install_config(devices: Devices, gift_api: Running) -> None:
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(lane_config(devices, gift_api))
    CREDSTORE.mkdir(mode=0o700, exist_ok=True)
    key = CREDSTORE / "lane-agent.giftlocal_api_key"
    key.write_text(BAKERY_KEY)
    key.chmod(0o600)


@pytest.fixture
async def screen() -> AsyncIterator[Probe]:
    """A POS screen on the guest's mosquitto, subscribed to the lane before anything happens."""
    client = aiomqtt.Client(
        "127.0.0.1",
        1883,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
        identifier=f"screen-{uuid.uuid4().hex[:8]}",
    )
    await client.__aenter__()
    probe = Probe(client, BASE)
    await client.subscribe(f"{BASE}/#", qos=1)
    task = asyncio.create_task(probe._collect())
    yield probe
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.__aexit__(None, None, None)


async def until(
    probe: Probe,
    suffix: str,
    want: Callable[[dict[str, Any]], bool],
    start: int = 0,
    within: float = SLOW,
) -> dict[str, Any]:
    """The first message on `{BASE}/{suffix}` from index `start` that `want` accepts."""
    full = f"{BASE}/{suffix}"
    _, data = await probe.wait_for(lambda t, d: t == full and want(d), within, start)
    return data


def _index(probe: Probe, suffix: str, want: Callable[[dict[str, Any]], bool], start: int) -> int:
    for index in range(start, len(probe.messages)):
        topic, payload, _ = probe.messages[index]
        if topic == f"{BASE}/{suffix}" and payload and want(json.loads(payload)):
            return index
    raise LookupError(suffix)


async def in_order(
    probe: Probe,
    mark: int,
    *steps: tuple[str, Callable[[dict[str, Any]], bool]],
    within: float = SLOW,
) -> None:
    """Each (topic suffix, predicate) seen after `mark`, each after the one before it."""
    start = mark
    for suffix, want in steps:
        await until(probe, suffix, want, start, within)
        start = _index(probe, suffix, want, start) + 1


def offline(d: dict[str, Any]) -> bool:
    return d.get("state") == "offline"


def online(d: dict[str, Any]) -> bool:
    return d.get("state") == "online"


async def ask(
    probe: Probe, op: str, params: dict[str, Any] | None = None, within: float = SLOW
) -> dict[str, Any]:
    """A request with a long answer window (the agent may be restarting)."""
    body = {"request_id": str(uuid.uuid4()), **(params or {})}
    start = len(probe.messages)
    await probe.client.publish(f"{BASE}/request/{op}", json.dumps(body), qos=1)
    return await until(
        probe,
        f"response/{op}",
        lambda d: d.get("request_id") == body["request_id"],
        start,
        within,
    )
