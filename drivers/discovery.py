"""What input hardware is attached, and why a device cannot be opened, with the fix.

This is the technician's first question at a lane where "the scanner does nothing": is it there,
is it the device the config names, can this user open it, and who else holds it. Everything
comes from /dev and sysfs, read-only; nothing here grabs or claims a device.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

import evdev
from nfc.clf.device import usb_device_map

from drivers.hidpos_report import is_barcode_scanner

SYS_USB = Path("/sys/bus/usb/devices")
SYS_HID = Path("/sys/bus/hid/devices")
UDEV_RULES = "systemd/70-lane-agent.rules"
# Where the .deb puts the rules, and where a lane's own models go (systemd/README.md).
LOCAL_RULES = "/etc/udev/rules.d/71-lane-agent-local.rules"


USBFS_NOTE = "claimed by a process through libusb (usbfs)"


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    fix: str


@dataclass(frozen=True, slots=True)
class Found:
    """One device as a technician would name it."""

    bus: str  # input, serial, usb
    path: str
    name: str
    usb_id: str | None = None
    links: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    problem: Problem | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _links(directory: Path, target: str) -> tuple[str, ...]:
    if not directory.is_dir():
        return ()
    return tuple(
        str(link)
        for link in sorted(directory.iterdir())
        if link.is_symlink() and os.path.realpath(link) == target
    )


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def holders(path: str) -> list[tuple[int, str]]:
    """Processes with `path` open (only those this user may inspect: run as root to see all)."""
    found: list[tuple[int, str]] = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == path:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    found.append((int(proc.name), cmd or proc.name))
                    break
            except OSError:
                continue
    return found


def _describe_holders(path: str) -> str:
    others = [(pid, cmd) for pid, cmd in holders(path) if pid != os.getpid()]
    if others:
        return "held by " + "; ".join(f"PID {pid} ({cmd[:60]})" for pid, cmd in others)
    if os.geteuid() != 0:
        return "held by another process (run as root to see which)"
    return "held by another process"


def access_problem(path: str, *, write: bool) -> Problem | None:
    """Try to open the node as this user; explain a failure in terms of groups and udev rules."""
    try:
        fd = os.open(path, (os.O_RDWR if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        return _explain(path, exc)
    os.close(fd)
    return None


def _explain(path: str, exc: OSError) -> Problem:
    if exc.errno in (errno.EACCES, errno.EPERM):
        st = os.stat(path)
        group = grp.getgrgid(st.st_gid).gr_name
        if group == "root":
            return Problem(
                f"permission denied (owned by root:root, mode {st.st_mode & 0o777:o})",
                f"install the lane-agent package (or copy {UDEV_RULES} to /etc/udev/rules.d/); "
                f"for a model its rules do not know, add the ids to {LOCAL_RULES}; then run "
                "`udevadm control --reload && udevadm trigger`",
            )
        return Problem(
            f"permission denied (group '{group}', mode {st.st_mode & 0o777:o})",
            f"add the user to group '{group}': `sudo usermod -aG {group} {_user()}` and log in "
            f"again (the systemd unit grants it with SupplementaryGroups={group})",
        )
    if exc.errno == errno.EBUSY:
        return Problem(
            _describe_holders(path), "stop that process or remove the device from its config"
        )
    return Problem(exc.strerror or str(exc), "check `dmesg` for the device")


def _sysfs(path: Path, name: str) -> str | None:
    try:
        return (path / name).read_text().strip()
    except OSError:
        return None


def _input_usb_id(node: str) -> str | None:
    base = Path("/sys/class/input") / Path(node).name / "device" / "id"
    vendor, product = _sysfs(base, "vendor"), _sysfs(base, "product")
    return f"{vendor}:{product}" if vendor and product else None


def input_devices() -> list[Found]:
    found = []
    for node in sorted(Path("/dev/input").glob("event*")):
        sys = Path("/sys/class/input") / node.name / "device"
        name = _sysfs(sys, "name") or "?"
        path = str(node)
        problem = access_problem(path, write=False)
        if problem is None:
            problem = _grab_problem(path)
        found.append(
            Found(
                "input",
                path,
                name,
                _input_usb_id(path),
                _links(Path("/dev/input/by-id"), path),
                problem=problem,
            )
        )
    return found


def _grab_problem(path: str) -> Problem | None:
    """An open that works is not enough: a grab by another process starves us silently."""
    try:
        device = evdev.InputDevice(path)
    except OSError as exc:
        return _explain(path, exc)
    try:
        device.grab()
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return Problem(
                "grabbed by another process (EVIOCGRAB): " + _describe_holders(path),
                "stop that process (e.g. another scanner bridge) or remove the device from "
                "its config",
            )
        return _explain(path, exc)
    else:
        device.ungrab()
    finally:
        device.close()
    return None


def serial_ports() -> list[Found]:
    found = []
    patterns = ("ttyACM*", "ttyUSB*", "ttyS[0-9]*", "ttyGS*")
    nodes = sorted({p for pattern in patterns for p in Path("/dev").glob(pattern)})
    for node in nodes:
        path = str(node)
        device = Path("/sys/class/tty") / node.name / "device"
        if node.name.startswith("ttyS") and not (device / "driver").exists():
            continue  # legacy UART slots with no hardware behind them
        usb = device.resolve().parent if device.exists() else None
        usb_id = None
        if usb is not None and _sysfs(usb, "idVendor"):
            usb_id = f"{_sysfs(usb, 'idVendor')}:{_sysfs(usb, 'idProduct')}"
        name = (_sysfs(usb, "product") if usb is not None else None) or node.name
        found.append(
            Found(
                "serial",
                path,
                name,
                usb_id,
                _links(Path("/dev/serial/by-id"), path),
                problem=access_problem(path, write=True),
            )
        )
    return found


def hidpos_usb_ids() -> set[str]:
    """vendor:product of every HID device that declares a barcode scanner (usage page 0x8C)."""
    ids = set()
    for hid in SYS_HID.glob("*") if SYS_HID.is_dir() else ():
        try:
            descriptor = (hid / "report_descriptor").read_bytes()
        except OSError:
            continue
        if is_barcode_scanner(descriptor):
            _bus, vendor, product = hid.name.split(".")[0].split(":")
            ids.add(f"{int(vendor, 16):04x}:{int(product, 16):04x}")
    return ids


def usb_devices() -> list[Found]:
    found = []
    hidpos = hidpos_usb_ids()
    for dev in sorted(SYS_USB.glob("[0-9]*-*")) if SYS_USB.is_dir() else ():
        if ":" in dev.name or not _sysfs(dev, "idVendor"):
            continue
        vendor, product = _sysfs(dev, "idVendor") or "", _sysfs(dev, "idProduct") or ""
        usb_id = f"{vendor}:{product}"
        bus, num = int(_sysfs(dev, "busnum") or 0), int(_sysfs(dev, "devnum") or 0)
        path = f"/dev/bus/usb/{bus:03d}/{num:03d}"
        drivers = sorted(
            {
                os.path.basename(os.path.realpath(i / "driver"))
                for i in dev.glob(f"{dev.name}:*")
                if (i / "driver").exists()
            }
        )
        name = " ".join(filter(None, (_sysfs(dev, "manufacturer"), _sysfs(dev, "product"))))
        notes: list[str] = []
        problem = None
        if usb_id in hidpos:
            notes.append("HID-POS barcode scanner (usage page 0x8C)")
        elif "usbfs" in drivers:
            # A process holds it through libusb, which detached usbhid: its HID descriptor is
            # no longer in sysfs, so only the holder can say what it is.
            notes.append(USBFS_NOTE)
        nfc_driver = usb_device_map.get((int(vendor, 16), int(product, 16)))
        if nfc_driver is not None:
            notes.append(f"NFC reader (nfcpy driver {nfc_driver})")
            kernel = [d for d in drivers if d.startswith(("pn533", "port100", "nfc"))]
            if kernel:
                problem = Problem(
                    f"kernel NFC driver {kernel[0]} owns it; nfcpy cannot claim it",
                    f"`sudo modprobe -r {kernel[0]}` and keep it off with `blacklist {kernel[0]}` "
                    "in /etc/modprobe.d/lane-agent.conf (the package ships those lines "
                    "commented out: remove the #)",
                )
        if (usb_id in hidpos or nfc_driver) and problem is None and Path(path).exists():
            problem = access_problem(path, write=True)
        extra = {"kernel drivers": ", ".join(drivers)} if drivers else {}
        found.append(Found("usb", path, name or "?", usb_id, (), tuple(notes), problem, extra))
    return found
