"""HID-POS reports (decode, encode, descriptor) and the HID-POS driver against an emulated bus.

The driver tests run `HidPosScanner` on a pyusb backend that emulates scanners in memory: real
pyusb, real threads, no USB. The real-device test is in the hardware tier.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import queue
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import usb.backend
import usb.core
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers import hidpos
from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    RawScan,
    StatusChange,
)
from drivers.hidpos import HidPosScanner, report_descriptor_length
from drivers.hidpos_report import (
    HONEYWELL,
    REPORT_DESCRIPTOR,
    DecodedScan,
    MalformedReport,
    ReportAssembler,
    build_reports,
    is_barcode_scanner,
)
from drivers.settings import HidPosSettings

KEYBOARD_DESCRIPTOR = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810195067508150025650507190029658100c0"
)


def decode(reports: list[bytes], assembler: ReportAssembler | None = None) -> list[object]:
    assembler = assembler or ReportAssembler()
    return [r for r in (assembler.feed(report) for report in reports) if r is not None]


# Reports as a Honeywell Voyager sends them (python_hon_usbhid README): 56 data bytes with the
# continuation flag, then the last 9 bytes.
CAPTURED = [
    bytes([2, 56, 93, 88, 48]) + b"Product Name: Voyager 1602g\r\nBoot Revision: : 8992\r\nSoft"
    + bytes([63, 0, 1]),
    bytes([2, 9, 93, 88, 48]) + b"um: N/A\r\n" + bytes(47) + bytes([63, 0, 0]),
]  # fmt: skip


def test_a_captured_honeywell_barcode_decodes() -> None:
    assert decode(CAPTURED) == [
        DecodedScan(
            b"]X0Product Name: Voyager 1602g\r\nBoot Revision: : 8992\r\nSoftum: N/A\r\n", "]X0"
        )
    ]


def test_gs1_data_keeps_its_group_separators() -> None:
    data = b"010501234567890010ABC\x1d21XYZ"
    assert decode(build_reports(data, "]C1")) == [DecodedScan(b"]C1" + data, "]C1")]


def test_no_aim_identifier_leaves_the_data_alone() -> None:
    assert decode(build_reports(b"123", None)) == [DecodedScan(b"123", None)]


def test_long_barcodes_take_several_reports() -> None:
    data = bytes(range(256)) * 2
    reports = build_reports(data, "]Q1")
    assert len(reports) == 10
    assert all(len(r) == HONEYWELL.size for r in reports)
    assert [r[HONEYWELL.more_offset] for r in reports] == [1] * 9 + [0]


def test_a_barcode_of_exactly_one_report_is_one_report() -> None:
    assert len(build_reports(b"x" * HONEYWELL.capacity, "]E0")) == 1


def test_build_rejects_a_non_aim_identifier() -> None:
    with pytest.raises(ValueError, match="AIM"):
        build_reports(b"1", "E0")


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (b"\x02\x01]E0", "a report of 5 bytes, expected 64"),
        (bytes([4]) + bytes(63), "report ID 0x04, expected 0x02"),
        (bytes([2, 57]) + bytes(62), "data length 57, room for 56"),
    ],
)
def test_malformed_reports_are_reported_not_raised(report: bytes, reason: str) -> None:
    assembler = ReportAssembler()
    assert assembler.feed(report) == MalformedReport(reason)
    assert assembler.malformed == 1


def test_other_reports_do_not_break_a_barcode_being_assembled() -> None:
    first, last = build_reports(b"a" * 60, "]C0")
    trigger_report = bytes([4]) + bytes(63)
    result = decode([first, trigger_report, last])
    assert result[0] == MalformedReport("report ID 0x04, expected 0x02")
    assert result[1] == DecodedScan(b"]C0" + b"a" * 60, "]C0")


def test_a_corrupt_report_drops_the_rest_of_its_barcode() -> None:
    reports = build_reports(b"a" * 150, "]C0")
    corrupt = bytearray(reports[0])
    corrupt[HONEYWELL.length_offset] = 200
    result = decode([bytes(corrupt), *reports[1:], *build_reports(b"ok", "]C0")])
    assert result == [MalformedReport("data length 200, room for 56"), DecodedScan(b"]C0ok", "]C0")]


def test_an_overlong_barcode_is_dropped_and_the_next_one_read() -> None:
    assembler = ReportAssembler(max_length=100)
    result = decode([*build_reports(b"a" * 150, "]C0"), *build_reports(b"ok", None)], assembler)
    assert result == [MalformedReport("barcode longer than 100 bytes"), DecodedScan(b"ok", None)]


def test_reset_forgets_a_partial_barcode() -> None:
    assembler = ReportAssembler()
    assembler.feed(build_reports(b"a" * 60, "]C0")[0])
    assert assembler.reset() == 56
    assert decode(build_reports(b"b", None), assembler) == [DecodedScan(b"b", None)]


printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
aims = st.none() | st.text(printable, min_size=2, max_size=2).map(lambda s: "]" + s)


@given(data=st.binary(max_size=2000), aim=aims)
def test_encode_then_decode_round_trips(data: bytes, aim: str | None) -> None:
    assert decode(build_reports(data, aim)) == [DecodedScan((aim or "").encode() + data, aim)]


# A report of the barcode's ID, any content: lengths, AIM and continuation flags at random.
barcode_id_reports = st.binary(min_size=HONEYWELL.size - 1, max_size=HONEYWELL.size - 1).map(
    lambda rest: bytes([HONEYWELL.report_id]) + rest
)
# Reports the decoder must skip without losing the barcode around them: another report ID (a
# trigger or status report), of any size, or an empty read.
other_reports = st.just(b"") | st.tuples(
    st.integers(0, 255).filter(lambda i: i != HONEYWELL.report_id), st.binary(max_size=80)
).map(lambda parts: bytes([parts[0]]) + parts[1])
any_reports = (
    st.binary(max_size=80)
    | barcode_id_reports
    | other_reports
    | st.sampled_from(build_reports(b"x" * 70, "]E0") + build_reports(b"y" * 200, None))
)
# Sizes spread evenly up to five reports' worth (hypothesis favours short strings).
payloads = st.integers(0, 5 * HONEYWELL.capacity).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
# Ends whatever the assembler was doing: the barcode's ID, no data, no continuation.
TERMINATOR = bytes([HONEYWELL.report_id, 0]) + bytes(HONEYWELL.size - 2)


@settings(max_examples=300, deadline=None)
@given(reports=st.lists(any_reports, max_size=40), max_length=st.integers(1, 300))
def test_the_decoder_never_raises(reports: list[bytes], max_length: int) -> None:
    assembler = ReportAssembler(max_length=max_length)
    malformed = 0
    for report in reports:
        result = assembler.feed(report)
        assert result is None or isinstance(result, DecodedScan | MalformedReport)
        if isinstance(result, MalformedReport):
            malformed += 1
            assert result.reason
        if isinstance(result, DecodedScan):
            prefix = (result.aim or "").encode()
            assert result.aim is None or (len(result.aim) == 3 and result.aim[0] == "]")
            assert result.data.startswith(prefix)
            assert len(result.data) - len(prefix) <= max_length
    assert assembler.malformed == malformed


@settings(max_examples=200, deadline=None)
@given(
    barcodes=st.lists(st.tuples(payloads, aims), min_size=1, max_size=4),
    garbage=st.lists(other_reports, max_size=12),
    data=st.data(),
)
def test_round_trip_with_other_reports_interleaved(
    barcodes: list[tuple[bytes, str | None]], garbage: list[bytes], data: st.DataObject
) -> None:
    stream = [report for payload, aim in barcodes for report in build_reports(payload, aim)]
    for report in garbage:
        stream.insert(data.draw(st.integers(0, len(stream)), label="at"), report)
    assembler = ReportAssembler()
    results = decode(stream, assembler)
    assert [r for r in results if isinstance(r, DecodedScan)] == [
        DecodedScan((aim or "").encode() + payload, aim) for payload, aim in barcodes
    ]
    assert len(results) == len(barcodes) + len(garbage)
    assert assembler.malformed == len(garbage)


@settings(max_examples=200, deadline=None)
@given(
    garbage=st.lists(any_reports, max_size=20),
    payload=payloads,
    aim=aims,
    max_length=st.integers(300, 1000),
)
def test_the_decoder_recovers_after_any_garbage(
    garbage: list[bytes], payload: bytes, aim: str | None, max_length: int
) -> None:
    assembler = ReportAssembler(max_length=max_length)
    decode([*garbage, TERMINATOR], assembler)
    assert decode(build_reports(payload, aim), assembler) == [
        DecodedScan((aim or "").encode() + payload, aim)
    ]


def input_report_bits(descriptor: bytes, report_id: int) -> int:
    """Sum of the Input items of one report: enough of a HID parser to check the descriptor."""
    size = count = current_id = bits = pos = 0
    while pos < len(descriptor):
        prefix = descriptor[pos]
        length = (0, 1, 2, 4)[prefix & 3]
        value = int.from_bytes(descriptor[pos + 1 : pos + 1 + length], "little")
        pos += 1 + length
        tag = prefix & 0xFC
        if tag == 0x74:
            size = value
        elif tag == 0x94:
            count = value
        elif tag == 0x84:
            current_id = value
        elif tag == 0x80 and current_id == report_id:
            bits += size * count
    return bits


def test_the_report_descriptor_declares_the_layout() -> None:
    assert is_barcode_scanner(REPORT_DESCRIPTOR)
    assert input_report_bits(REPORT_DESCRIPTOR, HONEYWELL.report_id) == 8 * (HONEYWELL.size - 1)


def test_a_keyboard_is_not_a_barcode_scanner() -> None:
    assert not is_barcode_scanner(KEYBOARD_DESCRIPTOR)


def test_a_usage_in_an_extended_item_counts() -> None:
    assert is_barcode_scanner(bytes([0x0B, 0x02, 0x00, 0x8C, 0x00, 0xA1, 0x01, 0xC0]))


@given(st.binary(max_size=200))
def test_descriptor_parsing_never_raises(descriptor: bytes) -> None:
    is_barcode_scanner(descriptor)
    report_descriptor_length(descriptor)


def hid_descriptor(report_length: int) -> bytes:
    return bytes([9, 0x21, 0x11, 0x01, 0, 1, 0x22]) + report_length.to_bytes(2, "little")


def test_report_descriptor_length_comes_from_the_hid_descriptor() -> None:
    assert report_descriptor_length(hid_descriptor(300)) == 300
    assert report_descriptor_length(b"") is None


@pytest.mark.parametrize(
    ("given_id", "value"), [("0x0c2e", 0x0C2E), ("0C2E", 0x0C2E), (0x0C2E, 0x0C2E), (None, None)]
)
def test_usb_ids_are_integers_or_hex_strings(given_id: object, value: int | None) -> None:
    settings = HidPosSettings.model_validate({"type": "hidpos", "vendor_id": given_id})
    assert settings.vendor_id == value


@pytest.mark.parametrize(
    "bad",
    [
        {"vendor_id": "scanner"},
        {"product_id": 0x10000},
        {"layout": "zebra"},
        {"port": "/dev/ttyACM0"},
    ],
)
def test_settings_reject_what_cannot_work(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        HidPosSettings.model_validate({"type": "hidpos", **bad})


# The emulated bus.


@dataclass(eq=False)
class FakeDevice:
    """One USB device on the emulated bus, with one HID interface and an interrupt IN endpoint."""

    address: int
    descriptor: bytes = REPORT_DESCRIPTOR
    vendor: int = 0x0C2E
    product: int = 0x0B61
    kernel_driver: bool = False
    busy: bool = False
    denied: bool = False
    reports: queue.Queue[bytes] = field(default_factory=queue.Queue)
    plugged: bool = True
    claimed: bool = False
    descriptor_requests: int = 0


def usb_error(code: int) -> usb.core.USBError:
    return usb.core.USBError(errno.errorcode[code], None, code)


class FakeBackend(usb.backend.IBackend):  # type: ignore[misc]
    def __init__(self, *devices: FakeDevice) -> None:
        self.devices = list(devices)

    def plug(self, device: FakeDevice) -> None:
        self.devices.append(device)

    def unplug(self, device: FakeDevice) -> None:
        device.plugged = False
        self.devices.remove(device)

    def enumerate_devices(self) -> list[FakeDevice]:
        return list(self.devices)

    def get_device_descriptor(self, dev: FakeDevice) -> Any:
        return SimpleNamespace(
            bLength=18, bDescriptorType=1, bcdUSB=0x200, bDeviceClass=0, bDeviceSubClass=0,
            bDeviceProtocol=0, bMaxPacketSize0=64, idVendor=dev.vendor, idProduct=dev.product,
            bcdDevice=0x100, iManufacturer=0, iProduct=0, iSerialNumber=0, bNumConfigurations=1,
            address=dev.address, bus=1, port_number=dev.address, port_numbers=(dev.address,),
            speed=2,
        )  # fmt: skip

    def get_configuration_descriptor(self, dev: FakeDevice, config: int) -> Any:
        return SimpleNamespace(
            bLength=9, bDescriptorType=2, wTotalLength=41, bNumInterfaces=1,
            bConfigurationValue=1, iConfiguration=0, bmAttributes=0x80, bMaxPower=50,
            extra_descriptors=[],
        )  # fmt: skip

    def get_interface_descriptor(self, dev: FakeDevice, intf: int, alt: int, config: int) -> Any:
        if alt > 0:
            raise IndexError("no alternate settings")  # as libusb1's backend ends the list
        return SimpleNamespace(
            bLength=9, bDescriptorType=4, bInterfaceNumber=0, bAlternateSetting=0,
            bNumEndpoints=1, bInterfaceClass=3, bInterfaceSubClass=0, bInterfaceProtocol=0,
            iInterface=0, extra_descriptors=list(hid_descriptor(len(dev.descriptor))),
        )  # fmt: skip

    def get_endpoint_descriptor(
        self, dev: FakeDevice, ep: int, intf: int, alt: int, config: int
    ) -> Any:
        return SimpleNamespace(
            bLength=7, bDescriptorType=5, bEndpointAddress=0x81, bmAttributes=3,
            wMaxPacketSize=64, bInterval=1, bRefresh=0, bSynchAddress=0, extra_descriptors=[],
        )  # fmt: skip

    def open_device(self, dev: FakeDevice) -> FakeDevice:
        if not dev.plugged:
            raise usb_error(errno.ENODEV)
        if dev.denied:
            raise usb_error(errno.EACCES)
        return dev

    def close_device(self, handle: FakeDevice) -> None:
        pass

    def get_configuration(self, handle: FakeDevice) -> int:
        return 1

    def claim_interface(self, handle: FakeDevice, intf: int) -> None:
        if handle.busy or handle.kernel_driver:
            raise usb_error(errno.EBUSY)
        handle.claimed = True

    def release_interface(self, handle: FakeDevice, intf: int) -> None:
        handle.claimed = False

    def is_kernel_driver_active(self, handle: FakeDevice, intf: int) -> bool:
        return handle.kernel_driver

    def detach_kernel_driver(self, handle: FakeDevice, intf: int) -> None:
        handle.kernel_driver = False

    def attach_kernel_driver(self, handle: FakeDevice, intf: int) -> None:
        handle.kernel_driver = True

    def ctrl_transfer(
        self,
        handle: FakeDevice,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        assert (bmRequestType, bRequest, wValue, wIndex) == (0x81, 6, 0x2200, 0)
        handle.descriptor_requests += 1
        data[: len(handle.descriptor)] = array.array("B", handle.descriptor)
        return len(handle.descriptor)

    def intr_read(
        self, handle: FakeDevice, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        assert handle.claimed
        try:
            report = handle.reports.get(timeout=timeout / 1000)
        except queue.Empty:
            if not handle.plugged:
                raise usb_error(errno.ENODEV) from None
            raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT) from None
        buff[: len(report)] = array.array("B", report)
        return len(report)


Events = AsyncIterator[DriverEvent]


async def next_event(events: Events, kind: type[DriverEvent] | None = None) -> DriverEvent:
    async with asyncio.timeout(5):
        event = await anext(events)
    if kind is not None:
        assert isinstance(event, kind), event
    return event


@contextlib.asynccontextmanager
async def running(scanner: HidPosScanner) -> AsyncIterator[Events]:
    """The driver's events, closed (device released) when the block ends."""
    events = cast(AsyncGenerator[DriverEvent, None], scanner.events())
    async with contextlib.aclosing(events):
        yield events


