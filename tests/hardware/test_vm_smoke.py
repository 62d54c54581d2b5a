"""The hardware harness itself works: each fixture gives a real device that real readers see."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable

import evdev
import pytest
import serial
import usb.core
import usb.util
from evdev import ecodes

from drivers.hidpos_report import build_reports
from tests.conftest import Broker, Probe
from tests.hardware.conftest import GadgetFactory, KeyboardFactory
from tests.hardware.gadgets import (
    KEYBOARD_REPORT_DESCRIPTOR,
    KEYBOARD_REPORT_LENGTH,
    AcmGadget,
    HidGadget,
    keyboard_reports,
    wait_for,
)


async def key_downs_until_enter(device: evdev.InputDevice[str]) -> list[int]:
    """Key-down codes read through async_read_loop, up to and including Enter."""
    downs: list[int] = []
    async with asyncio.timeout(20):
        async for event in device.async_read_loop():
            if event.type == ecodes.EV_KEY and event.value == 1:
                downs.append(event.code)
                if event.code == ecodes.KEY_ENTER:
                    return downs
    raise AssertionError("device closed before Enter")


async def test_uinput_keyboard_keys_reach_a_grabbed_reader(
    uinput_keyboard: KeyboardFactory,
) -> None:
    keyboard = uinput_keyboard(name="Test Barcode Scanner", vendor=0x0C2E, product=0x0B61)
    device = evdev.InputDevice(keyboard.path)
    assert device.name == "Test Barcode Scanner"
    assert (device.info.vendor, device.info.product) == (0x0C2E, 0x0B61)
    device.grab()
    try:
        keyboard.type_text("A1\n")
        downs = await key_downs_until_enter(device)
    finally:
        device.ungrab()
        device.close()
    assert downs == [ecodes.KEY_LEFTSHIFT, ecodes.KEY_A, ecodes.KEY_1, ecodes.KEY_ENTER]


async def test_syn_dropped_reaches_the_reader(uinput_keyboard: KeyboardFactory) -> None:
    keyboard = uinput_keyboard()
    device = evdev.InputDevice(keyboard.path)
    try:
        keyboard.syn_dropped()
        keyboard.type_text("7\n")
        seen: list[tuple[int, int]] = []
        async with asyncio.timeout(20):
            async for event in device.async_read_loop():
                seen.append((event.type, event.code))
                if (event.type, event.code, event.value) == (ecodes.EV_KEY, ecodes.KEY_ENTER, 0):
                    break
    finally:
        device.close()
    assert (ecodes.EV_SYN, ecodes.SYN_DROPPED) in seen
    after_drop = seen[seen.index((ecodes.EV_SYN, ecodes.SYN_DROPPED)) :]
    assert (ecodes.EV_KEY, ecodes.KEY_7) in after_drop


async def test_uinput_unplug_ends_readers_and_replug_keeps_the_identity(
    uinput_keyboard: KeyboardFactory,
) -> None:
    keyboard = uinput_keyboard()
    old_path = keyboard.path
    device = evdev.InputDevice(old_path)
    keyboard.unplug()
    with pytest.raises(OSError, match="No such device") as gone:
        device.read_one()
    assert gone.value.errno == errno.ENODEV
    device.close()
    assert old_path not in evdev.list_devices()

    keyboard.replug()
    again = evdev.InputDevice(keyboard.path)
    try:
        assert again.name == "Test Barcode Scanner"
        assert (again.info.vendor, again.info.product) == (0x0C2E, 0x0B61)
        keyboard.type_text("5\n")
        assert await key_downs_until_enter(again) == [ecodes.KEY_5, ecodes.KEY_ENTER]
    finally:
        again.close()


def test_acm_gadget_is_a_host_tty_fed_from_ttygs(acm_gadget: AcmGadget) -> None:
    assert acm_gadget.host_tty is not None
    assert acm_gadget.host_tty.name.startswith("ttyACM")
    assert acm_gadget.device_tty.exists()
    by_id = acm_gadget.by_id
    assert by_id is not None
    assert by_id.name == "usb-Lane_Test_Serial_Barcode_Scanner_ACM0001-if00"

    with serial.Serial(str(by_id), 115200, timeout=10) as port:
        acm_gadget.write(b"]C1100000000001\r\n")
        assert port.read_until(b"\n") == b"]C1100000000001\r\n"
        port.write(b"\x16T\r")  # a host->scanner command (Honeywell trigger)
        assert acm_gadget.read_until(b"\r") == b"\x16T\r"


def test_acm_unplug_and_replug(acm_gadget: AcmGadget) -> None:
    assert acm_gadget.host_tty is not None
    port = serial.Serial(str(acm_gadget.host_tty), 115200, timeout=2)
    try:
        acm_gadget.unplug()
        assert acm_gadget.by_id is None
        with pytest.raises(serial.SerialException):
            port.read(1)
    finally:
        port.close()
    acm_gadget.replug()
    assert acm_gadget.by_id is not None
    with serial.Serial(str(acm_gadget.by_id), 115200, timeout=10) as port:
        acm_gadget.write(b"after replug\n")
        assert port.read_until(b"\n") == b"after replug\n"


def test_hid_pos_gadget_reports_reach_pyusb(hid_gadget: HidGadget) -> None:
    device = usb.core.find(idVendor=0x0C2E, idProduct=0x0B6B)
    assert device is not None
    assert usb.util.get_string(device, device.iSerialNumber) == "HID0001"
    interface = device.get_active_configuration()[(0, 0)]
    assert interface.bInterfaceClass == 3  # HID
    if device.is_kernel_driver_active(0):
        device.detach_kernel_driver(0)  # usbhid took it, as it would on a lane PC
    usb.util.claim_interface(device, 0)
    try:
        endpoint = usb.util.find_descriptor(
            interface,
            custom_match=lambda e: (
                usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN
            ),
        )
        (report,) = build_reports(b"4006381333931", "]E0")
        hid_gadget.send_report(report)
        assert bytes(endpoint.read(64, timeout=10000)) == report
    finally:
        usb.util.release_interface(device, 0)
        usb.util.dispose_resources(device)

    hid_gadget.unplug()
    assert usb.core.find(idVendor=0x0C2E, idProduct=0x0B6B) is None
    hid_gadget.replug()
    assert usb.core.find(idVendor=0x0C2E, idProduct=0x0B6B) is not None


async def test_usb_keyboard_gadget_has_a_by_id_link(usb_gadgets: GadgetFactory) -> None:
    keyboard = usb_gadgets.make(
        HidGadget,
        report_descriptor=KEYBOARD_REPORT_DESCRIPTOR,
        report_length=KEYBOARD_REPORT_LENGTH,
        subclass=1,
        protocol=1,
        product=0x0B6C,
        product_name="Keyboard Wedge Scanner",
        serial="KBD0001",
    )
    nodes = wait_for(lambda: keyboard.input_nodes() or None, "usbhid's event node")
    links = wait_for(lambda: keyboard.input_by_id() or None, "/dev/input/by-id link")
    assert links[0].name == "usb-Lane_Test_Keyboard_Wedge_Scanner_KBD0001-event-kbd"
    device = evdev.InputDevice(str(nodes[0]))
    device.grab()
    try:
        for report in keyboard_reports("42\n"):
            await asyncio.to_thread(keyboard.send_report, report)
        assert await key_downs_until_enter(device) == [
            ecodes.KEY_4,
            ecodes.KEY_2,
            ecodes.KEY_ENTER,
        ]
    finally:
        device.close()


async def test_mosquitto_runs_inside(
    broker: Broker, probe_factory: Callable[[str], Awaitable[Probe]]
) -> None:
    assert broker.process is not None and broker.process.poll() is None
    probe = await probe_factory("vm/smoke")
    await probe.client.publish("vm/smoke/hello", b'{"pid": %d}' % os.getpid(), qos=1)
    assert await probe.topic("hello") == {"pid": os.getpid()}
