"""The driver contract: what every input source (evdev, serial, HID-POS, NFC, FIFO, keyed) yields.

A driver is an async iterator of events. It owns its device for as long as the iteration runs and
releases it (ungrab, close, reattach kernel driver) when the iteration is closed or cancelled.
Raising from the iteration means "I failed": the supervisor records the error and restarts the
driver with backoff. A driver that can wait for its device by itself (hotplug) yields
`StatusChange(DISCONNECTED)` and keeps iterating instead of raising.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class DeviceState(enum.StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ERROR = "error"


class HealthLevel(enum.StrEnum):
    """UnifiedPOS CheckHealth levels: internal needs no hardware round trip, external does."""

    INTERNAL = "internal"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class RawScan:
    """Bytes of one scan as the device delivered them; drivers that frame scans remove the
    terminator, others (FIFO lines, keyed entry) pass it through for the normaliser to strip."""

    device_id: str
    data: bytes
    symbology: str | None = None
    received: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class StatusChange:
    device_id: str
    state: DeviceState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DroppedInput:
    """Input the driver had to discard (SYN_DROPPED, overrun, garbled frame); counted per device."""

    device_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NdefRecord:
    """One NDEF record as read from a tag; `text` is the decoded URI or text when it has one."""

    type: str
    payload: bytes
    text: str | None = None


@dataclass(frozen=True, slots=True)
class TagRead:
    """An NFC tag arrived on a reader (once per presentation; a tag left on the reader is not
    read again until it has been removed)."""

    device_id: str
    uid: bytes
    tag_type: str
    records: tuple[NdefRecord, ...] = ()
    received: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class TagRemoved:
    device_id: str
    uid: bytes


DriverEvent = RawScan | StatusChange | DroppedInput | TagRead | TagRemoved


@dataclass(frozen=True, slots=True)
class HealthReport:
    device_id: str
    level: HealthLevel
    ok: bool
    detail: str


@runtime_checkable
class Driver(Protocol):
    """One input device. `kind` names the driver type (`fifo`, `keyed`, `evdev`, ...)."""

    device_id: str
    kind: str

    def events(self) -> AsyncIterator[DriverEvent]:
        """Yield events until cancelled; raise to report a failure the supervisor should retry."""
        ...

    async def check_health(self, level: HealthLevel) -> HealthReport: ...
