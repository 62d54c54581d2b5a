"""Shared fixtures: a real mosquitto per test, an MQTT probe, and the agent as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.__main__ import load as load_simulator
from simulators.server import Running, serve

REPO = Path(__file__).resolve().parent.parent
# The test VM runs under software emulation: the agent needs ~10 s to start there, not 1.
WAIT = 120.0 if os.environ.get("LANE_AGENT_VM") == "1" else 15.0

Json = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Poll until something accepts connections on the port (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found is None:
        pytest.fail(
            "mosquitto is not installed: run 'make test' as root, "
            "or 'sudo apt-get install mosquitto'"
        )
    return found


@dataclass
class Broker:
    """A real mosquitto on a free loopback port; can be stopped and started again on that port.
    With `ws_port` it also has a websocket listener there, for the display page. With
    `nodelay`, Nagle's algorithm is off on its client sockets (`set_tcp_nodelay`; mosquitto
    leaves it on by default): a message is then not held for a client's delayed ACK (40 ms)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    ws_port: int | None = None
    nodelay: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        # Options before the first listener are global; per-listener ones follow each listener.
        websockets = (
            f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n" if self.ws_port else ""
        )
        conf.write_text(
            "allow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
            f"set_tcp_nodelay {str(self.nodelay).lower()}\n"
            f"listener {self.port} 127.0.0.1\n{websockets}"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port)
        if self.ws_port:
            wait_for_port(self.ws_port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Probe:
    """A POS-screen stand-in: subscribes to the lane's topics and sends requests."""

    def __init__(self, client: aiomqtt.Client, base: str) -> None:
        self.client = client
        self.base = base
        self.messages: list[tuple[str, bytes, bool]] = []
        self._arrived = asyncio.Condition()

    async def _collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            async with self._arrived:
                self.messages.append((str(message.topic), payload, message.retain))
                self._arrived.notify_all()

    async def wait_raw(
        self, predicate: Callable[[str, bytes], bool], within: float = WAIT, start: int = 0
    ) -> tuple[str, bytes]:
        """First message (from index `start`) whose topic and raw payload satisfy `predicate`."""
        seen = start

        def match() -> tuple[str, bytes] | None:
            nonlocal seen
            while seen < len(self.messages):
                topic, payload, _ = self.messages[seen]
                seen += 1
                if predicate(topic, payload):
                    return topic, payload
            return None

        async with asyncio.timeout(within), self._arrived:
            while (found := match()) is None:
                await self._arrived.wait()
            return found

    async def wait_for(
        self, predicate: Callable[[str, Json], bool], within: float = WAIT, start: int = 0
    ) -> tuple[str, Json]:
        """First message (from index `start`) whose topic and JSON payload satisfy `predicate`."""

        def decoded(payload: bytes) -> Json | None:
            try:
                data = json.loads(payload) if payload else {}
            except ValueError:
                return None
            return data if isinstance(data, dict) else None

        def json_predicate(topic: str, payload: bytes) -> bool:
            data = decoded(payload)
            return data is not None and predicate(topic, data)

        topic, payload = await self.wait_raw(json_predicate, within, start)
        return topic, decoded(payload) or {}

    async def topic(
        self, suffix: str, predicate: Callable[[Json], bool] = lambda _d: True, start: int = 0
    ) -> Json:
        full = f"{self.base}/{suffix}"
        _, data = await self.wait_for(lambda t, d: t == full and predicate(d), start=start)
        return data

    async def request(self, op: str, params: Json | None = None, raw: bytes | None = None) -> Json:
        """Send a request and wait for the response carrying its request_id."""
        body = dict(params or {})
        body.setdefault("request_id", str(uuid.uuid4()))
        start = len(self.messages)
        payload = raw if raw is not None else json.dumps(body).encode()
        await self.client.publish(f"{self.base}/request/{op}", payload, qos=1)
        want = body["request_id"] if raw is None else None
        _, data = await self.wait_for(
            lambda t, d: t == f"{self.base}/response/{op}" and d.get("request_id") == want,
            start=start,
        )
        return data

    async def request_v5(self, op: str, params: Json, correlation: bytes) -> tuple[Json, bytes]:
        """Use MQTT v5 Response Topic + Correlation Data, as a v5-aware POS would."""
        reply_topic = f"{self.base}/reply/{uuid.uuid4().hex}"
        await self.client.subscribe(reply_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        start = len(self.messages)
        await self.client.publish(
            f"{self.base}/request/{op}", json.dumps(params), qos=1, properties=props
        )
        _, data = await self.wait_for(lambda t, _d: t == reply_topic, start=start)
        return data, correlation

    def all_payload_text(self) -> str:
        return "\n".join(p.decode("utf-8", "replace") for _, p, _ in self.messages)


@pytest.fixture
async def probe_factory(broker: Broker) -> AsyncIterator[Callable[[str], Any]]:
    """Connect probes lazily with the test's base topic; all are closed at teardown."""
    stacks: list[tuple[aiomqtt.Client, asyncio.Task[None]]] = []

    async def connect(base: str, subscribe: str = "#") -> Probe:
        client = aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=10
        )
        await client.__aenter__()
        probe = Probe(client, base)
        await client.subscribe(f"{base}/{subscribe}" if subscribe != "#" else "#", qos=1)
        task = asyncio.create_task(probe._collect())
        stacks.append((client, task))
        return probe

    yield connect
    for client, task in stacks:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.__aexit__(None, None, None)


def write_config(
    path: Path, port: int, *, store: str = "s1", lane: str = "l1", extra: str = ""
) -> Path:
    path.write_text(
        f'[lane]\nstore = "{store}"\nlane = "{lane}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_min = 0.05\nreconnect_max = 0.5\n'
        f'[state]\ndir = "{path.parent / "state"}"\n'
        f"[providers.sandbox]\n{extra}"
    )
    return path


@dataclass
class AgentProcess:
    """The agent as a real OS process, so tests can SIGKILL it like a power cut."""

    config: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        env.update(extra_env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )

    def signal(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def agent_process(tmp_path: Path, broker: Broker) -> Iterator[AgentProcess]:
    proc = AgentProcess(write_config(tmp_path / "lane.toml", broker.port), tmp_path / "agent.log")
    yield proc
    if proc.process is not None:
        proc.signal(signal.SIGKILL)


AgentFactory = Callable[[str], AgentProcess]


@pytest.fixture
def lane_agents(tmp_path: Path, broker: Broker) -> Iterator[AgentFactory]:
    """`lane_agents(extra_toml)`: an agent (not started) whose config adds `extra_toml` after the
    sandbox table; every one is killed at teardown, started or not."""
    made: list[AgentProcess] = []

    def make(extra: str) -> AgentProcess:
        n = len(made)
        config = write_config(tmp_path / f"lane{n}.toml", broker.port, extra=extra)
        made.append(AgentProcess(config, tmp_path / f"agent{n}.log"))
        return made[-1]

    yield make
    for proc in made:
        if proc.process is not None:
            proc.signal(signal.SIGKILL)


class Simulators:
    """Provider simulators on loopback for a test: `sims.start("kseries")`, then the agent's
    `[providers.kseries] base_url = running.url`; all stop at teardown."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def start(self, name: str) -> Running:
        return self._stack.enter_context(serve(load_simulator(name)))

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def simulators() -> Iterator[Simulators]:
    sims = Simulators()
    yield sims
    sims.close()


async def sim_get(running: Running, what: str = "ledger") -> Any:
    """The simulator's ledger (or `requests`) over its control endpoint."""
    async with httpx.AsyncClient(base_url=running.url) as client:
        answer = await client.get(f"/_sim/{what}")
        answer.raise_for_status()
        return answer.json()


async def sim_faults(running: Running, *faults: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        (await client.post("/_sim/faults", json=list(faults))).raise_for_status()
