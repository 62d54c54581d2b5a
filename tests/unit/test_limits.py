"""The per-device scan rate limit: a flood is dropped and counted, other devices keep flowing.

Time is the scans' own `received` stamps and the limiter's timers are fired by hand: no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.contract import (
    OPS,
    DeviceRecord,
    Event,
    HealthResult,
    Request,
    Response,
    ScanInjectParams,
    ScanMessage,
)
from agent.devices import DeviceRegistry
from agent.errors import ErrorCode
from agent.limits import RequestLimiter, ScanLimiter, ScanRateLimited, TokenBucket
from agent.normalise import Normaliser
from agent.requests import RequestRouter, ResponseStore
from agent.scans import ScanPipeline
from agent.tokens import TokenVault
from drivers.base import NdefRecord, RawScan, TagRead

GIFT = b"100000000001"


class Timers:
    """`call_later` for the limiter, fired by the test."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.pending.append((delay, callback))

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, callback in due:
            callback()


class Lane:
    """A pipeline with a rate limit and three devices, recording everything it publishes."""

    def __init__(self, rate: float = 20.0, burst: int = 40) -> None:
        self.scans: list[ScanMessage] = []
        self.records: list[DeviceRecord] = []
        self.events: list[Event] = []
        self.timers = Timers()
        self.devices = DeviceRegistry(self.records.append)
        for device_id, kind in (("flood", "fifo"), ("counter", "evdev"), ("nfc", "nfc")):
            self.devices.add(device_id, kind)
        self.limiter = ScanLimiter(rate, burst, self.devices, call_later=self.timers.call_later)
        self.pipeline = ScanPipeline(
            Normaliser(),
            TokenVault(),
            self.devices,
            self.scans.append,
            self.events.append,
            {},
            self.limiter,
        )

    def records_of(self, device_id: str) -> list[DeviceRecord]:
        return [r for r in self.records if r.device_id == device_id]

    def scans_of(self, device_id: str) -> list[ScanMessage]:
        return [s for s in self.scans if s.device_id == device_id]


def ean13(n: int) -> bytes:
    body = f"{590123412000 + n:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return (body + str(-total % 10)).encode()


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.05)  # half a token
    assert bucket.take(100.1)
    assert not bucket.take(100.1)
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # never above burst


def test_a_timestamp_from_the_past_refills_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=100.0)
    assert bucket.take(100.0)
    assert not bucket.take(50.0)
    assert not bucket.take(100.05)
    assert bucket.take(100.1)


async def test_a_flood_from_one_device_is_dropped_and_counted_while_others_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent")
    lane = Lane(rate=20, burst=40)
    flood, sent_by_counter = 1000, []
    for i in range(flood):  # 1000 scans in one second from one device...
        at = 1000.0 + i / flood
        await lane.pipeline.handle(RawScan("flood", GIFT, received=at))
        if i % 50 == 0:  # ...while a cashier scans 20 products on another
            sent_by_counter.append(ean13(i))
            await lane.pipeline.handle(RawScan("counter", ean13(i), received=at))
    # The other device lost nothing and was never limited.
    assert [s.value for s in lane.scans_of("counter")] == [c.decode() for c in sent_by_counter]
    counter = lane.devices.get("counter").counters
    assert (counter.scans, counter.rate_limited) == (20, 0)
    # The flood: the burst and a second's refill got through, the rest was counted.
    flooded = lane.devices.get("flood").counters
    assert 40 <= flooded.scans <= 61
    assert len(lane.scans_of("flood")) == flooded.scans
    assert flooded.scans + flooded.rate_limited == flood
    # Published: the admitted scans' records and the flood's first drop; not one per drop.
    assert len(lane.records_of("flood")) == 1 + flooded.scans + 1  # added, scans, first drop
    # Logged once when it started.
    started = [r for r in caplog.records if "faster than 20 a second" in r.getMessage()]
    assert [r.getMessage().split()[1] for r in started] == ["flood"]
    assert lane.limiter.flooding() == {"flood": flooded.rate_limited}
    # A second later the record is republished with the count; a quiet second ends the flood.
    lane.timers.fire()
    assert lane.records_of("flood")[-1].counters.rate_limited == flooded.rate_limited
    before = len(lane.records_of("flood"))
    lane.timers.fire()
    assert len(lane.records_of("flood")) == before and not lane.timers.pending
    assert lane.limiter.flooding() == {}
    over = [r.getMessage() for r in caplog.records if "flood over" in r.getMessage()]
    assert over == [
        f"device flood: scan flood over; {flooded.rate_limited} scan(s) over the rate limit dropped"
    ]


async def test_a_device_that_slows_down_is_served_again() -> None:
    lane = Lane(rate=2, burst=2)
    results = []
    for at in (0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 1.5):
        before = lane.devices.get("flood").counters.scans
        await lane.pipeline.handle(RawScan("flood", GIFT, received=at))
        results.append(lane.devices.get("flood").counters.scans > before)
    assert results == [True, True, False, False, True, True, True]
    assert lane.devices.get("flood").counters.rate_limited == 2


