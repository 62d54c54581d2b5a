"""Serial scanners on a real CDC-ACM USB gadget (/dev/ttyACM* in the VM), end to end to MQTT."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Probe
from tests.hardware.conftest import Lane, connected, scan_of, scan_values
from tests.hardware.gadgets import AcmGadget

DEVICE = "counter"


def device_toml(port: Path | None, framing: str, device_id: str = DEVICE) -> str:
    assert port is not None, "the gadget has no /dev/serial/by-id link: is udevd running?"
    return f'[devices.{device_id}]\ntype = "serial"\nport = "{port}"\nframing = "{framing}"\n'


async def start_counter(acm: AcmGadget, lane: Lane, framing: str) -> Probe:
    probe = await lane(device_toml(acm.by_id, framing))
    await connected(probe, DEVICE)
    return probe


async def test_cr_framing(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "cr")
    acm_gadget.write(b"http://e.co/cr\r")
    scan = await scan_of(probe, DEVICE)
    assert (scan["kind"], scan["value"], scan["valid"]) == ("url", "http://e.co/cr", True)


async def test_crlf_framing(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "crlf")
    acm_gadget.write(b"http://e.co/crlf\r\n")
    scan = await scan_of(probe, DEVICE)
    assert (scan["kind"], scan["value"]) == ("url", "http://e.co/crlf")
    mark = len(probe.messages)
    acm_gadget.write(b"5901234123457\r\n")
    scan = await scan_of(probe, DEVICE, start=mark)
    assert (scan["kind"], scan["value"]) == ("product_gtin", "5901234123457")
    assert scan_values(probe, DEVICE) == ["http://e.co/crlf", "5901234123457"]


async def test_stx_etx_framing_with_aim_prefix(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "stx_etx")
    acm_gadget.write(b"\x02]E05901234123457\x03")
    scan = await scan_of(probe, DEVICE)
    assert (scan["kind"], scan["value"], scan["symbology"], scan["valid"]) == (
        "product_gtin",
        "5901234123457",
        "ean13",
        True,
    )


async def test_two_scans_in_one_write(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "cr")
    acm_gadget.write(b"http://e.co/one\rhttp://e.co/two\r")
    await probe.topic(f"devices/{DEVICE}", lambda d: d["counters"]["scans"] == 2)
    assert scan_values(probe, DEVICE) == ["http://e.co/one", "http://e.co/two"]


async def test_scan_split_across_two_writes(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "cr")
    # The first write ends mid-scan. Its complete scan arriving on MQTT shows the agent has read
    # that write (one short USB packet) before the rest of the second scan is sent.
    acm_gadget.write(b"http://e.co/first\rhttp://e.co/sec")
    assert (await scan_of(probe, DEVICE))["value"] == "http://e.co/first"
    mark = len(probe.messages)
    acm_gadget.write(b"ond-half\r")
    assert (await scan_of(probe, DEVICE, start=mark))["value"] == "http://e.co/second-half"
    assert scan_values(probe, DEVICE) == ["http://e.co/first", "http://e.co/second-half"]


async def test_unplug_and_replug_is_picked_up(acm_gadget: AcmGadget, lane: Lane) -> None:
    probe = await start_counter(acm_gadget, lane, "cr")
    mark = len(probe.messages)
    acm_gadget.unplug()
    gone = await probe.topic(f"devices/{DEVICE}", lambda d: d["state"] == "disconnected", mark)
    assert gone["last_error"]
    replugged_at = time.monotonic()
    mark = len(probe.messages)
    acm_gadget.replug()
    back = await connected(probe, DEVICE, start=mark)
    print(f"\nreplug: connected again after {time.monotonic() - replugged_at:.3f} s")
    assert back["counters"]["reconnects"] >= 1
    acm_gadget.write(b"http://e.co/after-replug\r")
    assert (await scan_of(probe, DEVICE, start=mark))["value"] == "http://e.co/after-replug"
