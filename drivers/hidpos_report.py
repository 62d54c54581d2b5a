"""USB HID-POS scanner reports (usage page 0x8C): decode them, encode them, recognise the device.

A HID-POS scanner sends each barcode as one or more fixed-size input reports: a length byte, the
AIM symbology identifier (`]E0`...), up to a report's worth of data, and a "Decode Data
Continued" flag when more reports of the same barcode follow. Where those fields sit differs by
vendor, so the offsets are a `ReportLayout`; Honeywell's (shared by many scanners) is the default.

The decoded scan carries the AIM identifier in front of the data, exactly as the same scanner
would send it on a serial line: the agent's normaliser strips it and names the symbology, so the
driver needs no symbology table of its own (drivers import nothing from the agent).

Pure code: the driver (`drivers/hidpos.py`) feeds it reports; the tests and the hardware tier's
USB gadget, which emulates a scanner, use `build_reports` and `REPORT_DESCRIPTOR`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BARCODE_SCANNER_USAGE = 0x008C_0002  # usage page 0x8C (Barcode Scanner), usage 0x02
_AIM = re.compile(rb"\][\x21-\x7e]{2}")


@dataclass(frozen=True, slots=True)
class ReportLayout:
    """Byte offsets in one input report as read from the endpoint (byte 0 is the report ID)."""

    name: str
    report_id: int
    size: int  # bytes per report, report ID included
    length_offset: int  # one byte: how many data bytes this report carries
    aim_offset: int  # three bytes: `]` code modifier, or zeros when the scanner sends none
    data_offset: int
    data_end: int  # first byte after the data space
    more_offset: int  # the byte holding the "more reports follow" flag
    more_mask: int = 0x01

    @property
    def capacity(self) -> int:
        return self.data_end - self.data_offset


# Honeywell (Metrologic) HID-POS: ID 0x02, length, AIM (3), data (56), Code ID, 0, flags (bit 0 =
# Decode Data Continued). Seen in captured reports such as
# `02 09 5d 58 30 'um: N/A\r\n' 00.. 3f 00 00` (python_hon_usbhid README).
HONEYWELL = ReportLayout(
    name="honeywell",
    report_id=0x02,
    size=64,
    length_offset=1,
    aim_offset=2,
    data_offset=5,
    data_end=61,
    more_offset=63,
)
LAYOUTS = {layout.name: layout for layout in (HONEYWELL,)}

# The report descriptor of a scanner sending HONEYWELL-layout reports, for the emulated scanner
# (USB gadget) of the hardware tier. One Scanned Data Report, 64 bytes with its ID.
REPORT_DESCRIPTOR = bytes(
    (
        0x05, 0x8C,        # Usage Page (Barcode Scanner)
        0x09, 0x02,        # Usage (Barcode Scanner)
        0xA1, 0x01,        # Collection (Application)
        0x09, 0x12,        #   Usage (Scanned Data Report)
        0xA1, 0x02,        #   Collection (Logical)
        0x85, 0x02,        #     Report ID (2)
        0x15, 0x00,        #     Logical Minimum (0)
        0x26, 0xFF, 0x00,  #     Logical Maximum (255)
        0x75, 0x08,        #     Report Size (8 bits)
        0x95, 0x01,        #     Report Count (1)
        0x05, 0x01,        #     Usage Page (Generic Desktop)
        0x09, 0x3B,        #     Usage (Byte Count): data bytes in this report
        0x81, 0x02,        #     Input (Data, Variable, Absolute)
        0x05, 0x8C,        #     Usage Page (Barcode Scanner)
        0x95, 0x03,        #     Report Count (3)
        0x09, 0xFB,        #     Usage (Symbology Identifier 1): `]`
        0x09, 0xFC,        #     Usage (Symbology Identifier 2): code character
        0x09, 0xFD,        #     Usage (Symbology Identifier 3): modifier
        0x81, 0x02,        #     Input (Data, Variable, Absolute)
        0x95, 0x38,        #     Report Count (56)
        0x09, 0xFE,        #     Usage (Decoded Data)
        0x82, 0x02, 0x01,  #     Input (Data, Variable, Absolute, Buffered Bytes)
        0x95, 0x02,        #     Report Count (2)
        0x81, 0x03,        #     Input (Constant): Honeywell's Code ID and a spare byte, unused
        0x25, 0x01,        #     Logical Maximum (1)
        0x75, 0x01,        #     Report Size (1 bit)
        0x95, 0x01,        #     Report Count (1)
        0x09, 0xFF,        #     Usage (Decode Data Continued): more reports of this scan follow
        0x81, 0x02,        #     Input (Data, Variable, Absolute)
        0x95, 0x07,        #     Report Count (7)
        0x81, 0x03,        #     Input (Constant): padding to the byte
        0xC0,              #   End Collection
        0xC0,              # End Collection
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DecodedScan:
    """One barcode: `data` is the AIM identifier (when the scanner sent one) then the payload."""

    data: bytes
    aim: str | None


@dataclass(frozen=True, slots=True)
class MalformedReport:
    """A report the decoder could not use; the driver reports it as dropped input."""

    reason: str


class ReportAssembler:
    """Turns a scanner's reports into barcodes, joining the reports of a long one.

    Never raises on input: a malformed report comes back as a `MalformedReport` (and is counted
    in `malformed`), and a barcode longer than `max_length` is dropped with one.
    """

    def __init__(self, layout: ReportLayout = HONEYWELL, *, max_length: int = 8192) -> None:
        self.layout = layout
        self.max_length = max_length
        self.malformed = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._aim: str | None = None
        self._skipping = False  # the rest of a barcode already dropped

    def feed(self, report: bytes) -> DecodedScan | MalformedReport | None:
        layout = self.layout
        if not report:
            return self._malformed(f"a report of 0 bytes, expected {layout.size}")
        if report[0] != layout.report_id:
            # Another report of the device (a trigger or status report, of any size): not part of
            # a barcode, so it does not break the one being assembled.
            return self._malformed(f"report ID {report[0]:#04x}, expected {layout.report_id:#04x}")
        if len(report) < layout.size:
            self.reset()  # a truncated report of the barcode: what was assembled is incomplete
            return self._malformed(f"a report of {len(report)} bytes, expected {layout.size}")
        length = report[layout.length_offset]
        more = bool(report[layout.more_offset] & layout.more_mask)
        if length > layout.capacity:
            self.reset()
            self._skipping = more
            return self._malformed(f"data length {length}, room for {layout.capacity}")
        if self._skipping:
            self._skipping = more
            return None
        if not self._parts:
            raw_aim = report[layout.aim_offset : layout.aim_offset + 3]
            self._aim = raw_aim.decode("ascii") if _AIM.fullmatch(raw_aim) else None
        self._parts.append(report[layout.data_offset : layout.data_offset + length])
        self._size += length
        if self._size > self.max_length:
            self.reset()
            self._skipping = more
            return self._malformed(f"barcode longer than {self.max_length} bytes")
        if more:
            return None
        aim = self._aim
        data = (aim or "").encode("ascii") + b"".join(self._parts)
        self.reset()
        return DecodedScan(data, aim)

    def reset(self) -> int:
        """Forget the barcode being assembled (the device went away); return its size so far."""
        dropped = self._size
        self._parts.clear()
        self._size = 0
        self._aim = None
        self._skipping = False
        return dropped

    def _malformed(self, reason: str) -> MalformedReport:
        self.malformed += 1
        return MalformedReport(reason)


def build_reports(data: bytes, aim: str | None, layout: ReportLayout = HONEYWELL) -> list[bytes]:
    """The reports a scanner sends for one barcode (`aim` like `]E0`, or None for none)."""
    aim_bytes = bytes(3) if aim is None else aim.encode("ascii")
    if aim is not None and not _AIM.fullmatch(aim_bytes):
        raise ValueError(f"not an AIM identifier: {aim!r}")
    chunks = [data[i : i + layout.capacity] for i in range(0, len(data), layout.capacity)]
    reports = []
    for number, chunk in enumerate(chunks or [b""], start=1):
        report = bytearray(layout.size)
        report[0] = layout.report_id
        report[layout.length_offset] = len(chunk)
        report[layout.aim_offset : layout.aim_offset + 3] = aim_bytes
        report[layout.data_offset : layout.data_offset + len(chunk)] = chunk
        if number < len(chunks):
            report[layout.more_offset] |= layout.more_mask
        reports.append(bytes(report))
    return reports


def is_barcode_scanner(descriptor: bytes) -> bool:
    """Whether a HID report descriptor declares a Barcode Scanner application collection.

    Walks the descriptor's items (HID 1.11 §6.2.2) keeping only the usage page and the pending
    usages; tolerates a truncated descriptor.
    """
    page = 0
    usages: list[int] = []
    pos = 0
    while pos < len(descriptor):
        prefix = descriptor[pos]
        if prefix == 0xFE:  # long item: data size in the next byte, then a tag byte
            pos += 3 + (descriptor[pos + 1] if pos + 1 < len(descriptor) else 0)
            continue
        size = (0, 1, 2, 4)[prefix & 0x03]
        value = int.from_bytes(descriptor[pos + 1 : pos + 1 + size], "little")
        pos += 1 + size
        item = prefix & 0xFC
        if item == 0x04:  # Usage Page (global)
            page = value
        elif item == 0x08:  # Usage (local): a 4-byte usage carries its own page
            usages.append(value if size == 4 else page << 16 | value)
        elif item == 0xA0 and value == 0x01 and BARCODE_SCANNER_USAGE in usages:
            return True  # Collection (Application)
        elif prefix & 0x0C == 0x00:  # any other main item ends the local items
            usages.clear()
    return False
