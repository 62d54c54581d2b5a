"""NFC readers through nfcpy: one `TagRead` per presentation of a tag, then `TagRemoved`.

nfcpy blocks, so a worker thread owns the `ContactlessFrontend` and runs its reader loop
(`connect(rdwr=...)`); events reach the event loop with `call_soon_threadsafe`. The thread is told
to stop through a `threading.Event` that nfcpy's `terminate` callback waits on between poll rounds
and presence checks, so closing `events()` ends it within one poll round (milliseconds on a USB
reader, up to a second per target with nfcpy's UDP simulator) and releases the reader.

A presentation starts when a tag is read and lasts while nfcpy's presence check still finds it. A
tag that stays on the reader is reported once. When it leaves, `TagRemoved` follows only once it
has been away for `debounce` seconds: the same UID back on the reader sooner (a tag wobbling at the
edge of the field, a customer lifting and re-tapping) continues the same presentation and is not
reported again, so it cannot be scanned twice. A different tag, or the reader going away, ends the
presentation at once.

Opening the reader the first time raises `NfcReaderError` with what to do (udev rule, kernel
driver, another process...), like `python -m nfc` does: that needs a human, and the supervisor
shows it and retries. A reader lost while polling (unplugged) is reported `DISCONNECTED` and
reopened here with a bounded backoff, so a replug needs nobody; a reader that comes back but cannot
be opened (permissions, busy) raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ndef  # type: ignore[import-untyped]
import nfc
import nfc.clf
import nfc.clf.device
import nfc.clf.transport
import nfc.tag

from drivers.base import (
    DeviceState,
    DriverEvent,
    DroppedInput,
    HealthLevel,
    HealthReport,
    NdefRecord,
    StatusChange,
    TagRead,
    TagRemoved,
)
from drivers.settings import PATH_FORMS, NfcSettings

log = logging.getLogger(__name__)

POLL_PAUSE = 0.1
"""Seconds between poll rounds and between presence checks; also how soon a stop is noticed."""
REOPEN_MIN, REOPEN_MAX = 0.5, 5.0
"""Backoff bounds (seconds) for reopening a reader that went away."""
STABLE_AFTER = 30.0
"""A reader that worked this long before it was lost is reopened quickly again."""
STALE_AFTER = 10.0
"""External health fails when the reader has not completed a poll round for this long."""
STOP_TIMEOUT = 5.0
"""How long closing `events()` waits for the worker thread to release the reader."""
SYSFS_USB = Path("/sys/bus/usb/devices")


class NfcReaderError(OSError):
    """The reader cannot be used; the message says what to do about it. `errno` is ENODEV when
    no reader was found, EACCES or EBUSY when one was found but cannot be opened."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True, slots=True)
class UsbReader:
    vid: int
    pid: int
    bus: int
    dev: int

    @property
    def where(self) -> str:
        return f"usb:{self.vid:04x}:{self.pid:04x} (/dev/bus/usb/{self.bus:03d}/{self.dev:03d})"


def usb_hint(code: int, reader: UsbReader, sysfs: Path = SYSFS_USB) -> str:
    """What to do about a USB reader that is there but cannot be opened (`python -m nfc`'s advice,
    fitted to the systemd unit)."""
    found = f"NFC reader {reader.where} found"
    if code == errno.EACCES:
        return (
            f"{found} but access is denied: give it to the plugdev group with the udev rule "
            'SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", '
            f'ATTR{{idVendor}}=="{reader.vid:04x}", ATTR{{idProduct}}=="{reader.pid:04x}", '
            'GROUP="plugdev", MODE="0660" in '
            "/etc/udev/rules.d/70-lane-agent.rules, run 'udevadm control --reload && udevadm "
            "trigger', and run the agent in the plugdev group (SupplementaryGroups=plugdev, see "
            "systemd/README.md)"
        )
    if code == errno.EBUSY:
        driver, nfc_subsystem = kernel_driver(reader, sysfs)
        if nfc_subsystem:
            return (
                f"{found} but the kernel NFC driver {driver} holds it: free it with "
                f"'modprobe -r {driver}' and keep it off with 'blacklist {driver}' in "
                "/etc/modprobe.d/lane-agent.conf (the package ships it commented out)"
            )
        if driver == "usbfs":
            return (
                f"{found} but another program uses it through libusb (pcscd, a second agent?): "
                f"'lsof /dev/bus/usb/{reader.bus:03d}/{reader.dev:03d}' names it; stop it"
            )
        return f"{found} but it is busy (driver {driver or 'unknown'})"
    return f"{found} but it cannot be opened: {os.strerror(code)}"


