"""`diag devices` next to a running service: what the service holds is in use, not broken."""

from __future__ import annotations

import os
from pathlib import Path

from agent.diag import _held_by_service
from agent.unit_policy import UnitPolicy
from drivers.discovery import USBFS_NOTE, Found, Problem

GRABBED = Problem("grabbed by another process (EVIOCGRAB): held by PID 1", "stop that process")


def policy(main_pid: int | None) -> UnitPolicy:
    return UnitPolicy(frozenset({"input"}), True, {"char-input": "r"}, main_pid=main_pid)


def test_a_device_the_service_holds_is_in_use_as_it_should_be(tmp_path: Path) -> None:
    node = tmp_path / "event4"
    node.write_text("")
    with node.open():  # this process stands in for the running agent
        found = Found("input", str(node), "Scanner", problem=GRABBED)
        seen = _held_by_service(policy(os.getpid()), found)
    assert seen.problem is None
    assert any(f"(PID {os.getpid()}), as it should be" in note for note in seen.notes)


def test_held_by_someone_else_stays_a_problem(tmp_path: Path) -> None:
    node = tmp_path / "event4"
    node.write_text("")
    with node.open():
        found = Found("input", str(node), "Scanner", problem=GRABBED)
        assert _held_by_service(policy(os.getpid() + 100_000), found) == found
        assert _held_by_service(policy(None), found) == found


def test_a_usb_device_claimed_through_libusb_by_the_service_is_named(tmp_path: Path) -> None:
    node = tmp_path / "003"
    node.write_text("")
    with node.open():
        found = Found("usb", str(node), "HID POS", "0c2e:0b6b", notes=(USBFS_NOTE,))
        seen = _held_by_service(policy(os.getpid()), found)
    assert seen.notes[-1].startswith("in use by lane-agent.service")
