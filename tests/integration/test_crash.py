"""Never lose, never double (issue 5): a POS drives 200+ scripted orders of every seed workflow
over MQTT against ONE agent that has all four real providers on their loopback simulators, while
the agent is SIGKILLed and restarted at random moments, the broker is restarted and the
providers fail for a while. Afterwards the simulators' ledgers (and the agent's outbox) must show
every money movement exactly once and every paid order's commits arrived.

Some paid orders are refunded afterwards (`order.refund`), as a customer coming back does: the
whole order, or one tender named by its transaction id (a card payment, a voucher). The ledgers
must then show exactly that money back, once, and nothing else given back; what a provider
cannot give back (PETZ coupons, a Punchh redemption after its check-in) must be dead-lettered
for a person, saying so.

The POS behaves as a real one does: each step has a stable request_id and is sent again, with
the same id, until it is answered (after a lost answer, an agent restart, a broker restart). A
token a restart made unknown (`unknown_token`) is scanned again and the step sent under a new
id; so is a step answered `provider_unavailable` (nothing was done). A Gift Local redeem
answered `unknown_outcome` is left to the cashier and never sent again: that redemption may
exist once or not at all, never twice.

The agent is killed at more than 200 moments a run, each time while it is up: a short random
time after a request is first sent (more often for closes and refunds, whose provider calls run
before the answer), right after a close or refund is answered (its work left to the
background), and right after the agent came back (mid-recovery). The next agent process is
started ahead of each kill with its modules imported, waiting: released, it runs `lane-agent
run` from the state on disk like any start. That skips only the imports, which would make each
restart about a second instead of a third (see `Restarts`). The broker, the agent and the POS
send without Nagle's algorithm, so a request takes milliseconds, not 90.

The script (orders, amounts, voids, refunds, when kills and faults are armed) comes from a
seeded `random.Random`; the seed is printed, and `LANE_CRASH_SEED=<n>` replays it (a kill's
exact moment still depends on timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from agent.bus import NO_DELAY
from agent.providers.punchh import numeric_id
from simulators import giftlocal, kseries, petz, punchh
from simulators.server import Running
from tests.conftest import (
    REPO,
    WAIT,
    AgentFactory,
    AgentProcess,
    Broker,
    Probe,
    Simulators,
    sim_faults,
    sim_get,
)
from tests.integration.test_lane_agent import BASE, ProbeFactory, started

Json = dict[str, Any]

ORDERS = 200
KINDS = ("card", "gift", "petz", "punchh")
VOID_SHARE = 0.2
REFUND_SHARE = 0.15  # of the paid orders, refunded later; half of them by one named tender
REFUND_LATER = 4  # a refund comes after at most this many further orders
KILL_CHANCE = 0.16  # per request, when it is first sent
KILL_CLOSING = 0.5  # more for order.paid, order.void and order.refund: their provider calls
KILL_CLOSED = 0.12  # right after a close or refund is answered: its work left to the worker
KILL_BACK = 0.1  # right after the agent is back online: its recovery under way
KILLS = 230  # the kills a run aims at: the chances above rise while it is behind...
MIN_KILLS = 200  # ...it must kill at least this often...
MAX_KILLS = 300  # ...and at most this often, to bound its time
KILL_DELAY = 0.06  # a kill lands this many seconds at most after what armed it
CLOSING = ("order.paid", "order.void", "order.refund")
BROKER_RESTARTS_AT = (60, 150)  # order numbers during which the broker is restarted
OUTAGE_AT = 100  # providers answer 503 (and a few never answer) from this order's close on
LOSSY_AT = 130  # answers lost after the change was applied, from this order on
RESEND = 4.0  # seconds the POS waits for an answer before sending the request again
PATIENCE = 90.0  # seconds one request may take, resends included
ATTEMPTS = 25  # a step tried under new request ids (new token, provider back) at most this often
DRAIN = 90.0  # seconds the outbox may take to finish after the last order

KIBBLE, OTHER = "012345678905", "041000000638"
GIFT_VALUE = CARD_BALANCE = 5000


def card_number(n: int, k: int) -> str:
    return f"600649{n:06d}{k:04d}"  # the lane's custom rule routes 600649… to the card flow


def gift_code(n: int) -> str:
    return f"3{n:011d}"


def phone(n: int) -> str:
    return f"555{3_000_000 + n:07d}"


def guest_id(n: int) -> int:
    return 5000 + n


def reward_id(n: int) -> str:
    return str(90_000 + n)


def guest_identifier(n: int) -> str:
    """Guests are identified by e-mail, loyalty card or app QR in turn (a phone goes to PETZ)."""
    return (f"guest{n}@crash.example", f"7{n:015d}", f"PCRASH{n:05d}")[n % 3]


# -- the POS ----------------------------------------------------------------------------------


class Pos:
    """One POS screen: keeps its MQTT connection (reconnecting after a broker restart) and sends
    each request again under the same request_id until an answer carrying it arrives."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._client: aiomqtt.Client | None = None
        self._changed = asyncio.Condition()
        self.answers: dict[str, Json] = {}
        self.online = 0  # `online` states seen: each restart (and reconnect) of the agent
        self.sent = self.resent = self.reconnects = 0
        self.sends: Counter[str] = Counter()  # by request_id
        self.online_at: list[float] = []  # monotonic times `online` was seen
        self.on_first_send: Callable[[str], None] = lambda op: None
        self.on_answer: Callable[[str], None] = lambda op: None
        self.on_online: Callable[[], None] = lambda: None

    async def run(self) -> None:
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self._port,
                    identifier=f"crash-pos-{uuid.uuid4().hex[:8]}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=5,
                    socket_options=NO_DELAY,
                ) as client:
                    await client.subscribe(f"{BASE}/response/+", qos=1)
                    await client.subscribe(f"{BASE}/state", qos=1)
                    self._client = client
                    await self._notify()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self._take(str(message.topic), payload)
                        await self._notify()
            self._client = None
            await self._notify()
            self.reconnects += 1
            await asyncio.sleep(0.05)

    def _take(self, topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if topic == f"{BASE}/state" and data.get("state") == "online":
            self.online += 1
            self.online_at.append(time.monotonic())
            self.on_online()
        elif topic.startswith(f"{BASE}/response/") and data.get("request_id"):
            self.answers.setdefault(data["request_id"], data)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(condition)

    def _changed_since(self, request_id: str, online: int, client: aiomqtt.Client) -> bool:
        """Answered, or worth sending again: the agent (re)connected, or the POS did."""
        return request_id in self.answers or self.online != online or self._client is not client

    async def request(self, op: str, request_id: str, params: Json) -> Json:
        payload = json.dumps({"request_id": request_id, **params})
        first = True
        async with asyncio.timeout(PATIENCE):
            while request_id not in self.answers:
                await self.wait_until(lambda: self._client is not None)
                client, online = self._client, self.online
                assert client is not None
                try:
                    await client.publish(f"{BASE}/request/{op}", payload, qos=1)
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.05)
                    continue
                self.sends[request_id] += 1
                if first:
                    self.sent += 1
                    self.on_first_send(op)
                    first = False
                else:
                    self.resent += 1
                changed = functools.partial(self._changed_since, request_id, online, client)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESEND):
                        await self.wait_until(changed)
        self.on_answer(op)
        return self.answers[request_id]