def kernel_driver(reader: UsbReader, sysfs: Path = SYSFS_USB) -> tuple[str | None, bool]:
    """The kernel driver bound to the reader's interface, and whether it belongs to the Linux NFC
    subsystem (which then has to be unloaded or blacklisted for libusb to get the reader)."""
    with contextlib.suppress(OSError):
        for entry in sysfs.iterdir():
            if (_number(entry / "busnum"), _number(entry / "devnum")) == (reader.bus, reader.dev):
                interface = sysfs / f"{entry.name}:1.0"
                return (interface / "driver").readlink().name, (interface / "nfc").exists()
    return None, False


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _known_usb_readers(path: str) -> list[UsbReader]:
    """USB devices on `path` that nfcpy has a driver for; none when libusb cannot enumerate."""
    try:
        found = nfc.clf.transport.USB.find(path) or []
    except Exception as exc:  # a diagnostic must not hide the error it explains
        log.debug("cannot enumerate USB devices: %s", exc)
        return []
    return [UsbReader(*ids) for ids in found if tuple(ids[:2]) in nfc.clf.device.usb_device_map]


def _open_errno(reader: UsbReader) -> int:
    """Open the reader by bus and device number: nfcpy then raises instead of skipping it."""
    try:
        nfc.ContactlessFrontend(f"usb:{reader.bus:03d}:{reader.dev:03d}").close()
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def _open_failure(path: str, error: OSError | None) -> NfcReaderError:
    if path.startswith("usb"):
        for reader in _known_usb_readers(path):
            code = error.errno if error is not None and error.errno else _open_errno(reader)
            if code in (errno.EACCES, errno.EBUSY):
                return NfcReaderError(usb_hint(code, reader), code)
    if error is not None:
        return NfcReaderError(f"cannot open the NFC reader {path}: {error}", error.errno or 0)
    if path.startswith("usb"):
        hint = (
            "is it plugged in? 'lsusb' should list it and 'python -m nfc' shows the readers "
            "nfcpy can drive (Sony RC-S380, ACR122U, SCL3711...)"
        )
    elif path.startswith(("tty", "com")):
        hint = "check that the port exists and the driver is right, e.g. tty:USB0:pn532"
    else:
        hint = f"the path must be one of {PATH_FORMS}"
    return NfcReaderError(f"no NFC reader found on {path}: {hint}", errno.ENODEV)


def open_reader(path: str) -> Any:
    """An opened `nfc.ContactlessFrontend`, or `NfcReaderError` saying what to do."""
    clf = nfc.ContactlessFrontend()
    try:
        opened = clf.open(path)
    except OSError as exc:
        raise _open_failure(path, exc) from exc
    if not opened:
        raise _open_failure(path, None)
    return clf


def ndef_record(record: Any) -> NdefRecord:
    """An ndeflib record as the contract's record; URIs keep the tag's own (IRI) spelling."""
    text: str | None = None
    if isinstance(record, ndef.UriRecord):
        text = record.iri
    elif isinstance(record, ndef.TextRecord):
        text = record.text
    return NdefRecord(str(record.type), bytes(record.data), text)


@dataclass(frozen=True, slots=True)
class _Left:
    """A reported tag is no longer on the reader; `events()` decides when that ends it."""

    uid: bytes


@dataclass(frozen=True, slots=True)
class _Failed:
    error: Exception


_Item = DriverEvent | _Left | _Failed


