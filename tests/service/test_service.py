"""One lane's life under systemd, in order: installed and waiting for a config, configured and
started, scanning from each kind of device through the unit's sandbox, killed, hung, replugged,
misconfigured, upgraded with money in flight, removed and purged. Each test leaves the service
as the next one expects; they run in file order (pytest's default)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.hidpos_report import HONEYWELL, build_reports
from simulators.server import Fault, Running
from tests.conftest import Probe, sim_get
from tests.integration.test_orders import order
from tests.service.conftest import (
    BASE,
    CONFIG,
    UNIT,
    Devices,
    Service,
    ask,
    in_order,
    install_config,
    offline,
    online,
    run,
    until,
)

GIFT = "100000000001"  # the bakery's 50.00 voucher in the Gift Local simulator
DROP_IN = Path("/run/systemd/system/lane-agent.service.d/50-fault-hooks.conf")


def scan_from(device: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d.get("device_id") == device


def fault_hooks(on: bool) -> None:
    """The drop-in that gives the service LANE_AGENT_FAULT_HOOKS=1 (agent/faults.py)."""
    if on:
        DROP_IN.parent.mkdir(parents=True, exist_ok=True)
        DROP_IN.write_text("[Service]\nEnvironment=LANE_AGENT_FAULT_HOOKS=1\n")
    else:
        DROP_IN.unlink()
    run("systemctl", "daemon-reload")


async def hid_barcode(devices: Devices, data: bytes) -> None:
    def send() -> None:
        for report in build_reports(data, "]E0", HONEYWELL):
            devices.hid.send_report(report)

    await asyncio.to_thread(send)


def test_installed_enabled_and_waiting_for_a_config(service: Service) -> None:
    """The package enables the unit, and at boot, with no config yet, systemd skipped it."""
    assert run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
    assert not CONFIG.exists()
    assert service.props("ConditionResult", "ActiveState") == {
        "ConditionResult": "no",
        "ActiveState": "inactive",
    }


def test_init_prints_a_config_check_config_accepts(tmp_path: Path, devices: Devices) -> None:
    """`lane-agent init` on the installed system finds the plugged scanners."""
    out = tmp_path / "first.toml"
    run("lane-agent", "init", "--output", str(out))
    text = out.read_text()
    assert "0c2e:0b61" in text or "Test Barcode Scanner" in text
    run("lane-agent", "check-config", str(out))


async def test_start_returns_once_ready(
    service: Service, devices: Devices, gift_api: Running, screen: Probe
) -> None:
    """`systemctl start` blocks until READY=1, which the agent sends only once it is online on
    the broker: when start returns, `online` is already retained."""
    install_config(devices, gift_api)
    service.ctl("start")
    assert service.prop("ActiveState") == "active"
    state = await until(screen, "state", lambda d: True)
    assert state["state"] == "online"
    status = run("systemctl", "status", "--no-pager", UNIT, check=False).stdout
    assert f'Status: "{BASE} on 127.0.0.1:1883; devices: ' in status, status
    for device in ("keyboard", "counter", "handheld"):
        await until(screen, f"devices/{device}", lambda d: d["state"] == "connected")


def test_runs_as_a_dynamic_user_with_its_state_directory(service: Service) -> None:
    pid = service.prop("MainPID")
    user = run("ps", "-o", "user=", "-p", pid).stdout.strip()
    assert user not in ("root", "")
    assert Path("/var/lib/private/lane-agent").is_dir()


async def test_a_scan_from_each_device_reaches_mqtt(
    devices: Devices, gift_api: Running, screen: Probe
) -> None:
    """Through DevicePolicy=closed + DeviceAllow=char-*: evdev (input), CDC-ACM (ttyACM) and
    HID-POS (libusb), and a Gift Local validation that needs the key from LoadCredential=."""
    devices.keyboard.type_text(f"{GIFT}\n")
    scan = await until(screen, "scan", scan_from("keyboard"))
    assert scan["kind"] == "gift_voucher_code" and GIFT not in str(scan)
    validated = await until(screen, "event", lambda d: d["type"] == "gift.validated")
    assert validated["data"]["gift"]["balance"] == 5000
    calls = await sim_get(gift_api, "requests")
    assert calls and all(c["status"] == 200 for c in calls)

    devices.acm.write(b"http://e.co/counter\r")
    assert (await until(screen, "scan", scan_from("counter")))["value"] == "http://e.co/counter"

    await hid_barcode(devices, b"5901234123457")
    hid = await until(screen, "scan", scan_from("handheld"))
    assert (hid["kind"], hid["value"]) == ("product_gtin", "5901234123457")


async def test_sigkill_then_offline_then_restarted_online(service: Service, screen: Probe) -> None:
    before, pid = service.restarts(), service.prop("MainPID")
    await until(screen, "state", online)
    mark = len(screen.messages)
    await service.actl("kill", "--signal=SIGKILL", "--kill-who=main")
    # offline is the broker's will: the killed agent said nothing.
    await in_order(screen, mark, ("state", offline), ("state", online))
    service.wait("ActiveState", lambda v: v == "active")
    assert service.restarts() == before + 1
    assert service.prop("MainPID") != pid


async def test_watchdog_restarts_a_blocked_event_loop(service: Service, screen: Probe) -> None:
    """The unit's WatchdogSec=30s, unchanged; only the test-only hook is switched on."""
    fault_hooks(True)
    try:
        mark = len(screen.messages)
        await service.actl("restart")  # a manual restart also sets NRestarts back to 0
        await in_order(screen, mark, ("state", offline), ("state", online))
        before = service.restarts()
        mark = len(screen.messages)
        await service.actl("kill", "--signal=SIGUSR2", "--kill-who=main")
        await in_order(screen, mark, ("state", offline), ("state", online))
        service.wait("ActiveState", lambda v: v == "active")
        assert service.restarts() == before + 1
        assert "Watchdog timeout" in service.journal(80)
    finally:
        fault_hooks(False)
        # SIGKILL first: a loop still blocked would only stop after TimeoutStopSec=.
        await service.actl("kill", "--signal=SIGKILL", "--kill-who=main", check=False)
        mark = len(screen.messages)
        await service.actl("restart")
        await until(screen, "state", online, mark)


