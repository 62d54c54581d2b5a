"""The NFC reader driver against real nfcpy on both ends: the driver polls nfcpy's UDP simulator
(`udp:localhost:<port>`) and `tests/nfc_tag_emulator.py` is the tag, in its own process.

Every wait is on an event from the driver or a line from the emulator, bounded by a timeout; the
emulator tells when the reader selected, checked or let go of the tag, and when it noticed the tag
had been lifted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.base import (
    DeviceState,
    Driver,
    DriverEvent,
    HealthLevel,
    NdefRecord,
    StatusChange,
    TagRead,
    TagRemoved,
)
from drivers.nfc_reader import NfcReader, NfcReaderError, UsbReader, usb_hint
from drivers.settings import NfcSettings
from tests.nfc_tag_emulator import EmulatedTag

ID = "nfc-1"
URI = "https://giftlocal.com/v/demo-gift-50"
OTHER_IDM = "03FEFFE055667788"
CONNECTED = StatusChange(ID, DeviceState.CONNECTED)


def free_udp_port() -> int:
    """A free UDP port without a service name: nfcpy's UDP driver reads the port back through
    getnameinfo() and chokes on a name (`udp:localhost:9`: "invalid literal ... 'discard'")."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", 0))
            number: int = sock.getsockname()[1]
        try:
            socket.getservbyport(number, "udp")
        except OSError:
            return number


@pytest.fixture
def port() -> int:
    """The port of one reader and its tag."""
    return free_udp_port()


def udp_reader(port: int, **settings: Any) -> NfcReader:
    """Polls FeliCa only: over UDP every other technology costs a one-second timeout per round."""
    return NfcReader(
        ID, NfcSettings(type="nfc", path=f"udp:localhost:{port}", targets=["212F"], **settings)
    )


class Events:
    """Consumes a driver from a task, as the supervisor does, so stopping it is a cancellation."""

    def __init__(self, driver: NfcReader) -> None:
        self._queue: asyncio.Queue[DriverEvent | Exception] = asyncio.Queue()
        self._task = asyncio.create_task(self._consume(driver))

    async def _consume(self, driver: NfcReader) -> None:
        try:
            async for event in driver.events():
                self._queue.put_nowait(event)
        except Exception as exc:
            self._queue.put_nowait(exc)

    async def next(self) -> DriverEvent:
        async with asyncio.timeout(5):
            item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def stop(self) -> None:
        self._task.cancel()
        async with asyncio.timeout(3):
            await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(driver: NfcReader) -> AsyncIterator[Events]:
    events = Events(driver)
    try:
        yield events
    finally:
        await events.stop()


def worker_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == f"nfc:{ID}")


async def test_a_tag_is_read_once_per_presentation_and_its_removal_reported(port: int) -> None:
    driver = udp_reader(port, debounce=0.5)
    async with (
        EmulatedTag(port, uris=[URI], texts=["Lane 3"]) as tag,
        running(driver) as events,
    ):
        assert await events.next() == CONNECTED
        read = await events.next()
        assert isinstance(read, TagRead)
        assert (read.device_id, read.uid, read.tag_type) == (
            ID,
            bytes.fromhex("03FEFFE011223344"),
            "Type3Tag",
        )
        assert read.records == (
            NdefRecord("urn:nfc:wkt:U", b"\x04giftlocal.com/v/demo-gift-50", URI),
            NdefRecord("urn:nfc:wkt:T", b"\x02enLane 3", "Lane 3"),
        )
        for _ in range(3):
            await tag.expect("checked")  # it stays on the reader, which keeps checking it

        await tag.lift()
        # Nothing in between: the tag that stayed was not read again.
        assert await events.next() == TagRemoved(ID, tag.uid)

        await tag.present()
        again = await events.next()
        assert isinstance(again, TagRead)
        assert (again.uid, again.records[0].text) == (tag.uid, URI)


async def test_the_same_tag_back_within_the_debounce_continues_its_presentation(port: int) -> None:
    async with running(udp_reader(port, debounce=5.0)) as events:
        assert await events.next() == CONNECTED
        async with EmulatedTag(port, uris=[URI]) as first:
            assert isinstance(await events.next(), TagRead)
            await first.lift()  # the reader saw it go...
            await first.present()
            await first.expect("activated")  # ...and come back, and read it again
            await first.expect("checked")  # (read: the presence checks have begun)
            await first.lift()
        async with EmulatedTag(port, idm=OTHER_IDM, uris=[URI]) as second:
            # Neither a second read nor a removal of the first tag came before: one presentation,
            # which another tag ends at once instead of after the debounce.
            assert await events.next() == TagRemoved(ID, first.uid)
            read = await events.next()
            assert isinstance(read, TagRead)
            assert read.uid == second.uid


async def test_a_tag_without_ndef_is_known_by_its_uid_until_it_vanishes(port: int) -> None:
    async with (
        running(udp_reader(port, debounce=0)) as events,
        EmulatedTag(port, idm=OTHER_IDM) as card,  # blank: no NDEF records
    ):
        assert await events.next() == CONNECTED
        read = await events.next()
        assert isinstance(read, TagRead)
        assert (read.uid, read.tag_type, read.records) == (card.uid, "Type3Tag", ())
        await card.remove()  # killed mid-presentation: it simply stops answering
        assert await events.next() == TagRemoved(ID, card.uid)


