"""Runs drivers: start each, restart a failed one with backoff, stop them all cleanly.

A driver reports failure by raising from `events()`; the supervisor turns that into a device state
change (so the POS and the technician see it) and tries again after a jittered, growing delay that
resets once the driver has run for a while without failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from drivers.base import DeviceState, Driver, DriverEvent, StatusChange

log = logging.getLogger(__name__)

Sink = Callable[[DriverEvent], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        sink: Sink,
        *,
        backoff_min: float = 0.2,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
    ) -> None:
        self._sink = sink
        self._min = backoff_min
        self._max = backoff_max
        self._stable_after = stable_after
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.drivers: dict[str, Driver] = {}
        self.restarts: dict[str, int] = {}

    def start(self, drivers: Iterable[Driver]) -> None:
        for driver in drivers:
            if driver.device_id in self.drivers:
                raise ValueError(f"two drivers share the device id {driver.device_id!r}")
            self.drivers[driver.device_id] = driver
            self.restarts[driver.device_id] = 0
            self._tasks[driver.device_id] = asyncio.create_task(
                self._keep_running(driver), name=f"driver:{driver.device_id}"
            )

    async def stop(self) -> None:
        """Cancel every driver; each releases its device in its own cleanup."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _keep_running(self, driver: Driver) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                async for event in driver.events():
                    await self._sink(event)
                error = "driver stopped unexpectedly"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("device %s failed: %s", driver.device_id, error)
            if time.monotonic() - started >= self._stable_after:
                failures = 0
            delay = random.uniform(self._min, min(self._max, self._min * 2**failures))
            failures += 1
            self.restarts[driver.device_id] += 1
            await self._sink(StatusChange(driver.device_id, DeviceState.ERROR, error))
            await asyncio.sleep(delay)
