"""The supervisor restarts failing drivers with backoff and stops them cleanly.

The drivers here are small in-test implementations of the driver contract (no hardware exists
for them); the FIFO driver test uses a real named pipe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from agent.normalise import unescape
from agent.supervisor import Supervisor
from drivers.base import (
    DeviceState,
    DriverEvent,
    HealthLevel,
    HealthReport,
    RawScan,
    StatusChange,
)
from drivers.fifo import FifoScanner


class FlakyDriver:
    """Fails on its first two runs, then yields one scan and waits; records its cleanup."""

    kind = "test"

    def __init__(self) -> None:
        self.device_id = "flaky"
        self.runs = 0
        self.released = 0

    async def events(self) -> AsyncIterator[DriverEvent]:
        self.runs += 1
        try:
            if self.runs <= 2:
                raise OSError(f"device vanished (run {self.runs})")
            yield StatusChange(self.device_id, DeviceState.CONNECTED)
            yield RawScan(self.device_id, b"123")
            await asyncio.Event().wait()
        finally:
            self.released += 1

    async def check_health(self, level: HealthLevel) -> HealthReport:
        return HealthReport(self.device_id, level, True, "ok")


class Collector:
    def __init__(self) -> None:
        self.events: list[DriverEvent] = []
        self.changed = asyncio.Condition()

    async def __call__(self, event: DriverEvent) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def until(self, count: int) -> list[DriverEvent]:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: len(self.events) >= count)
        return self.events


async def test_failed_driver_is_restarted_and_reported() -> None:
    sink = Collector()
    driver = FlakyDriver()
    supervisor = Supervisor(sink, backoff_min=0.001, backoff_max=0.01)
    supervisor.start([driver])
    events = await sink.until(4)
    assert events[0] == StatusChange("flaky", DeviceState.ERROR, "OSError: device vanished (run 1)")
    assert events[1] == StatusChange("flaky", DeviceState.ERROR, "OSError: device vanished (run 2)")
    assert events[2] == StatusChange("flaky", DeviceState.CONNECTED)
    assert isinstance(events[3], RawScan) and events[3].data == b"123"
    assert supervisor.restarts["flaky"] == 2
    await supervisor.stop()
    assert driver.released == driver.runs == 3


async def test_fifo_lines_become_raw_scans(tmp_path: Path) -> None:
    sink = Collector()
    path = tmp_path / "run" / "scan.fifo"
    supervisor = Supervisor(sink)
    supervisor.start([FifoScanner("tech", path, decode=unescape)])
    await sink.until(1)
    assert sink.events[0] == StatusChange("tech", DeviceState.CONNECTED)
    # Two writers, one after the other: the pipe stays open between them.
    for chunk in (b"100000000001\n", b"]C1010950600013435210ABC\\x1d21XYZ\nlast\n"):
        fd = await asyncio.to_thread(open, path, "wb")
        fd.write(chunk)
        fd.close()
    scans = [e for e in await sink.until(4) if isinstance(e, RawScan)]
    assert [s.data for s in scans] == [
        b"100000000001",
        b"]C1010950600013435210ABC\x1d21XYZ",
        b"last",
    ]
    health = await supervisor.drivers["tech"].check_health(HealthLevel.INTERNAL)
    assert health.ok and "named pipe" in health.detail
    await supervisor.stop()


async def test_fifo_path_that_is_not_a_pipe_is_an_error(tmp_path: Path) -> None:
    sink = Collector()
    path = tmp_path / "regular-file"
    path.write_text("x")
    supervisor = Supervisor(sink, backoff_min=10, backoff_max=10)
    supervisor.start([FifoScanner("tech", path)])
    events = await sink.until(1)
    assert events[0].state is DeviceState.ERROR  # type: ignore[union-attr]
    assert "is not a named pipe" in (events[0].error or "")  # type: ignore[union-attr]
    await supervisor.stop()