def scanner(backend: FakeBackend, **settings: object) -> HidPosScanner:
    return HidPosScanner(
        "pos", HidPosSettings.model_validate({"type": "hidpos", **settings}), backend=backend
    )


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hidpos, "POLL_INTERVAL", 0.02)
    monkeypatch.setattr(hidpos, "SYSFS_USB", tmp_path / "sys")


def send(device: FakeDevice, data: bytes, aim: str | None = "]E0") -> None:
    for report in build_reports(data, aim):
        device.reports.put(report)


async def test_reads_barcodes_and_releases_the_scanner() -> None:
    device = FakeDevice(address=5)  # no kernel driver: found through GET_DESCRIPTOR
    driver = scanner(FakeBackend(device), vendor_id="0c2e")
    async with running(driver) as events:
        assert await next_event(events) == StatusChange("pos", DeviceState.CONNECTED)
        assert (await driver.check_health(HealthLevel.INTERNAL)).ok
        send(device, b"9780201379629")
        send(device, b"x" * 100, "]C0")
        device.reports.put(bytes([2, 99]) + bytes(62))
        event = await next_event(events, RawScan)
        assert isinstance(event, RawScan) and event.data == b"]E09780201379629"
        event = await next_event(events, RawScan)
        assert isinstance(event, RawScan) and event.data == b"]C0" + b"x" * 100
        assert await next_event(events) == DroppedInput(
            "pos", "HID-POS report: data length 99, room for 56"
        )
    assert not device.claimed
    assert device.descriptor_requests == 1