def code(answer: Json) -> str | None:
    return None if answer["status"] == "ok" else str(answer["error"]["code"])


def ok(answer: Json) -> Json:
    assert answer["status"] == "ok", answer
    data: Json = answer["data"]
    return data


# -- the chaos --------------------------------------------------------------------------------


# What a spare agent process runs: the imports `lane-agent run` makes (the providers' modules
# included), then nothing until a line comes on stdin; end of file (the test is gone) ends it.
SPARE = """
import sys
import agent.app, agent.cli, agent.logs, agent.systemd
import agent.flows.coupons, agent.flows.loyalty
import agent.providers.giftlocal, agent.providers.kseries, agent.providers.petz
import agent.providers.punchh
import anyio._backends._asyncio, certifi, h11, httpcore
if sys.stdin.readline():
    from agent.cli import main
    sys.exit(main(sys.argv[1:]))
"""


class Restarts:
    """Starts the agent again after each kill, from a spare process made ahead.

    A cold `python -m agent run` takes about a second on the 2-core CI machine before the agent
    is online again, more than half of it importing modules; at 200+ kills that alone would be
    most of the run. A spare has imported them and waits; released, it runs `lane-agent run` as
    any start does: config, the state on disk, the outbox's recovery, the broker. Two spares are
    kept, each made once the agent is back (made at the kill, its imports would slow the
    agent's own start on 2 cores), so the one released has had time to finish its imports;
    with none alive the agent starts cold, as before."""

    SPARES = 2

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.spares: deque[subprocess.Popen[bytes]] = deque()
        self.warm = self.cold = 0

    def start(self) -> None:
        while self.spares and self.spares[0].poll() is not None:
            self.spares.popleft()
        if not self.spares:
            self.agent.start()
            self.cold += 1
            return
        spare = self.spares.popleft()
        assert spare.stdin is not None
        spare.stdin.write(b"run\n")
        spare.stdin.close()
        self.agent.process = spare
        self.warm += 1

    def on_online(self) -> None:
        while len(self.spares) < self.SPARES:
            self.spares.append(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)  # as AgentProcess.start
        with self.agent.log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", SPARE, "run", "--config", str(self.agent.config)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )

    def close(self) -> None:
        for spare in self.spares:
            spare.kill()
            spare.wait(timeout=15)
        self.spares.clear()


