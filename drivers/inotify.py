"""Waiting for device nodes to appear or change without polling: Linux inotify via ctypes.

Hotplugged scanners show up as new nodes in /dev/input, /dev/serial/by-id... udev creates the
node, then fixes its group and mode, so both IN_CREATE and IN_ATTRIB matter (Home Assistant's
keyboard_remote learned the same). The watch is started before the first scan of the directory
so a device plugged in between the two is not missed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from pathlib import Path
from types import TracebackType

IN_ATTRIB = 0x00000004
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

DEVICE_CHANGES = IN_CREATE | IN_ATTRIB | IN_DELETE | IN_MOVED_TO | IN_DELETE_SELF

_EVENT = struct.Struct("iIII")
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class DirectoryWatch:
    """`async with DirectoryWatch(dir) as w: names = await w.changed()` — names that changed."""

    def __init__(self, directory: Path, mask: int = DEVICE_CHANGES) -> None:
        self.directory = directory
        self._mask = mask | IN_ONLYDIR
        self._fd = -1
        self._names: list[str] = []
        self._ready = asyncio.Event()
        self._watching = directory

    async def __aenter__(self) -> DirectoryWatch:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd = fd
        self._watch()
        asyncio.get_running_loop().add_reader(fd, self._readable)
        return self

    def _readable(self) -> None:
        """Drain the fd at once: inotify is level-triggered, an unread fd would spin the loop."""
        self._names += self._drain()
        if self._watching != self.directory:
            self._watch()
        self._ready.set()

    def _watch(self) -> None:
        """Watch the directory, or its deepest existing ancestor until it exists (by-id dirs
        appear with the first device that needs them, possibly one level at a time)."""
        target = self.directory
        while not target.is_dir() and target != target.parent:
            target = target.parent
        if self._fd >= 0 and target == self._watching and target != self.directory:
            return
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(target), self._mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot watch {target}: {os.strerror(code)}")
        self._watching = target

    async def changed(self) -> list[str]:
        """Wait for the next batch of changes; return the names of the entries involved."""
        while not self._names:
            self._ready.clear()
            await self._ready.wait()
        names, self._names = self._names, []
        return names

    def _drain(self) -> list[str]:
        names: list[str] = []
        while True:
            try:
                buf = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return names
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset + _EVENT.size <= len(buf):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(buf, offset)
                raw = buf[offset + _EVENT.size : offset + _EVENT.size + length]
                names.append(os.fsdecode(raw.rstrip(b"\0")))
                offset += _EVENT.size + length

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
