"""The per-device scan rate limit: a flood from one device is dropped and counted, others flow.

Each input device (keyed entry included) has a token bucket of `scans.burst` scans refilled at
`scans.rate` a second. A scan that finds the bucket empty is dropped before it is normalised,
published or routed to a flow, and counted in the device's `rate_limited` counter. Buckets are per
device, so a scanner stuck in a loop (or a hostile `scan.inject` client) cannot starve the others.

The bucket runs on the time the driver received each scan (`RawScan.received`), not on when the
pipeline gets to it, so a backlog of ordinary scans after a stall is not mistaken for a flood.

A flood is logged twice, when it starts and when it is over (with the number dropped), never per
scan. Its first dropped scan is published in the device's retained record at once; the record is
then republished at most once per `report_every` seconds while the flood lasts: one message per
dropped scan would flood the outgoing MQTT queue that every device's scans share.

Requests from the lane's screens have a limit of their own (`RequestLimiter`): see there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from agent.devices import DeviceRegistry
from agent.errors import ErrorCode, LaneError

log = logging.getLogger(__name__)

CallLater = Callable[[float, Callable[[], None]], object]
"""`loop.call_later` (delay in seconds, callback); injectable for tests."""


class TokenBucket:
    """`burst` tokens, refilled continuously at `rate` a second; each scan takes one."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        elapsed = now - self.last
        if elapsed > 0:  # a timestamp from before the last one refills nothing
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
            self.last = now
        if self.tokens >= 1.0 - 1e-9:  # 0.1 s at 10 a second is one token, float error or not
            self.tokens -= 1.0
            return True
        return False


class ScanRateLimited(LaneError):
    """A scan over its device's rate limit: dropped and counted. `scan.inject` answers with it."""

    def __init__(self, device_id: str, rate: float, burst: int) -> None:
        super().__init__(
            ErrorCode.RATE_LIMITED,
            f"device '{device_id}' sent more than {rate:g} scans a second (burst {burst}); "
            "this scan was dropped: send it again",
        )
        self.device_id = device_id


@dataclass
class _Flood:
    dropped: int = 0
    unreported: int = 0  # dropped since the record was last published


class ScanLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        devices: DeviceRegistry,
        *,
        report_every: float = 1.0,
        call_later: CallLater | None = None,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._devices = devices
        self._report_every = report_every
        self._call_later = call_later
        self._buckets: dict[str, TokenBucket] = {}
        self._floods: dict[str, _Flood] = {}

    def check(self, device_id: str, received: float) -> None:
        """Let a scan through, or count it and raise `ScanRateLimited`; `rate` 0: no limit."""
        if self.rate <= 0:
            return
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = TokenBucket(self.rate, self.burst, received)
        if bucket.take(received):
            return
        flood = self._floods.get(device_id)
        if flood is None:
            flood = self._floods[device_id] = _Flood(dropped=1)
            log.warning(
                "device %s sends scans faster than %g a second (burst %d): dropping the scans "
                "over the limit until it slows down (counted in rate_limited)",
                device_id,
                self.rate,
                self.burst,
            )
            self._devices.rate_limited(device_id, publish=True)
            self._schedule(device_id)
        else:
            flood.dropped += 1
            flood.unreported += 1
            self._devices.rate_limited(device_id, publish=False)
        raise ScanRateLimited(device_id, self.rate, self.burst)

    def flooding(self) -> dict[str, int]:
        """Devices in a flood now, with the scans each has had dropped in it."""
        return {device_id: flood.dropped for device_id, flood in self._floods.items()}

    def _schedule(self, device_id: str) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        call_later(self._report_every, partial(self._report, device_id))

    def _report(self, device_id: str) -> None:
        """Every `report_every` seconds of a flood: publish the count, or log that it is over."""
        flood = self._floods[device_id]
        if flood.unreported:
            flood.unreported = 0
            self._devices.republish(device_id)
            self._schedule(device_id)
            return
        del self._floods[device_id]
        log.warning(
            "device %s: scan flood over; %d scan(s) over the rate limit dropped",
            device_id,
            flood.dropped,
        )


class RequestLimiter:
    """The lane's request intake: at most `rate` requests a second (burst `burst`), `pending`
    running at once. A request over either is answered `busy` at once, with nothing done, so a
    flood costs each request one decode and one answer instead of an unbounded pile of tasks and
    provider calls, and the POS hears "busy", not silence.

    MQTT does not tell the agent which client published a request, so the limit is per lane:
    all the lane's screens share it (the broker's ACL keeps a screen to its own lane, so a
    flooding screen slows its own lane and no other). Health pings are not counted
    (`requests.UNLIMITED_OPS`). A flood is logged when it starts and when it is over.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        pending: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.pending = pending
        self._clock = clock
        self._bucket = TokenBucket(rate, burst, clock()) if rate > 0 else None
        self.busy = 0  # answered busy since the agent started
        self._flood = 0  # answered busy since the last request let through

    def admit(self, running: int) -> str | None:
        """None to let a request run beside `running` others; else why it is answered busy."""
        if running >= self.pending:
            reason = f"{running} requests are running, the most it takes at once"
        elif self._bucket is not None and not self._bucket.take(self._clock()):
            reason = f"more than {self.rate:g} requests a second (burst {self.burst})"
        else:
            if self._flood:
                log.warning("request flood over: %d request(s) answered busy", self._flood)
                self._flood = 0
            return None
        if not self._flood:
            log.warning("lane busy (%s): answering busy until it eases", reason)
        self._flood += 1
        self.busy += 1
        return reason
