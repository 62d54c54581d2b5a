"""HID-POS scanners on a real USB HID gadget, read through libusb, end to end to MQTT."""

from __future__ import annotations

import asyncio
import time

from drivers.hidpos_report import HONEYWELL, build_reports
from tests.conftest import Probe
from tests.hardware.conftest import Lane, connected, scan_of, scan_values
from tests.hardware.gadgets import HidGadget

DEVICE = "pos"
DEVICE_TOML = f'[devices.{DEVICE}]\ntype = "hidpos"\nvendor_id = "0c2e"\nproduct_id = "0b6b"\n'


async def start_pos(lane: Lane) -> Probe:
    probe = await lane(DEVICE_TOML)
    await connected(probe, DEVICE)
    return probe


async def send_barcode(hid: HidGadget, data: bytes, aim: str | None) -> list[bytes]:
    """Send one barcode's reports; from a thread, since each waits for the host to take the last."""
    reports = build_reports(data, aim, HONEYWELL)

    def send() -> None:
        for report in reports:
            hid.send_report(report)

    await asyncio.to_thread(send)
    return reports


async def test_short_barcode_in_one_report(hid_gadget: HidGadget, lane: Lane) -> None:
    probe = await start_pos(lane)
    reports = await send_barcode(hid_gadget, b"5901234123457", "]E0")
    assert len(reports) == 1
    scan = await scan_of(probe, DEVICE)
    assert (scan["kind"], scan["value"], scan["symbology"], scan["valid"]) == (
        "product_gtin",
        "5901234123457",
        "ean13",
        True,
    )


async def test_barcode_longer_than_one_report_is_one_scan(
    hid_gadget: HidGadget, lane: Lane
) -> None:
    probe = await start_pos(lane)
    url = "http://e.co/" + "".join(f"{i:03d}" for i in range(46))  # 150 characters
    assert len(url) == 150
    reports = await send_barcode(hid_gadget, url.encode(), "]Q1")
    assert len(reports) == 3  # 56 + 56 + 38 bytes, the first two flagged "continued"
    scan = await scan_of(probe, DEVICE)
    assert (scan["kind"], scan["value"], scan["symbology"]) == ("url", url, "qr")
    # One scan, not three: a following barcode is the next scan and the counter says 2.
    mark = len(probe.messages)
    await send_barcode(hid_gadget, b"http://e.co/next", "]Q1")
    assert (await scan_of(probe, DEVICE, start=mark))["value"] == "http://e.co/next"
    record = await probe.topic(f"devices/{DEVICE}", lambda d: d["counters"]["scans"] == 2)
    assert record["counters"]["drops"] == 0
    assert scan_values(probe, DEVICE) == [url, "http://e.co/next"]


async def test_unplug_and_replug_is_picked_up(hid_gadget: HidGadget, lane: Lane) -> None:
    probe = await start_pos(lane)
    mark = len(probe.messages)
    hid_gadget.unplug()
    gone = await probe.topic(f"devices/{DEVICE}", lambda d: d["state"] == "disconnected", mark)
    assert gone["last_error"]
    replugged_at = time.monotonic()
    mark = len(probe.messages)
    hid_gadget.replug()
    back = await connected(probe, DEVICE, start=mark)
    print(f"\nreplug: connected again after {time.monotonic() - replugged_at:.3f} s")
    assert back["counters"]["reconnects"] >= 1
    await send_barcode(hid_gadget, b"http://e.co/after-replug", "]Q1")
    assert (await scan_of(probe, DEVICE, start=mark))["value"] == "http://e.co/after-replug"
