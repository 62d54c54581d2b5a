"""Fixtures for tests on real kernel devices; collected only inside the test VM.

`scripts/vm-test` (also `make test-hardware`, and the last step of `make test`) boots the VM
and sets LANE_AGENT_VM=1; on the host this directory is left out of collection, not skipped,
since the host kernel has no uinput or USB gadget support. The parent conftest's `broker`,
`probe_factory` and `agent_process` work unchanged in the VM (a real mosquitto on loopback).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

import pytest

from tests.hardware.gadgets import AcmGadget, HidGadget, UInputKeyboard, UsbGadget

P = ParamSpec("P")
G = TypeVar("G", bound=UsbGadget)

IN_VM = os.environ.get("LANE_AGENT_VM") == "1"
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
