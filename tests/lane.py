"""The whole lane in the test's process: the real `LaneAgent` (router, flows, order desk, outbox)
never started, its providers reaching the real simulators through `SimulatorTransport`.

No broker, process or socket: what the agent would publish is read from its bus's outgoing
queue, which only queues while the agent is not running. A flow test runs in milliseconds and
still goes through every layer a POS request does, but MQTT; the process-level seed tests in
tests/integration/ stay the outer proof.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.app import LaneAgent
from agent.config import parse_config
from agent.contract import ErrorBody, Response
from agent.errors import ErrorCode
from simulators.giftlocal import BAKERY_KEY
from simulators.kseries import API_KEY as KSERIES_KEY
from simulators.petz import DEFAULT_KEY as PETZ_KEY
from simulators.punchh import BUSINESS_KEY, LOCATION_KEY, OAUTH_CLIENT
from simulators.server import Simulator
from simulators.transport import BASE_URL, SimulatorTransport

Json = Any

# Each remote provider's table for its simulator, but the key files: (setting, key) pairs.
TABLES: dict[str, tuple[dict[str, Json], tuple[tuple[str, str], ...]]] = {
    "giftlocal": ({"timeout": 2.0}, (("api_key_file", BAKERY_KEY),)),
    "kseries": (
        {"payment_method_code": "GIFTCARD", "timeout": 2.0},
        (("api_key_file", KSERIES_KEY),),
    ),
    "petz": ({"timeout": 2.0}, (("api_key_file", PETZ_KEY),)),
    "punchh": (
        {"timeout": 2.0, "oauth_client": OAUTH_CLIENT},
        (("location_key_file", LOCATION_KEY), ("business_key_file", BUSINESS_KEY)),
    ),
}


def order(order_id: str, *lines: tuple[str, int, str | None]) -> dict[str, Json]:
    """An `order.update`'s params: (name, amount, sku) per line, no tax."""
    subtotal = sum(amount for _, amount, _ in lines)
    return {
        "order_id": order_id,
        "lines": [
            {"id": str(n), "name": name, "quantity": 1, "amount": amount, "sku": sku}
            for n, (name, amount, sku) in enumerate(lines, start=1)
        ],
        "subtotal": subtotal,
        "tax": 0,
        "total": subtotal,
        "currency": "USD",
    }


async def settle() -> None:
    """Let what a request or scan started (a flow looking a scanned code up) finish."""
    while pending := asyncio.all_tasks() - {asyncio.current_task()}:
        await asyncio.gather(*pending, return_exceptions=True)


class InProcessLane:
    """`InProcessLane(tmp_path, {"giftlocal": GiftLocalSimulator()}, flows={"gift": ...})`."""

    def __init__(
        self,
        state_dir: Path,
        simulators: Mapping[str, Simulator],
        *,
        sandbox: bool = False,
        **config: Json,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        providers: dict[str, Json] = {"sandbox": {}} if sandbox else {}
        for name in simulators:
            table, keys = TABLES[name]
            providers[name] = {"base_url": BASE_URL, **table}
            for setting, key in keys:
                path = state_dir / f"{name}-{setting}"
                path.write_text(key + "\n")
                providers[name][setting] = str(path)
        self.simulators = dict(simulators)
        self.transports = {name: SimulatorTransport(sim) for name, sim in simulators.items()}
        settings = parse_config(
            {
                "lane": {"store": "s1", "lane": "l1"},
                "providers": providers,
                "state": {"dir": str(state_dir)},
                "scans": {"rate": 0},
                **config,
            }
        )
        self.agent = LaneAgent(settings, transports=self.transports)
        for driver in self.agent.drivers:  # as `run` would, so scans are counted
            self.agent.devices.add(driver.device_id, driver.kind)
        self._seen = 0

    async def ask(self, op: str, request_id: str | None = None, **params: Json) -> Response:
        body = {"request_id": request_id or uuid.uuid4().hex, **params}
        answer = await self.agent.router.handle(op, json.dumps(body).encode())
        await settle()
        return answer

    async def ok(self, op: str, **params: Json) -> Json:
        answer = await self.ask(op, **params)
        assert answer.data is not None, answer
        return answer.data

    async def refused(self, code: ErrorCode, op: str, **params: Json) -> ErrorBody:
        answer = await self.ask(op, **params)
        assert answer.error is not None and answer.error.code is code, answer
        return answer.error

    async def scan(self, data: str, symbology: str = "keyed") -> str:
        token_id = (await self.ok("scan.inject", data=data, symbology=symbology))["token_id"]
        assert isinstance(token_id, str)
        return token_id

    def published(self) -> list[tuple[str, Json]]:
        """Every (topic suffix, payload) the agent queued for the broker, in order."""
        base = f"{self.agent.config.base_topic}/"
        return [
            (m.topic.removeprefix(base), json.loads(m.payload) if m.payload else None)
            for m in self.agent.bus.outgoing()
        ]

    def events(self, kind: str) -> list[Json]:
        return [p["data"] for t, p in self.published() if t == "event" and p["type"] == kind]

    def ledger(self, name: str) -> Json:
        return self.simulators[name].ledger()

    async def close(self) -> None:
        for provider in self.agent.providers:
            await provider.aclose()
        self.agent.orders.book.close_db()
