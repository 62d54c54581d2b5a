"""Technician diagnostics against real devices in the test VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import evdev

from tests.conftest import REPO
from tests.hardware.conftest import KeyboardFactory
from tests.hardware.gadgets import AcmGadget

NOBODY = 65534


def diag(*args: str, as_nobody: bool = False, config: Path | None = None) -> tuple[int, str]:
    argv = ["diag", *args] + (["--config", str(config)] if config is not None else [])
    # Import as root, then become nobody: the checkout may sit in a directory nobody cannot
    # enter (CI clones into a 0700 temp dir), while the device check must run unprivileged.
    drop = f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); " if as_nobody else ""
    code = f"import os, sys, agent.cli, agent.diag; {drop}sys.exit(agent.cli.main({argv!r}))"
    command = [sys.executable, "-c", code]
    env = {**os.environ, "LANE_AGENT_CONFIG": "/nonexistent/lane-agent.toml"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    return result.returncode, result.stdout + result.stderr


def test_devices_lists_scanner_and_serial_port(
    uinput_keyboard: KeyboardFactory, acm_gadget: AcmGadget, tmp_path: Path
) -> None:
    keyboard = uinput_keyboard(name="Diag Scanner", product=0x0B71)
    config = tmp_path / "lane.toml"
    config.write_text(
        '[lane]\nstore = "s1"\nlane = "l1"\n'
        '[devices.scanner]\ntype = "evdev"\nusb_id = "0c2e:0b71"\n'
        '[devices.missing]\ntype = "evdev"\nname = "No Such Scanner"\n'
    )
    code, out = diag("devices", config=config)
    assert f"{keyboard.path}  Diag Scanner [0c2e:0b71]" in out
    assert "used by config: devices.scanner" in out
    assert str(acm_gadget.host_tty) in out
    assert "devices.missing (evdev): NOT FOUND" in out
    assert code == 1  # a configured device is missing
    code, raw = diag("devices", "--json", config=config)
    listed = json.loads(raw)
    inputs = listed["Input devices (keyboard-wedge scanners)"]
    assert any(d["path"] == keyboard.path and d["claimed_by"] == "scanner" for d in inputs)


def test_device_this_user_cannot_open_names_the_group_to_add(
    uinput_keyboard: KeyboardFactory,
) -> None:
    keyboard = uinput_keyboard(name="Locked Scanner", product=0x0B72)
    group = Path(keyboard.path).stat().st_gid
    os.chown(keyboard.path, 0, group)
    os.chmod(keyboard.path, 0o660)
    _, out = diag("devices", as_nobody=True)
    assert keyboard.path in out, out
    section = out[out.index(keyboard.path) :]
    assert "CANNOT OPEN: permission denied" in section
    assert "sudo usermod -aG" in section and "SupplementaryGroups=" in section


def test_grabbed_device_names_the_process_holding_it(uinput_keyboard: KeyboardFactory) -> None:
    keyboard = uinput_keyboard(name="Grabbed Scanner", product=0x0B73)
    holder = evdev.InputDevice(keyboard.path)
    holder.grab()
    try:
        _, out = diag("devices")
        section = out[out.index(keyboard.path) :]
        assert "grabbed by another process (EVIOCGRAB)" in section
        assert f"PID {os.getpid()}" in section
    finally:
        holder.ungrab()
        holder.close()
