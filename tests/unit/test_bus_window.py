"""The bus's publisher keeps several messages in flight: each still goes out once, in queue
order, and leaves the queue only when the broker acknowledged it, even when a full queue drops
the oldest while they fly (a fake client that acknowledges when the test says so)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest
from pydantic import BaseModel

from agent.bus import IN_FLIGHT, Bus
from agent.config import MqttSettings


class Count(BaseModel):
    n: int


class HeldClient:
    """Takes publishes and holds each until `ack` (or fails them all with `drop`)."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self._acks: list[asyncio.Future[None]] = []
        self.arrived = asyncio.Event()

    async def publish(self, topic: str, payload: bytes, **_: Any) -> None:
        self.sent.append(Count.model_validate_json(payload).n)
        ack = asyncio.get_running_loop().create_future()
        self._acks.append(ack)
        self.arrived.set()
        await ack

    def in_flight(self) -> int:
        return sum(not ack.done() for ack in self._acks)

    def ack(self, count: int = 1) -> None:
        pending = [ack for ack in self._acks if not ack.done()]
        for ack in pending[:count]:
            ack.set_result(None)

    def drop(self) -> None:
        for ack in self._acks:
            if not ack.done():
                ack.set_exception(aiomqtt.MqttError("connection lost"))


def bus(queue: int = 1000) -> Bus:
    return Bus(MqttSettings(outgoing_queue=queue), "lane/s1/l1", "test", client_id="l1")


async def settle() -> None:
    """Let the publisher run until it waits for acknowledgements."""
    for _ in range(20):
        await asyncio.sleep(0)


def queued(b: Bus) -> list[int]:
    return [Count.model_validate_json(m.payload).n for m in b.outgoing()]


async def test_a_burst_flies_in_order_and_leaves_the_queue_only_when_acknowledged() -> None:
    b, client = bus(), HeldClient()
    for n in range(20):
        b.publish("event", Count(n=n))
    loop = asyncio.create_task(b._publish_loop(client))  # type: ignore[arg-type]
    await settle()
    assert client.sent == list(range(IN_FLIGHT))  # a window, not one at a time
    assert queued(b) == list(range(20))  # nothing acknowledged yet
    client.ack(3)
    await settle()
    assert queued(b) == list(range(3, 20))
    assert client.sent == list(range(IN_FLIGHT + 3))
    while client.in_flight():
        client.ack()
        await settle()
    assert client.sent == list(range(20)) and queued(b) == []
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_a_lost_connection_leaves_the_unacknowledged_queued_for_the_next() -> None:
    b, client = bus(), HeldClient()
    for n in range(12):
        b.publish("event", Count(n=n))
    loop = asyncio.create_task(b._publish_loop(client))  # type: ignore[arg-type]
    await settle()
    client.ack(2)
    await settle()
    client.drop()
    with pytest.raises(aiomqtt.MqttError):
        await loop
    assert queued(b) == list(range(2, 12))  # sent again, in order, on the next connection
    again = HeldClient()
    loop = asyncio.create_task(b._publish_loop(again))  # type: ignore[arg-type]
    await settle()
    assert again.sent == list(range(2, 2 + IN_FLIGHT))
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_a_full_queue_dropping_messages_in_flight_sends_the_rest_once_each() -> None:
    b, client = bus(queue=10), HeldClient()
    for n in range(10):
        b.publish("event", Count(n=n))
    loop = asyncio.create_task(b._publish_loop(client))  # type: ignore[arg-type]
    await settle()
    for n in range(10, 15):  # the queue is full: 0-4, all in flight, are dropped
        b.publish("event", Count(n=n))
    assert queued(b) == list(range(5, 15)) and b.dropped == 5
    while client.in_flight() or b.queued():
        client.ack()
        await settle()
    assert client.sent == list(range(15))  # each once: none of those in flight went twice
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