async def test_detaches_the_kernel_driver_and_gives_it_back(tmp_path: Path) -> None:
    device = FakeDevice(address=5, kernel_driver=True)
    # usbhid holds the interface, so its descriptor is in sysfs and the device is not asked.
    hid_dir = tmp_path / "sys" / "1-5:1.0" / "0003:0C2E:0B61.0001"
    hid_dir.mkdir(parents=True)
    (hid_dir / "report_descriptor").write_bytes(REPORT_DESCRIPTOR)
    async with running(scanner(FakeBackend(device))) as events:
        await next_event(events, StatusChange)
        assert not device.kernel_driver and device.claimed
    assert device.kernel_driver and not device.claimed
    assert device.descriptor_requests == 0


async def test_survives_unplug_and_replug() -> None:
    device = FakeDevice(address=5)
    backend = FakeBackend(device)
    driver = scanner(backend)
    async with running(driver) as events:
        await next_event(events, StatusChange)
        device.reports.put(build_reports(b"a" * 60, "]C0")[0])  # half a barcode, then unplugged
        backend.unplug(device)
        assert await next_event(events) == DroppedInput(
            "pos", "unfinished barcode of 56 bytes: scanner gone"
        )
        gone = await next_event(events, StatusChange)
        assert isinstance(gone, StatusChange) and gone.state is DeviceState.DISCONNECTED
        assert gone.error == "USB device 0c2e:0b61 (bus 1 device 5) interface 0 went away: ENODEV"
        health = await driver.check_health(HealthLevel.EXTERNAL)
        assert not health.ok and health.detail == "no HID-POS scanner found"
        replugged = FakeDevice(address=6)
        backend.plug(replugged)
        assert await next_event(events) == StatusChange("pos", DeviceState.CONNECTED)
        send(replugged, b"123")
        assert isinstance(await next_event(events, RawScan), RawScan)


