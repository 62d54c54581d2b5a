"""USB HID keyboard-wedge scanners through evdev: the scanner "types" each barcode.

The device is selected by its /dev/input/by-id path, its USB vendor:product, or a name pattern;
every event node of that device is read (scanners often expose a keyboard and a consumer-control
node) and grabbed, so keystrokes never reach the console or a login prompt. Keycodes become text
in `wedge.WedgeDecoder` for the layout the scanner is configured for. Hotplug is inotify on
/dev/input: a scanner plugged in later, or unplugged and replugged, is picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import fnmatch
import os
import select
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import evdev
from evdev import ecodes

from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    HealthReport,
    RawScan,
    StatusChange,
)
from drivers.inotify import DirectoryWatch
from drivers.settings import KeyboardSettings
from drivers.wedge import WedgeDecoder

INPUT_DIR = Path("/dev/input")


@dataclass(frozen=True, slots=True)
class Node:
    path: str
    name: str
    usb_id: str
    phys: str

    @classmethod
    def probe(cls, path: str) -> Node | None:
        """Describe a node without keeping it open; None when it vanished or is not readable."""
        try:
            device = evdev.InputDevice(path)
        except OSError:
            return None
        try:
            info = device.info
            return cls(
                path, device.name, f"{info.vendor:04x}:{info.product:04x}", device.phys or ""
            )
        finally:
            device.close()


def physical_device(phys: str) -> str:
    """`usb-0000:00:14.0-2/input1` -> `usb-0000:00:14.0-2`: nodes of one device share this."""
    return phys.rsplit("/", 1)[0] if "/" in phys else phys


def event_nodes(directory: Path = INPUT_DIR) -> list[str]:
    return sorted(str(p) for p in directory.glob("event*"))


def select_nodes(settings: KeyboardSettings, nodes: Iterable[Node]) -> list[Node]:
    """Every node of the configured device; a by-id path also brings its sibling nodes."""
    candidates = list(nodes)
    chosen = candidates
    if settings.path is not None:
        try:
            target = str(settings.path.resolve(strict=True))
        except OSError:
            return []
        anchor = next((n for n in candidates if n.path == target), None)
        if anchor is None:
            return []
        device = physical_device(anchor.phys)
        chosen = [
            n
            for n in candidates
            if n.path == target
            or (device and n.usb_id == anchor.usb_id and physical_device(n.phys) == device)
        ]
    if settings.usb_id is not None:
        chosen = [n for n in chosen if n.usb_id == settings.usb_id.lower()]
    if settings.name is not None:
        chosen = [n for n in chosen if fnmatch.fnmatchcase(n.name, settings.name)]
    return chosen


@dataclass(slots=True)
class _Open:
    """One grabbed node of the device with its own decoder (keys never span nodes)."""

    path: str
    device: evdev.InputDevice[str]
    decoder: WedgeDecoder
    resync: bool = False


EVIOCSCLOCKID = 0x400445A0  # _IOW('E', 0xa0, int)


def use_monotonic_clock(device: evdev.InputDevice[str]) -> None:
    """Stamp events with CLOCK_MONOTONIC: the inter-key timeout compares kernel key times with
    time.monotonic(), so a busy event loop never splits a barcode that was typed in one go."""
    fcntl.ioctl(device.fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))


class OpenFailed(OSError):
    """Opening or grabbing a node failed; the message says how to fix it."""


def open_node(path: str, grab: bool) -> evdev.InputDevice[str]:
    try:
        device = evdev.InputDevice(path)
    except PermissionError as exc:
        raise OpenFailed(
            exc.errno,
            f"{path}: permission denied; add the agent's user to the 'input' group "
            "(systemd: SupplementaryGroups=input) or install systemd/70-lane-agent.rules",
        ) from None
    if grab:
        try:
            device.grab()
        except OSError as exc:
            device.close()
            if exc.errno == errno.EBUSY:
                raise OpenFailed(
                    exc.errno,
                    f"{path}: another process has grabbed it (EVIOCGRAB); "
                    f"`lane-agent diag devices` or `fuser -v {path}` shows which",
                ) from None
            raise
    return device


class KeyboardScanner:
    kind = "evdev"

    def __init__(self, device_id: str, settings: KeyboardSettings) -> None:
        self.device_id = device_id
        self.settings = settings
        self.drops = 0
        # `lane-agent diag monitor` sets this to see every key event as it arrives.
        self.trace: Callable[[str], None] | None = None
        self._last_key = 0.0

    def describe(self) -> str:
        s = self.settings
        parts = [
            str(s.path) if s.path else "",
            s.usb_id or "",
            f"name {s.name!r}" if s.name else "",
        ]
        return " ".join(p for p in parts if p)

    def _decoder(self) -> WedgeDecoder:
        s = self.settings
        return WedgeDecoder(
            s.layout,
            s.terminators,
            inter_key_timeout=s.inter_key_timeout or None,
            numlock=s.numlock,
        )

    def find(self) -> list[Node]:
        return select_nodes(self.settings, filter(None, map(Node.probe, event_nodes())))

    async def events(self) -> AsyncIterator[DriverEvent]:
        async with DirectoryWatch(INPUT_DIR) as watch:
            waiting = False
            while True:
                nodes = self.find()
                if not nodes:
                    if not waiting:
                        waiting = True
                        yield StatusChange(
                            self.device_id,
                            DeviceState.DISCONNECTED,
                            f"no input device matches {self.describe()}; waiting for it",
                        )
                    await watch.changed()
                    continue
                waiting = False
                async for event in self._read(nodes):
                    yield event

    async def _read(self, nodes: list[Node]) -> AsyncIterator[DriverEvent]:
        """Read every node of one connected device until it goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[_Open, list[evdev.InputEvent] | OSError]] = asyncio.Queue()
        opened: list[_Open] = []

        stop_r, stop_w = os.pipe()
        threads: list[threading.Thread] = []

        def pump(node: _Open) -> None:
            """Empty the kernel's small per-reader buffer (64 events) the moment keys arrive,
            whatever the event loop is busy with; an overflow would cost a scan (SYN_DROPPED)."""
            while True:
                ready, _, _ = select.select([node.device.fd, stop_r], [], [])
                if stop_r in ready:
                    return
                try:
                    batch: list[evdev.InputEvent] | OSError = list(node.device.read())
                except BlockingIOError:
                    continue
                except OSError as exc:
                    batch = exc
                loop.call_soon_threadsafe(queue.put_nowait, (node, batch))
                if isinstance(batch, OSError):
                    return

        try:
            for found in nodes:
                node = _Open(found.path, open_node(found.path, self.settings.grab), self._decoder())
                opened.append(node)
                use_monotonic_clock(node.device)
                node.decoder.sync(node.device.active_keys())
                thread = threading.Thread(target=pump, args=(node,), name=f"evdev {found.path}")
                threads.append(thread)
                thread.start()
            yield StatusChange(self.device_id, DeviceState.CONNECTED)
            while True:
                deadlines = [d for n in opened if (d := n.decoder.deadline()) is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                try:
                    async with asyncio.timeout(timeout):
                        node, batch = await queue.get()
                except TimeoutError:
                    # Keys may be queued while the loop was busy: decode them first, so only a
                    # real pause in typing (by kernel timestamps) ends a scan.
                    if not queue.empty():
                        continue
                    for data in self._flush_due(opened):
                        yield RawScan(self.device_id, data)
                    continue
                if isinstance(batch, OSError):
                    yield self._gone(node, batch)
                    return
                for event in self._decode(node, batch):
                    yield event
        finally:
            os.write(stop_w, b"x")
            for thread in threads:
                thread.join()
            os.close(stop_r)
            os.close(stop_w)
            for node in opened:
                if self.settings.grab:
                    with contextlib.suppress(OSError):
                        node.device.ungrab()
                node.device.close()

    def _flush_due(self, opened: list[_Open]) -> list[bytes]:
        now = time.monotonic()
        due = [n.decoder for n in opened if (d := n.decoder.deadline()) is not None and d <= now]
        return [data for decoder in due if (data := decoder.flush())]

    def _decode(self, node: _Open, batch: list[evdev.InputEvent]) -> list[DriverEvent]:
        out: list[DriverEvent] = []
        for event in batch:
            if event.type == ecodes.EV_SYN and event.code == ecodes.SYN_DROPPED:
                # Discard until the next SYN_REPORT, then take held keys from the kernel.
                node.decoder.dropped()
                node.resync = True
                self.drops += 1
                out.append(
                    DroppedInput(self.device_id, "kernel dropped input events (SYN_DROPPED)")
                )
            elif event.type == ecodes.EV_SYN and event.code == ecodes.SYN_REPORT and node.resync:
                node.resync = False
                node.decoder.sync(node.device.active_keys())
            elif event.type == ecodes.EV_KEY and not node.resync:
                now = event.timestamp()
                data = node.decoder.key(event.code, event.value, now)
                if self.trace is not None:
                    self._trace_key(node, event.code, event.value, now)
                if data is not None:
                    out.append(RawScan(self.device_id, data))
        return out

    def _trace_key(self, node: _Open, code: int, value: int, now: float) -> None:
        """One line per key event: node, key, timing and the text decoded so far."""
        assert self.trace is not None
        name = ecodes.KEY.get(code, f"key {code}")
        state = ("up", "down", "repeat")[value] if 0 <= value <= 2 else str(value)
        gap = (now - self._last_key) * 1000 if self._last_key else 0.0
        self._last_key = now
        typed = node.decoder.pending
        self.trace(f"  {Path(node.path).name} {name} {state} (+{gap:.1f} ms) {typed!r}")

    def _gone(self, node: _Open, error: OSError) -> StatusChange:
        node.decoder.dropped()  # half a barcode is no barcode
        reason = "unplugged" if error.errno == errno.ENODEV else f"read failed: {error.strerror}"
        return StatusChange(self.device_id, DeviceState.DISCONNECTED, f"{node.path} {reason}")

    async def check_health(self, level: HealthLevel) -> HealthReport:
        nodes = self.find()
        if not nodes:
            return HealthReport(
                self.device_id, level, False, f"no input device matches {self.describe()}"
            )
        paths = ", ".join(f"{n.path} ({n.name}, {n.usb_id})" for n in nodes)
        return HealthReport(self.device_id, level, True, f"found {paths}")