@dataclass
class Chaos:
    """Kills the agent (and starts it again) a random moment after a random request was sent,
    after a close or refund was answered, or after the agent came back, at a pace of about
    KILLS a run; and restarts the broker when asked to, also a random moment after a request.

    Only an agent that is up (online since it was last started) is killed: a kill armed while
    it is down, or landing after another kill, would only cut a start-up short and is dropped,
    so that every kill counted hit an agent at work."""

    agent: AgentProcess
    restarts: Restarts
    broker: Broker
    rng: random.Random
    kills: int = 0
    broker_restarts: int = 0
    broker_due: bool = False
    quiet: bool = False  # the script is done: no more kills
    up: bool = False  # the agent came online since it was last started
    done: float = 0.0  # the share of the script's orders done
    killed_at: list[float] = field(default_factory=list)
    points: Counter[str] = field(default_factory=Counter)  # kills, by the moment armed
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def pace(self) -> float:
        """How much likelier a kill is now: the run keeps to about KILLS kills over its orders,
        however many a busy machine's timing drops (a kill only lands on an agent that is up)."""
        behind = KILLS * self.done - self.kills
        return min(3.0, max(0.5, 1.0 + behind / 20))

    def on_request(self, op: str) -> None:
        boost = self.pace()
        if self.broker_due:
            self.broker_due = False
            self._later(self.rng.uniform(0, KILL_DELAY), self._restart_broker)
        elif self.rng.random() < KILL_CHANCE * boost:
            self._arm("mid-request", KILL_DELAY)
        elif op in CLOSING and self.rng.random() < KILL_CLOSING * boost:
            self._arm(f"mid-{op.removeprefix('order.')}", KILL_DELAY)

    def on_answer(self, op: str) -> None:
        if op in CLOSING and self.rng.random() < KILL_CLOSED:
            self._arm(f"after {op.removeprefix('order.')}", KILL_DELAY)

    def on_online(self) -> None:
        self.up = True
        self.restarts.on_online()
        if self.rng.random() < KILL_BACK:
            self._arm("back online", 2 * KILL_DELAY)

    def _arm(self, moment: str, within: float) -> None:
        if self.kills < MAX_KILLS and self.up and not self.quiet:
            self._later(self.rng.uniform(0, within), functools.partial(self._kill, moment))

    def _later(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _kill(self, moment: str) -> None:
        if not self.up or self.kills >= MAX_KILLS:  # another kill came first: not back yet
            return
        self.up = False
        self.agent.signal(signal.SIGKILL)
        self.kills += 1
        self.points[moment] += 1
        self.killed_at.append(time.monotonic())
        self.restarts.start()

    async def _restart_broker(self) -> None:
        await asyncio.to_thread(self.broker.stop)
        await asyncio.to_thread(self.broker.start)
        self.broker_restarts += 1

    async def settle(self) -> None:
        self.quiet = True
        await asyncio.gather(*self.tasks)

    def downtimes(self, online_at: list[float]) -> list[float]:
        """Seconds from each kill to the agent's next `online`."""
        back = [next((t for t in online_at if t > k), None) for k in self.killed_at]
        return sorted(b - k for k, b in zip(self.killed_at, back, strict=True) if b is not None)


# -- the script -------------------------------------------------------------------------------


@dataclass
class Record:
    """One order as the POS lived it: what it was told, which the ledgers must bear out."""

    n: int
    kind: str
    void: bool
    order_id: str
    total: int = 0  # card and gift orders
    payments: dict[int, str] = field(default_factory=dict)  # card: index → transaction id
    gift_amount: int = 0
    gift_told: str | None = None  # "ok", "unknown_outcome" or the final error code
    gift_transaction: str | None = None
    authorized: bool = False  # PETZ coupons authorized and applied
    granted: bool = False  # Punchh discounts checked and applied
    kills_at_lookup: int = 0  # agent kills before the Punchh guest was last identified
    kills_at_checkin: int = 0  # ...and once the closing's work was no longer queued
    closed: str | None = None
    refund: str | None = None  # paid orders refunded later: "whole" or "named" (one tender)
    refund_after: int = 0  # ...once this order is closed
    refund_named: list[str] = field(default_factory=list)  # the transaction ids it named
    refunded: str | None = None  # the order's status the refund answered

    def given_back(self, transaction_id: str | None) -> bool:
        """Whether the POS asked for this tender's money back (a void or a refund)."""
        if transaction_id is None or self.closed is None:
            return False
        if self.closed == "void":
            return True
        return self.refund == "whole" or transaction_id in self.refund_named


def lines(*items: tuple[str, int, str | None]) -> list[Json]:
    return [
        {"id": line_id, "name": f"Item {line_id}", "quantity": 1, "amount": amount, "sku": sku}
        for line_id, amount, sku in items
    ]


def order_update(order_id: str, items: list[Json], tax: int = 0) -> Json:
    subtotal = sum(int(line["amount"]) for line in items)
    return {
        "order_id": order_id,
        "lines": items,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "currency": "USD",
    }


class Lane:
    """The POS's side of the script: one order per workflow, retried as a real POS would."""

    def __init__(self, pos: Pos, chaos: Chaos, rng: random.Random) -> None:
        self.pos = pos
        self.chaos = chaos
        self.rng = rng
        self.rescans = 0
        self.unavailable = 0
        self.refused = 0
        self.kills_at_scan = 0  # agent kills before the last scan whose token was used
        self.refunds_found_started = 0  # named refunds answered already_reversed when resent
        self.before_close: Callable[[], Awaitable[None]] | None = None

    async def retried(self, request_id: str, op: str, params: Json) -> Json:
        """`op` until the answer is not `provider_unavailable` (nothing was done, so a new
        request_id is safe); `unknown_token` is the caller's to handle."""
        for attempt in range(ATTEMPTS):
            answer = await self.pos.request(op, f"{request_id}:{attempt}", params)
            if code(answer) != "provider_unavailable":
                return answer
            self.unavailable += 1
            await asyncio.sleep(0.3)
        raise AssertionError(f"{request_id}: provider unavailable {ATTEMPTS} times: {answer}")

    async def with_token(self, request_id: str, data: str, op: str, params: Json) -> Json:
        """Scan `data`, then `op` with its token; scanned again when a restart lost the token."""
        for attempt in range(ATTEMPTS):
            rid = f"{request_id}:t{attempt}"
            self.kills_at_scan = self.chaos.kills
            scanned = ok(await self.pos.request("scan.inject", f"{rid}:scan", {"data": data}))
            answer = await self.retried(rid, op, {**params, "token_id": scanned["token_id"]})
            if code(answer) != "unknown_token":
                return answer
            self.rescans += 1
        raise AssertionError(f"{request_id}: token unknown {ATTEMPTS} times")

    async def run(self, rec: Record) -> None:
        oid = rec.order_id
        await {"card": self.card, "gift": self.gift, "petz": self.petz, "punchh": self.punchh}[
            rec.kind
        ](rec)
        if self.before_close is not None and rec.kind == "punchh" and not rec.void:
            await self.before_close()  # so that the outage meets this order's commit
            self.before_close = None
        op = "order.void" if rec.void else "order.paid"
        closed = ok(await self.pos.request(op, f"{oid}:close", {"order_id": oid}))
        rec.closed = closed["order"]["status"]
        # Work that failed for now is retried in the background; asked again, the agent tries
        # it at once and says what is still queued.
        for again in range(ATTEMPTS):
            if not closed["queued"]:
                break
            await asyncio.sleep(1.0)
            closed = ok(await self.pos.request(op, f"{oid}:close:{again}", {"order_id": oid}))
        rec.kills_at_checkin = self.chaos.kills

    async def refund(self, rec: Record) -> None:
        """The customer comes back: the whole order, or one tender of it named by its
        transaction id (a card payment, the voucher), is given back."""
        oid = rec.order_id
        params: Json = {"order_id": oid}
        named = [*rec.payments.values()] or (
            [rec.gift_transaction] if rec.gift_transaction is not None else []
        )
        if rec.refund == "named" and named:
            rec.refund_named = [self.rng.choice(named)]
            params["transaction_ids"] = rec.refund_named
        else:
            rec.refund = "whole"
        request_id = f"{oid}:refund"
        answer = await self.pos.request("order.refund", request_id, params)
        if rec.refund == "named" and code(answer) == "already_reversed":
            # The first attempt marked the tender and was killed before its answer was kept;
            # the same request again finds the tender being refunded (it is this request's
            # doing: the POS never sent another). The outbox gives it back; the judge checks.
            assert self.pos.sends[request_id] > 1, answer
            self.refunds_found_started += 1
            rec.refunded = "paid"
            return
        refunded = ok(answer)
        rec.refunded = refunded["order"]["status"]
        # As after a close: asked again, the agent tries what is queued at once. Only a whole
        # refund can be asked again (a named tender, once being refunded, is refused).
        for again in range(ATTEMPTS):
            if not refunded["queued"] or rec.refund != "whole":
                break
            await asyncio.sleep(1.0)
            refunded = ok(await self.pos.request("order.refund", f"{request_id}:{again}", params))

    async def card(self, rec: Record) -> None:
        """Seed 000: pay the order with one gift card, or two (the first pays part)."""
        oid = rec.order_id
        rec.total = self.rng.randrange(1000, 4500)
        ok(await self.pos.request("order.update", f"{oid}:update", self.update(rec)))
        first = self.rng.randrange(300, rec.total - 300)
        amounts = [rec.total] if self.rng.random() < 0.5 else [first, rec.total - first]
        for k, amount in enumerate(amounts):
            answer = await self.with_token(
                f"{oid}:pay{k}", card_number(rec.n, k), "gift.redeem", {"amount": amount}
            )
            rec.payments[k] = ok(answer)["card"]["transaction_id"]

    async def gift(self, rec: Record) -> None:
        """Seed 003: redeem part of a Gift Local gift; a voided order gives it back first."""
        oid = rec.order_id
        rec.gift_amount = self.rng.randrange(500, 3000)
        rec.total = rec.gift_amount + self.rng.randrange(0, 2000)
        ok(await self.pos.request("order.update", f"{oid}:update", self.update(rec)))
        answer = await self.with_token(
            f"{oid}:redeem", gift_code(rec.n), "gift.redeem", {"amount": rec.gift_amount}
        )
        rec.gift_told = code(answer) or "ok"
        if rec.gift_told != "ok":
            assert rec.gift_told == "unknown_outcome", answer
            return
        rec.gift_transaction = ok(answer)["redemption"]["transaction_id"]

    async def petz(self, rec: Record) -> None:
        """Seed 001: the customer by phone, coupons authorized, applied, captured once paid."""
        oid = rec.order_id
        items = [("1", 1299, KIBBLE), ("2", 500, OTHER)]
        ok(
            await self.pos.request(
                "order.update", f"{oid}:update", order_update(oid, lines(*items))
            )
        )
        customer = await self.with_token(f"{oid}:customer", phone(rec.n), "coupon.customer", {})
        ok(customer)
        answer = await self.retried(f"{oid}:authorize", "coupon.authorize", {"order_id": oid})
        authorization = ok(answer)["authorization"]
        off = {line: d["amount"] for d in authorization["discounts"] for line in d["line_ids"]}
        discounted = [(i, amount - off.get(i, 0), sku) for i, amount, sku in items]
        update = order_update(oid, lines(*discounted))
        ok(await self.pos.request("order.update", f"{oid}:discounted", update))
        rec.authorized = authorization["total_discount"] > 0

    async def punchh(self, rec: Record) -> None:
        """Seed 002: identify the guest, check a reward against the order, apply it, pay."""
        oid = rec.order_id
        meal: list[tuple[str, int, str | None]] = [("1", 1000, None), ("2", 500, None)]
        ok(await self.pos.request("order.update", f"{oid}:update", self.meal(oid, meal, [])))
        found = await self.with_token(
            f"{oid}:lookup", guest_identifier(rec.n), "loyalty.lookup", {}
        )
        ok(found)
        rec.kills_at_lookup = self.kills_at_scan
        selection = [{"discount_type": "reward", "discount_id": reward_id(rec.n)}]
        checked = await self.retried(f"{oid}:select", "loyalty.select", {"selections": selection})
        granted = [] if code(checked) else ok(checked)["lines"]
        rec.granted = bool(granted)
        self.refused += bool(code(checked))  # the POS then sells without the discount
        update = self.meal(oid, meal, granted)
        ok(await self.pos.request("order.update", f"{oid}:discounted", update))

    def update(self, rec: Record) -> Json:
        return order_update(rec.order_id, lines(("1", rec.total, None)))

    @staticmethod
    def meal(oid: str, meal: Sequence[tuple[str, int, str | None]], granted: list[Json]) -> Json:
        discounts = [(d["line_id"], d["amount"], None) for d in granted]
        return order_update(oid, lines(*meal, *discounts), tax=80)


# -- simulators and the lane's config ----------------------------------------------------------


@dataclass
class Apis:
    card: Running
    gift: Running
    petz: Running
    punchh: Running


async def seed(apis: Apis, records: list[Record]) -> None:
    def of(kind: str) -> list[int]:
        return [r.n for r in records if r.kind == kind]

    seeds = [
        (
            apis.card,
            {
                "cards": [
                    {"number": card_number(n, k), "balance": CARD_BALANCE}
                    for n in of("card")
                    for k in (0, 1)
                ]
            },
        ),
        (
            apis.gift,
            {
                "accounts": giftlocal.DEFAULT_SEED["accounts"],
                "gifts": [
                    {
                        "account": "bakery",
                        "code": gift_code(n),
                        "type": "monetary",
                        "currency": "USD",
                        "value": GIFT_VALUE,
                    }
                    for n in of("gift")
                ],
            },
        ),
        (
            apis.petz,
            {
                "consumers": [
                    {
                        "consumer_id": f"c_{n}",
                        "phone": phone(n),
                        "coupons": [
                            {
                                "coupon_id": f"cpn_{n}",
                                "title": "$2.00 off Acme Kibble",
                                "upcs": [KIBBLE],
                                "amount_off": "2.00",
                            }
                        ],
                    }
                    for n in of("petz")
                ]
            },
        ),
        (
            apis.punchh,
            {
                "guests": [
                    {
                        "id": guest_id(n),
                        "first_name": f"Guest{n}",
                        "email": f"guest{n}@crash.example",
                        "card_number": f"7{n:015d}",
                        "user_as_qrcode": f"PCRASH{n:05d}",
                        "points_balance": 10,
                        "rewards": [
                            {"id": int(reward_id(n)), "name": "Coffee", "discount_amount": "3.50"}
                        ],
                    }
                    for n in of("punchh")
                ]
            },
        ),
    ]
    for api, body in seeds:
        async with httpx.AsyncClient(base_url=api.url) as client:
            (await client.post("/_sim/seed", json=body)).raise_for_status()


def lane_toml(tmp_path: Path, apis: Apis) -> str:
    keys = {
        "kseries.key": kseries.API_KEY,
        "giftlocal.key": giftlocal.BAKERY_KEY,
        "petz.key": petz.DEFAULT_KEY,
        "location.key": punchh.LOCATION_KEY,
        "business.key": punchh.BUSINESS_KEY,
    }
    for name, key in keys.items():
        (tmp_path / name).write_text(key)
    return f"""
[providers.kseries]
base_url = "{apis.card.url}"
api_key_file = "{tmp_path / "kseries.key"}"
payment_method_code = "GIFTCARD"
timeout = 3
[providers.giftlocal]
base_url = "{apis.gift.url}"
api_key_file = "{tmp_path / "giftlocal.key"}"
timeout = 3
[providers.petz]
base_url = "{apis.petz.url}"
api_key_file = "{tmp_path / "petz.key"}"
timeout = 3
[providers.punchh]
base_url = "{apis.punchh.url}"
location_key_file = "{tmp_path / "location.key"}"
business_key_file = "{tmp_path / "business.key"}"
timeout = 3
[flows]
gift = "giftlocal"
[flows.routes]
gift_card = "card"
[[normaliser.custom]]
name = "kseries_card"
kind = "gift_card"
pattern = "600649[0-9]{{10}}"
[scans]
rate = 0
"""


CARD_REVERSAL = "/v1/redemptions/[^/]+/reversal"


async def arm_outage(apis: Apis) -> None:
    """Every provider refuses for a while (503: nothing done), and a few calls never answer;
    reversals too, which the voids and refunds after it meet."""
    unavailable = {"kind": "error", "status": 503}
    await sim_faults(
        apis.card,
        {"path": "/v1/redemptions", "method": "POST", **unavailable},
        {"path": CARD_REVERSAL, **unavailable, "count": 2},
    )
    await sim_faults(
        apis.gift,
        {"path": giftlocal.REDEEM, **unavailable, "count": 2},
        {"path": giftlocal.REVERSE, **unavailable, "count": 2},
    )
    await sim_faults(
        apis.petz,
        {"path": "/posface/auth/capture/", **unavailable, "count": 3},
        {"path": "/posface/auth/create/", **unavailable},
        {"path": "/posface/auth/capture/", "kind": "timeout", "delay": 5},
    )
    await sim_faults(
        apis.punchh,
        {"path": "/api/pos/batch_redemptions", **unavailable, "count": 3},
        {"path": "/api/pos/checkins", **unavailable, "count": 2},
        {"path": "/receipt_details", **unavailable, "count": 2},
        {"path": "/api/pos/checkins", "kind": "timeout", "delay": 5},
        {"path": "/api/pos/batch_redemptions/.+", "method": "DELETE", **unavailable},
    )


async def arm_lost_answers(apis: Apis) -> None:
    """Changes applied whose answers never arrive (reversals too: a void's or a refund's)."""
    lost = {"kind": "drop_after_apply"}
    await sim_faults(
        apis.card,
        {"path": "/v1/redemptions", "method": "POST", **lost},
        {"path": CARD_REVERSAL, **lost, "count": 2},
    )
    await sim_faults(
        apis.gift, {"path": giftlocal.REDEEM, **lost}, {"path": giftlocal.REVERSE, **lost}
    )
    await sim_faults(apis.petz, {"path": "/posface/auth/capture/", **lost})
    await sim_faults(apis.punchh, {"path": "/api/pos/batch_redemptions", **lost, "count": 2})


def outbox_list(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "outbox", "--config", str(config), "list", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


async def drained(config: Path) -> str:
    """Wait (bounded) until no closed order's work is still being retried; the entries then."""
    async with asyncio.timeout(DRAIN):
        # The agent's outbox is in its state directory: nothing to wait on but the listing.
        while "nothing owed" not in await asyncio.to_thread(outbox_list, config, "--pending"):  # noqa: ASYNC110
            await asyncio.sleep(1.0)
    return await asyncio.to_thread(outbox_list, config)


DEAD = re.compile(r"^\s*\d+\s+dead\s+(\S+):(\w+):(\w+)\s.*\n\s+last error: (.*)$", re.MULTILINE)


# -- the ledgers' verdict ------------------------------------------------------------------------


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, what: str, kind: str = "problem") -> None:
        if not condition:
            self.counts[kind] += 1
            self.problems.append(f"{kind}: {what}")

    def once(self, found: int, what: str, *, required: bool = True) -> None:
        """`found` must be 1 (or 0 when not `required`): more is a duplicate, none a loss."""
        self.expect(found <= 1, f"{what}: {found} times", "duplicates")
        if required:
            self.expect(found >= 1, f"{what}: missing", "lost")

    def none(self, found: int, what: str) -> None:
        self.expect(found == 0, f"{what}: {found} times", "unwanted")


async def judge(apis: Apis, records: list[Record], dead: dict[str, str]) -> Verdict:
    v = Verdict()
    cards = await sim_get(apis.card)
    gifts = await sim_get(apis.gift)
    coupons = await sim_get(apis.petz)
    loyalty = await sim_get(apis.punchh)

    debits = list(cards["redemptions"].values())
    references = Counter(d["reference"] for d in debits)
    v.counts["card debits"] = len(debits)
    v.counts["card reversals"] = len(cards["reversals"])
    for reference, times in references.items():
        v.once(times, f"card debit reference {reference}")
    reversals = Counter(r["redemption_id"] for r in cards["reversals"].values())
    vouchers = {g["voucher_id"]: code_ for code_, g in gifts["gifts"].items()}
    redeemed: dict[str, list[Json]] = {}
    for tx, r in gifts["redemptions"].items():
        redeemed.setdefault(vouchers[r["voucher_id"]], []).append({"id": tx, **r})
    v.counts["gift redemptions"] = len(gifts["redemptions"])
    captures = [r for r in coupons["redemptions"]]
    v.counts["petz captures"] = len({r["capture_id"] for r in captures})
    commits = [r for r in loyalty["redemptions"].values() if not r["voided"]]
    v.counts["punchh commits"] = len(commits)
    v.counts["punchh check-ins"] = len(loyalty["checkins"])
    # Punchh keeps one receipt per punchh_key; sending it again stores a new version of it.
    receipts: dict[int, list[list[Json]]] = {}  # by transaction_no: numeric_id(order id)
    for versions in loyalty["receipts"].values():
        receipts.setdefault(versions[0]["transaction_no"], []).append(versions)
    v.counts["punchh receipts"] = len(loyalty["receipts"])
    v.counts["punchh receipts sent again (same version)"] = sum(
        len(versions) - 1 for versions in loyalty["receipts"].values()
    )

    left_to_receipt: set[str] = set()  # outbox keys of check-ins a restart made impossible
    # Outbox keys of voids and refunds whose voucher redemption the lane never learnt the id
    # of: dead-lettered with the words to reverse it at the provider, the only one who knows.
    left_to_person: set[str] = set()
    # Outbox keys of refunds a provider has no call for (PETZ coupons) or refuses (a Punchh
    # redemption once its check-in is in): dead-lettered saying so, for the cashier.
    left_to_cashier: set[str] = set()

    def dead_entry(oid: str, flow: str, phase: str, words: str) -> str | None:
        """The key of the order's dead `flow` entry of `phase` (refund: any refund) whose
        error has `words`, if there is one."""
        keys = [
            k
            for k in dead
            if k == f"{oid}:{flow}:{phase}" or k.startswith(f"{oid}:{flow}:{phase}:")
        ]
        return next((k for k in keys if words in dead[k]), None)

    asked_back: set[str] = set()  # card debits the POS asked to have given back
    by_id = {rec.order_id: rec for rec in records}
    for rec in records:
        oid, paid = rec.order_id, rec.closed == "paid"
        v.expect(rec.closed == ("void" if rec.void else "paid"), f"{oid} closed {rec.closed}")
        if rec.refund is not None:
            after = "refunded" if rec.refund == "whole" else "paid"
            v.expect(rec.refunded == after, f"{oid} {rec.refund} refund left it {rec.refunded}")
        mine_receipts = receipts.get(numeric_id(oid), [])
        v.once(len(mine_receipts), f"receipt of paid order {oid}", required=paid)
        if not paid:
            v.none(len(mine_receipts), f"receipt of voided order {oid}")
        for versions in mine_receipts:
            v.expect(all(x == versions[0] for x in versions), f"{oid} receipt versions differ")
        if rec.kind == "card":
            for k, transaction in rec.payments.items():
                mine = [d for d in debits if d["reference"].split(":")[2:4] == [oid, f"pay{k}"]]
                v.once(len(mine), f"{oid} card payment {k} (told {transaction})")
                for d in mine:
                    v.expect(d["id"] == transaction, f"{oid} payment {k} is {d['id']}", "lost")
                    why = "voided" if not paid else f"{rec.refund}-refunded"
                    if rec.given_back(transaction):
                        asked_back.add(d["id"])
                        v.once(reversals[d["id"]], f"reversal of {why} {oid} payment {k}")
                        if rec.refund is not None:
                            v.counts["card payments refunded"] += 1
                    else:
                        v.expect(d["status"] == "completed", f"{oid} payment {k} reversed")
        elif rec.kind == "gift":
            mine = redeemed.get(gift_code(rec.n), [])
            unconfirmed = (rec.gift_transaction or "").startswith("unconfirmed:")
            back = rec.given_back(rec.gift_transaction)
            phase = "void" if rec.void else "refund"
            if back and unconfirmed:
                key = dead_entry(oid, "gift", phase, "directly")
                v.expect(key is not None, f"{oid} unconfirmed voucher not left to a person", "lost")
                if key is not None:
                    v.counts[f"{phase}ed vouchers left to a person (answer lost)"] += 1
                    left_to_person.add(key)
            # Killed mid-redeem, the POS was told unknown_outcome: the lane has no transaction
            # id, and only the voucher's balance at the provider can tell whether it was taken.
            unknown = rec.gift_told == "unknown_outcome"
            if (
                rec.void
                and unknown
                and (key := dead_entry(oid, "gift", "void", "reverse it there"))
            ):
                v.counts["voided vouchers left to a person (outcome unknown)"] += 1
                left_to_person.add(key)
            if back and not unconfirmed and rec.refund is not None:
                v.counts["vouchers refunded"] += 1
            v.once(len(mine), f"{oid} gift redemption", required=rec.gift_told == "ok")
            for r in mine:
                v.expect(r["units"] == rec.gift_amount, f"{oid} gift redeemed {r['units']}")
                if rec.gift_told == "ok" and rec.gift_transaction != f"unconfirmed:{r['id']}":
                    known = rec.gift_transaction or ""
                    v.expect(
                        known.startswith("unconfirmed:") or r["id"] == known,
                        f"{oid} gift redemption {r['id']}, told {known}",
                    )
                    wanted = back and not unconfirmed
                    v.expect(r["reversed"] == wanted, f"{oid} gift reversed: {r['reversed']}")
                elif unknown:
                    # The lane may have recorded it before the kill (then it is a tender of the
                    # order like any other) or not (then it cannot give it back, see above).
                    asked = rec.void or rec.refund == "whole"
                    what = f"{oid} gift redemption {r['id']} of unknown outcome"
                    if r["reversed"]:
                        v.none(0 if asked else 1, f"{what} reversed")
                    elif rec.void:
                        left = f"{oid}:gift:void" in left_to_person
                        v.expect(left, f"{what} neither reversed nor left to a person", "lost")
                    elif asked:
                        # Not a tender the lane knows was taken, so not in the refund, and no
                        # step says so: the POS was told unknown_outcome, left to the cashier.
                        v.counts["refunded orders' vouchers of unknown outcome kept, no step"] += 1
            v.expect(
                gifts["gifts"][gift_code(rec.n)]["balance"]
                == GIFT_VALUE - sum(r["units"] for r in mine if not r["reversed"]),
                f"{oid} gift balance",
            )
        elif rec.kind == "petz":
            mine = [r for r in captures if r["order_ref"] == oid]
            petz_order = coupons["orders"].get(oid, {})
            if paid and rec.authorized:
                v.once(len({r["capture_id"] for r in mine}), f"PETZ capture of {oid}")
                v.once(len(mine), f"coupon redeemed by {oid}")
            else:
                v.none(len(mine), f"PETZ capture of {oid} (voided or not authorized)")
            # PETZ has no refund call: its captured coupons stay redeemed, and the refund's
            # coupons step says so (not_configured), which dead-letters it for the cashier.
            if rec.refund == "whole" and paid and rec.authorized:
                key = dead_entry(oid, "coupons", "refund", "PETZ has no refund call")
                v.expect(key is not None, f"{oid} refund's coupons step not left to the cashier")
                if key is not None and dead[key].startswith("not_configured"):
                    v.counts["refunded coupons left to the cashier (PETZ: no refund)"] += 1
                    left_to_cashier.add(key)
            v.expect(
                petz_order.get("status") == rec.closed,
                f"PETZ has {oid} {petz_order.get('status')}",
                "lost",
            )
            held = [
                a
                for a in coupons["authorizations"].values()
                if a["order_ref"] == oid and a["status"] == "authorized"
            ]
            v.none(len(held), f"PETZ authorization of closed {oid} still held")
        else:
            guest = guest_id(rec.n)
            every = [r for r in loyalty["redemptions"].values() if r["user_id"] == guest]
            v.once(len(every), f"Punchh commit of {oid}", required=paid and rec.granted)
            if not (paid and rec.granted):
                v.none(len(every), f"Punchh commit of {oid} (voided or nothing granted)")
            mine = [r for r in every if not r["voided"]]
            checkins = [c for c in loyalty["checkins"] if c["user_id"] == guest]
            # A whole refund voids the committed redemption: the reward is the guest's again.
            # Punchh refuses that once the order's check-in is in: the lane does not ask when it
            # knows of the check-in (the step says what to give back in the dashboard), and
            # Punchh answers 410 when a crash kept the check-in from the lane's records.
            if rec.refund == "whole" and paid and every:
                key = dead_entry(oid, "loyalty", "refund", "expired") or dead_entry(
                    oid, "loyalty", "refund", "once the guest is checked in"
                )
                if checkins and key is not None:
                    v.counts["refunded Punchh redemptions left to the cashier (checked in)"] += 1
                    left_to_cashier.add(key)
                    v.none(len(every) - len(mine), f"Punchh redemption of {oid} voided anyway")
                else:
                    v.expect(not mine, f"Punchh redemption of refunded {oid} not voided", "lost")
                    v.counts["Punchh redemptions voided by a refund"] += len(every) - len(mine)
            else:
                v.none(len(every) - len(mine), f"Punchh redemption of {oid} voided")
            # The guest's identifier lives in the agent's memory only (docs/providers/punchh.md):
            # a restart between identifying the guest and the check-in leaves them to earn by
            # scanning the receipt, and the agent dead-letters the check-in.
            restarted = rec.kills_at_checkin > rec.kills_at_lookup
            excused = paid and restarted and "unknown_token" in dead.get(f"{oid}:loyalty:paid", "")
            if excused:
                v.counts["check-ins left to the receipt after a restart"] += 1
                left_to_receipt.add(f"{oid}:loyalty:paid")
            v.once(
                len(checkins),
                f"Punchh check-in of {oid} (kills {rec.kills_at_lookup}..{rec.kills_at_checkin}, "
                f"outbox: {dead.get(f'{oid}:loyalty:paid', 'done')})",
                required=paid and not excused,
            )
            if not paid:
                v.none(len(checkins), f"Punchh check-in of voided {oid}")
            state = loyalty["guests"][str(guest)]
            v.expect(
                (reward_id(rec.n) in state["rewards"]) == (not mine),
                f"{oid} reward {'kept' if reward_id(rec.n) in state['rewards'] else 'spent'}",
            )
            v.expect(state["basket"]["locked_by"] is None, f"{oid} left the basket locked")
    for d in debits:
        v.expect(d["reference"].split(":")[2] in by_id, f"card debit {d['id']} of no order")
    for debit, times in reversals.items():
        v.none(times * (debit not in asked_back), f"reversal of card payment {debit} kept")
    for key, error in dead.items():
        excused = key in left_to_receipt or key in left_to_person or key in left_to_cashier
        v.expect(excused, f"outbox entry {key} dead: {error}", "lost")
    return v


# -- the test ------------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The suite's broker without Nagle's algorithm, like the agent and the POS here: a request
    then takes milliseconds, not the 80 ms of two delayed ACKs, over the run's 1,200."""
    b = Broker(tmp_path, nodelay=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def apis(simulators: Simulators) -> Apis:
    return Apis(
        card=simulators.start("kseries"),
        gift=simulators.start("giftlocal"),
        petz=simulators.start("petz"),
        punchh=simulators.start("punchh"),
    )


async def test_kills_broker_restarts_and_outages_lose_nothing_and_double_nothing(
    tmp_path: Path,
    lane_agents: AgentFactory,
    broker: Broker,
    apis: Apis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed_value = int(os.environ.get("LANE_CRASH_SEED") or random.randrange(2**32))
    with capsys.disabled():
        print(f"\ncrash test seed {seed_value} (LANE_CRASH_SEED={seed_value} replays it)")
    script = random.Random(seed_value)
    records = []
    for n in range(ORDERS):
        rec = Record(n, KINDS[n % len(KINDS)], script.random() < VOID_SHARE, f"O{n:03d}")
        if not rec.void and script.random() < REFUND_SHARE:
            rec.refund = script.choice(("whole", "named"))
            rec.refund_after = min(n + script.randrange(REFUND_LATER + 1), ORDERS - 1)
        records.append(rec)
    await seed(apis, records)
    agent = lane_agents(lane_toml(tmp_path, apis))
    restarts = Restarts(agent)
    chaos = Chaos(agent, restarts, broker, random.Random(script.random()))
    pos = Pos(broker.port)
    pos.on_first_send, pos.on_answer = chaos.on_request, chaos.on_answer
    pos.on_online = chaos.on_online
    lane = Lane(pos, chaos, script)
    started = time.monotonic()
    pos_task = asyncio.create_task(pos.run())
    try:
        agent.start()
        await pos.wait_until(lambda: pos.online > 0)
        for rec in records:
            if rec.n in BROKER_RESTARTS_AT:
                chaos.broker_due = True
            if rec.n == OUTAGE_AT:
                lane.before_close = functools.partial(arm_outage, apis)
            if rec.n == LOSSY_AT:
                await arm_lost_answers(apis)
            await lane.run(rec)
            chaos.done = (rec.n + 1) / len(records)
            for earlier in records[: rec.n + 1]:
                if earlier.refund is not None and earlier.refund_after == rec.n:
                    await lane.refund(earlier)
        await chaos.settle()
        listing = await drained(agent.config)
    finally:
        pos_task.cancel()
        await asyncio.gather(pos_task, return_exceptions=True)
        restarts.close()
    dead = {f"{m[1]}:{m[2]}:{m[3]}": m[4] for m in DEAD.finditer(listing)}
    verdict = await judge(apis, records, dead)
    down = chaos.downtimes(pos.online_at)
    run = {
        "orders": len(records),
        "paid": sum(r.closed == "paid" for r in records),
        "voided": sum(r.closed == "void" for r in records),
        "refunded whole": sum(r.refund == "whole" for r in records),
        "refunded by one named tender": sum(r.refund == "named" for r in records),
        "agent kills (SIGKILL)": chaos.kills,
        **{f"  killed {moment}": n for moment, n in sorted(chaos.points.items())},
        "agent restarts (from a spare, cold)": f"{restarts.warm}, {restarts.cold}",
        "agent back online after a kill (median, max)": (
            f"{down[len(down) // 2]:.2f} s, {down[-1]:.2f} s" if down else "-"
        ),
        "broker restarts": chaos.broker_restarts,
        "requests": pos.sent,
        "requests sent again (same request_id)": pos.resent,
        "scanned again (token lost in a restart)": lane.rescans,
        "sent again (provider unavailable)": lane.unavailable,
        "gift redeems answered unknown_outcome": sum(
            r.gift_told == "unknown_outcome" for r in records
        ),
        "named refunds resent, found under way": lane.refunds_found_started,
        "Punchh selections refused": lane.refused,
        "dead outbox entries": len(dead),
        "POS reconnects": pos.reconnects,
    }
    verdicts = {
        "duplicates": "duplicates",
        "lost": "lost commits or money movements",
        "unwanted": "money movements nobody asked for",
        "problem": "other problems",
    }
    with capsys.disabled():
        print(f"crash test ({time.monotonic() - started:.0f} s, seed {seed_value}):")
        for name, value in [*run.items(), *verdict.counts.items()]:
            if name not in verdicts:
                print(f"  {name:<45} {value}")
        for kind, name in verdicts.items():
            print(f"  {name:<45} {verdict.counts[kind]}")
        for problem in verdict.problems:
            print(f"  ! {problem}")
    assert verdict.problems == [], f"seed {seed_value}: see the problems printed above"
    assert chaos.kills >= MIN_KILLS and chaos.broker_restarts == len(BROKER_RESTARTS_AT)


# -- one crash each, at the worst moment --------------------------------------------------------
# The run above kills at random; these kill the agent while the provider is applying the change
# (a slow answer), restart it, and send the same request again, as the POS does.


@pytest.fixture
def lane(tmp_path: Path, lane_agents: AgentFactory, apis: Apis) -> AgentProcess:
    return lane_agents(lane_toml(tmp_path, apis))


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll a simulator: its state is only reachable over HTTP."""
    async with asyncio.timeout(WAIT):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def killed_while_applied(
    lane: AgentProcess, probe: Probe, api: Running, path: str, op: str, params: Json
) -> None:
    """Send `op`, SIGKILL the agent while `api` is still applying it, wait until the change
    landed, and start the agent again."""
    await sim_faults(api, {"path": path, "method": "POST", "kind": "slow", "delay": 1.0})
    before = await sim_get(api, "requests")
    await probe.client.publish(f"{BASE}/request/{op}", json.dumps(params), qos=1)

    async def sent() -> bool:
        return any(r["path"] == path for r in (await sim_get(api, "requests"))[len(before) :])

    async def applied() -> bool:  # the status is logged once the change is made
        log = (await sim_get(api, "requests"))[len(before) :]
        return any(r["path"] == path and r["status"] is not None for r in log)

    await until(sent)
    lane.signal(signal.SIGKILL)
    await until(applied)
    mark = len(probe.messages)
    lane.start()
    await probe.topic("state", lambda d: d["state"] == "online", mark)


async def test_a_card_payment_sent_again_after_a_crash_mid_debit_is_that_debit(
    lane: AgentProcess, probe_factory: ProbeFactory, apis: Apis
) -> None:
    probe = await started(lane, probe_factory)
    ok(await probe.request("order.update", order_update("K1", lines(("1", 1500, None)))))
    token = ok(await probe.request("scan.inject", {"data": "6006490000000001"}))["token_id"]
    pay = {"request_id": "K1-pay", "token_id": token, "amount": 1500}
    await killed_while_applied(lane, probe, apis.card, "/v1/redemptions", "gift.redeem", pay)
    [debit] = (await sim_get(apis.card))["redemptions"].values()
    again = ok(await probe.request("gift.redeem", pay))  # its token died with the agent
    assert again["card"]["transaction_id"] == debit["id"] and again["remaining"] == 0
    assert len((await sim_get(apis.card))["redemptions"]) == 1
    assert ok(await probe.request("order.paid", {"order_id": "K1"}))["order"]["status"] == "paid"


async def test_a_gift_redeem_sent_again_after_a_crash_mid_call_is_never_redeemed_twice(
    lane: AgentProcess, probe_factory: ProbeFactory, apis: Apis
) -> None:
    """The cashier then scans the voucher again: the lane reads its balance, tells every
    screen the first redemption went through (a late `gift.redeemed`), and refuses to redeem
    again unless confirmed; the first request sent again is now answered with it."""
    probe = await started(lane, probe_factory)
    token = ok(await probe.request("scan.inject", {"data": "100000000001"}))["token_id"]
    redeem = {"request_id": "G1-redeem", "token_id": token, "amount": 1250}
    await killed_while_applied(lane, probe, apis.gift, giftlocal.REDEEM, "gift.redeem", redeem)
    again = await probe.request("gift.redeem", redeem)
    # Not `unknown_token`: the POS would scan again and redeem under a new request_id.
    assert again["error"]["code"] == "unknown_outcome", again
    assert "scan the gift again" in again["error"]["message"].lower()
    assert len((await sim_get(apis.gift))["redemptions"]) == 1 + 1  # the seed's used-up gift

    mark = len(probe.messages)
    rescanned = ok(await probe.request("scan.inject", {"data": "100000000001"}))["token_id"]
    second = await probe.request("gift.redeem", {"token_id": rescanned, "amount": 1250})
    assert second["error"]["code"] == "earlier_redemption", second
    [earlier] = second["error"]["details"]["earlier"]
    assert (earlier["request_id"], earlier["outcome"], earlier["units"]) == (
        "G1-redeem",
        "applied",
        1250,
    )
    late = await probe.topic("event", lambda e: e["type"] == "gift.redeemed", mark)
    assert late["data"]["late"] is True and late["data"]["request_id"] == "G1-redeem"
    assert late["data"]["redemption"]["amount"] == 1250
    told = ok(await probe.request("gift.redeem", redeem))
    assert told["redemption"]["transaction_id"] == "unconfirmed:G1-redeem"
    assert told["redemption"]["amount"] == 1250
    assert len((await sim_get(apis.gift))["redemptions"]) == 1 + 1


async def test_a_void_after_a_redeem_cut_by_a_crash_leaves_that_voucher_to_a_person_at_once(
    lane: AgentProcess, probe_factory: ProbeFactory, apis: Apis
) -> None:
    """The lane never learnt whether the redemption happened nor its transaction id, and no
    retry can tell it: the voucher's void step is dead at once, saying what a person must do,
    and the rest of the order's void (here its card payment) is not held up behind it."""
    probe = await started(lane, probe_factory)
    ok(await probe.request("order.update", order_update("P1", lines(("1", 3000, None)))))
    card = ok(await probe.request("scan.inject", {"data": "6006490000000001"}))["token_id"]
    ok(await probe.request("gift.redeem", {"token_id": card, "amount": 1000}))
    token = ok(await probe.request("scan.inject", {"data": "100000000001"}))["token_id"]
    redeem = {"request_id": "P1-redeem", "token_id": token, "amount": 1250}
    await killed_while_applied(lane, probe, apis.gift, giftlocal.REDEEM, "gift.redeem", redeem)
    assert (await probe.request("gift.redeem", redeem))["error"]["code"] == "unknown_outcome"

    voided = ok(await probe.request("order.void", {"order_id": "P1"}))
    assert [(s["flow"], s["step"], s["ok"]) for s in voided["steps"]] == [
        ("gift", "reverse", False),
        ("card", "reverse", True),
    ]
    assert voided["queued"] == []
    assert (await sim_get(apis.card))["cards"]["6006490000000001"]["balance"] == 5000
    listing = outbox_list(lane.config)
    [(key, error)] = [(f"{m[1]}:{m[2]}:{m[3]}", m[4]) for m in DEAD.finditer(listing)]
    assert key == "P1:gift:void" and "reverse it there" in error, listing


async def test_a_selection_sent_again_after_a_crash_is_checked_not_refused(
    lane: AgentProcess, probe_factory: ProbeFactory, apis: Apis
) -> None:
    """Punchh refuses a discount already in the basket; the selection's retry must not turn
    into a refusal the POS would act on (paying without the discount Punchh then commits)."""
    probe = await started(lane, probe_factory)
    meal: list[tuple[str, int, str | None]] = [("1", 1000, None), ("2", 500, None)]
    ok(await probe.request("order.update", Lane.meal("L1", meal, [])))
    token = ok(await probe.request("scan.inject", {"data": "ana@example.com"}))["token_id"]
    ok(await probe.request("loyalty.lookup", {"token_id": token}))
    select = {
        "request_id": "L1-select",
        "selections": [{"discount_type": "reward", "discount_id": "7001"}],
    }
    path = "/api/pos/batch_redemptions"  # the check after the selection
    await killed_while_applied(lane, probe, apis.punchh, path, "loyalty.select", select)
    checked = ok(await probe.request("loyalty.select", select))
    assert [(d["name"], d["amount"]) for d in checked["lines"]] == [("Free Coffee", -350)]
    ok(await probe.request("order.update", Lane.meal("L1", meal, checked["lines"])))
    ok(await probe.request("order.paid", {"order_id": "L1"}))
    [commit] = (await sim_get(apis.punchh))["redemptions"].values()
    assert [line["discount_id"] for line in commit["lines"]] == ["7001"]


async def test_a_check_in_queued_behind_a_commit_punchh_refused_for_now_still_happens(
    lane: AgentProcess, probe_factory: ProbeFactory, apis: Apis
) -> None:
    """No restart here: the guest's identifier must outlive the first, failed attempt."""
    probe = await started(lane, probe_factory)
    meal: list[tuple[str, int, str | None]] = [("1", 1000, None), ("2", 500, None)]
    ok(await probe.request("order.update", Lane.meal("Q1", meal, [])))
    token = ok(await probe.request("scan.inject", {"data": "ana@example.com"}))["token_id"]
    ok(await probe.request("loyalty.lookup", {"token_id": token}))
    select = {"selections": [{"discount_type": "reward", "discount_id": "7001"}]}
    checked = ok(await probe.request("loyalty.select", select))
    ok(await probe.request("order.update", Lane.meal("Q1", meal, checked["lines"])))
    await sim_faults(apis.punchh, {"path": "/api/pos/batch_redemptions", "kind": "error"})
    paid = ok(await probe.request("order.paid", {"order_id": "Q1"}))
    assert paid["queued"] == ["loyalty"]
    again = ok(await probe.request("order.paid", {"order_id": "Q1"}))  # tried at once
    assert again["queued"] == []
    assert [(s["step"], s["ok"]) for s in again["steps"]] == [
        ("commit", True),
        ("checkin", True),
        ("receipt", True),
    ]
    ledger = await sim_get(apis.punchh)
    assert len(ledger["redemptions"]) == 1 and len(ledger["checkins"]) == 1
