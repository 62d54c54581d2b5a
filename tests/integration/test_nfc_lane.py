"""An NFC tag carrying a Gift Local URL, read through nfcpy's real UDP reader driver by the agent
as a process, validated against the sandbox and published on a real mosquitto."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import AgentProcess, Broker, Probe, write_config
from tests.nfc_tag_emulator import EmulatedTag
from tests.unit.test_nfc_reader import free_udp_port

BASE = "lane-agent/s1/l1"
URI = "https://giftlocal.com/v/demo-gift-50"  # the sandbox's $50 demo gift, as on its QR


async def test_gift_url_on_a_tag_is_validated_and_removal_published(
    tmp_path: Path, broker: Broker, probe_factory: Callable[..., Any]
) -> None:
    port = free_udp_port()
    device = f'[devices.nfc]\ntype = "nfc"\npath = "udp:localhost:{port}"\ndebounce = 0\n'
    agent = AgentProcess(
        write_config(tmp_path / "lane.toml", broker.port, extra=device), tmp_path / "agent.log"
    )
    probe: Probe = await probe_factory(BASE)
    async with EmulatedTag(port, uris=[URI]) as tag:
        agent.start()
        try:
            await probe.topic("devices/nfc", lambda d: d["state"] == "connected")
            scan = await probe.topic("scan", lambda d: d["device_id"] == "nfc")
            assert (scan["kind"], scan["symbology"]) == ("gift_voucher_token", "nfc")
            assert scan["nfc"]["tag_type"] == "Type3Tag" and scan["nfc"]["uid"].endswith("3344")
            assert "demo-gift-50" not in str(scan)
            validated = await probe.topic("event", lambda d: d["type"] == "gift.validated")
            assert validated["data"]["token_id"] == scan["token_id"]
            assert validated["data"]["gift"]["balance"] == 5000
            await tag.lift()
            removed = await probe.topic("event", lambda d: d["type"] == "nfc.removed")
            assert removed["data"] == {"device_id": "nfc", "uid": scan["nfc"]["uid"]}
        finally:
            agent.signal(signal.SIGTERM)
