"""`lane-agent fleet`: the operator's view of every lane from the central broker, and the admin
ops sent to them over the store bridges (docs/fleet.md).

Everything is MQTT: the lanes' retained `info` and `state` (which the bridges carry), and
`admin.*` requests answered on `response/{op}`, matched by request_id (v5 properties do not cross
an MQTT 3.1.1 bridge). The broker address and credentials are a lane config's `[mqtt]` table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
from pydantic import ValidationError

from agent.bus import tls_context
from agent.config import ConfigError, MqttSettings
from agent.secrets import read_secret

Json = Any
STATE_TOPIC = "$SYS/broker/connection/+/state"


def load_settings(path: Path) -> MqttSettings:
    """The `[mqtt]` table of `path` (a lane config's, or one with only that table)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    try:
        return MqttSettings.model_validate(data.get("mqtt", {}))
    except ValidationError as exc:
        raise ConfigError(
            [f"mqtt.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from None


@dataclass
class LaneRow:
    """One lane as `fleet ls` shows it."""

    store: str
    lane: str
    state: str
    since: str | None
    version: str | None
    config_hash: str | None
    health: str | None
    outbox_pending: int | None
    outbox_dead: int | None
    uptime_s: int | None
    bridge: str | None


class Central:
    """A connection to the central broker that keeps every message it gets."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.messages: list[tuple[str, bytes]] = []
        self.last_arrival = time.monotonic()
        self._arrived = asyncio.Condition()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, settings: MqttSettings) -> AsyncIterator[Central]:
        password = read_secret(settings.password_file, "mqtt_password")
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id or f"svc-fleet-{socket.gethostname()}-{os.getpid()}",
            username=settings.username,
            password=password.reveal() if password else None,
            protocol=aiomqtt.ProtocolVersion.V5
            if settings.protocol == "5"
            else aiomqtt.ProtocolVersion.V311,
            tls_context=tls_context(settings),
            keepalive=settings.keepalive,
            timeout=10,
            max_queued_incoming_messages=0,
        )
        async with client:
            central = cls(client, settings.prefix)
            task = asyncio.create_task(central._collect())
            try:
                yield central
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            async with self._arrived:
                self.messages.append((str(message.topic), payload))
                self.last_arrival = time.monotonic()
                self._arrived.notify_all()

    async def subscribe(self, *filters: str) -> None:
        for topic_filter in filters:
            await self.client.subscribe(topic_filter, qos=1)
        self.last_arrival = time.monotonic()

    async def quiet(self, wait: float) -> None:
        """Until no message arrived for `wait` s: the retained ones come in a burst on subscribing,
        and MQTT has no 'that was all' marker."""
        async with self._arrived:
            while (left := self.last_arrival + wait - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._arrived.wait()

    async def wait_for(
        self, predicate: Callable[[str, Json], bool], within: float, start: int = 0
    ) -> tuple[str, Json]:
        """The first JSON message from index `start` that `predicate` accepts."""
        seen = start
        async with asyncio.timeout(within), self._arrived:
            while True:
                while seen < len(self.messages):
                    topic, payload = self.messages[seen]
                    seen += 1
                    try:
                        data = json.loads(payload) if payload else None
                    except ValueError:
                        continue
                    if isinstance(data, dict) and predicate(topic, data):
                        return topic, data
                await self._arrived.wait()

    def base(self, store: str, lane: str) -> str:
        return f"{self.prefix}/{store}/{lane}"

    async def request(
        self, store: str, lane: str, op: str, params: Json, within: float = 30.0
    ) -> Json:
        """Send an admin op and wait for its answer, matched by request_id."""
        base = self.base(store, lane)
        request_id = params.setdefault("request_id", f"fleet-{uuid.uuid4().hex}")
        await self.subscribe(f"{base}/response/{op}")
        start = len(self.messages)
        await self.client.publish(f"{base}/request/{op}", json.dumps(params), qos=1)
        _, answer = await self.wait_for(
            lambda t, d: t == f"{base}/response/{op}" and d.get("request_id") == request_id,
            within,
            start,
        )
        return answer


def _split(topic: str, prefix: str) -> tuple[str, str, str] | None:
    parts = topic.removeprefix(f"{prefix}/").split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _uptime(started: object) -> int | None:
    """Seconds since the agent started, by the operator's clock (lanes keep theirs by NTP)."""
    if not isinstance(started, str):
        return None
    with contextlib.suppress(ValueError):
        return int((datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds())
    return None


def lane_rows(central: Central) -> list[LaneRow]:
    """Every lane from the retained `state` and `info` seen so far, newest wins."""
    states: dict[tuple[str, str], Json] = {}
    infos: dict[tuple[str, str], Json] = {}
    bridges: dict[str, str] = {}
    for topic, payload in central.messages:
        if topic.startswith("$SYS/broker/connection/"):
            bridges[topic.split("/")[3]] = payload.decode(errors="replace")
            continue
        where = _split(topic, central.prefix)
        if where is None or where[2] not in ("state", "info"):
            continue
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            continue
        if isinstance(data, dict):
            (states if where[2] == "state" else infos)[where[:2]] = data
    rows = []
    for key in sorted(set(states) | set(infos)):
        state, info = states.get(key, {}), infos.get(key, {})
        bridge = bridges.get(key[0])
        shown = state.get("state", "unknown")
        if shown == "online" and bridge == "0":
            shown = "unreachable"  # the store's bridge is down: its last 'online' is stale
        health = info.get("health")
        outbox = info.get("outbox") or {}
        rows.append(
            LaneRow(
                store=key[0],
                lane=key[1],
                state=shown,
                since=state.get("since"),
                version=state.get("version") or info.get("version"),
                config_hash=(info.get("config") or {}).get("hash"),
                health=None
                if health is None
                else "ok"
                if health.get("ok")
                else "; ".join(health.get("problems", [])),
                outbox_pending=outbox.get("pending"),
                outbox_dead=outbox.get("dead"),
                uptime_s=_uptime(info.get("started")),
                bridge={"1": "up", "0": "down"}.get(bridge or ""),
            )
        )
    return rows


async def list_lanes(central: Central, store: str | None, wait: float) -> list[LaneRow]:
    where = f"{central.prefix}/{store or '+'}/+"
    await central.subscribe(f"{where}/state", f"{where}/info", STATE_TOPIC)
    await central.quiet(wait)
    return [row for row in lane_rows(central) if store in (None, row.store)]


def print_rows(rows: list[LaneRow], out: TextIO, as_json: bool) -> None:
    if as_json:
        for row in rows:
            out.write(json.dumps(asdict(row)) + "\n")
        return
    header: tuple[str, ...] = ("STORE", "LANE", "STATE", "SINCE", "VERSION", "CONFIG", "OUTBOX")
    table: list[tuple[str, ...]] = [(*header, "HEALTH")] + [
        (
            r.store,
            r.lane,
            r.state,
            (r.since or "-")[:19],
            r.version or "-",
            (r.config_hash or "-")[:12],
            "-" if r.outbox_pending is None else f"{r.outbox_pending}/{r.outbox_dead}",
            r.health or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.write("  ".join([*cells, line[-1]]).rstrip() + "\n")
    out.write(f"{len(rows)} lane(s); OUTBOX is pending/dead\n")


async def apply_one(
    central: Central, store: str, lane: str, text: str, back_within: float, out: TextIO
) -> bool:
    """Apply `text` to one lane; True once it is back online and healthy with it."""
    base = central.base(store, lane)
    await central.subscribe(f"{base}/info")
    start = len(central.messages)
    began = time.monotonic()
    params: Json = {"config": text, "timeout": back_within}
    answer = await central.request(store, lane, "admin.config.apply", params)
    where = f"{store}/{lane}"
    if answer.get("status") != "ok":
        out.write(f"{where}  REFUSED  {answer['error']['message']}\n")
        return False
    data = answer["data"]
    if not data["changed"]:
        out.write(f"{where}  unchanged  config {data['config_hash'][:12]}\n")
        return True
    request_id = params["request_id"]

    def settled(topic: str, info: Json) -> bool:
        last = (info.get("config") or {}).get("last_apply") or {}
        if topic != f"{base}/info" or last.get("request_id") != request_id:
            return False
        return last.get("outcome") == "rolled_back" or bool(info["health"]["ok"])

    try:
        _, info = await central.wait_for(settled, back_within + 30, start)
    except TimeoutError:
        out.write(f"{where}  FAILED  no healthy report within {back_within + 30:g} s\n")
        return False
    last = info["config"]["last_apply"]
    if last["outcome"] == "rolled_back":
        out.write(
            f"{where}  ROLLED BACK  {last['reason']}; running {info['config']['hash'][:12]} again\n"
        )
        return False
    elapsed = time.monotonic() - began
    out.write(
        f"{where}  applied  config {data['config_hash'][:12]}, back online and healthy "
        f"in {elapsed:.1f} s\n"
    )
    return True


async def apply(
    central: Central,
    text: str,
    store: str,
    lanes: list[str] | None,
    canary: int,
    back_within: float,
    out: TextIO,
) -> int:
    """Canary lanes first, one by one, then the rest; stop at the first failure."""
    if lanes is None:
        lanes = [row.lane for row in await list_lanes(central, store, 1.0)]
    if not lanes:
        out.write(f"no lanes of store {store} seen\n")
        return 1
    for n, lane in enumerate(lanes, start=1):
        if not await apply_one(central, store, lane, text, back_within, out):
            out.write(f"stopped: {n - 1} applied, {lane} failed, {len(lanes) - n} not tried\n")
            return 1
        if n == canary and n < len(lanes):
            out.write(f"canary lanes healthy; applying to the other {len(lanes) - n}\n")
    out.write(f"done: {len(lanes)} lane(s)\n")
    return 0


async def bundle(central: Central, store: str, lane: str, target: Path, out: TextIO) -> int:
    """The lane's support bundle, reassembled from its chunks and checked."""
    request_id = f"fleet-{uuid.uuid4().hex}"
    topic = f"{central.base(store, lane)}/admin/bundle/{request_id}"
    await central.subscribe(topic)
    start = len(central.messages)
    answer = await central.request(
        store, lane, "admin.diag.bundle", {"request_id": request_id}, within=120
    )
    if answer.get("status") != "ok":
        out.write(f"{store}/{lane}: {answer['error']['message']}\n")
        return 1
    data = answer["data"]
    pieces: dict[int, bytes] = {}
    while len(pieces) < data["chunks"]:
        _, chunk = await central.wait_for(
            lambda t, d: t == topic and d.get("seq") not in pieces, 60, start
        )
        pieces[chunk["seq"]] = base64.b64decode(chunk["data"])
    archive = b"".join(pieces[n] for n in range(data["chunks"]))
    if hashlib.sha256(archive).hexdigest() != data["sha256"]:
        out.write(f"{store}/{lane}: the bundle arrived damaged (checksum); ask again\n")
        return 1
    target = await asyncio.to_thread(_save, target, f"{store}-{lane}-{data['name']}", archive)
    out.write(f"wrote {target} ({len(archive)} bytes, {data['chunks']} chunks)\n")
    return 0


def _save(target: Path, name: str, data: bytes) -> Path:
    if target.is_dir():
        target = target / name
    target.write_bytes(data)
    return target


async def restart(central: Central, store: str, lane: str, out: TextIO) -> int:
    base = central.base(store, lane)
    await central.subscribe(f"{base}/state")
    await central.quiet(0.5)
    _, before = await central.wait_for(lambda t, _d: t == f"{base}/state", 5)
    start = len(central.messages)
    answer = await central.request(store, lane, "admin.restart", {"reason": "lane-agent fleet"})
    if answer.get("status") != "ok":
        out.write(f"{store}/{lane}: {answer['error']['message']}\n")
        return 1
    out.write(f"{store}/{lane}: restarting\n")
    await central.wait_for(
        lambda t, d: (
            t == f"{base}/state"
            and d.get("state") == "online"
            and d.get("since") != before.get("since")
        ),
        120,
        start,
    )
    out.write(f"{store}/{lane}: online again\n")
    return 0


async def log_level(
    central: Central, store: str, lane: str, level: str, minutes: int, out: TextIO
) -> int:
    params: Json = {"level": level, "minutes": minutes}
    answer = await central.request(store, lane, "admin.log_level", params)
    if answer.get("status") != "ok":
        out.write(f"{store}/{lane}: {answer['error']['message']}\n")
        return 1
    out.write(f"{store}/{lane}: log level {level} until {answer['data']['until']}\n")
    return 0
