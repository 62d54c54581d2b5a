"""`lane-agent init`: a commented first config for the scanners and readers attached to this lane.

The technician's step after installing the package. Devices are found the way `lane-agent diag
devices` finds them (drivers/discovery.py) and named by what survives a replug: USB ids, or a
/dev/*/by-id link. A device that is surely a scanner or reader becomes a device table; one that
might be something else (a keyboard, a payment terminal on a serial port) is written commented
out, since the agent grabs what it is given. The text passes `lane-agent check-config` as printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.discovery import Found

# The scanner vendors 70-lane-agent.rules grants: Honeywell/Metrologic, Zebra/Symbol, Datalogic,
# Newland, Code, Opticon.
SCANNER_VENDORS = frozenset({"0c2e", "05e0", "05f9", "1eab", "0d2f", "065a"})
_SCANNER_NAME = re.compile(
    r"barcode|scanner|imager|honeywell|metrologic|zebra|symbol|datalogic", re.I
)

HEADER = """\
# lane-agent config: /etc/lane-agent/lane-agent.toml. Written by `lane-agent init`; edit the
# lines marked EDIT, then check it and (re)start the service:
#   lane-agent check-config /etc/lane-agent/lane-agent.toml
#   systemctl restart lane-agent
# Every key: docs/config.md (/usr/share/doc/lane-agent/config.md.gz). Secrets never go in
# this file; they are systemd credentials (see "Secrets" there).

[lane]
# EDIT: this lane's ids; its MQTT topics are lane-agent/<store>/<lane>/...
store = "store1"
lane = "lane1"

