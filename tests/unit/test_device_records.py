"""Device records on the bus: a burst of scans read in one event-loop turn is announced by one
record with its counts, after the burst's scans; scans apart get a record each."""

from __future__ import annotations

import asyncio

from agent.contract import DeviceRecord, ScanMessage
from agent.devices import DeviceRegistry, once_per_turn
from agent.normalise import Normaliser
from agent.scans import ScanPipeline
from agent.tokens import TokenVault
from drivers.base import RawScan

Sent = ScanMessage | DeviceRecord


def lane(sent: list[Sent]) -> ScanPipeline:
    devices = DeviceRegistry(once_per_turn(sent.append))
    devices.add("pipe", "fifo")  # no loop runs yet: at once
    devices.add("kbd", "evdev")
    return ScanPipeline(Normaliser(), TokenVault(), devices, sent.append, lambda _: None, {})


def counts(sent: list[Sent]) -> list[tuple[str, int]]:
    return [(m.device_id, m.counters.scans) for m in sent if isinstance(m, DeviceRecord)]


async def next_turn() -> None:
    await asyncio.sleep(0)


def test_records_made_before_the_loop_runs_go_at_once() -> None:
    sent: list[Sent] = []
    lane(sent)
    assert counts(sent) == [("pipe", 0), ("kbd", 0)]


async def test_a_burst_in_one_turn_is_one_record_after_its_scans() -> None:
    sent: list[Sent] = []
    pipeline = lane(sent)
    await next_turn()  # the devices' first records
    del sent[:]
    for code in (b"96385074", b"5901234123457", b"\x00"):
        pipeline.scan(RawScan("pipe", code))
    pipeline.scan(RawScan("kbd", b"96385074"))
    assert counts(sent) == []  # not yet: more of the burst may follow in this turn
    await next_turn()
    assert [type(m) for m in sent] == [ScanMessage] * 4 + [DeviceRecord] * 2
    assert counts(sent) == [("pipe", 3), ("kbd", 1)]
    pipe = next(m for m in sent if isinstance(m, DeviceRecord) and m.device_id == "pipe")
    assert pipe.counters.rejects == 1


async def test_scans_in_separate_turns_get_a_record_each() -> None:
    sent: list[Sent] = []
    pipeline = lane(sent)
    await next_turn()  # the devices' first records
    del sent[:]
    for code in (b"96385074", b"5901234123457"):
        pipeline.scan(RawScan("pipe", code))
        await next_turn()
    assert [type(m) for m in sent] == [ScanMessage, DeviceRecord] * 2
    assert counts(sent) == [("pipe", 1), ("pipe", 2)]