async def test_waits_for_a_scanner_and_ignores_other_hid_devices() -> None:
    keyboard = FakeDevice(address=3, descriptor=KEYBOARD_DESCRIPTOR)
    other_scanner = FakeDevice(address=4, vendor=0x05E0)
    backend = FakeBackend(keyboard, other_scanner)
    async with running(scanner(backend, vendor_id=0x0C2E, product_id="0b61")) as events:
        waiting = await next_event(events, StatusChange)
        assert waiting == StatusChange(
            "pos",
            DeviceState.DISCONNECTED,
            "no HID-POS scanner (vendor 0c2e, product 0b61) found; waiting for one",
        )
        backend.plug(FakeDevice(address=7))
        assert await next_event(events) == StatusChange("pos", DeviceState.CONNECTED)
    assert not keyboard.claimed and not other_scanner.claimed


async def test_matches_the_serial_number_from_sysfs(tmp_path: Path) -> None:
    first, second = FakeDevice(address=1), FakeDevice(address=2)
    for device, serial in ((first, "A1"), (second, "B2")):
        (tmp_path / "sys" / f"1-{device.address}").mkdir(parents=True)
        (tmp_path / "sys" / f"1-{device.address}" / "serial").write_text(serial + "\n")
    async with running(scanner(FakeBackend(first, second), serial="B2")) as events:
        await next_event(events, StatusChange)
        assert second.claimed and not first.claimed