[mqtt]
# EDIT: the store's broker. With TLS and a login (docs/security.md) it is port 8883, a
# username, the CA below, and the password in /etc/credstore/lane-agent.mqtt_password.
host = "127.0.0.1"
port = 1883
# username = "lane1"
# [mqtt.tls]
# ca_file = "/etc/lane-agent/store-ca.crt"
"""

NO_DEVICES = """\
# No scanner or reader was found. Plug them in and run `lane-agent init` again, or fill in
# one of these (`lane-agent diag devices` lists what is attached, with ids and links):
#
# [devices.scanner1]        # a USB keyboard-wedge scanner
# type = "evdev"
# usb_id = "0c2e:0b61"      # or path = "/dev/input/by-id/usb-...-event-kbd"
# layout = "us"             # the layout the scanner types in: us, gb, de, fr
#
# [devices.serial1]         # a serial (RS-232 / USB CDC-ACM) scanner
# type = "serial"
# port = "/dev/serial/by-id/usb-..."
# framing = "any_eol"
#
# [devices.hidpos1]         # a USB HID-POS scanner
# type = "hidpos"
# vendor_id = 0x0c2e
# product_id = 0x0b61
#
# [devices.nfc1]            # an NFC reader nfcpy drives (Sony RC-S380, ACS ACR122U...)
# type = "nfc"
# path = "usb"
"""

FOOTER = """
# The sandbox ledger serves every flow with demo data and needs no credentials. For the
# store's providers (giftlocal, kseries, petz, punchh) see docs/providers/ and replace it.
[providers.sandbox]
"""


@dataclass(frozen=True, slots=True)
class Table:
    """One `[devices.NAME]` table; commented out when the device may not be a scanner."""

    kind: str  # the id stem: scanner, serial, hidpos, nfc
    about: str
    keys: tuple[tuple[str, str], ...]
    active: bool
    notes: tuple[str, ...] = ()

    def render(self, device_id: str) -> str:
        lines = [f"# {self.about}", *(f"# {note}" for note in self.notes)]
        body = [f"[devices.{device_id}]", *(f"{key} = {value}" for key, value in self.keys)]
        lines += body if self.active else [f"# {line}" for line in body]
        return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _vendor(found: Found) -> str:
    return (found.usb_id or ":").split(":")[0]


def _scanner_like(found: Found) -> bool:
    return _vendor(found) in SCANNER_VENDORS or bool(_SCANNER_NAME.search(found.name))


def _problem_notes(found: Found) -> tuple[str, ...]:
    if found.problem is None:
        return ()
    return (f"cannot open it now: {found.problem.reason}", f"fix: {found.problem.fix}")


def _hidpos_tables(usb: Iterable[Found]) -> list[Table]:
    tables = []
    for f in usb:
        if f.usb_id is None or not any("HID-POS" in note for note in f.notes):
            continue
        vendor, product = f.usb_id.split(":")
        tables.append(
            Table(
                "hidpos",
                f"{f.name} [{f.usb_id}], a USB HID-POS scanner at {f.path}",
                (
                    ("type", '"hidpos"'),
                    ("vendor_id", f"0x{vendor}"),
                    ("product_id", f"0x{product}"),
                ),
                True,
                _problem_notes(f),
            )
        )
    return tables


def _nfc_tables(usb: Iterable[Found]) -> list[Table]:
    tables = []
    for f in usb:
        if f.usb_id is None or not any("NFC reader" in note for note in f.notes):
            continue
        notes = _problem_notes(f)
        if f.problem is not None and "kernel NFC driver" in f.problem.reason:
            notes += ("or: enable the blacklist in /etc/modprobe.d/lane-agent.conf and reboot",)
        tables.append(
            Table(
                "nfc",
                f"{f.name} [{f.usb_id}], an NFC reader at {f.path}",
                (("type", '"nfc"'), ("path", _toml_string(f"usb:{f.usb_id}"))),
                True,
                notes,
            )
        )
    return tables


def _evdev_tables(inputs: Sequence[Found], hidpos_ids: set[str]) -> list[Table]:
    """One table per USB keyboard-like device (its nodes share one usb_id)."""
    groups: dict[str, list[Found]] = {}
    for f in inputs:
        keyboard = any(link.endswith("-event-kbd") for link in f.links)
        if f.usb_id is None or f.usb_id.startswith("0000:"):
            continue
        if keyboard or _scanner_like(f):
            groups.setdefault(f.usb_id, []).append(f)
    tables = []
    for usb_id, nodes in groups.items():
        first = nodes[0]
        links = [link for f in nodes for link in f.links if link.endswith("-event-kbd")]
        # Two scanners of one model share a usb_id; only their by-id links tell them apart.
        selections = [("path", _toml_string(link)) for link in links] if len(links) > 1 else []
        notes = list(_problem_notes(first))
        active = _scanner_like(first)
        if usb_id in hidpos_ids:
            active = False
            notes.append("it also speaks HID-POS, configured as a hidpos device above")
        elif not active:
            notes.append("a keyboard: if it is a scanner, remove the # in front of its lines")
        where = ", ".join(f.path for f in nodes)
        for select in selections or [("usb_id", _toml_string(usb_id))]:
            keys = (
                ("type", '"evdev"'),
                select,
                ("layout", '"us"  # EDIT: the layout the scanner types in: us, gb, de, fr'),
            )
            what = "keyboard-wedge scanner" if _scanner_like(first) else "keyboard"
            about = f"{first.name} [{usb_id}], {what} at {where}"
            tables.append(Table("scanner", about, keys, active, tuple(notes)))
    return tables


def _serial_tables(ports: Iterable[Found]) -> list[Table]:
    tables = []
    for f in ports:
        if f.path.startswith("/dev/ttyGS"):
            continue  # the gadget side of a USB serial link: this machine is the device
        port = f.links[0] if f.links else f.path
        active = f.usb_id is not None and _scanner_like(f)
        notes = list(_problem_notes(f))
        if not active:
            what = "a USB serial device" if f.usb_id else "a built-in serial port"
            notes.append(f"{what}: if a scanner is on it, remove the # in front of its lines")
        ids = f" [{f.usb_id}]" if f.usb_id else ""
        tables.append(
            Table(
                "serial",
                f"{f.name}{ids}, serial port {f.path}",
                (("type", '"serial"'), ("port", _toml_string(port)), ("framing", '"any_eol"')),
                active,
                tuple(notes),
            )
        )
    return tables


def render(inputs: Sequence[Found], ports: Sequence[Found], usb: Sequence[Found]) -> str:
    """The config text for these discovered devices (none: the template with examples)."""
    hidpos = _hidpos_tables(usb)
    hidpos_ids = {f.usb_id for f in usb if f.usb_id and any("HID-POS" in n for n in f.notes)}
    tables = hidpos + _nfc_tables(usb) + _evdev_tables(inputs, hidpos_ids) + _serial_tables(ports)
    text = HEADER + "\n"
    if not tables:
        text += NO_DEVICES
    else:
        active = sum(t.active for t in tables)
        text += (
            f"# Devices found: {len(tables)}, {active} configured here; a commented-out one may "
            "not be a scanner.\n"
        )
        counts: dict[str, int] = {}
        for table in tables:
            counts[table.kind] = counts.get(table.kind, 0) + 1
            text += "\n" + table.render(f"{table.kind}{counts[table.kind]}")
    return text + FOOTER


def discover_and_render() -> str:
    """Look at this machine's devices (read-only, as `diag devices` does) and render them."""
    from drivers.discovery import input_devices, serial_ports, usb_devices

    return render(input_devices(), serial_ports(), usb_devices())
