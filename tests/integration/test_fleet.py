"""A store broker bridged to a central broker, from the documented files in docs/fleet/: the store
broker of docs/security/ plus store-bridge.conf, the central broker from central.conf and
central.acl, TLS from throwaway CAs made by docs/security/lane-pki.sh, and a real lane agent.

The central side sees the lane's state, scans, events and answers under the store's prefix and
drives the lane with requests; requests for another store do not reach this one, and the store's
own requests never leave it; an uplink outage loses neither the lane's events nor the central
requests, and shows on the central broker; the central ACL keeps each store to its own prefix.
As in test_security.py, "does not arrive" is shown with a marker sent after the forbidden
message: a subscriber gets messages in the order its broker accepted them, and a bridge is one
subscriber on each side, forwarding in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiomqtt
import pytest

from tests.conftest import REPO, AgentProcess, Probe, free_port
from tests.integration.secure_broker import (
    ETC,
    Clients,
    Pki,
    SecureBroker,
    base,
    lane_config,
    lane_passwords,
    password_file,
    start_mosquitto,
    substitute,
)
from tests.integration.test_lane_agent import MONETARY
from tests.integration.test_orders import order
from tests.integration.test_security import forged, forgeries, mark, topics

FLEET = REPO / "docs" / "fleet"
STORE_BRIDGE = FLEET / "store-bridge.conf"
CENTRAL_CONF = FLEET / "central.conf"
CENTRAL_ACL = FLEET / "central.acl"

STORE = "s1"  # the store of docs/security/ and of the documented bridge
SERVICE = "fleet-ops"  # the fleet services' user in central.acl
OBSERVER = "store-observer"  # test only: may read everything on the store broker
L1 = base("l1")

Agents = Callable[[Path], AgentProcess]


@dataclass
class CentralBroker:
    """mosquitto from docs/fleet/central.conf and central.acl. Its certificate and every client's
    come from the fleet CA `pki`; a client's CN is its user name: a store id, or a service."""

    workdir: Path
    pki: Pki
    store_port: int = field(default_factory=free_port)
    service_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = self.workdir / "etc-mosquitto"
        (root / "certs").mkdir(parents=True, exist_ok=True)
        (root / "ca_certificates").mkdir(exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        shutil.copy(self.pki.ca, root / "ca_certificates" / "fleet-ca.crt")
        for suffix in ("crt", "key"):
            server = self.pki.dir / f"lane-broker.{suffix}"
            shutil.copy(server, root / "certs" / f"fleet-broker.{suffix}")
        shutil.copy(CENTRAL_ACL, root / "fleet.acl")
        name = CENTRAL_CONF.name
        conf = substitute(CENTRAL_CONF.read_text(), name, re.escape(ETC), f"{root}/", count=None)
        # Debian's /etc/mosquitto/mosquitto.conf, which the test does not read, says where.
        data = self.workdir / "data"
        conf = substitute(
            conf, name, r"^persistence true$", f"persistence true\npersistence_location {data}/"
        )
        conf = substitute(conf, name, r"^listener 8883$", f"listener {self.store_port} 127.0.0.1")
        conf = substitute(conf, name, r"^listener 8884$", f"listener {self.service_port} 127.0.0.1")
        self.process = start_mosquitto(self.workdir, conf, self.store_port, self.service_port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def log(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")

    def client(
        self,
        user: str | None,
        *,
        transport: Literal["tcp", "websockets"] = "tcp",
        identifier: str | None = None,
    ) -> aiomqtt.Client:
        """`user` with its certificate: a service on the services' listener, anyone else (a
        store) on the store bridges' listener."""
        assert transport == "tcp", "the central broker has no websocket listener"
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if user is not None:
            context.load_cert_chain(*self.pki.client(user))
        return aiomqtt.Client(
            "127.0.0.1",
            self.service_port if user == SERVICE else self.store_port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=context,
            timeout=10,
        )


def store_bridge(central: CentralBroker, root: Path, uplink_port: int, store: str = STORE) -> str:
    """docs/fleet/store-bridge.conf for `store` (its id in place of s1, everywhere, as the file
    says): to the central broker through `uplink_port` on loopback, with the store's certificate
    from the fleet CA."""
    (root / "certs").mkdir(parents=True)
    (root / "ca_certificates").mkdir()
    shutil.copy(central.pki.ca, root / "ca_certificates" / "fleet-ca.crt")
    cert, key = central.pki.client(store)
    shutil.copy(cert, root / "certs" / f"fleet-{store}.crt")
    shutil.copy(key, root / "certs" / f"fleet-{store}.key")
    name = STORE_BRIDGE.name
    conf = substitute(STORE_BRIDGE.read_text(), name, re.escape(ETC), f"{root}/", count=None)
    conf = substitute(conf, name, rf"\b{STORE}\b", store, count=None)
    conf = substitute(
        conf, name, r"^address fleet\.example\.net:8883$", f"address 127.0.0.1:{uplink_port}"
    )
    # Back within a second or two of an outage, not after the documented 5 to 60 s.
    return substitute(conf, name, r"^restart_timeout 5 60$", "restart_timeout 1 2")


class Uplink:
    """The store's WAN link to the central broker: a TCP relay on loopback (TLS passes through
    it end to end) that the test cuts, resetting every connection and refusing new ones, and
    restores."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            far_reader, far_writer = await asyncio.open_connection("127.0.0.1", self._target)
            self._open |= {writer, far_writer}
            await asyncio.gather(self._pipe(reader, far_writer), self._pipe(far_reader, writer))
        except OSError:
            writer.transport.abort()
        finally:
            self._relays.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@dataclass
class Fleet:
    """Store s1's broker bridged through `uplink` to `central`; `store` and `services` log in
    to either side and are closed at teardown."""

    central: CentralBroker
    uplink: Uplink
    broker: SecureBroker
    store: Clients
    services: Clients


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralBroker]:
    broker = CentralBroker(tmp_path / "central", Pki.create(tmp_path / "fleet-pki"))
    broker.start()
    yield broker
    broker.stop()


def bridged_store(
    directory: Path,
    pki: Pki,
    central: CentralBroker,
    uplink_port: int,
    store: str = STORE,
    lanes: tuple[str, ...] = (),
) -> SecureBroker:
    """The broker of `store` (docs/security/, with users for `lanes` too and the test's
    observer), bridged as docs/fleet/ says to `central` through `uplink_port`; started."""
    passwords = lane_passwords(*lanes) | {OBSERVER: f"mqtt-pw-{uuid.uuid4().hex}"}
    broker = SecureBroker(
        directory / "store",
        pki,
        passwords,
        store=store,
        conf="\n" + store_bridge(central, directory / "store-bridge", uplink_port, store),
        acl=f"\n# Test only: sees what reaches the store broker.\nuser {OBSERVER}\ntopic read #\n",
    )
    broker.start()
    return broker


@pytest.fixture
async def fleet(tmp_path: Path, pki: Pki, central: CentralBroker) -> AsyncIterator[Fleet]:
    uplink = Uplink(central.store_port)
    await uplink.up()
    broker = bridged_store(tmp_path, pki, central, uplink.port)
    fleet = Fleet(central, uplink, broker, Clients(broker), Clients(central))
    try:
        yield fleet
    finally:
        await fleet.store.close()
        await fleet.services.close()
        broker.stop()
        await uplink.down()


async def operations(services: Clients) -> Probe:
    """The fleet service on the central broker, watching every lane and bridge."""
    return await services.connect(
        SERVICE, "lane-agent/#", "$SYS/broker/connection/+/state", base_topic=L1
    )


async def bridge_state(probe: Probe, state: bytes, start: int = 0, store: str = STORE) -> None:
    topic = f"$SYS/broker/connection/{store}/state"
    await probe.wait_raw(lambda t, p: t == topic and p == state, start=start)


async def lane_online(fleet: Fleet, tmp_path: Path, agents: Agents) -> tuple[AgentProcess, Probe]:
    """The agent of lane l1 on the store broker, once the central side sees it online."""
    ops = await operations(fleet.services)
    await bridge_state(ops, b"1")
    agent = agents(
        lane_config(
            tmp_path / "lane.toml",
            fleet.broker,
            password_file=password_file(tmp_path, fleet.broker, "l1"),
        )
    )
    agent.start()
    await ops.topic("state", lambda d: d["state"] == "online")
    return agent, ops


async def test_the_central_side_sees_and_drives_a_lane_under_its_stores_prefix(
    tmp_path: Path, fleet: Fleet, agents: Agents
) -> None:
    agent, ops = await lane_online(fleet, tmp_path, agents)

    # A request from the central side reaches the lane; its answer, scan and event come back.
    scanned = await ops.request("scan.inject", {"data": MONETARY})
    assert scanned["status"] == "ok", scanned
    token_id = scanned["data"]["token_id"]
    scan = await ops.topic("scan", lambda d: d["token_id"] == token_id)
    assert MONETARY not in json.dumps(scan) and scan["display"].endswith("0001")
    gift = await ops.topic("event", lambda d: d.get("data", {}).get("token_id") == token_id)
    assert gift["type"] == "gift.validated" and gift["data"]["gift"]["balance"] == 5000
    updated = await ops.request("order.update", order("F1", 1500))
    assert updated["status"] == "ok" and updated["data"]["order"]["total"] == 1500

    # A request for the same lane id in another store is not carried to this store: the
    # store broker has the central request sent after it, and not that one.
    observer = await fleet.store.connect(OBSERVER, "#")
    other = {"request_id": str(uuid.uuid4()), "data": MONETARY}
    await ops.client.publish(
        "lane-agent/s2/l1/request/scan.inject", json.dumps(other).encode(), qos=1
    )
    health = await ops.request("device.health", {})
    assert health["status"] == "ok", health
    await observer.wait_for(lambda t, d: t == f"{L1}/request/device.health")
    assert [t for t in topics(observer) if not t.startswith(f"{L1}/")] == []

    # The store's own requests stay in the store (keyed entry carries codes in clear); their
    # answers go out, after the request would have.
    pos = await fleet.store.connect("pos-l1", f"{L1}/#", transport="websockets")
    local_id = f"pos-{uuid.uuid4()}"
    answer = await pos.request("scan.inject", {"request_id": local_id, "data": MONETARY})
    assert answer["status"] == "ok", answer
    await ops.wait_for(
        lambda t, d: t.startswith(f"{L1}/response/") and d.get("request_id") == local_id
    )
    assert [t for t, p, _ in ops.messages if "/request/" in t and local_id.encode() in p] == []

    # Retained state crossed the bridge retained: a central subscriber arriving now gets it.
    late = await fleet.services.connect(SERVICE, f"{L1}/state", base_topic=L1)
    await late.topic("state", lambda d: d["state"] == "online")
    assert late.messages[0][2] is True, "the lane's state is not retained on the central broker"

    # The lane's last will crosses too.
    seen = len(ops.messages)
    agent.signal(signal.SIGKILL)
    await ops.topic("state", lambda d: d["state"] == "offline", start=seen)
    assert "Traceback" not in agent.log()


async def test_an_uplink_outage_loses_no_event_and_no_request_and_shows_centrally(
    tmp_path: Path, fleet: Fleet, agents: Agents
) -> None:
    _, ops = await lane_online(fleet, tmp_path, agents)
    # Once a central request is answered, the bridge's subscription on the central side exists.
    assert (await ops.request("device.health", {}))["status"] == "ok"

    seen = len(ops.messages)
    await fleet.uplink.down()
    await bridge_state(ops, b"0", start=seen)  # the bridge's last will on the central broker

    # Meanwhile the lane goes on serving its POS, and the central side sends a request.
    pos = await fleet.store.connect("pos-l1", f"{L1}/#", transport="websockets")
    scanned = await pos.request("scan.inject", {"data": MONETARY})
    token_id = scanned["data"]["token_id"]
    request_id = str(uuid.uuid4())
    await ops.client.publish(
        f"{L1}/request/order.update",
        json.dumps({"request_id": request_id, **order("F2", 700)}).encode(),
        qos=1,
    )

    seen = len(ops.messages)
    await fleet.uplink.up()
    await bridge_state(ops, b"1", start=seen)
    await ops.topic("event", lambda d: d.get("data", {}).get("token_id") == token_id)
    answer = await ops.topic("response/order.update", lambda d: d["request_id"] == request_id)
    assert answer["status"] == "ok", answer


async def test_the_central_acl_keeps_each_store_to_its_own_prefix(
    central: CentralBroker,
) -> None:
    services = Clients(central)
    try:
        ops = await services.connect(
            SERVICE, "lane-agent/#", "$SYS/broker/connection/+/state", base_topic=L1
        )
        s2 = await services.connect("s2", "lane-agent/s2/+/request/+")
        s1 = await services.connect("s1", "#", "lane-agent/#", "lane-agent/s2/+/request/+")

        # Store s1 cannot speak for store s2 (state, records, scans, events, answers, bridge
        # state), nor send requests, not even to its own lanes.
        s2_l1 = "lane-agent/s2/l1"
        for suffix in ("event", "scan", "response/gift.redeem"):
            await s1.client.publish(f"{s2_l1}/{suffix}", forged(), qos=1)
        for topic in (
            f"{s2_l1}/state",
            f"{s2_l1}/devices/keyed",
            "$SYS/broker/connection/s2/state",
        ):
            await s1.client.publish(topic, forged(), qos=1, retain=True)
        await s1.client.publish(f"{L1}/request/gift.redeem", forged(), qos=1)
        await mark(s2, f"{s2_l1}/event", ops)
        await mark(s1, f"{L1}/event", ops)
        assert forgeries(ops) == []

        # Nor read store s2's requests, which reach s2; it reads its own lanes' requests.
        await mark(ops, f"{s2_l1}/request/gift.redeem", s2)
        await mark(ops, f"{L1}/request/gift.validate", s1)
        assert topics(s1) == {f"{L1}/request/gift.validate"}

        # Nor take store s2's client id, which would push s2's bridge off: the broker gives
        # every store the client id of its certificate.
        async with central.client("s1", identifier="s2"):
            pass
        log = central.log()
        assert "u's1'" in log and not re.search(r" as s2 \([^)]*u's1'\)", log), log
    finally:
        await services.close()
