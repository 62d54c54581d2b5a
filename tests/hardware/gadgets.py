"""Real kernel devices for the hardware tier: uinput keyboards and configfs USB gadgets.

Everything here needs the test VM (scripts/vm-test): /dev/uinput, dummy_hcd's loopback USB
controllers and configfs. A gadget is both ends of a real USB link: its device side
(/dev/ttyGS*, /dev/hidg*) plays the scanner, its host side (/dev/ttyACM*, usbhid, libusb) is
what the agent's drivers open, exactly as with a scanner plugged into a lane PC.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import struct
import subprocess
import time
import tty
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, TypeVar

from evdev import UInput, ecodes

from drivers import hidpos_report

CONFIGFS = Path("/sys/kernel/config/usb_gadget")
UDC_CLASS = Path("/sys/class/udc")
USB_DEVICES = Path("/sys/bus/usb/devices")
SERIAL_BY_ID = Path("/dev/serial/by-id")
INPUT_BY_ID = Path("/dev/input/by-id")

# The emulated HID-POS scanner sends what the agent's driver decodes: Honeywell-layout reports,
# report ID 2, 64 bytes with the ID (build them with drivers.hidpos_report.build_reports).
HIDPOS_SCANNER_REPORT_DESCRIPTOR = hidpos_report.REPORT_DESCRIPTOR
HIDPOS_SCANNER_REPORT_LENGTH = hidpos_report.HONEYWELL.size

# A boot-protocol USB keyboard (8-byte reports: modifiers, reserved, six key usages). A gadget
# with this descriptor is a real USB keyboard-wedge scanner: usbhid turns it into an evdev node
# and udev gives it a /dev/input/by-id/usb-...-event-kbd link (uinput devices get none).
KEYBOARD_REPORT_DESCRIPTOR = bytes(
    [
        0x05, 0x01,        # Usage Page (Generic Desktop)
        0x09, 0x06,        # Usage (Keyboard)
        0xA1, 0x01,        # Collection (Application)
        0x05, 0x07,        #   Usage Page (Keyboard/Keypad)
        0x19, 0xE0,        #   Usage Minimum (Left Control)
        0x29, 0xE7,        #   Usage Maximum (Right GUI)
        0x15, 0x00,        #   Logical Minimum (0)
        0x25, 0x01,        #   Logical Maximum (1)
        0x75, 0x01,        #   Report Size (1)
        0x95, 0x08,        #   Report Count (8)
        0x81, 0x02,        #   Input (Data, Variable, Absolute): modifiers
        0x95, 0x01,        #   Report Count (1)
        0x75, 0x08,        #   Report Size (8)
        0x81, 0x03,        #   Input (Constant): reserved
        0x95, 0x06,        #   Report Count (6)
        0x75, 0x08,        #   Report Size (8)
        0x15, 0x00,        #   Logical Minimum (0)
        0x25, 0x65,        #   Logical Maximum (101)
        0x19, 0x00,        #   Usage Minimum (0)
        0x29, 0x65,        #   Usage Maximum (101)
        0x81, 0x00,        #   Input (Data, Array): pressed keys
        0xC0,              # End Collection
    ]
)  # fmt: skip
KEYBOARD_REPORT_LENGTH = 8

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll until `probe` returns something: enumeration under TCG takes seconds, not a constant."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return found


def udev_settle(timeout: float = 20.0) -> None:
    """Let udevd finish its queue so /dev/*/by-id links match the kernel; no-op without udevd."""
    if Path("/run/udev/control").exists() and shutil.which("udevadm"):
        subprocess.run(["udevadm", "settle", f"--timeout={int(timeout)}"], check=False)


def link_to(directory: Path, target: Path) -> Path | None:
    """The link in `directory` (e.g. /dev/serial/by-id) resolving to `target`, if udev made one."""
    if not directory.is_dir():
        return None
    real = target.resolve()
    for link in sorted(directory.iterdir()):
        if link.is_symlink() and link.resolve() == real:
            return link
    return None


def _read_sysfs(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# --------------------------------------------------------------------------------- uinput


def _us_layout() -> dict[str, tuple[int, bool]]:
    keys: dict[str, tuple[int, bool]] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        code = ecodes.ecodes[f"KEY_{letter.upper()}"]
        keys[letter] = (code, False)
        keys[letter.upper()] = (code, True)
    for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True):
        code = ecodes.ecodes[f"KEY_{digit}"]
        keys[digit] = (code, False)
        keys[shifted] = (code, True)
    for plain, shifted, name in (
        ("-", "_", "MINUS"),
        ("=", "+", "EQUAL"),
        ("[", "{", "LEFTBRACE"),
        ("]", "}", "RIGHTBRACE"),
        ("\\", "|", "BACKSLASH"),
        (";", ":", "SEMICOLON"),
        ("'", '"', "APOSTROPHE"),
        ("`", "~", "GRAVE"),
        (",", "<", "COMMA"),
        (".", ">", "DOT"),
        ("/", "?", "SLASH"),
    ):
        keys[plain] = (ecodes.ecodes[f"KEY_{name}"], False)
        keys[shifted] = (ecodes.ecodes[f"KEY_{name}"], True)
    keys[" "] = (ecodes.KEY_SPACE, False)
    keys["\t"] = (ecodes.KEY_TAB, False)
    keys["\n"] = (ecodes.KEY_ENTER, False)
    return keys


US_LAYOUT: dict[str, tuple[int, bool]] = _us_layout()
"""Character -> (keycode, needs shift) for a scanner typing in the US layout."""

_INPUT_EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit: timeval, type, code, value


class UInputKeyboard:
    """A keyboard-wedge scanner as the kernel sees one: a real evdev node fed through uinput.

    `unplug()` destroys the input device (readers get ENODEV) and `replug()` creates it again
    with the same name and USB ids, which is how a scanner cable pull looks to evdev.
    """

    def __init__(
        self, name: str, vendor: int, product: int, version: int = 1, phys: str = ""
    ) -> None:
        self.name = name
        self.vendor = vendor
        self.product = product
        self.version = version
        self.phys = phys or f"usb-lane-agent-test/{name}"
        self._ui: UInput | None = None
        self.replug()

    @property
    def plugged(self) -> bool:
        return self._ui is not None

    @property
    def ui(self) -> UInput:
        if self._ui is None:
            raise RuntimeError(f"{self.name!r} is unplugged")
        return self._ui

    @property
    def path(self) -> str:
        """The /dev/input/eventN node of the current incarnation."""
        return str(self.ui.device.path)

    @property
    def by_id(self) -> Path | None:
        """Always None in practice: udev's by-id rules need a USB parent, uinput has none."""
        return link_to(INPUT_BY_ID, Path(self.path))

    def replug(self) -> None:
        """Create the device (again), with the same identity; a no-op when plugged."""
        if self._ui is not None:
            return
        keys = list(range(ecodes.KEY_ESC, ecodes.KEY_MICMUTE + 1))
        self._ui = UInput(
            {ecodes.EV_KEY: keys, ecodes.EV_MSC: [ecodes.MSC_SCAN]},
            name=self.name,
            vendor=self.vendor,
            product=self.product,
            version=self.version,
            bustype=ecodes.BUS_USB,
            phys=self.phys,
        )
        udev_settle()

    def unplug(self) -> None:
        """Destroy the input device: its node goes away and open readers get ENODEV."""
        if self._ui is not None:
            self._ui.close()
            self._ui = None
            udev_settle()

    def close(self) -> None:
        self.unplug()

    # A full-speed USB keyboard reports at most once per millisecond (bInterval 1), one key
    # change per report at the fastest; scanners type no faster than that.
    report_interval = 0.001

    def _key(self, code: int, value: int) -> None:
        self.ui.write(ecodes.EV_KEY, code, value)
        self.ui.syn()
        time.sleep(self.report_interval)

    def type_keys(self, keys: Iterable[int | tuple[int, int]]) -> None:
        """Each int is a keycode pressed and released; a (code, value) pair is one raw key event
        (1 down, 0 up, 2 autorepeat). Every event is followed by SYN_REPORT, as real keyboards do.
        """
        for key in keys:
            if isinstance(key, int):
                self._key(key, 1)
                self._key(key, 0)
            else:
                self._key(*key)

    def type_text(self, text: str) -> None:
        """Type `text` as a scanner in the US layout would (shift for capitals, Enter for \\n)."""
        for char in text:
            code, shift = US_LAYOUT[char]
            if shift:
                self._key(ecodes.KEY_LEFTSHIFT, 1)
            self._key(code, 1)
            self._key(code, 0)
            if shift:
                self._key(ecodes.KEY_LEFTSHIFT, 0)

    def syn_dropped(self, packets: int = 4096) -> None:
        """Make every open reader of this device receive a real EV_SYN/SYN_DROPPED.

        The kernel does not pass SYN_DROPPED written to uinput on to readers (input core ignores
        unknown EV_SYN codes), so this overflows the readers' evdev buffers instead, like a
        scanner flooding a stalled reader: `packets` MSC_SCAN + SYN_REPORT pairs go into the
        kernel in ONE write(), far more than a client buffer holds (64 events for a keyboard), so
        no reader can keep up. Readers then see SYN_DROPPED followed by the tail of the flood:
        MSC_SCAN and SYN_REPORT only, no key events, and the key state unchanged.
        """
        report = _INPUT_EVENT.pack(0, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
        event = b"".join(
            _INPUT_EVENT.pack(0, 0, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + (n & 0xFFFF)) + report
            for n in range(packets)
        )
        written = os.write(self.ui.fd, event)
        if written != len(event):
            raise OSError(f"uinput took {written} of {len(event)} bytes")


# ------------------------------------------------------------------------------ USB gadgets


def bound_udcs() -> set[str]:
    """UDCs that some configfs gadget is bound to right now."""
    if not CONFIGFS.is_dir():
        return set()
    return {udc for g in CONFIGFS.iterdir() if (udc := _read_sysfs(g / "UDC"))}


def free_udc() -> str:
    """A loopback controller no gadget uses (vm-test loads dummy_hcd with num=4)."""
    used = bound_udcs()
    names = sorted(p.name for p in UDC_CLASS.iterdir()) if UDC_CLASS.is_dir() else []
    for name in names:
        if name not in used:
            return name
    raise RuntimeError(f"no free USB device controller (have {names}, all bound): is dummy_hcd on?")


class UsbGadget:
    """A configfs USB gadget with one function, plugged into a dummy_hcd loopback port.

    Construction plugs it and returns once the host side has enumerated it. `unplug()` unbinds
    it from the controller (the host sees a disconnect), `replug()` binds it again.
    """

    function_type: ClassVar[str]
    _instances: ClassVar[int] = 0

    def __init__(
        self,
        *,
        vendor: int,
        product: int,
        manufacturer: str,
        product_name: str,
        serial: str,
    ) -> None:
        UsbGadget._instances += 1
        self.vendor = vendor
        self.product = product
        self.manufacturer = manufacturer
        self.product_name = product_name
        self.serial = serial
        self.root = CONFIGFS / f"lane-agent-{os.getpid()}-{UsbGadget._instances}"
        self.function = self.root / "functions" / f"{self.function_type}.usb0"
        self.config = self.root / "configs" / "c.1"
        self.udc: str | None = None
        self.host_device: Path | None = None
        self._create()
        try:
            self.replug()
        except BaseException:
            self.destroy()  # do not leave a half-plugged gadget holding a loopback port
            raise

    def _create(self) -> None:
        self.root.mkdir()
        (self.root / "idVendor").write_text(f"0x{self.vendor:04x}")
        (self.root / "idProduct").write_text(f"0x{self.product:04x}")
        (self.root / "bcdDevice").write_text("0x0100")
        (self.root / "bcdUSB").write_text("0x0200")
        strings = self.root / "strings" / "0x409"
        strings.mkdir()
        (strings / "manufacturer").write_text(self.manufacturer)
        (strings / "product").write_text(self.product_name)
        (strings / "serialnumber").write_text(self.serial)
        self.config.mkdir()
        (self.config / "MaxPower").write_text("100")
        (self.config / "strings" / "0x409").mkdir()
        (self.config / "strings" / "0x409" / "configuration").write_text(self.function_type)
        self.function.mkdir()
        self._configure_function()
        (self.config / self.function.name).symlink_to(self.function)

    def _configure_function(self) -> None:
        """Write the function's attributes; they are fixed once the gadget is bound."""

    def _after_plug(self) -> None:
        """Wait for the function's own nodes."""

    def _after_unplug(self) -> None:
        """Drop device-side handles that the disconnect made useless."""

    def find_host_device(self) -> Path | None:
        """The host side's /sys/bus/usb/devices entry for this gadget, if enumerated."""
        for dev in USB_DEVICES.iterdir():
            if ":" in dev.name:
                continue  # an interface, not a device
            if (
                _read_sysfs(dev / "idVendor") == f"{self.vendor:04x}"
                and _read_sysfs(dev / "idProduct") == f"{self.product:04x}"
                and _read_sysfs(dev / "serial") == self.serial
            ):
                return dev.resolve()
        return None

    @property
    def plugged(self) -> bool:
        return self.udc is not None

    def replug(self) -> None:
        """Plug into a free loopback port; returns once the host side has enumerated it."""
        if self.udc is not None:
            return
        udc = free_udc()
        (self.root / "UDC").write_text(udc)
        self.udc = udc
        self.host_device = wait_for(self.find_host_device, f"host to enumerate {self.root.name}")
        self._after_plug()
        udev_settle()

    def unplug(self) -> None:
        """Pull the cable: unbind from the controller; returns once the host has let go."""
        if self.udc is None:
            return
        (self.root / "UDC").write_text("\n")
        self.udc = None
        self.host_device = None
        wait_for(
            lambda: True if self.find_host_device() is None else None,
            f"host to drop {self.root.name}",
        )
        self._after_unplug()
        udev_settle()

    def destroy(self) -> None:
        """Unplug and remove the gadget from configfs (children first, as configfs requires)."""
        self.unplug()
        self._after_unplug()
        with contextlib.suppress(FileNotFoundError):
            (self.config / self.function.name).unlink()
        for directory in (
            self.config / "strings" / "0x409",
            self.config,
            self.function,
            self.root / "strings" / "0x409",
            self.root,
        ):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()


class AcmGadget(UsbGadget):
    """A CDC-ACM serial scanner: the host sees /dev/ttyACMn, the "scanner" writes /dev/ttyGSn."""

    function_type = "acm"

    def __init__(
        self,
        *,
        vendor: int = 0x0C2E,
        product: int = 0x0B6A,
        manufacturer: str = "Lane Test",
        product_name: str = "Serial Barcode Scanner",
        serial: str = "ACM0001",
    ) -> None:
        self.host_tty: Path | None = None
        self._device_fd: int | None = None
        super().__init__(
            vendor=vendor,
            product=product,
            manufacturer=manufacturer,
            product_name=product_name,
            serial=serial,
        )

    @property
    def device_tty(self) -> Path:
        """The gadget (scanner) side: /dev/ttyGS<port_num>; it stays across unplug/replug."""
        return Path(f"/dev/ttyGS{(self.function / 'port_num').read_text().strip()}")

    @property
    def by_id(self) -> Path | None:
        """/dev/serial/by-id/usb-<manufacturer>_<product>_<serial>-if00, made by udev."""
        return None if self.host_tty is None else link_to(SERIAL_BY_ID, self.host_tty)

    def _find_host_tty(self) -> Path | None:
        if self.host_device is None:
            return None
        for node in sorted(self.host_device.glob("*:*/tty/ttyACM*")):
            dev = Path("/dev") / node.name
            if dev.exists():
                return dev
        return None

    def _after_plug(self) -> None:
        self.host_tty = wait_for(self._find_host_tty, f"{self.root.name}'s /dev/ttyACM*")

    def _after_unplug(self) -> None:
        # After the disconnect the device-side tty is hung up; closing it now cannot block on
        # draining unread output (u_serial waits up to 15 s for that while connected).
        self.host_tty = None
        if self._device_fd is not None:
            os.close(self._device_fd)
            self._device_fd = None

    def _fd(self) -> int:
        if self._device_fd is None:
            fd = os.open(self.device_tty, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(fd)  # no \n -> \r\n, no echo: the bytes go out as given
            self._device_fd = fd
        return self._device_fd

    def write(self, data: bytes) -> None:
        """Send bytes from the scanner side; the host reads them on host_tty."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd(), view) :]

    def read(self, size: int = 4096, timeout: float = 10.0) -> bytes:
        """What the host wrote to the scanner so far (e.g. a trigger command); b"" on timeout."""
        fd = self._fd()
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, size) if ready else b""

    def read_until(self, terminator: bytes = b"\r", timeout: float = 10.0) -> bytes:
        """Host-to-scanner bytes up to and including `terminator`, however USB split them."""
        deadline = time.monotonic() + timeout
        data = b""
        while terminator not in data:
            chunk = self.read(timeout=max(0.0, deadline - time.monotonic()))
            if not chunk:
                raise TimeoutError(f"no {terminator!r} from the host within {timeout} s: {data!r}")
            data += chunk
        return data


class HidGadget(UsbGadget):
    """A USB HID device with any report descriptor; reports are sent through /dev/hidgN.

    The host side is the real thing: usbhid binds it (hidraw, and an evdev node for keyboards)
    and libusb/pyusb can detach that driver and read the interrupt endpoint itself.
    """

    function_type = "hid"

    def __init__(
        self,
        *,
        report_descriptor: bytes = HIDPOS_SCANNER_REPORT_DESCRIPTOR,
        report_length: int = HIDPOS_SCANNER_REPORT_LENGTH,
        subclass: int = 0,
        protocol: int = 0,
        vendor: int = 0x0C2E,
        product: int = 0x0B6B,
        manufacturer: str = "Lane Test",
        product_name: str = "HID POS Barcode Scanner",
        serial: str = "HID0001",
    ) -> None:
        self.report_descriptor = report_descriptor
        self.report_length = report_length
        self.subclass = subclass
        self.protocol = protocol
        self._device_fd: int | None = None
        super().__init__(
            vendor=vendor,
            product=product,
            manufacturer=manufacturer,
            product_name=product_name,
            serial=serial,
        )

    def _configure_function(self) -> None:
        (self.function / "protocol").write_text(str(self.protocol))
        (self.function / "subclass").write_text(str(self.subclass))
        (self.function / "report_length").write_text(str(self.report_length))
        (self.function / "report_desc").write_bytes(self.report_descriptor)

    @property
    def device_node(self) -> Path:
        """The gadget side: /dev/hidg<minor>, present while plugged."""
        minor = (self.function / "dev").read_text().strip().split(":")[1]
        return Path(f"/dev/hidg{minor}")

    def _after_plug(self) -> None:
        wait_for(lambda: True if self.device_node.exists() else None, str(self.device_node))

    def _after_unplug(self) -> None:
        if self._device_fd is not None:
            os.close(self._device_fd)
            self._device_fd = None

    def _fd(self) -> int:
        if self._device_fd is None:
            self._device_fd = os.open(self.device_node, os.O_RDWR | os.O_NONBLOCK)
        return self._device_fd

    def send_report(self, report: bytes, timeout: float = 10.0) -> None:
        """Queue one input report (report ID first, when the descriptor uses IDs).

        f_hid holds one report at a time: this waits until the host has taken the previous one,
        so with no host reader (no driver bound, nobody polling libusb) it times out.
        """
        fd = self._fd()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not poller.poll(timeout * 1000):
            raise TimeoutError(f"host did not read the previous report within {timeout} s")
        os.write(fd, report)

    def read_report(self, timeout: float = 10.0) -> bytes:
        """An output report the host sent (e.g. keyboard LEDs, a beep command); b"" on timeout."""
        fd = self._fd()
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 4096) if ready else b""

    def interfaces(self) -> list[Path]:
        """The host side's interface entries (…/1-1:1.0); empty while unplugged."""
        return [] if self.host_device is None else sorted(self.host_device.glob("*:*"))

    def hidraw_nodes(self) -> list[Path]:
        """/dev/hidrawN nodes usbhid made for this device."""
        return [
            Path("/dev") / node.name
            for intf in self.interfaces()
            for node in sorted(intf.glob("*/hidraw/hidraw*"))
        ]

    def input_nodes(self) -> list[Path]:
        """/dev/input/eventN nodes usbhid made (keyboards do, a HID-POS scanner does not)."""
        return [
            Path("/dev/input") / node.name
            for intf in self.interfaces()
            for node in sorted(intf.glob("*/input/input*/event*"))
        ]

    def input_by_id(self) -> list[Path]:
        """udev's /dev/input/by-id links to input_nodes()."""
        links = (link_to(INPUT_BY_ID, node) for node in self.input_nodes())
        return [link for link in links if link is not None]


def keyboard_reports(text: str) -> list[bytes]:
    """Boot keyboard reports typing `text` in the US layout: a press and an all-up per character.

    Covers letters, digits, Enter (\\n), Tab, space, "-", "." and "/": what barcodes carry.
    """
    reports: list[bytes] = []
    for char in text:
        modifiers = 0x02 if char in _SHIFTED else 0  # left shift
        reports.append(bytes([modifiers, 0, _HID_USAGE[char], 0, 0, 0, 0, 0]))
        reports.append(bytes(KEYBOARD_REPORT_LENGTH))
    return reports


def _hid_usages() -> tuple[dict[str, int], set[str]]:
    usages: dict[str, int] = {}
    shifted: set[str] = set()
    for n, letter in enumerate("abcdefghijklmnopqrstuvwxyz"):
        usages[letter] = 0x04 + n
        usages[letter.upper()] = 0x04 + n
        shifted.add(letter.upper())
    for n, digit in enumerate("1234567890"):
        usages[digit] = 0x1E + n
    usages["\n"] = 0x28
    usages["\t"] = 0x2B
    usages[" "] = 0x2C
    usages["-"] = 0x2D
    usages["."] = 0x37
    usages["/"] = 0x38
    return usages, shifted


_HID_USAGE, _SHIFTED = _hid_usages()