async def test_cancelling_stops_the_worker_and_releases_the_reader(port: int) -> None:
    async with EmulatedTag(port, uris=[URI]) as tag:
        events = Events(udp_reader(port))
        assert await events.next() == CONNECTED
        assert isinstance(await events.next(), TagRead)
        worker = worker_thread()
        await events.stop()
        worker.join(timeout=1)  # it has signalled its end: only returning is left
        assert not worker.is_alive()
        await tag.expect("released")  # the reader switched its field off


async def test_cancelling_an_idle_reader_stops_its_worker(port: int) -> None:
    events = Events(udp_reader(port))
    assert await events.next() == CONNECTED
    worker = worker_thread()
    await events.stop()  # within one poll round: a one-second UDP timeout at most
    worker.join(timeout=1)
    assert not worker.is_alive()


def test_a_path_nfcpy_cannot_take_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match=re.escape("usb, usb:<vendor>:<product>, usb:<bus>")):
        NfcSettings(type="nfc", path="/dev/ttyUSB0")
    with pytest.raises(ValidationError, match="106A"):
        NfcSettings(type="nfc", targets=["13.56"])


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("usb:ffff:ffff", "no NFC reader found on usb:ffff:ffff: is it plugged in? 'lsusb'"),
        ("tty:NOPE0:pn532", "no NFC reader found on tty:NOPE0:pn532: check that the port exists"),
    ],
)
async def test_a_reader_that_cannot_be_opened_says_what_to_do(path: str, message: str) -> None:
    driver = NfcReader(ID, NfcSettings(type="nfc", path=path))
    with pytest.raises(NfcReaderError, match=re.escape(message)) as raised:
        async with asyncio.timeout(5):
            await anext(aiter(driver.events()))
    assert raised.value.errno == errno.ENODEV
    health = await driver.check_health(HealthLevel.INTERNAL)
    assert not health.ok
    assert message in health.detail


async def test_a_reader_that_stops_answering_is_reported_and_reopened(port: int) -> None:
    # Sending to the broadcast address fails (EACCES) the way an unplugged reader's I/O does;
    # opening it needs no I/O, so it reopens at once.
    path = f"udp:255.255.255.255:{port}"
    driver = NfcReader(ID, NfcSettings(type="nfc", path=path, targets=["212F"]))
    async with running(driver) as events:
        assert await events.next() == CONNECTED
        lost = await events.next()
        assert isinstance(lost, StatusChange)
        assert lost.state is DeviceState.DISCONNECTED
        assert lost.error is not None and "stopped answering" in lost.error
        assert await events.next() == CONNECTED


async def test_health_opens_an_idle_reader_and_watches_a_running_one(port: int) -> None:
    driver = udp_reader(port)
    assert isinstance(driver, Driver)
    idle = await driver.check_health(HealthLevel.INTERNAL)
    assert (idle.ok, idle.detail) == (True, f"Linux IP-Stack on udp:localhost:{port}: openable")
    async with EmulatedTag(port, uris=[URI]):
        polled = await driver.check_health(HealthLevel.EXTERNAL)
        assert polled.ok
        assert polled.detail.endswith("answered a poll")
        async with running(driver) as events:
            assert await events.next() == CONNECTED
            assert isinstance(await events.next(), TagRead)
            busy = await driver.check_health(HealthLevel.EXTERNAL)
            assert busy.ok
            assert re.search(r": polled \d+\.\d s ago$", busy.detail)


def fake_sysfs(tmp_path: Path, driver: str, *, nfc_subsystem: bool) -> Path:
    """/sys/bus/usb/devices with a hub and one reader on bus 1, device 4, bound to `driver`."""
    root = tmp_path / "devices"
    for name, bus, dev in (("usb1", 1, 1), ("1-1", 1, 2), ("1-2", 1, 4)):
        (root / name).mkdir(parents=True)
        (root / name / "busnum").write_text(f"{bus}\n")
        (root / name / "devnum").write_text(f"{dev}\n")
    (root / "1-1:1.0").mkdir()  # the hub's interface, without a driver link
    interface = root / "1-2:1.0"
    interface.mkdir()
    (tmp_path / "drivers" / driver).mkdir(parents=True)
    (interface / "driver").symlink_to(tmp_path / "drivers" / driver)
    if nfc_subsystem:
        (interface / "nfc").mkdir()
    return root


ACR122U = UsbReader(vid=0x072F, pid=0x2200, bus=1, dev=4)


@pytest.mark.parametrize(
    ("code", "driver", "nfc_subsystem", "advice"),
    [
        (errno.EACCES, "usbfs", False, 'ATTR{idVendor}=="072f", ATTR{idProduct}=="2200"'),
        (errno.EACCES, "usbfs", False, "SupplementaryGroups=plugdev"),
        (errno.EBUSY, "pn533_usb", True, "'modprobe -r pn533_usb'"),
        (errno.EBUSY, "pn533_usb", True, "'blacklist pn533_usb' in /etc/modprobe.d/"),
        (errno.EBUSY, "usbfs", False, "'lsof /dev/bus/usb/001/004' names it"),
    ],
)
def test_a_usb_reader_that_is_there_but_unusable_gets_advice(
    tmp_path: Path, code: int, driver: str, nfc_subsystem: bool, advice: str
) -> None:
    hint = usb_hint(code, ACR122U, fake_sysfs(tmp_path, driver, nfc_subsystem=nfc_subsystem))
    assert hint.startswith("NFC reader usb:072f:2200 (/dev/bus/usb/001/004) found but ")
    assert advice in hint
