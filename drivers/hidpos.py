"""USB HID-POS barcode scanners through libusb (pyusb): one report per barcode, no keyboard layout.

Finding the scanner: a HID interface whose report descriptor declares a Barcode Scanner
application collection (usage page 0x8C, usage 0x02), on a device matching the configured vendor
id, product id and serial number (each optional). The descriptor is read from sysfs while the
kernel's usbhid driver holds the interface, so looking never opens, let alone detaches, the
keyboards on the bus; only an interface no driver holds is asked with GET_DESCRIPTOR.

Reading: usbhid is detached from the scanner's interface while the driver runs and reattached
when it stops. pyusb blocks, so a worker thread reads the interrupt endpoint with a short timeout,
checks its stop flag between reads, and hands reports to the event loop.

Hotplug: pyusb has no hotplug API, so while the scanner is away the worker looks for it with
`usb.core.find` every `POLL_INTERVAL` seconds. Enumeration reads sysfs; no device is touched.

Trying it on a device (the hardware tier's USB gadget, or a scanner in HID-POS mode)::

    settings = HidPosSettings(type="hidpos", vendor_id="0x0c2e", product_id="0x0b61")
    async for event in HidPosScanner("pos-scanner", settings).events(): print(event)

expects `StatusChange(CONNECTED)`, then for every barcode a `RawScan` whose data is the AIM
identifier and the payload (`]E09780201379629`); the gadget sends what
`hidpos_report.build_reports` returns, with `hidpos_report.REPORT_DESCRIPTOR`. Runs as root or
with the udev rule in systemd/70-lane-agent.rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import usb.core
import usb.util

from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    HealthReport,
    RawScan,
    StatusChange,
)
from drivers.hidpos_report import (
    LAYOUTS,
    DecodedScan,
    MalformedReport,
    ReportAssembler,
    is_barcode_scanner,
)
from drivers.settings import HidPosSettings

POLL_INTERVAL = 0.5  # seconds between looks for an absent scanner
READ_TIMEOUT_MS = 100  # how long a read blocks before the worker checks whether to stop
SYSFS_USB = Path("/sys/bus/usb/devices")
HID_CLASS = 0x03
GET_DESCRIPTOR = 0x06
HID_DESCRIPTOR = 0x21
REPORT_DESCRIPTOR_TYPE = 0x22
# libusb's NO_DEVICE, IO and NOT_FOUND: what reads and claims fail with once a device is unplugged.
GONE = {errno.ENODEV, errno.EIO, errno.ENOENT}


@dataclass(frozen=True, slots=True)
class _Target:
    """The scanner interface to claim and its interrupt IN endpoint."""

    device: Any  # usb.core.Device
    interface: int
    endpoint: int

    def __str__(self) -> str:
        return _describe(self.device, self.interface)


_Item = bytes | StatusChange | Exception


class HidPosScanner:
    kind = "hidpos"

    def __init__(self, device_id: str, settings: HidPosSettings, *, backend: Any = None) -> None:
        """`backend`: a pyusb backend; None lets pyusb find libusb-1.0."""
        self.device_id = device_id
        self.settings = settings
        self.layout = LAYOUTS[settings.layout]
        self._backend = backend
        self._reading: _Target | None = None  # set by the worker while it reads a scanner

    async def events(self) -> AsyncIterator[DriverEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()

        def post(item: _Item) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under a stopping worker
                loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = threading.Thread(
            target=self._work, args=(post, stop), name=f"hidpos:{self.device_id}", daemon=True
        )
        worker.start()
        assembler = ReportAssembler(self.layout)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, StatusChange):
                    if dropped := assembler.reset():
                        yield DroppedInput(
                            self.device_id, f"unfinished barcode of {dropped} bytes: scanner gone"
                        )
                    yield item
                    continue
                result = assembler.feed(item)
                if isinstance(result, DecodedScan):
                    yield RawScan(self.device_id, result.data)
                elif isinstance(result, MalformedReport):
                    yield DroppedInput(self.device_id, f"HID-POS report: {result.reason}")
        finally:
            stop.set()
            await asyncio.to_thread(worker.join)

    async def check_health(self, level: HealthLevel) -> HealthReport:
        """Internal: what the reader thread holds. External: when not reading, look on the bus."""
        if (target := self._reading) is not None:
            return HealthReport(self.device_id, level, True, f"reading {target}")
        if level is HealthLevel.INTERNAL:
            return HealthReport(self.device_id, level, False, f"no {self._wanted()} open")
        try:
            target = await asyncio.to_thread(self._find)
        except OSError as exc:
            return HealthReport(self.device_id, level, False, str(exc))
        if target is None:
            return HealthReport(self.device_id, level, False, f"no {self._wanted()} found")
        return HealthReport(self.device_id, level, True, f"{target} present, not open")

    def _wanted(self) -> str:
        s = self.settings
        ids = [
            f"{name} {value:04x}"
            for name, value in (("vendor", s.vendor_id), ("product", s.product_id))
            if value is not None
        ]
        if s.serial is not None:
            ids.append(f"serial {s.serial}")
        return "HID-POS scanner" + (f" ({', '.join(ids)})" if ids else "")

    # Everything below runs in the worker thread.

    def _work(self, post: Callable[[_Item], None], stop: threading.Event) -> None:
        announced = False  # a DISCONNECTED since the last CONNECTED
        try:
            while not stop.is_set():
                target = self._find()
                if target is None:
                    if not announced:
                        message = f"no {self._wanted()} found; waiting for one"
                        post(StatusChange(self.device_id, DeviceState.DISCONNECTED, message))
                        announced = True
                    stop.wait(POLL_INTERVAL)
                    continue
                gone = self._serve(target, post, stop)
                if gone is not None:
                    post(StatusChange(self.device_id, DeviceState.DISCONNECTED, gone))
                    announced = True
        except Exception as exc:
            post(exc)

    def _find(self) -> _Target | None:
        s = self.settings
        # A configured device that cannot be looked at is an error to report, not one to wait out.
        named = s.vendor_id is not None or s.product_id is not None or s.serial is not None

        def ids_match(device: Any) -> bool:
            return (s.vendor_id is None or device.idVendor == s.vendor_id) and (
                s.product_id is None or device.idProduct == s.product_id
            )

        try:
            devices = list(
                usb.core.find(find_all=True, backend=self._backend, custom_match=ids_match)
            )
        except usb.core.NoBackendError:
            raise OSError("libusb-1.0 is not installed (apt-get install libusb-1.0-0)") from None
        for device in devices:
            if s.serial is not None and _serial_number(device) != s.serial:
                continue
            if (target := _scanner_interface(device, strict=named)) is not None:
                return target
        return None

    def _serve(
        self, target: _Target, post: Callable[[_Item], None], stop: threading.Event
    ) -> str | None:
        """Claim the scanner and pass its reports on until it goes away (returns why) or stop."""
        device, number = target.device, target.interface
        detached = False
        try:
            try:
                if device.is_kernel_driver_active(number):
                    device.detach_kernel_driver(number)
                    detached = True
                usb.util.claim_interface(device, number)
            except usb.core.USBError as exc:
                if exc.errno in GONE:
                    return f"{target} went away: {exc.strerror}"
                raise _explain(exc, str(target)) from exc
            self._reading = target
            post(StatusChange(self.device_id, DeviceState.CONNECTED))
            while not stop.is_set():
                try:
                    report = device.read(target.endpoint, self.layout.size, READ_TIMEOUT_MS)
                except usb.core.USBTimeoutError:
                    continue
                except usb.core.USBError as exc:
                    if exc.errno in GONE:
                        return f"{target} went away: {exc.strerror}"
                    raise
                if report:  # a zero-length packet ends a transfer of full packets: no report
                    post(bytes(report))
            return None
        finally:
            self._reading = None
            with contextlib.suppress(usb.core.USBError):
                usb.util.release_interface(device, number)
            if detached:
                with contextlib.suppress(usb.core.USBError):
                    device.attach_kernel_driver(number)
            usb.util.dispose_resources(device)


def _describe(device: Any, interface: int) -> str:
    return (
        f"USB device {device.idVendor:04x}:{device.idProduct:04x} "
        f"(bus {device.bus} device {device.address}) interface {interface}"
    )


def _explain(exc: Any, what: str) -> OSError:
    """A USB error as a technician can act on it."""
    if exc.errno == errno.EACCES:
        return PermissionError(
            exc.errno,
            f"no permission to open {what}: install systemd/70-lane-agent.rules (group plugdev) "
            "or a udev rule for its vendor id",
        )
    if exc.errno == errno.EBUSY:
        return OSError(exc.errno, f"{what} is claimed by another process")
    return OSError(exc.errno, f"{what}: {exc.strerror}")


def _sysfs_dir(device: Any) -> Path | None:
    """The device's sysfs directory (`1-1.2`), named by bus and port path like the kernel does."""
    if device.bus is None or not device.port_numbers:
        return None
    return SYSFS_USB / f"{device.bus}-{'.'.join(str(p) for p in device.port_numbers)}"


