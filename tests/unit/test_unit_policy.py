"""Judging whether the installed unit lets the service open a device node (`diag devices`)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.unit_policy import UnitPolicy, char_classes, judge, parse_show
from tests.conftest import REPO

SHOW = """LoadState=loaded
DevicePolicy=closed
DeviceAllow=char-input r
DeviceAllow=char-ttyACM rw
DeviceAllow=char-hidraw rw
SupplementaryGroups=input dialout plugdev
User=
MainPID=392
"""
PROC_DEVICES = """Character devices:
  1 mem
  4 /dev/vc/0
  4 tty
  4 ttyS
 13 input
166 ttyACM
189 usb_device
245 hidraw

Block devices:
  8 sd
166 notachar
"""
CHR = stat.S_IFCHR


def policy() -> UnitPolicy:
    parsed = parse_show(SHOW)
    assert parsed is not None
    return parsed


def test_show_output_parsed() -> None:
    assert policy() == UnitPolicy(
        frozenset({"input", "dialout", "plugdev"}),
        True,
        {"char-input": "r", "char-ttyACM": "rw", "char-hidraw": "rw"},
        main_pid=392,
    )


def test_unit_not_installed_gives_no_policy() -> None:
    assert parse_show("LoadState=not-found\nDevicePolicy=auto\n") is None


def test_the_shipped_unit_lists_every_class_the_drivers_open() -> None:
    """The classes this module judges by are the ones the packaged unit allows."""
    unit = (REPO / "systemd" / "lane-agent.service").read_text()
    allowed = {
        line.split("=", 1)[1].split()[0]
        for line in unit.splitlines()
        if line.startswith("DeviceAllow=")
    }
    assert {"char-input", "char-ttyACM", "char-ttyUSB", "char-hidraw", "char-usb_device"} <= allowed


def test_char_classes_from_proc_devices(tmp_path: Path) -> None:
    proc = tmp_path / "devices"
    proc.write_text(PROC_DEVICES)
    assert char_classes(166, proc) == ["ttyACM"]  # not the block device of the same number
    assert char_classes(4, proc) == ["/dev/vc/0", "tty", "ttyS"]
    assert char_classes(7, proc) == []


def test_a_major_with_several_names_is_allowed_by_any_of_them() -> None:
    with_ttys = UnitPolicy(frozenset({"dialout"}), True, {"char-ttyS": "rw"})
    names = ["/dev/vc/0", "tty", "ttyS"]
    mode = CHR | 0o660
    assert (
        judge(with_ttys, mode=mode, group="dialout", owner=None, classes=names, write=True) is None
    )
    refused = judge(policy(), mode=mode, group="dialout", owner=None, classes=names, write=True)
    assert refused is not None and "char-ttyS rw" in refused


@pytest.mark.parametrize(
    ("mode", "group", "cls", "write", "refused"),
    [
        (CHR | 0o660, "dialout", "ttyACM", True, None),
        (CHR | 0o640, "input", "input", False, None),
        (CHR | 0o660, "root", "ttyACM", True, "group 'root' mode 660 gives the service no 'r'"),
        (CHR | 0o640, "dialout", "ttyACM", True, "no 'w'"),
        (CHR | 0o666, "root", "ttyUSB", True, "device class char-ttyUSB is not allowed rw"),
        (CHR | 0o660, "plugdev", "usb_device", True, "char-usb_device is not allowed"),
        (CHR | 0o666, "root", "hidraw", True, None),  # world-writable, class allowed
    ],
)
def test_judge(mode: int, group: str, cls: str, write: bool, refused: str | None) -> None:
    why = judge(policy(), mode=mode, group=group, owner=None, classes=[cls], write=write)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


def test_open_policy_checks_only_groups() -> None:
    auto = UnitPolicy(frozenset({"dialout"}), False, {})
    mode = CHR | 0o660
    assert judge(auto, mode=mode, group="dialout", owner=None, classes=["x"], write=True) is None
    assert judge(auto, mode=mode, group="video", owner=None, classes=["x"], write=True)
