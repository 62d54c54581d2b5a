"""Keeps one retained record per input device: state, last error and counters.

Records are republished on every change (state within a second of the event, as the POS screen and
the technician rely on it) and after every broker reconnect by the bus. `once_per_turn` sends a
burst's changes as one record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.contract import DeviceRecord, utc_now
from drivers.base import DeviceState, DroppedInput, StatusChange

Publish = Callable[[DeviceRecord], None]


class DeviceRegistry:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._records: dict[str, DeviceRecord] = {}
        self._was_connected: set[str] = set()

    def add(self, device_id: str, kind: str) -> None:
        record = DeviceRecord(
            device_id=device_id, kind=kind, state=DeviceState.DISCONNECTED, since=utc_now()
        )
        self._records[device_id] = record
        self._publish(record)

    def get(self, device_id: str) -> DeviceRecord:
        return self._records[device_id]

    def all(self) -> list[DeviceRecord]:
        return list(self._records.values())

    def status(self, change: StatusChange) -> None:
        record = self._records[change.device_id]
        counters = record.counters
        if change.state is DeviceState.CONNECTED and record.state is not DeviceState.CONNECTED:
            # Every connection after the first one is a reconnect (replug, driver restart).
            if change.device_id in self._was_connected:
                counters = counters.model_copy(update={"reconnects": counters.reconnects + 1})
            self._was_connected.add(change.device_id)
        self._replace(
            record,
            state=change.state,
            since=utc_now() if change.state is not record.state else record.since,
            last_error=change.error or record.last_error,
            counters=counters,
        )

    def dropped(self, event: DroppedInput) -> None:
        record = self._records[event.device_id]
        self._count(record, ("drops",), last_error=event.reason)

    def scanned(self, device_id: str, *, valid: bool) -> None:
        """Count every scan; an invalid one is also a reject."""
        self._count(self._records[device_id], ("scans",) if valid else ("scans", "rejects"))

    def rate_limited(self, device_id: str, *, publish: bool) -> None:
        """Count a scan dropped by the rate limit (agent/limits.py); during a flood the limiter
        counts without publishing and calls `republish` at most once a second."""
        self._count(self._records[device_id], ("rate_limited",), publish=publish)

    def republish(self, device_id: str) -> None:
        self._publish(self._records[device_id])

    def _count(
        self,
        record: DeviceRecord,
        names: tuple[str, ...],
        *,
        publish: bool = True,
        **changes: object,
    ) -> None:
        old = record.counters
        counters = old.model_copy(update={n: getattr(old, n) + 1 for n in names})
        self._replace(record, publish=publish, counters=counters, **changes)

    def _replace(self, record: DeviceRecord, *, publish: bool = True, **changes: object) -> None:
        updated = record.model_copy(update=changes)
        self._records[record.device_id] = updated
        if publish:
            self._publish(updated)


def once_per_turn(publish: Publish) -> Publish:
    """`publish` each device's newest record once per event-loop turn. A burst of scans read in
    one go (a pipe, a replay, a fast scanner) then costs one retained message per device instead
    of one per scan, about a third of a scan's MQTT traffic; the record still follows the scans
    it counts. Outside a running loop (the agent being built) a record goes at once."""
    latest: dict[str, DeviceRecord] = {}

    def flush() -> None:
        records = list(latest.values())
        latest.clear()
        for record in records:
            publish(record)

    def schedule(record: DeviceRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            publish(record)
            return
        if not latest:
            loop.call_soon(flush)
        latest[record.device_id] = record

    return schedule
