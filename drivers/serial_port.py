"""Serial barcode scanners (RS-232, USB CDC-ACM, USB-serial adapters) through pyserial.

pyserial opens and configures the port (non-blocking, exclusively locked); the event loop reads
its file descriptor with `add_reader`, so there is no thread and no polling. A scanner unplugged
mid-run (end of file, EIO or ENODEV on read) is reported as disconnected and reopened as soon as
its path is back, which the driver learns from inotify on the path's directory (udev recreates
/dev/serial/by-id links on replug): unplug and replug happen within one `events()` iteration.

Name the port by a stable path, /dev/serial/by-id/usb-...: /dev/ttyACM0 may be another device
after a replug. The port must be a tty; pyserial URLs (`socket://`...) are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import stat
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import serial

from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    HealthReport,
    RawScan,
    StatusChange,
)
from drivers.framing import Framer
from drivers.inotify import DirectoryWatch
from drivers.settings import SerialSettings

READ_SIZE = 4096
# A port that is there but does not open is retried on a change in its directory or after this.
STALE_NODE_WAIT = 1.0
ABSENT = {errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTDIR}
HELD = {errno.EBUSY, errno.EAGAIN}  # TIOCEXCL set by another program, or its flock


class _Absent(Exception):
    """The port is not there (yet): wait for it rather than fail."""


class SerialScanner:
    kind = "serial"

    def __init__(self, device_id: str, settings: SerialSettings) -> None:
        self.device_id = device_id
        self.settings = settings
        self.path = Path(settings.port)
        self._open_port: serial.Serial | None = None

    async def events(self) -> AsyncIterator[DriverEvent]:
        loop = asyncio.get_running_loop()
        announced = False  # a DISCONNECTED since the last CONNECTED
        while True:
            # Watching starts before the open, so a port appearing in between is not missed; it
            # only lives while the port is away.
            async with DirectoryWatch(_nearest_directory(self.path.parent)) as watch:
                try:
                    port = self._open()
                except _Absent as exc:
                    if not announced:
                        yield self._status(DeviceState.DISCONNECTED, f"{exc}; waiting for it")
                        announced = True
                    if self.path.exists():  # there, yet it did not open: a stale node
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(STALE_NODE_WAIT):
                                await watch.changed()
                    else:
                        await watch.changed()
                    continue
            framer = Framer(self.settings.framing)
            chunks: asyncio.Queue[bytes | str] = asyncio.Queue()
            fd = port.fileno()
            loop.add_reader(fd, _read, loop, fd, chunks)
            self._open_port = port
            try:
                yield self._status(DeviceState.CONNECTED)
                announced = False
                while isinstance(chunk := await chunks.get(), bytes):
                    # What a read dropped is reported after the scans it completed.
                    discarded, overruns = framer.discarded, framer.overruns
                    for scan in framer.feed(chunk):
                        yield RawScan(self.device_id, scan, self.settings.symbology)
                    if framer.discarded > discarded:
                        yield DroppedInput(
                            self.device_id,
                            f"{framer.discarded - discarded} bytes outside STX…ETX frames",
                        )
                    for _ in range(framer.overruns - overruns):
                        yield DroppedInput(
                            self.device_id, f"scan longer than {framer.max_length} bytes"
                        )
                reason = chunk
            finally:
                self._open_port = None
                loop.remove_reader(fd)
                with contextlib.suppress(OSError):  # the device may be gone already
                    port.close()
            if (partial := framer.flush()) is not None:
                yield DroppedInput(
                    self.device_id, f"unfinished scan of {len(partial)} bytes: port closed"
                )
            yield self._status(DeviceState.DISCONNECTED, f"{self.path} went away ({reason})")
            announced = True

    async def check_health(self, level: HealthLevel) -> HealthReport:
        """Internal: the port is there and this user may open it. External: it also opens as a
        tty (and is closed again without reading, so no scan is consumed)."""
        if self._open_port is not None:
            return HealthReport(self.device_id, level, True, f"{self.path} open, reading")
        try:
            if not stat.S_ISCHR(self.path.stat().st_mode):
                return HealthReport(self.device_id, level, False, f"{self.path} is not a device")
            if not os.access(self.path, os.R_OK | os.W_OK):
                return HealthReport(self.device_id, level, False, _no_permission(self.path))
            if level is HealthLevel.EXTERNAL:
                fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                try:
                    termios.tcgetattr(fd)
                finally:
                    os.close(fd)
        except (OSError, termios.error) as exc:
            return HealthReport(self.device_id, level, False, f"{self.path}: {exc}")
        return HealthReport(self.device_id, level, True, f"{self.path} present, not open")

    def _open(self) -> serial.Serial:
        s = self.settings
        try:
            return serial.Serial(
                port=s.port,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=0,
                exclusive=True,
            )
        except serial.SerialException as exc:
            if exc.errno in ABSENT:
                raise _Absent(f"{s.port} is not present") from None
            if exc.errno == errno.EACCES:
                raise PermissionError(exc.errno, _no_permission(self.path)) from None
            if exc.errno in HELD:
                raise OSError(
                    exc.errno, f"another process holds {s.port} (`fuser -v {s.port}` names it)"
                ) from None
            raise OSError(f"{s.port}: {exc}") from None

    def _status(self, state: DeviceState, error: str | None = None) -> StatusChange:
        return StatusChange(self.device_id, state, error)


def _read(loop: asyncio.AbstractEventLoop, fd: int, chunks: asyncio.Queue[bytes | str]) -> None:
    """Reader callback: queue what arrived, or why the port stopped (and stop watching it)."""
    try:
        data = os.read(fd, READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        loop.remove_reader(fd)
        chunks.put_nowait(exc.strerror or str(exc))
        return
    if not data:
        loop.remove_reader(fd)
        chunks.put_nowait("end of file")
        return
    chunks.put_nowait(data)


def _nearest_directory(path: Path) -> Path:
    """The path, or its deepest existing parent: /dev/serial/by-id only exists while some serial
    device is plugged in, so its parent is watched until it is back."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _no_permission(path: Path) -> str:
    """Name the group that may open the port (dialout on Debian) so the fix is one line."""
    group = "dialout"
    with contextlib.suppress(OSError, KeyError):
        owner = grp.getgrgid(path.stat().st_gid).gr_name
        if owner != "root":  # a root-owned port needs a udev rule, not root's group
            group = owner
    return (
        f"permission denied on {path}: add the agent's user to group '{group}' "
        f"(SupplementaryGroups={group} in the systemd unit)"
    )