class _Worker:
    """One run of `events()`: the thread that owns the reader, and what health checks read."""

    def __init__(
        self,
        device_id: str,
        settings: NfcSettings,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[_Item],
        finished: asyncio.Event,
    ) -> None:
        self.device_id = device_id
        self.settings = settings
        self.stop = threading.Event()
        self.name: str | None = None
        self.last_error = "opening"
        self.last_round = 0.0
        self._loop = loop
        self._queue = queue
        self._finished = finished
        self._clf: Any = None
        self._reported: bytes | None = None
        self.thread = threading.Thread(target=self._run, name=f"nfc:{device_id}", daemon=True)

    def health(self, level: HealthLevel) -> tuple[bool, str]:
        if self.name is None:
            return False, f"waiting for the NFC reader on {self.settings.path}: {self.last_error}"
        if level is HealthLevel.INTERNAL:
            return True, f"{self.name}: open"
        age = time.monotonic() - self.last_round
        if age > STALE_AFTER:
            return False, f"{self.name}: no poll round completed for {age:.0f} s"
        return True, f"{self.name}: polled {age:.1f} s ago"

    def _send(self, item: _Item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # every failure reaches events(), which raises it
            self._send(_Failed(exc))
        finally:
            if self._clf is not None:
                self._clf.close()
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._finished.set)

    def _open(self) -> None:
        self._clf = open_reader(self.settings.path)
        self.name = str(self._clf)
        self.last_round = time.monotonic()
        self._send(StatusChange(self.device_id, DeviceState.CONNECTED))

    def _serve(self) -> None:
        self._open()
        delay = REOPEN_MIN
        while True:
            opened = time.monotonic()
            if self._poll():
                return
            self._release()
            self._clf.close()
            self._clf = self.name = None
            self.last_error = "the reader stopped answering"
            message = f"NFC reader on {self.settings.path} stopped answering; reopening it"
            self._send(StatusChange(self.device_id, DeviceState.DISCONNECTED, message))
            if time.monotonic() - opened >= STABLE_AFTER:
                delay = REOPEN_MIN
            while self._clf is None:
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, REOPEN_MAX)
                try:
                    self._open()
                except NfcReaderError as exc:
                    if exc.errno in (errno.EACCES, errno.EBUSY):
                        raise  # it is back but unusable: that needs a human
                    self.last_error = str(exc)

    def _poll(self) -> bool:
        """Run nfcpy's reader loop until stopped (True) or until it loses the reader (False)."""
        rdwr = {
            "targets": list(self.settings.targets),
            "on-connect": self._on_connect,
            "on-release": self._on_release,
            "iterations": 1,
            "beep-on-connect": self.settings.beep,
        }
        while not self.stop.is_set():
            try:
                # None: stopped; True: a tag came and went; False: nfcpy caught an I/O error.
                if self._clf.connect(rdwr=rdwr, terminate=self._terminate) is False:
                    return False
            except OSError:  # raised before nfcpy's own handler, when the device is gone
                return False
        return True

    def _terminate(self) -> bool:
        """nfcpy asks between poll rounds and presence checks; waiting here is the poll pause,
        cut short by a stop (nfcpy's own `interval` sleep could not be)."""
        self.last_round = time.monotonic()
        return self.stop.wait(POLL_PAUSE)

    def _on_connect(self, tag: Any) -> bool:
        """Read the tag once; returning True makes nfcpy wait until it has left."""
        uid = bytes(tag.identifier)
        try:
            tag_ndef = tag.ndef
            records = tuple(ndef_record(r) for r in tag_ndef.records) if tag_ndef else ()
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, ndef.DecodeError) as exc:
            self._send(DroppedInput(self.device_id, f"unreadable NDEF on an NFC tag: {exc}"))
            return True
        # nfcpy reports a read cut short as "no NDEF": a UID alone is only trusted if it stayed.
        if not records and not tag.is_present:
            self._send(DroppedInput(self.device_id, "NFC tag left before it could be read"))
            return True
        self._reported = uid
        self._send(TagRead(self.device_id, uid, str(tag.type), records))
        return True

    def _on_release(self, tag: Any) -> bool:
        self._release()
        return True

    def _release(self) -> None:
        if self._reported is not None:
            self._send(_Left(self._reported))
            self._reported = None


def _probe(settings: NfcSettings, level: HealthLevel) -> tuple[bool, str]:
    """Open the reader (and poll once for external health) when no `events()` run holds it."""
    try:
        clf = open_reader(settings.path)
    except NfcReaderError as exc:
        return False, str(exc)
    name = str(clf)
    try:
        if level is HealthLevel.INTERNAL:
            return True, f"{name}: openable"
        clf.sense(nfc.clf.RemoteTarget(settings.targets[0]), iterations=1)
        return True, f"{name}: answered a poll"
    except (OSError, nfc.clf.UnsupportedTargetError) as exc:
        return False, f"{name}: poll failed: {exc}"
    finally:
        clf.close()


class NfcReader:
    kind = "nfc"

    def __init__(self, device_id: str, settings: NfcSettings) -> None:
        self.device_id = device_id
        self.settings = settings
        self._worker: _Worker | None = None

    async def events(self) -> AsyncIterator[DriverEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        finished = asyncio.Event()
        worker = _Worker(self.device_id, self.settings, loop, queue, finished)
        self._worker = worker
        worker.thread.start()
        left: bytes | None = None  # the UID of a reported tag that is away, not yet removed
        deadline = 0.0
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline if left is not None else None):
                        item = await queue.get()
                except TimeoutError:
                    assert left is not None
                    yield TagRemoved(self.device_id, left)
                    left = None
                    continue
                if isinstance(item, _Failed):
                    raise item.error
                if isinstance(item, _Left):
                    left, deadline = item.uid, loop.time() + self.settings.debounce
                    continue
                if left is not None and isinstance(item, TagRead | StatusChange):
                    if isinstance(item, TagRead) and item.uid == left:
                        left = None  # back within the debounce: the same presentation
                        continue
                    yield TagRemoved(self.device_id, left)
                    left = None
                yield item
        finally:
            worker.stop.set()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await finished.wait()
            except TimeoutError:
                log.warning("NFC reader %s did not stop within %s s", self.device_id, STOP_TIMEOUT)
            self._worker = None

    async def check_health(self, level: HealthLevel) -> HealthReport:
        if self._worker is not None:
            ok, detail = self._worker.health(level)
        else:
            ok, detail = await asyncio.to_thread(_probe, self.settings, level)
        return HealthReport(self.device_id, level, ok, detail)
