"""The bus's publisher keeps several messages in flight: each still goes out once, in queue
order; one in flight has left the queue, so a full queue drops only queued ones, and a lost
connection puts the unacknowledged back at the head, in order (a fake client that acknowledges
when the test says so)."""

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


async def test_a_burst_flies_in_order_up_to_the_window_ahead_of_acknowledgements() -> None:
    b, client = bus(), HeldClient()
    for n in range(20):
        b.publish("event", Count(n=n))
    loop = asyncio.create_task(b._publish_loop(client))  # type: ignore[arg-type]
    await settle()
    assert client.sent == list(range(IN_FLIGHT))  # a window, not one at a time
    assert queued(b) == list(range(IN_FLIGHT, 20))  # in flight: out of the queue
    client.ack(3)
    await settle()
    assert client.sent == list(range(IN_FLIGHT + 3))  # each acknowledgement lets one more go
    assert queued(b) == list(range(IN_FLIGHT + 3, 20))
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


async def test_a_full_queue_drops_only_queued_messages_never_one_in_flight() -> None:
    b, client = bus(queue=10), HeldClient()
    for n in range(10):
        b.publish("event", Count(n=n))
    loop = asyncio.create_task(b._publish_loop(client))  # type: ignore[arg-type]
    await settle()
    assert client.sent == list(range(IN_FLIGHT))
    for n in range(10, 23):  # 15 queued for 10 places: the 5 oldest queued (8-12) go
        b.publish("event", Count(n=n))
    assert queued(b) == list(range(13, 23)) and b.dropped == 5
    while client.in_flight() or b.queued():
        client.ack()
        await settle()
    # Each once, in order: none of those in flight was dropped or went twice.
    assert client.sent == list(range(IN_FLIGHT)) + list(range(13, 23))
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
