"""The documented broker set-up (docs/security/) against a real mosquitto: each lane's user may
only use its own base topic, a POS screen on the websocket listener only its lane; the agent works
end to end as a lane user under that ACL; and known secrets and codes never reach the log or
another topic over a full session.

mosquitto does not tell a client that it dropped an unauthorised publish (MQTT 3.1.1: nothing;
v5: a PUBACK reason code) nor that it withheld a message, so every check here is about what
actually arrives, never about timing: a forbidden publish is followed by a *marker* that the
observer may receive. The broker queues messages to a subscriber in the order it accepted them,
and a QoS 1 publish is accepted once its PUBACK is back, so when the marker arrives, anything the
broker let through before it has arrived too.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.kseries import API_KEY as KSERIES_API_KEY
from simulators.server import Running
from tests.conftest import AgentProcess, Probe, Simulators
from tests.integration.secure_broker import (
    OBSERVER,
    Clients,
    SecureBroker,
    base,
    lane_config,
    log_until,
    password_file,
)
from tests.integration.test_lane_agent import EXPIRED, ITEM, MONETARY
from tests.integration.test_orders import order

L1, L2 = base("l1"), base("l2")
CARD_5000 = "6006490000000001"  # kseries simulator card with $50.00
CARD_1250 = "6006490000000002"  # $12.50

Agents = Callable[[Path], AgentProcess]


def forged() -> bytes:
    return json.dumps({"forged": True, "id": uuid.uuid4().hex}).encode()


async def mark(sender: Probe, topic: str, *receivers: Probe) -> None:
    """Publish a marker on `topic` and wait until every receiver has it."""
    marker = uuid.uuid4().hex
    await sender.client.publish(topic, json.dumps({"marker": marker}), qos=1)
    for receiver in receivers:
        await receiver.wait_for(lambda _t, d: d.get("marker") == marker)


def answer_to(topic: str, request_id: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda t, d: t == topic and d.get("request_id") == request_id


def topics(probe: Probe) -> set[str]:
    return {topic for topic, _, _ in probe.messages}


def forgeries(probe: Probe) -> list[str]:
    return [topic for topic, payload, _ in probe.messages if b'"forged"' in payload]


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
async def test_anonymous_and_plain_text_clients_are_refused(
    secure_broker: SecureBroker, transport: Literal["tcp", "websockets"]
) -> None:
    with pytest.raises(aiomqtt.MqttCodeError, match=r"[Nn]ot authori[sz]ed"):
        async with secure_broker.client(None, transport=transport):
            pass
    port = secure_broker.pos_port if transport == "websockets" else secure_broker.lane_port
    plain = aiomqtt.Client("127.0.0.1", port, transport=transport, timeout=3)
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass


async def test_a_lane_cannot_publish_into_another_lanes_topics(clients: Clients) -> None:
    l2 = await clients.connect("l2", f"{L2}/#")
    l1 = await clients.connect("l1", f"{L1}/#")
    pos2 = await clients.connect("pos-l2", transport="websockets")
    # The observer does see requests on its topics: a POS screen's, for instance.
    await mark(pos2, f"{L2}/request/gift.validate", l2)

    for suffix in ("request/gift.redeem", "request/scan.inject", "event", "response/gift.redeem"):
        await l1.client.publish(f"{L2}/{suffix}", forged(), qos=1)
    await l1.client.publish(f"{L2}/state", forged(), qos=1, retain=True)
    await l1.client.publish(f"{L2}/devices/keyed", forged(), qos=1, retain=True)
    await mark(l2, f"{L2}/event", l2)
    await mark(l1, f"{L1}/event", l1)  # while its own topics work
    assert forgeries(l2) == []
    assert forgeries(l1) == []

    # Nor did a forged retained state stick: a screen subscribing now gets none.
    pos2_later = await clients.connect("pos-l2", f"{L2}/#", transport="websockets")
    await mark(l2, f"{L2}/event", pos2_later)
    assert forgeries(pos2_later) == []
    assert f"{L2}/state" not in topics(pos2_later)


async def test_a_lane_cannot_read_another_lanes_topics(clients: Clients) -> None:
    l1 = await clients.connect("l1", "#", "lane-agent/#", f"{L2}/#", f"{L1}/#")
    l2 = await clients.connect("l2", f"{L2}/#")
    pos2 = await clients.connect("pos-l2", transport="websockets")
    await l2.client.publish(f"{L2}/state", b'{"state":"online"}', qos=1, retain=True)
    await l2.client.publish(f"{L2}/event", b'{"type":"gift.validated"}', qos=1)
    await l2.client.publish(f"{L2}/response/gift.redeem", b'{"status":"ok"}', qos=1)
    await mark(pos2, f"{L2}/request/scan.inject", l2)
    await mark(l1, f"{L1}/event", l1)
    assert topics(l1) == {f"{L1}/event"}

    # Retained state is withheld too, from a subscription made after it was published (a new
    # connection of l1 takes the place of the first: the broker binds l1 to one client id).
    late = await clients.connect("l1", f"{L2}/#", f"{L1}/#")
    await mark(late, f"{L1}/event", late)
    assert topics(late) == {f"{L1}/event"}


async def test_a_lane_whose_id_begins_with_another_lanes_gets_nothing_of_it(
    clients: Clients,
) -> None:
    """User l10 against lane l1: %u must match the whole topic level, not a prefix of it."""
    l1 = await clients.connect("l1", f"{L1}/#")
    l10 = await clients.connect("l10", "#", f"{L1}/#")
    await l10.client.publish(f"{L1}/request/gift.redeem", forged(), qos=1)
    await l10.client.publish(f"{L1}/state", forged(), qos=1, retain=True)
    await l1.client.publish(f"{L1}/event", b'{"type":"gift.validated"}', qos=1)
    await mark(l1, f"{L1}/event", l1)
    await mark(l10, f"{base('l10')}/event", l10)
    assert forgeries(l1) == []
    assert topics(l10) == {f"{base('l10')}/event"}


async def test_a_pos_screen_on_websockets_sees_and_drives_only_its_lane(clients: Clients) -> None:
    l1 = await clients.connect("l1", f"{L1}/#")
    l2 = await clients.connect("l2", f"{L2}/#")
    pos1 = await clients.connect("pos-l1", "#", transport="websockets")

    # Reads its lane, not the other one.
    await l2.client.publish(f"{L2}/state", b'{"state":"online"}', qos=1, retain=True)
    await l2.client.publish(f"{L2}/event", b'{"type":"scan"}', qos=1)
    await l1.client.publish(f"{L1}/state", b'{"state":"online"}', qos=1, retain=True)
    await mark(l1, f"{L1}/event", pos1)
    assert topics(pos1) == {f"{L1}/state", f"{L1}/event"}

    # Sends its lane requests; cannot send the other lane any, nor speak for its own lane.
    await pos1.client.publish(f"{L2}/request/gift.redeem", forged(), qos=1)
    for suffix in ("event", "scan", "response/gift.redeem", "devices/keyed"):
        await pos1.client.publish(f"{L1}/{suffix}", forged(), qos=1)
    await pos1.client.publish(f"{L1}/state", forged(), qos=1, retain=True)
    await mark(pos1, f"{L1}/request/gift.validate", l1)
    await mark(l2, f"{L2}/event", l2)
    assert forgeries(l1) == forgeries(l2) == []

    # Requests are not readable by screens: keyed entry carries codes in clear. The lane got
    # the request above; its event after that reaches the screen, the request never did.
    await mark(l1, f"{L1}/event", pos1)
    assert not [t for t in topics(pos1) if "/request/" in t]
    assert forgeries(pos1) == []


async def test_the_agent_runs_as_lane_user_under_the_acl(
    tmp_path: Path, secure_broker: SecureBroker, clients: Clients, agents: Agents
) -> None:
    config = lane_config(
        tmp_path / "lane.toml",
        secure_broker,
        password_file=password_file(tmp_path, secure_broker, "l1"),
    )
    agent = agents(config)
    pos1 = await clients.connect("pos-l1", f"{L1}/#", transport="websockets")
    l2 = await clients.connect("l2", f"{L2}/#")
    agent.start()
    await pos1.topic("state", lambda d: d["state"] == "online")

    scanned = await pos1.request("scan.inject", {"data": MONETARY})
    assert scanned["status"] == "ok", scanned
    token_id = scanned["data"]["token_id"]
    await pos1.topic("event", lambda d: d["type"] == "gift.validated")
    redeemed = await pos1.request("gift.redeem", {"token_id": token_id, "amount": 100})
    assert redeemed["data"]["redemption"]["gift"]["balance"] == 4900

    # MQTT v5 Response Topic: under the lane's reply/ it arrives. Pointed at another lane's
    # topics, or at one nobody can publish to (mosquitto passes a wildcard through), the
    # request is refused on response/{op} and nothing goes there (test_hostile.py has the
    # lane's own topics).
    reply_topic = f"{L1}/reply/screen-1"
    await pos1.client.subscribe(reply_topic, qos=1)
    refused = []
    for response_topic in (f"{L2}/response/gift.validate", f"{L1}/reply/#", reply_topic):
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = response_topic.encode()
        body = {"request_id": str(uuid.uuid4()), "token_id": token_id}
        refused.append(body["request_id"])
        await pos1.client.publish(
            f"{L1}/request/gift.validate", json.dumps(body), qos=1, properties=props
        )
    _, reply = await pos1.wait_for(lambda t, _d: t == reply_topic)
    assert reply["data"]["gift"]["balance"] == 4900
    for request_id in refused[:2]:
        _, answer = await pos1.wait_for(answer_to(f"{L1}/response/gift.validate", request_id))
        assert answer["error"]["code"] == "invalid_request", answer
    await mark(l2, f"{L2}/event", l2)
    assert [t for t in topics(l2) if t != f"{L2}/event"] == []

    # Its last will is on its own topic, so the broker may publish it.
    seen = len(pos1.messages)
    agent.signal(signal.SIGKILL)
    will = await pos1.topic("state", start=seen)
    assert will["state"] == "offline" and will.get("reason") is None
    assert "u'l1'" in secure_broker.log()
    assert "Response Topic" in agent.log()
    assert "Traceback" not in agent.log()


async def test_known_secrets_and_codes_never_reach_the_log_or_another_topic(
    tmp_path: Path,
    secure_broker: SecureBroker,
    clients: Clients,
    agents: Agents,
    simulators: Simulators,
) -> None:
    """A full session at debug level: keyed and scanner gift codes (sandbox), a gift card payment
    (K-Series simulator, API key), health checks; the MQTT password and the API key are known.
    """
    card_api: Running = simulators.start("kseries")
    key = tmp_path / "kseries.key"
    key.write_text(KSERIES_API_KEY)
    fifo = tmp_path / "scan.fifo"
    config = lane_config(
        tmp_path / "lane.toml",
        secure_broker,
        password_file=password_file(tmp_path, secure_broker, "l1"),
        log_level="debug",
        extra=(
            f'[providers.kseries]\nbase_url = "{card_api.url}"\napi_key_file = "{key}"\n'
            'payment_method_code = "GIFTCARD"\ntimeout = 3\n'
            f'[devices.tech]\ntype = "fifo"\npath = "{fifo}"\n'
        ),
    )
    agent = agents(config)
    # A test-only user reads every lane's topics, everywhere the agent can publish at all under
    # the ACL (the lane's own user cannot watch: its client id is the agent's); the screen
    # drives the session.
    everything = await clients.connect(OBSERVER, "#")
    pos1 = await clients.connect("pos-l1", f"{L1}/#", transport="websockets")
    agent.start()
    await pos1.topic("state", lambda d: d["state"] == "online")

    async def ok(op: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await pos1.request(op, params)
        assert answer["status"] == "ok", answer
        data: dict[str, Any] = answer["data"]
        return data

    async def event(kind: str, token_id: str) -> dict[str, Any]:
        _, found = await pos1.wait_for(
            lambda t, d: (
                t == f"{L1}/event"
                and d.get("type") == kind
                and d["data"].get("token_id") == token_id
            )
        )
        return found

    # Gift vouchers, keyed and from a scanner.
    token = (await ok("scan.inject", {"data": MONETARY}))["token_id"]
    await event("gift.validated", token)
    redeemed = await ok("gift.redeem", {"token_id": token, "amount": 1250})
    await ok("gift.reverse", {"transaction_id": redeemed["redemption"]["transaction_id"]})
    await pos1.topic("devices/tech", lambda d: d["state"] == "connected")
    with fifo.open("w") as pipe:
        pipe.write(f"{ITEM}\n{EXPIRED}\n")
    await pos1.topic("devices/tech", lambda d: d["counters"]["scans"] == 2)

    # A gift card payment for an order.
    await ok("order.update", order("S1", 1500))
    card = (await ok("scan.inject", {"data": CARD_5000}))["token_id"]
    await event("card.balance", card)
    other = (await ok("scan.inject", {"data": CARD_1250}))["token_id"]
    await event("card.balance", other)
    paid = await ok("gift.redeem", {"token_id": card})
    assert paid["payment"]["amount_cents"] == 1500
    await ok("order.paid", {"order_id": "S1"})
    await ok("device.health", {})
    assert agent.signal(signal.SIGTERM) == 0
    await pos1.topic("state", lambda d: d["state"] == "offline")

    mqtt_password = secure_broker.passwords["l1"]
    secrets = {"MQTT password": mqtt_password, "K-Series API key": KSERIES_API_KEY}
    codes = {"voucher": MONETARY, "item voucher": ITEM, "expired voucher": EXPIRED}
    codes |= {"card": CARD_5000, "other card": CARD_1250}
    log = agent.log()
    assert " DEBUG " in log, "the agent did not log at debug level"
    for what, value in (secrets | codes).items():
        assert value not in log, f"{what} in the agent's log"
        assert value not in secure_broker.log(), f"{what} in the broker's log"
    assert everything.messages, "the observer saw nothing"
    assert {"scan", "event", "response/gift.redeem"} <= {
        t.removeprefix(f"{L1}/") for t in topics(everything)
    }
    for topic, payload, _ in everything.messages:
        text = payload.decode("utf-8", "replace")
        for what, value in secrets.items():
            assert value not in text, f"{what} on {topic}"
        for what, value in codes.items():
            # The one place a code travels in clear: the screen's own keyed-entry request.
            assert value not in text or topic == f"{L1}/request/scan.inject", f"{what} on {topic}"


async def test_a_wrong_password_is_refused_and_said_clearly(
    tmp_path: Path, secure_broker: SecureBroker, agents: Agents
) -> None:
    wrong = tmp_path / "wrong.mqtt_password"
    wrong.write_text("not-the-password\n")
    agent = agents(lane_config(tmp_path / "lane.toml", secure_broker, password_file=wrong))
    agent.start()
    log = await log_until(agent, lambda log: log.count("reconnecting in") >= 3)
    assert agent.process is not None and agent.process.poll() is None, log
    assert "Bad user name or password" in log or "Not authorized" in log, log
    assert "Traceback" not in log
    assert "not-the-password" not in log
