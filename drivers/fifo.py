"""A named pipe as a scanner: one scan per line, for technicians, replays and tests.

`echo 100000000001 > /run/lane-agent/scan.fifo` behaves like a scan. The pipe is opened read-write
so writers coming and going never produce an end of file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    HealthReport,
    RawScan,
    StatusChange,
)

MAX_LINE = 64 * 1024


class FifoScanner:
    kind = "fifo"

    def __init__(
        self,
        device_id: str,
        path: Path,
        *,
        decode: Callable[[str], bytes] | None = None,
        symbology: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.path = path
        self._decode = decode
        self._symbology = symbology

    def _open(self) -> int:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(self.path, 0o620)
        if not stat.S_ISFIFO(self.path.stat().st_mode):
            raise OSError(
                f"{self.path} exists and is not a named pipe; remove it or pick another path"
            )
        return os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    async def events(self) -> AsyncIterator[DriverEvent]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        fd = self._open()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            yield StatusChange(self.device_id, DeviceState.CONNECTED)
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as exc:
                    await reader.readexactly(exc.consumed)
                    with contextlib.suppress(asyncio.LimitOverrunError):
                        await reader.readuntil(b"\n")
                    yield DroppedInput(self.device_id, f"line longer than {MAX_LINE} bytes")
                    continue
                except asyncio.IncompleteReadError:
                    raise OSError(f"{self.path} closed") from None
                data = line[:-1]
                if self._decode is not None:
                    data = self._decode(data.decode("utf-8", "surrogateescape"))
                yield RawScan(self.device_id, data, self._symbology)
        finally:
            transport.close()

    async def check_health(self, level: HealthLevel) -> HealthReport:
        try:
            ok = stat.S_ISFIFO(self.path.stat().st_mode)
            detail = f"named pipe {self.path}" if ok else f"{self.path} is not a named pipe"
        except OSError as exc:
            ok, detail = False, f"{self.path}: {exc.strerror}"
        return HealthReport(self.device_id, level, ok, detail)