async def test_nfc_tags_count_against_their_reader() -> None:
    lane = Lane(rate=1, burst=1)
    record = NdefRecord("urn:nfc:wkt:T", b"", "hello")
    for _ in range(3):
        await lane.pipeline.handle(TagRead("nfc", b"\x04\x01\x02\x03", "Type2Tag", (record,), 5.0))
    counters = lane.devices.get("nfc").counters
    assert (counters.scans, counters.rate_limited) == (1, 2)


def test_rate_zero_switches_the_limit_off() -> None:
    lane = Lane(rate=0, burst=1)
    for _ in range(100):
        lane.limiter.check("flood", 0.0)
    assert lane.limiter.flooding() == {} and not lane.timers.pending


async def test_keyed_entry_over_the_limit_gets_a_rate_limited_answer_that_is_not_kept(
    tmp_path: Path,
) -> None:
    lane = Lane(rate=0.001, burst=1)
    lane.devices.add("keyed", "keyed")

    async def inject(params: ScanInjectParams) -> ScanMessage:
        return lane.pipeline.scan(RawScan("keyed", params.data.encode(), "keyed", received=0.0))

    async def unused(params: object) -> ScanMessage:
        raise AssertionError("not called")

    store = ResponseStore(tmp_path / "requests.sqlite")
    handlers = {op: unused for op in OPS} | {"scan.inject": inject}
    router = RequestRouter(store, handlers)
    first = await router.handle(
        "scan.inject", json.dumps({"request_id": "a", "data": "1"}).encode()
    )
    assert first.status == "ok"
    payload = json.dumps({"request_id": "b", "data": "2"}).encode()
    limited = await router.handle("scan.inject", payload)
    assert limited.error is not None and limited.error.code is ErrorCode.RATE_LIMITED
    assert limited.error.message == (
        "device 'keyed' sent more than 0.001 scans a second (burst 1); "
        "this scan was dropped: send it again"
    )
    assert store.get("b") is None  # the POS may send it again with the same request_id
    assert lane.devices.get("keyed").counters.rate_limited == 1
    with pytest.raises(ScanRateLimited):
        lane.pipeline.scan(RawScan("keyed", b"3", "keyed", received=0.0))


def test_the_limit_is_configured_under_scans() -> None:
    config = parse_config({"lane": {"store": "s", "lane": "l"}})
    assert (config.scans.rate, config.scans.burst) == (20.0, 40)
    config = parse_config({"lane": {"store": "s", "lane": "l"}, "scans": {"rate": 0, "burst": 1}})
    assert (config.scans.rate, config.scans.burst) == (0.0, 1)
    with pytest.raises(ConfigError) as raised:
        parse_config({"lane": {"store": "s", "lane": "l"}, "scans": {"rate": -1, "burst": 0}})
    assert raised.value.problems == [
        "scans.rate: Input should be greater than or equal to 0",
        "scans.burst: Input should be greater than or equal to 1",
    ]


def test_requests_over_the_rate_or_the_pending_bound_are_refused_with_the_reason() -> None:
    now = [0.0]
    limiter = RequestLimiter(rate=2, burst=3, pending=5, clock=lambda: now[0])
    assert [limiter.admit(running=0) for _ in range(4)][:3] == [None, None, None]
    assert limiter.admit(running=0) == "more than 2 requests a second (burst 3)"
    now[0] = 0.5  # one token back
    assert limiter.admit(running=0) is None
    assert limiter.admit(running=5) == "5 requests are running, the most it takes at once"
    assert limiter.busy == 3


async def test_a_flood_is_answered_busy_at_once_while_health_pings_run(tmp_path: Path) -> None:
    """Issue 14, point 8: a flood was dropped silently and health pings were lost in it."""
    gate = asyncio.Event()
    ran: asyncio.Queue[str] = asyncio.Queue()

    async def slow(params: Request) -> HealthResult:
        ran.put_nowait(params.request_id)
        await gate.wait()
        return HealthResult(ok=True, items=[])

    store = ResponseStore(tmp_path / "requests.sqlite")
    limiter = RequestLimiter(rate=0, burst=1, pending=2)
    router = RequestRouter(store, dict.fromkeys(OPS, slow), limiter=limiter)

    def ask(op: str, request_id: str) -> asyncio.Task[Response]:
        payload = json.dumps({"request_id": request_id}).encode()
        return asyncio.create_task(router.handle(op, payload))

    running = [ask("order.get", "a"), ask("order.get", "b")]
    assert {await ran.get(), await ran.get()} == {"a", "b"}
    busy = await ask("order.get", "c")
    assert busy.error is not None and busy.error.code is ErrorCode.BUSY
    assert busy.request_id == "c" and "nothing was done" in busy.error.message
    repeat = ask("order.get", "a")  # a running request's repeat adds no work
    health = ask("device.health", "h")
    assert await ran.get() == "h"
    gate.set()
    assert all(r.status == "ok" for r in await asyncio.gather(*running, repeat, health))
    assert ran.empty()  # the repeat of "a" did not run it again
    assert store.get("c") is None  # not kept: the POS sends it again under the same id


def test_the_request_limit_is_configured_under_mqtt() -> None:
    mqtt = parse_config({"lane": {"store": "s", "lane": "l"}}).mqtt
    assert (mqtt.request_rate, mqtt.request_burst, mqtt.request_pending) == (50.0, 100, 32)
