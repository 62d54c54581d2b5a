"""The agent as a real process against a real mosquitto: the MQTT contract end to end."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import AgentProcess, Broker, Probe, write_config

BASE = "lane-agent/s1/l1"
MONETARY = "100000000001"  # sandbox demo gift: 50.00 USD
ITEM = "100000000003"  # sandbox demo gift: 3 x Coffee
EXPIRED = "100000000004"

ProbeFactory = Callable[..., Any]


async def started(agent: AgentProcess, probe_factory: ProbeFactory) -> Probe:
    probe: Probe = await probe_factory(BASE)
    agent.start()
    await probe.topic("state", lambda d: d["state"] == "online")
    return probe


async def scan(probe: Probe, code: str) -> dict[str, Any]:
    answer = await probe.request("scan.inject", {"data": code})
    assert answer["status"] == "ok", answer
    data: dict[str, Any] = answer["data"]
    return data


async def validated(probe: Probe, token_id: str) -> dict[str, Any]:
    _, event = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") == "gift.validated"
            and d["data"]["token_id"] == token_id
        )
    )
    gift: dict[str, Any] = event["data"]["gift"]
    return gift


async def test_keyed_gift_code_is_validated_on_mqtt(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    scanned = await scan(probe, MONETARY)
    assert scanned["kind"] == "gift_voucher_code"
    assert scanned["valid"] is True
    assert scanned["value"] is None
    assert scanned["display"].endswith("0001") and MONETARY not in scanned["display"]
    gift = await validated(probe, scanned["token_id"])
    assert gift["type"] == "monetary"
    assert gift["balance"] == 5000
    assert gift["is_redeemable"] is True
    scan_msg = await probe.topic("scan", lambda d: d["token_id"] == scanned["token_id"])
    assert uuid.UUID(scan_msg["event_id"]) and scan_msg["ts"].endswith("Z")


async def test_expired_gift_validates_but_says_why_and_refuses_redeem(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    scanned = await scan(probe, EXPIRED)
    gift = await validated(probe, scanned["token_id"])
    assert gift["is_redeemable"] is False
    assert gift["reason"] == "expired"
    answer = await probe.request("gift.redeem", {"token_id": scanned["token_id"], "amount": 100})
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "not_redeemable"
    assert answer["error"]["details"] == {"reason": "expired"}


async def test_partial_redeem_then_reverse_restores_balance(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    token_id = (await scan(probe, MONETARY))["token_id"]
    redeemed = await probe.request("gift.redeem", {"token_id": token_id, "amount": 1250})
    assert redeemed["status"] == "ok", redeemed
    redemption = redeemed["data"]["redemption"]
    assert redemption["gift"]["balance"] == 3750
    event = await probe.topic("event", lambda d: d["type"] == "gift.redeemed")
    assert event["data"]["redemption"]["transaction_id"] == redemption["transaction_id"]

    again = await probe.request("gift.validate", {"token_id": token_id})
    assert again["data"]["gift"]["balance"] == 3750

    reversed_ = await probe.request(
        "gift.reverse", {"transaction_id": redemption["transaction_id"]}
    )
    assert reversed_["status"] == "ok", reversed_
    assert reversed_["data"]["reversal"]["gift"]["balance"] == 5000
    after = await probe.request("gift.validate", {"token_id": token_id})
    assert after["data"]["gift"]["balance"] == 5000


async def test_item_gift_redeems_by_quantity(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    token_id = (await scan(probe, ITEM))["token_id"]
    gift = await validated(probe, token_id)
    assert gift["type"] == "item" and gift["item_quantity"] == 3
    answer = await probe.request("gift.redeem", {"token_id": token_id, "quantity": 2})
    assert answer["data"]["redemption"]["gift"]["item_quantity"] == 1


async def test_same_request_id_redeems_once(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    token_id = (await scan(probe, MONETARY))["token_id"]
    params = {"request_id": "pos-7-redeem-1", "token_id": token_id, "amount": 1000}
    first = await probe.request("gift.redeem", params)
    second = await probe.request("gift.redeem", params)
    assert first["status"] == second["status"] == "ok"
    assert first["data"] == second["data"]
    balance = await probe.request("gift.validate", {"token_id": token_id})
    assert balance["data"]["gift"]["balance"] == 4000
    redeemed_events = [
        m
        for t, m, _ in probe.messages
        if t == f"{BASE}/event" and json.loads(m)["type"] == "gift.redeemed"
    ]
    assert len(redeemed_events) == 1


async def test_same_request_id_after_restart_still_redeems_once(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    token_id = (await scan(probe, MONETARY))["token_id"]
    params = {"request_id": "pos-7-redeem-2", "token_id": token_id, "amount": 700}
    first = await probe.request("gift.redeem", params)
    agent_process.signal(signal.SIGKILL)
    mark = len(probe.messages)
    agent_process.start()
    await probe.topic("state", lambda d: d["state"] == "online", start=mark)
    second = await probe.request("gift.redeem", params)
    assert second["data"] == first["data"]


async def test_malformed_requests_get_errors_and_the_agent_keeps_serving(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    not_json = await probe.request("gift.redeem", raw=b"{not json")
    assert not_json["status"] == "error" and not_json["error"]["code"] == "invalid_request"
    no_id = await probe.request("gift.redeem", raw=b'{"token_id": "x"}')
    assert no_id["error"]["code"] == "invalid_request"
    assert "request_id" in no_id["error"]["message"]
    unknown = await probe.request("coffee.brew", {"size": "large"})
    assert unknown["error"]["code"] == "unknown_op"
    assert "gift.redeem" in unknown["error"]["message"]
    both = await probe.request("gift.redeem", {"token_id": "t", "amount": 1, "quantity": 1})
    assert both["error"]["code"] == "invalid_request"
    negative = await probe.request("gift.redeem", {"token_id": "t", "amount": -5})
    assert "amount" in negative["error"]["message"]
    unknown_token = await probe.request("gift.redeem", {"token_id": "tok_nope", "amount": 5})
    assert unknown_token["error"]["code"] == "unknown_token"
    huge = await probe.request(
        "scan.inject", raw=b'{"request_id": "x", "data": "' + b"1" * 70000 + b'"}'
    )
    assert huge["error"]["code"] == "invalid_request" and "limit" in huge["error"]["message"]
    still = await scan(probe, MONETARY)
    assert still["valid"] is True
    neither = await probe.request("gift.redeem", {"token_id": still["token_id"]})
    assert neither["error"]["code"] == "invalid_request"
    assert "amount" in neither["error"]["message"]


async def test_mqtt5_response_topic_and_correlation_data(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    answer, _ = await probe.request_v5(
        "scan.inject", {"request_id": "v5-1", "data": MONETARY}, b"\x00corr-42"
    )
    assert answer["request_id"] == "v5-1" and answer["status"] == "ok"


async def test_sigkill_makes_the_broker_publish_offline_and_restart_republishes_online(
    agent_process: AgentProcess, probe_factory: ProbeFactory, broker: Broker
) -> None:
    probe = await started(agent_process, probe_factory)
    mark = len(probe.messages)
    agent_process.signal(signal.SIGKILL)
    _, offline = await probe.wait_for(lambda t, d: t == f"{BASE}/state", start=mark)
    assert offline["state"] == "offline"
    late: Probe = await probe_factory(BASE, subscribe="state")
    retained = await late.topic("state")
    assert retained["state"] == "offline"
    assert late.messages[0][2] is True  # delivered as a retained message
    agent_process.start()
    await late.topic("state", lambda d: d["state"] == "online", start=1)


async def test_sigterm_publishes_offline_with_a_reason(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    mark = len(probe.messages)
    assert agent_process.signal(signal.SIGTERM) == 0
    _, state = await probe.wait_for(lambda t, d: t == f"{BASE}/state", start=mark)
    assert state["state"] == "offline" and state["reason"] == "stopped"


async def test_broker_restart_republishes_state_and_resubscribes(
    agent_process: AgentProcess, probe_factory: ProbeFactory, broker: Broker
) -> None:
    await started(agent_process, probe_factory)
    broker.stop()
    broker.start()
    probe: Probe = await probe_factory(BASE)
    await probe.topic("state", lambda d: d["state"] == "online")
    await probe.topic("devices/keyed", lambda d: d["state"] == "connected")
    answer = await probe.request("scan.inject", {"data": MONETARY})
    assert answer["status"] == "ok"


async def test_device_records_are_retained_with_counters(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    await scan(probe, MONETARY)
    await scan(probe, "bad\x07scan")
    record = await probe.topic(
        "devices/keyed", lambda d: d["counters"]["scans"] == 2 and d["counters"]["rejects"] == 1
    )
    assert record["kind"] == "keyed" and record["state"] == "connected"


def shows(last4: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: bool(event["data"]["display"].endswith(last4))


async def test_no_clear_voucher_code_on_any_topic_or_in_the_log(
    tmp_path: Path, broker: Broker, probe_factory: ProbeFactory
) -> None:
    fifo = tmp_path / "scan.fifo"
    device = f'[devices.tech]\ntype = "fifo"\npath = "{fifo}"\n'
    config = write_config(tmp_path / "lane.toml", broker.port, extra=device)
    agent = AgentProcess(config, tmp_path / "agent.log")
    probe = await started(agent, probe_factory)
    try:
        await probe.topic("devices/tech", lambda d: d["state"] == "connected")
        codes = [MONETARY, ITEM, EXPIRED, "100000000002"]
        with fifo.open("w") as pipe:
            pipe.write("".join(f"{code}\n" for code in codes))
        await probe.topic("devices/tech", lambda d: d["counters"]["scans"] == len(codes))
        events = [
            await probe.topic("event", shows(last4)) for last4 in ("0001", "0003", "0004", "0002")
        ]
        assert [e["type"] for e in events] == ["gift.validated"] * 4
        token_id = events[0]["data"]["token_id"]
        await probe.request("gift.redeem", {"token_id": token_id, "amount": 1})
        await probe.request("device.health", {})
    finally:
        agent.signal(signal.SIGTERM)
    # The probe subscribed to '#': every message on the broker, including responses.
    traffic = probe.all_payload_text()
    log = agent.log()
    assert "gift.redeemed" in traffic and "scan on tech" in log
    for code in codes:
        assert code not in traffic
        assert code not in log


async def test_keyed_codes_appear_in_clear_only_in_the_pos_request(
    agent_process: AgentProcess, probe_factory: ProbeFactory
) -> None:
    probe = await started(agent_process, probe_factory)
    token_id = (await scan(probe, MONETARY))["token_id"]
    await validated(probe, token_id)
    await probe.request("gift.redeem", {"token_id": token_id, "amount": 1})
    agent_process.signal(signal.SIGTERM)
    clear = [topic for topic, payload, _ in probe.messages if MONETARY.encode() in payload]
    assert clear == [f"{BASE}/request/scan.inject"]
    assert MONETARY not in agent_process.log()


async def test_a_scan_flood_is_rate_limited_on_its_device_only(
    tmp_path: Path, broker: Broker, probe_factory: ProbeFactory
) -> None:
    flood_fifo, tech_fifo = tmp_path / "flood.fifo", tmp_path / "tech.fifo"
    extra = (
        "[scans]\nrate = 1\nburst = 5\n"
        f'[devices.flood]\ntype = "fifo"\npath = "{flood_fifo}"\n'
        f'[devices.tech]\ntype = "fifo"\npath = "{tech_fifo}"\n'
    )
    agent = AgentProcess(
        write_config(tmp_path / "lane.toml", broker.port, extra=extra), tmp_path / "agent.log"
    )
    probe = await started(agent, probe_factory)
    try:
        for device in ("flood", "tech"):
            await probe.topic(f"devices/{device}", lambda d: d["state"] == "connected")
        flood = 300
        with flood_fifo.open("w") as pipe:
            pipe.write("5901234123457\n" * flood)
        products = ["96385074", "5901234123457", "4006381333931"]
        with tech_fifo.open("w") as pipe:
            pipe.write("".join(f"{code}\n" for code in products))
        keyed = await scan(probe, MONETARY)
        assert keyed["valid"] is True
        tech = await probe.topic("devices/tech", lambda d: d["counters"]["scans"] == len(products))
        assert tech["counters"]["rate_limited"] == 0
        values = [
            json.loads(p)["value"]
            for t, p, _ in probe.messages
            if t == f"{BASE}/scan" and b'"tech"' in p
        ]
        assert values == products
        # Every flooded scan is accounted for: published, or counted as rate limited.
        record = await probe.topic(
            "devices/flood",
            lambda d: d["counters"]["scans"] + d["counters"]["rate_limited"] == flood,
        )
        assert record["counters"]["rate_limited"] >= flood - 20
    finally:
        agent.signal(signal.SIGTERM)
    published = [t for t, p, _ in probe.messages if t == f"{BASE}/scan" and b'"flood"' in p]
    assert len(published) == record["counters"]["scans"]
    started_lines = [line for line in agent.log().splitlines() if "sends scans faster than" in line]
    assert len(started_lines) == 1 and "device flood " in started_lines[0]