async def test_replugged_devices_are_read_again(devices: Devices, screen: Probe) -> None:
    """After a replug the node is new (a new minor, maybe a new number): the class-based
    DeviceAllow= still lets the service open it."""
    await until(screen, "devices/counter", lambda d: d["state"] == "connected")
    mark = len(screen.messages)
    devices.acm.unplug()
    devices.hid.unplug()
    await until(screen, "devices/counter", lambda d: d["state"] == "disconnected", mark)
    await until(screen, "devices/handheld", lambda d: d["state"] == "disconnected", mark)
    mark = len(screen.messages)
    devices.acm.replug()
    devices.hid.replug()
    await until(screen, "devices/counter", lambda d: d["state"] == "connected", mark)
    await until(screen, "devices/handheld", lambda d: d["state"] == "connected", mark)
    devices.acm.write(b"http://e.co/replugged\r")
    scan = await until(screen, "scan", scan_from("counter"), mark)
    assert scan["value"] == "http://e.co/replugged"
    await hid_barcode(devices, b"4006381333931")
    assert (await until(screen, "scan", scan_from("handheld"), mark))["value"] == "4006381333931"


def test_diag_devices_says_what_the_service_may_open(devices: Devices) -> None:
    """What a technician runs: every configured device found, each one openable by the
    service under its unit, and an NFC section even with no reader plugged."""
    result = run("lane-agent", "diag", "devices", check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for device in ("keyboard", "counter", "handheld"):
        assert f"used by config: devices.{device}" in out, out
    assert out.count(f"service {UNIT}: may open it") >= 3, out
    assert "NFC readers:" in out


def test_bad_config_exits_2_and_is_not_restarted(service: Service) -> None:
    good = CONFIG.read_text()
    try:
        CONFIG.write_text(good.replace("port = 1883", 'port = "not a port"'))
        assert service.ctl("restart", check=False).returncode != 0
        service.wait("ActiveState", lambda v: v == "failed")
        assert service.props("ExecMainStatus", "Result", "SubState") == {
            "ExecMainStatus": "2",
            "Result": "exit-code",
            "SubState": "failed",
        }
        # A manual restart sets the counter back to 0; an automatic one would count.
        assert service.restarts() == 0
    finally:
        CONFIG.write_text(good)
        service.ctl("reset-failed")
        service.ctl("start")


def pending_outbox() -> list[tuple[str, str]]:
    """(id, key) of each entry `lane-agent outbox list --pending` shows, as a technician sees
    them on the installed system (the CLI reads the live state next to the running agent)."""
    out = run("lane-agent", "outbox", "list", "--pending").stdout
    return [(line.split()[0], line.split()[2]) for line in out.splitlines() if "pending" in line]


def _balance(ledger: dict[str, Any]) -> int:
    return int(ledger["gifts"][GIFT]["balance"])


async def test_upgrade_keeps_the_open_order_and_the_outbox(
    service: Service, gift_api: Running, screen: Probe
) -> None:
    """Money in flight across `dpkg -i` of the next version: a voided order whose voucher
    reversal waits in the outbox (Gift Local refuses reversals for now), and an open order with
    a voucher on it. After the upgrade the open order is served and the reversal is delivered."""
    sim = gift_api.simulator
    await until(screen, "state", lambda d: d["state"] == "online")
    token = (await ask(screen, "scan.inject", {"data": GIFT}))["data"]["token_id"]
    start = _balance(await sim_get(gift_api))
    assert (await ask(screen, "order.update", order("V1", 3000)))["status"] == "ok"
    assert (await ask(screen, "gift.redeem", {"token_id": token, "amount": 1200}))["status"] == "ok"
    sim.arm([Fault(path=".*revers.*", kind="error", status=503, count=1_000_000)])
    voided = await ask(screen, "order.void", {"order_id": "V1"})
    assert voided["status"] == "ok", voided
    assert [s["ok"] for s in voided["data"]["steps"]] == [False], voided
    assert (await ask(screen, "order.update", order("O2", 2000)))["status"] == "ok"
    assert (await ask(screen, "gift.redeem", {"token_id": token, "amount": 500}))["status"] == "ok"
    assert _balance(await sim_get(gift_api)) == start - 1700

    (queued,) = pending_outbox()
    assert queued[1] == "V1:gift:void"

    pid = service.prop("MainPID")
    mark = len(screen.messages)
    await asyncio.to_thread(run, "dpkg", "-i", os.environ["LANE_AGENT_NEXT_DEB"])
    assert "+next1" in run("lane-agent", "--version").stdout
    await in_order(screen, mark, ("state", offline), ("state", online))
    assert service.prop("MainPID") not in (pid, "0")

    view = await ask(screen, "order.get", {})
    assert view["data"]["order"]["order_id"] == "O2", view
    assert [t["amount"] for t in view["data"]["tenders"]] == [500], view
    assert pending_outbox() == [queued]
    with sim.lock:
        sim.faults.clear()
    # As a technician would, rather than wait out the backoff: the new agent's worker picks
    # the entry written before the upgrade up within its poll interval.
    run("lane-agent", "outbox", "retry", queued[0])
    reversed_ = await until(screen, "event", lambda d: d["type"] == "gift.reversed", mark)
    assert reversed_["data"]["order_id"] == "V1"
    assert _balance(await sim_get(gift_api)) == start - 500


async def test_downgrade_to_the_previous_package_serves_the_same_state(
    service: Service, screen: Probe
) -> None:
    """Same state schema, so a downgrade works (dpkg -i of the older .deb; apt would need
    --allow-downgrades). A newer schema would make the older agent refuse to start (exit 2,
    tests/unit/test_statedb.py); docs/packaging.md says so."""
    pid = service.prop("MainPID")
    mark = len(screen.messages)
    await asyncio.to_thread(run, "dpkg", "-i", os.environ["LANE_AGENT_DEB"])
    assert "+next1" not in run("lane-agent", "--version").stdout
    await in_order(screen, mark, ("state", offline), ("state", online))
    assert service.prop("MainPID") not in (pid, "0")
    view = await ask(screen, "order.get", {})
    assert view["data"]["order"]["order_id"] == "O2", view


def test_remove_keeps_config_and_state(service: Service) -> None:
    run("apt-get", "remove", "-y", "-qq", "lane-agent")
    assert service.prop("ActiveState") in ("inactive", "")
    assert CONFIG.is_file()
    assert Path("/var/lib/private/lane-agent").is_dir()


def test_purge_deletes_config_and_state() -> None:
    run("apt-get", "purge", "-y", "-qq", "lane-agent")
    assert not CONFIG.parent.exists()
    assert not Path("/var/lib/private/lane-agent").exists()
