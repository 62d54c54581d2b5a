"""The bus's defences against one hostile message (issue 14): a topic nobody can publish to, a
retained request, a Response Topic outside `reply/`; and health answers ahead of a backlog.

A stand-in client records publishes; the bus's own queue and loops run for real.
"""

from __future__ import annotations

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.bus import (
    MAX_TOPIC_BYTES,
    Bus,
    Incoming,
    Outgoing,
    ReplyTo,
    largest_payload,
    publishable,
    reply_problem,
)
from agent.config import MqttSettings
from agent.contract import AgentState

BASE = "lane-agent/s1/l1"
STATE = AgentState(state="online", version="test")


class Recorder:
    """What `aiomqtt.Client.publish` was given; paho's ValueError for a payload it refuses."""

    def __init__(self, refuse: bytes | None = None) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.refuse = refuse

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: object,
        **_: object,  # timeout=: the publish loop bounds the wait, not this
    ) -> None:
        if payload == self.refuse:
            raise ValueError("Payload too large.")
        self.sent.append((topic, payload, retain))


def bus(**settings: object) -> Bus:
    return Bus(MqttSettings.model_validate(settings), BASE, "test", client_id="test")


async def drain(b: Bus, client: Recorder) -> None:
    """What the publish loop does while anything is queued."""
    while b.queued():
        await b._send_next(client)  # type: ignore[arg-type]


def request(
    op: str, payload: bytes, *, retain: bool = False, response_topic: str | None = None
) -> aiomqtt.Message:
    props = None
    if response_topic is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = b"c1"
    return aiomqtt.Message(f"{BASE}/request/{op}", payload, 1, retain, 1, props)


def incoming(b: Bus, message: aiomqtt.Message) -> Incoming | None:
    payload = message.payload if isinstance(message.payload, bytes) else b""
    return b._incoming(message, payload)


@given(st.text(max_size=80))
def test_a_publishable_topic_has_no_wildcard_control_character_or_surrogate(topic: str) -> None:
    clean = topic and not set(topic) & {"+", "#"} and topic.isprintable()
    if clean:
        assert publishable(topic)
    if not topic or {"+", "#"} & set(topic) or "\x00" in topic or "\x1b" in topic:
        assert not publishable(topic)


def test_a_topic_is_at_most_65535_bytes_of_utf8() -> None:
    assert publishable("a" * MAX_TOPIC_BYTES)
    assert not publishable("a" * (MAX_TOPIC_BYTES + 1))
    assert not publishable("é" * (MAX_TOPIC_BYTES // 2 + 1))  # two bytes each
    assert not publishable("lane\ud800")


async def test_an_answer_on_a_topic_too_long_is_dropped_and_counted_and_the_rest_go_out() -> None:
    """Issue 14, point 2: `response/{op}` for a request on a 65,535-byte topic was one byte too
    long; paho's ValueError made the bus reconnect in a loop and answer nothing."""
    b = bus()
    op = "x" * (MAX_TOPIC_BYTES - len(f"{BASE}/request/"))
    b.publish(f"response/{op}", STATE)
    b.publish("response/device.health", STATE)
    client = Recorder()
    await drain(b, client)
    assert [topic for topic, _, _ in client.sent] == [f"{BASE}/response/device.health"]
    assert b.unsendable == 1
    assert "1 unsendable" in b.counters()


async def test_a_message_paho_refuses_is_dropped_not_retried_on_every_reconnect() -> None:
    b = bus()
    refused = b'{"state":"refused"}'
    b._enqueue(Outgoing(f"{BASE}/event", refused, 1, False))
    b.publish("event", STATE)
    client = Recorder(refuse=refused)
    await drain(b, client)
    assert [topic for topic, _, _ in client.sent] == [f"{BASE}/event"]
    assert b.unsendable == 1 and b.queued() == 0


async def test_a_retained_request_is_refused_and_cleared_on_the_broker() -> None:
    """Issue 14, point 7: a retained request ran again on every reconnect, and a keyed code
    stayed retained in clear."""
    b = bus()
    code = b'{"request_id":"r1","data":"100000000001"}'
    got = incoming(b, request("scan.inject", code, retain=True))
    assert got is not None and got.refusal is not None and "retained" in got.refusal
    assert got.op == "scan.inject" and got.reply_to is None
    client = Recorder()
    await drain(b, client)
    assert client.sent == [(f"{BASE}/request/scan.inject", b"", True)]


def test_the_empty_message_clearing_a_retained_request_is_no_request() -> None:
    assert incoming(bus(), request("scan.inject", b"", retain=True)) is None


@pytest.mark.parametrize(
    "suffix",
    ["state", "scan", "event", "devices/keyed", "response/gift.redeem", "replyx", "reply/#"],
)
def test_a_response_topic_outside_reply_is_refused(suffix: str) -> None:
    """Issue 14, point 3: a Response Topic on the lane's own `state`, `event`... made the agent
    publish a Response object there, and the ACL let it (the agent may write its own topics)."""
    got = incoming(bus(), request("device.health", b"{}", response_topic=f"{BASE}/{suffix}"))
    assert got is not None and got.reply_to is None
    assert got.refusal is not None and "Response Topic" in got.refusal
    assert reply_problem(f"{BASE}/{suffix}", BASE) is not None


def test_a_response_topic_under_reply_is_answered_there() -> None:
    got = incoming(bus(), request("device.health", b"{}", response_topic=f"{BASE}/reply/s-2"))
    assert got == Incoming("device.health", b"{}", ReplyTo(f"{BASE}/reply/s-2", b"c1"))


async def test_an_urgent_answer_goes_out_ahead_of_a_backlog() -> None:
    b = bus()
    for _ in range(5):
        b.publish("event", STATE)
    b.publish("response/device.health", STATE, urgent=True)
    client = Recorder()
    await drain(b, client)
    assert client.sent[0][0] == f"{BASE}/response/device.health"
    assert len(client.sent) == 6


async def test_the_agent_announces_a_maximum_packet_size_by_its_payload_limit() -> None:
    """The broker then drops a 200 MB request for the agent by its length header (MQTT v5)."""
    client = bus(max_payload=4096)._make_client()
    size = getattr(client._properties, "MaximumPacketSize", None)
    assert size is not None and 4096 + MAX_TOPIC_BYTES < size < 4096 + 2 * MAX_TOPIC_BYTES


async def test_a_payload_over_what_the_broker_takes_is_dropped_and_counted() -> None:
    """The documented broker drops a message over its `message_size_limit` without a PUBACK:
    the agent sends nothing that large, as waiting for that PUBACK would cost the connection."""
    b = bus(max_payload=1024)
    b.retain(f"{BASE}/devices/big", b"x" * (largest_payload(1024) + 1))
    b.retain(f"{BASE}/devices/fits", b"x" * largest_payload(1024))
    client = Recorder()
    await drain(b, client)
    assert [topic for topic, _, _ in client.sent] == [f"{BASE}/devices/fits"]
    assert b.unsendable == 1
