"""The serial scanner driver on real pseudo-terminals: the test writes to the master side, the
driver reads the slave through a symlink standing in for /dev/serial/by-id/... Closing the
master is an unplug; a new pty swapped in at the symlink is a replug."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import serial
from pydantic import ValidationError

from drivers.base import DeviceState, DriverEvent, DroppedInput, HealthLevel, RawScan, StatusChange
from drivers.framing import Framing
from drivers.serial_port import SerialScanner
from drivers.settings import SerialSettings

Events = AsyncIterator[DriverEvent]
CONNECTED = StatusChange("scanner", DeviceState.CONNECTED)


class Pty:
    """A pseudo-terminal pair; `name` is the slave (/dev/pts/N) the driver opens."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.name = os.ttyname(slave)
        os.close(slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for pty in made:
        pty.unplug()


def plug(link: Path, ptys: list[Pty]) -> Pty:
    """A new pty at `link`, swapped in atomically as udev does with its by-id links."""
    pty = Pty()
    ptys.append(pty)
    link.parent.mkdir(parents=True, exist_ok=True)
    staging = link.with_name(link.name + ".new")
    staging.symlink_to(pty.name)
    os.replace(staging, link)
    return pty


def scanner(link: Path, **settings: object) -> SerialScanner:
    return SerialScanner(
        "scanner",
        SerialSettings.model_validate({"type": "serial", "port": str(link), **settings}),
    )


@contextlib.asynccontextmanager
async def running(driver: SerialScanner) -> AsyncIterator[Events]:
    """The driver's events, closed (port released) when the block ends."""
    events = cast(AsyncGenerator[DriverEvent, None], driver.events())
    async with contextlib.aclosing(events):
        yield events


async def next_event(events: Events) -> DriverEvent:
    async with asyncio.timeout(5):
        return await anext(events)


async def scans(events: Events, count: int) -> list[bytes]:
    found = []
    for _ in range(count):
        event = await next_event(events)
        assert isinstance(event, RawScan), event
        found.append(event.data)
    return found


@pytest.mark.parametrize(
    ("framing", "stream"),
    [
        (Framing.CR, b"]E09780201379629\r100000000001\r"),
        (Framing.LF, b"]E09780201379629\n100000000001\n"),
        (Framing.CRLF, b"]E09780201379629\r\n100000000001\r\n"),
        (Framing.ANY_EOL, b"]E09780201379629\r\n100000000001\n"),
        (Framing.STX_ETX, b"\x02]E09780201379629\x03\x02100000000001\x03"),
    ],
)
async def test_framing_variants(
    tmp_path: Path, ptys: list[Pty], framing: Framing, stream: bytes
) -> None:
    pty = plug(tmp_path / "scanner", ptys)
    async with running(scanner(tmp_path / "scanner", framing=framing.value)) as events:
        assert await next_event(events) == CONNECTED
        pty.write(stream[:7])  # a read boundary inside a scan
        pty.write(stream[7:])
        assert await scans(events, 2) == [b"]E09780201379629", b"100000000001"]


async def test_scans_carry_the_configured_symbology_and_keep_gs(
    tmp_path: Path, ptys: list[Pty]
) -> None:
    pty = plug(tmp_path / "scanner", ptys)
    async with running(scanner(tmp_path / "scanner", symbology="qr")) as events:
        await next_event(events)
        pty.write(b"]C1010501234567890010ABC\x1d21XYZ\r\n")
        event = await next_event(events)
        assert isinstance(event, RawScan)
        assert (event.data, event.symbology) == (b"]C1010501234567890010ABC\x1d21XYZ", "qr")


async def test_noise_and_overlong_scans_are_dropped_input(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = plug(tmp_path / "scanner", ptys)
    async with running(scanner(tmp_path / "scanner", framing="stx_etx")) as events:
        await next_event(events)
        pty.write(b"\x02123\x03")
        assert await scans(events, 1) == [b"123"]
        pty.write(b"\r\n")
        assert await next_event(events) == DroppedInput("scanner", "2 bytes outside STX…ETX frames")
        pty.write(b"\x02" + b"9" * 5000 + b"\x03\x02456\x03")
        # Drops are counted per read and reported after that read's scans.
        got = {await next_event(events), await next_event(events)}
        assert DroppedInput("scanner", "scan longer than 4096 bytes") in got
        assert {e.data for e in got if isinstance(e, RawScan)} == {b"456"}


async def test_survives_unplug_and_replug(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "scanner"
    pty = plug(link, ptys)
    driver = scanner(link)
    async with running(driver) as events:
        assert await next_event(events) == CONNECTED
        pty.write(b"111\r\n22")
        assert await scans(events, 1) == [b"111"]
        pty.unplug()
        assert await next_event(events) == DroppedInput(
            "scanner", "unfinished scan of 2 bytes: port closed"
        )
        assert await next_event(events) == StatusChange(
            "scanner", DeviceState.DISCONNECTED, f"{link} went away (end of file)"
        )
        assert not (await driver.check_health(HealthLevel.INTERNAL)).ok
        pty = plug(link, ptys)
        assert await next_event(events) == CONNECTED
        pty.write(b"333\r\n")
        assert await scans(events, 1) == [b"333"]


async def test_a_replug_faster_than_the_unplug_is_noticed(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "scanner"
    old = plug(link, ptys)
    async with running(scanner(link)) as events:
        assert await next_event(events) == CONNECTED
        new = plug(link, ptys)  # the link already names the new port when the old one fails
        old.unplug()
        disconnected = await next_event(events)
        assert isinstance(disconnected, StatusChange)
        assert disconnected.state is DeviceState.DISCONNECTED
        assert await next_event(events) == CONNECTED
        new.write(b"666\r")
        assert await scans(events, 1) == [b"666"]


async def test_waits_for_a_port_whose_directory_does_not_exist_yet(
    tmp_path: Path, ptys: list[Pty]
) -> None:
    link = tmp_path / "serial" / "by-id" / "usb-Honeywell_Scanner-if00"
    async with running(scanner(link)) as events:
        assert await next_event(events) == StatusChange(
            "scanner", DeviceState.DISCONNECTED, f"{link} is not present; waiting for it"
        )
        pty = plug(link, ptys)
        assert await next_event(events) == CONNECTED
        pty.write(b"444\r")
        assert await scans(events, 1) == [b"444"]


async def test_waits_while_the_directories_appear_one_by_one(
    tmp_path: Path, ptys: list[Pty]
) -> None:
    link = tmp_path / "serial" / "by-id" / "usb-Honeywell_Scanner-if00"
    async with running(scanner(link)) as events:
        waiting = await next_event(events)
        assert isinstance(waiting, StatusChange) and waiting.state is DeviceState.DISCONNECTED
        connected = asyncio.create_task(next_event(events))
        for directory in (link.parent.parent, link.parent):
            await asyncio.sleep(0)  # let the driver settle on its watch (any interleaving passes)
            directory.mkdir()
        await asyncio.sleep(0)
        plug(link, ptys)
        assert await connected == CONNECTED


async def test_a_port_held_by_another_process_is_a_failure(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = plug(tmp_path / "scanner", ptys)
    with serial.Serial(pty.name, exclusive=True):
        async with running(scanner(tmp_path / "scanner")) as events:
            with pytest.raises(OSError, match="another process holds"):
                await next_event(events)


async def test_no_permission_names_the_group(
    tmp_path: Path, ptys: list[Pty], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, who may open anything: the refusal is the kernel's answer, simulated.
    def refuse(**_: object) -> serial.Serial:
        raise serial.SerialException(errno.EACCES, "could not open port: Permission denied")

    plug(tmp_path / "scanner", ptys)
    monkeypatch.setattr(serial, "Serial", refuse)
    async with running(scanner(tmp_path / "scanner")) as events:
        with pytest.raises(PermissionError, match="add the agent's user to group '"):
            await next_event(events)


async def test_a_file_that_is_no_tty_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "scanner").write_text("")
    async with running(scanner(tmp_path / "scanner")) as events:
        with pytest.raises(OSError, match="Could not configure port"):
            await next_event(events)


async def test_health(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "scanner"
    driver = scanner(link)
    missing = await driver.check_health(HealthLevel.INTERNAL)
    assert not missing.ok and "No such file" in missing.detail
    pty = plug(link, ptys)
    for level in HealthLevel:
        report = await driver.check_health(level)
        assert report.ok and report.detail == f"{link} present, not open"
    async with running(driver) as events:
        await next_event(events)
        report = await driver.check_health(HealthLevel.EXTERNAL)
        assert report.ok and report.detail == f"{link} open, reading"
        pty.write(b"555\r")
        assert await scans(events, 1) == [b"555"]  # the health check consumed nothing
    (tmp_path / "file").write_text("")
    not_a_device = await scanner(tmp_path / "file").check_health(HealthLevel.EXTERNAL)
    assert not not_a_device.ok


@pytest.mark.parametrize(
    "bad",
    [{"stopbits": 3}, {"parity": "X"}, {"bytesize": 9}, {"framing": "tab"}, {"timeout": 1}],
)
def test_settings_reject_what_cannot_work(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SerialSettings.model_validate({"type": "serial", "port": "/dev/ttyACM0", **bad})


def test_settings_defaults_and_half_stop_bits() -> None:
    settings = SerialSettings.model_validate(
        {"type": "serial", "port": "/dev/ttyS0", "stopbits": 1.5, "framing": "crlf"}
    )
    assert settings.stopbits == 1.5 and settings.framing is Framing.CRLF
    assert (settings.baudrate, settings.bytesize, settings.parity) == (9600, 8, "N")