async def test_a_configured_scanner_held_by_another_process_is_a_failure() -> None:
    backend = FakeBackend(FakeDevice(address=5, busy=True))
    async with running(scanner(backend, vendor_id=0x0C2E)) as events:
        with pytest.raises(OSError, match="claimed by another process"):
            await next_event(events)


async def test_no_permission_says_how_to_grant_it(tmp_path: Path) -> None:
    # Found without opening it (usbhid holds it: descriptor from sysfs), then refused.
    hid_dir = tmp_path / "sys" / "1-5:1.0" / "0003:0C2E:0B61.0001"
    hid_dir.mkdir(parents=True)
    (hid_dir / "report_descriptor").write_bytes(REPORT_DESCRIPTOR)
    backend = FakeBackend(FakeDevice(address=5, kernel_driver=True, denied=True))
    async with running(scanner(backend)) as events:
        with pytest.raises(PermissionError, match=r"no permission to open .*\(group plugdev\)"):
            await next_event(events)


async def test_health_without_the_driver_running_looks_on_the_bus() -> None:
    driver = scanner(FakeBackend(FakeDevice(address=5)))
    internal = await driver.check_health(HealthLevel.INTERNAL)
    assert not internal.ok
    external = await driver.check_health(HealthLevel.EXTERNAL)
    assert external.ok and external.detail.endswith("present, not open")
