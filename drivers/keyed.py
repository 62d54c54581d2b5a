"""Keyed entry: codes typed on the POS screen, arriving through the MQTT request `scan.inject`.

The request handler turns each one into a `RawScan` from this device and answers with the scan it
produced, so there is no queue here: the "device" is present for as long as the agent runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from drivers.base import DeviceState, DriverEvent, HealthLevel, HealthReport, RawScan, StatusChange


class KeyedEntry:
    kind = "keyed"

    def __init__(self, device_id: str = "keyed") -> None:
        self.device_id = device_id

    def scan(self, data: bytes, symbology: str | None = "keyed") -> RawScan:
        return RawScan(self.device_id, data, symbology)

    async def events(self) -> AsyncIterator[DriverEvent]:
        yield StatusChange(self.device_id, DeviceState.CONNECTED)
        await asyncio.Event().wait()

    async def check_health(self, level: HealthLevel) -> HealthReport:
        return HealthReport(self.device_id, level, True, "keyed entry over MQTT (scan.inject)")