def _serial_number(device: Any) -> str | None:
    """From sysfs when it is there (readable by anyone), else from the device itself."""
    if (directory := _sysfs_dir(device)) is not None:
        with contextlib.suppress(OSError):
            return (directory / "serial").read_text().strip()
    try:
        serial: str | None = device.serial_number
    except (usb.core.USBError, ValueError):  # no permission, or no serial number string
        return None
    return serial


def _scanner_interface(device: Any, *, strict: bool) -> _Target | None:
    for config in device:
        for interface in config:
            if interface.bInterfaceClass != HID_CLASS or interface.bAlternateSetting != 0:
                continue
            endpoint = usb.util.find_descriptor(
                interface,
                custom_match=lambda e: (
                    usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN
                    and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_INTR
                ),
            )
            if endpoint is None:
                continue
            descriptor = _report_descriptor(device, config.bConfigurationValue, interface, strict)
            if descriptor is not None and is_barcode_scanner(descriptor):
                return _Target(device, interface.bInterfaceNumber, endpoint.bEndpointAddress)
    return None


def _report_descriptor(device: Any, config: int, interface: Any, strict: bool) -> bytes | None:
    """The interface's HID report descriptor; None when it has none or, unless `strict`, when
    it cannot be read (no permission, or another program holds the interface)."""
    number = interface.bInterfaceNumber
    if (directory := _sysfs_dir(device)) is not None:
        # Present while a kernel HID driver is bound: .../1-1.2:1.0/0003:0C2E:0B61.0004/
        for path in directory.with_name(f"{directory.name}:{config}.{number}").glob(
            "*/report_descriptor"
        ):
            with contextlib.suppress(OSError):
                return path.read_bytes()
    length = report_descriptor_length(bytes(interface.extra_descriptors))
    if length is None:
        return None
    try:
        data = device.ctrl_transfer(
            usb.util.build_request_type(
                usb.util.CTRL_IN, usb.util.CTRL_TYPE_STANDARD, usb.util.CTRL_RECIPIENT_INTERFACE
            ),
            GET_DESCRIPTOR,
            REPORT_DESCRIPTOR_TYPE << 8,
            number,
            length,
            1000,
        )
    except usb.core.USBError as exc:
        if strict and exc.errno in (errno.EACCES, errno.EBUSY):
            raise _explain(exc, _describe(device, number)) from exc
        return None
    finally:
        usb.util.dispose_resources(device)
    return bytes(data)


def report_descriptor_length(extra: bytes) -> int | None:
    """wDescriptorLength of the report descriptor, from the HID descriptor among an interface's
    class-specific descriptors (HID 1.11 §6.2.1); None when there is none."""
    pos = 0
    while pos + 1 < len(extra) and extra[pos] > 0:
        length, kind = extra[pos], extra[pos + 1]
        if kind == HID_DESCRIPTOR:
            entries = extra[pos + 6 : pos + length]  # (bDescriptorType, wDescriptorLength)...
            for i in range(0, len(entries) - 2, 3):
                if entries[i] == REPORT_DESCRIPTOR_TYPE:
                    return int.from_bytes(entries[i + 1 : i + 3], "little")
        pos += length
    return None
