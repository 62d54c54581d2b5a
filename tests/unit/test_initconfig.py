"""`lane-agent init`: the config it prints for a lane's devices is valid as printed, configures
what is surely a scanner or reader, and leaves what may not be one commented out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.initconfig import render
from drivers.discovery import Found, Problem
from drivers.settings import HidPosSettings, KeyboardSettings, NfcSettings, SerialSettings
from tests.conftest import REPO

HONEYWELL_KBD = "/dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd"
INPUTS = [
    # A Honeywell wedge scanner: a keyboard node and a second node of the same device.
    Found("input", "/dev/input/event5", "Honeywell 1900", "0c2e:0b61", (HONEYWELL_KBD,)),
    Found("input", "/dev/input/event6", "Honeywell 1900 Consumer Control", "0c2e:0b61"),
    # The cashier's keyboard: a keyboard, maybe a scanner of an unknown brand, so commented.
    Found(
        "input",
        "/dev/input/event3",
        "Dell KB216",
        "413c:2113",
        ("/dev/input/by-id/usb-Dell_KB216-event-kbd",),
    ),
    # Not USB, not a keyboard: left out.
    Found("input", "/dev/input/event0", "Power Button", "0000:0001"),
    # Two scanners of one model: only their by-id links tell them apart.
    Found(
        "input",
        "/dev/input/event7",
        "Symbol LS2208",
        "05e0:1200",
        ("/dev/input/by-id/a-event-kbd",),
    ),
    Found(
        "input",
        "/dev/input/event8",
        "Symbol LS2208",
        "05e0:1200",
        ("/dev/input/by-id/b-event-kbd",),
    ),
]
PORTS = [
    Found(
        "serial",
        "/dev/ttyACM0",
        "Datalogic QD2430",
        "05f9:4204",
        ("/dev/serial/by-id/usb-DL-if00",),
    ),
    Found("serial", "/dev/ttyUSB0", "FT232R USB UART", "0403:6001"),  # a terminal, maybe
    Found("serial", "/dev/ttyS0", "ttyS0"),
    Found("serial", "/dev/ttyGS0", "ttyGS0"),  # this machine as a USB gadget: left out
]
USB = [
    Found(
        "usb",
        "/dev/bus/usb/001/004",
        "Zebra DS2208",
        "05e0:1300",
        (),
        ("HID-POS barcode scanner (usage page 0x8C)",),
    ),
    Found(
        "usb",
        "/dev/bus/usb/001/005",
        "ACS ACR122U",
        "072f:2200",
        (),
        ("NFC reader (nfcpy driver acr122)",),
        Problem("kernel NFC driver pn533_usb owns it; nfcpy cannot claim it", "modprobe -r"),
    ),
    Found("usb", "/dev/bus/usb/001/001", "Linux Foundation 2.0 root hub", "1d6b:0002"),
]


def _uncommented(text: str) -> str:
    """The config with every commented-out device table switched on."""
    return re.sub(
        r"^# (\[devices\.|type = |usb_id = |path = |port = |layout = |framing = )",
        r"\1",
        text,
        flags=re.M,
    )


def test_found_devices_become_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "lane-agent.toml"
    path.write_text(render(INPUTS, PORTS, USB))
    devices = load_config(path).devices

    assert devices["hidpos1"] == HidPosSettings(type="hidpos", vendor_id=0x05E0, product_id=0x1300)
    assert devices["nfc1"] == NfcSettings(type="nfc", path="usb:072f:2200")
    # The Honeywell's nodes are one device, chosen by its USB id (survives a replug elsewhere).
    honeywell = devices["scanner1"]
    assert isinstance(honeywell, KeyboardSettings)
    assert (honeywell.usb_id, honeywell.path) == ("0c2e:0b61", None)
    # The two identical Symbols: one table each, by link.
    symbols = [d for d in devices.values() if isinstance(d, KeyboardSettings) and d.path]
    assert sorted(str(d.path) for d in symbols) == [
        "/dev/input/by-id/a-event-kbd",
        "/dev/input/by-id/b-event-kbd",
    ]
    datalogic = devices["serial1"]
    assert isinstance(datalogic, SerialSettings)
    assert datalogic.port == "/dev/serial/by-id/usb-DL-if00"
    # The keyboard, the FTDI port and the built-in port are there, but commented out.
    assert set(devices) == {"hidpos1", "nfc1", "scanner1", "scanner3", "scanner4", "serial1"}


def test_commented_tables_are_valid_once_uncommented(tmp_path: Path) -> None:
    text = render(INPUTS, PORTS, USB)
    assert "# [devices.scanner2]" in text  # the Dell keyboard
    assert "a keyboard: if it is a scanner" in text
    assert "kernel NFC driver pn533_usb" in text and "/etc/modprobe.d/lane-agent.conf" in text
    path = tmp_path / "all.toml"
    path.write_text(_uncommented(text))
    devices = load_config(path).devices
    assert devices["scanner2"] == KeyboardSettings(type="evdev", usb_id="413c:2113")
    assert {d: s.port for d, s in devices.items() if isinstance(s, SerialSettings)} == {
        "serial1": "/dev/serial/by-id/usb-DL-if00",
        "serial2": "/dev/ttyUSB0",
        "serial3": "/dev/ttyS0",
    }
    assert "ttyGS0" not in text and "Power Button" not in text and "root hub" not in text


def test_no_devices_gives_the_packaged_example(tmp_path: Path) -> None:
    """systemd/lane-agent.example.toml (the .deb's example config) is `init --no-devices`."""
    text = render([], [], [])
    assert "No scanner or reader was found" in text
    example = REPO / "systemd" / "lane-agent.example.toml"
    assert example.read_text() == text, "regenerate: lane-agent init --no-devices > " + str(example)
    config = load_config(example)
    assert config.devices == {}
    assert config.configured_providers() == ["sandbox"]
    # Its commented examples are valid too.
    path = tmp_path / "examples.toml"
    path.write_text(_uncommented(text))
    assert set(load_config(path).devices) == {"scanner1", "serial1", "hidpos1", "nfc1"}


def test_init_writes_a_file_check_config_accepts_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lane-agent.toml"
    assert main(["init", "--no-devices", "--output", str(path)]) == 0
    assert main(["check-config", str(path)]) == 0
    path.write_text("# the lane's own config\n")
    assert main(["init", "--no-devices", "--output", str(path)]) == 1
    assert path.read_text() == "# the lane's own config\n"
    assert "not overwriting" in capsys.readouterr().err


def test_init_on_this_machine_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever this machine has attached, the printed config is valid."""
    assert main(["init"]) == 0
    path = tmp_path / "here.toml"
    path.write_text(capsys.readouterr().out)
    assert main(["check-config", str(path)]) == 0
