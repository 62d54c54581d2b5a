"""Request decoding and idempotency, with the real SQLite response store."""

from __future__ import annotations

import asyncio
import atexit
import functools
import hashlib
import json
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agent.app import LaneAgent
from agent.config import parse_config
from agent.contract import OPS, HealthResult, Request, Response
from agent.errors import ErrorCode, LaneError
from agent.requests import MAX_DEPTH, RequestRouter, ResponseStore


class Counter:
    """Handlers that count how often they really ran."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def __call__(self, params: Request) -> BaseModel:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if getattr(params, "amount", 0) == 13:
            raise LaneError(ErrorCode.INSUFFICIENT_BALANCE, "only 12 available")
        if getattr(params, "amount", 0) == 666:
            raise RuntimeError("bug")
        return HealthResult(ok=True, items=[])


def router(tmp_path: Path, counter: Counter) -> RequestRouter:
    store = ResponseStore(tmp_path / "requests.sqlite")
    return RequestRouter(store, dict.fromkeys(OPS, counter), max_payload=2048)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


async def test_repeated_request_id_runs_once_and_returns_the_first_answer(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    payload = body(request_id="r1", token_id="t", amount=5)
    first = await r.handle("gift.redeem", payload)
    second = await r.handle("gift.redeem", payload)
    assert counter.calls == 1
    assert first == second and first.status == "ok"


async def test_an_op_that_only_reads_is_answered_afresh_and_never_kept(tmp_path: Path) -> None:
    """`order.get` on every event from every screen must not write to the lane's disk."""
    counter = Counter()
    r = router(tmp_path, counter)
    payload = body(request_id="read-1")
    await r.handle("order.get", payload)
    await r.handle("order.get", payload)
    assert counter.calls == 2
    store = ResponseStore(tmp_path / "requests.sqlite")
    assert store.get("read-1") is None


@pytest.mark.parametrize("amount", ['"100"', "1.0", "true", "1e40", str(10**40), "-5"])
async def test_money_is_a_json_integer_in_range(tmp_path: Path, amount: str) -> None:
    """A string, a float, a boolean or an absurd number is no amount: refused, nothing run
    (`true` redeemed one cent, and 1e40 was an internal error)."""
    counter = Counter()
    r = router(tmp_path, counter)
    redeem = f'{{"request_id": "m-{len(amount)}", "token_id": "t", "amount": {amount}}}'.encode()
    answer = await r.handle("gift.redeem", redeem)
    assert answer.error is not None and answer.error.code is ErrorCode.INVALID_REQUEST
    assert answer.error.message.startswith("amount:")
    line = f'{{"id": "1", "name": "x", "quantity": 1, "amount": {amount}}}'
    update = (
        f'{{"request_id": "o-{len(amount)}", "order_id": "o", "lines": [{line}], "subtotal": 0, '
        '"total": 0, "currency": "USD"}'
    ).encode()
    refused = await r.handle("order.update", update)
    if amount != "-5":  # a negative line is a discount
        assert refused.error is not None and refused.error.message.startswith("lines.0.amount:")
    assert counter.calls == (1 if amount == "-5" else 0)


async def test_the_first_answer_survives_a_restart(tmp_path: Path) -> None:
    counter = Counter()
    payload = body(request_id="r1", token_id="t", amount=5)
    first = await router(tmp_path, counter).handle("gift.redeem", payload)
    again = await router(tmp_path, counter).handle("gift.redeem", payload)
    assert counter.calls == 1 and again == first


async def test_a_repeat_arriving_mid_flight_waits_for_the_first(tmp_path: Path) -> None:
    counter = Counter()
    counter.gate = asyncio.Event()
    r = router(tmp_path, counter)
    payload = body(request_id="r1", token_id="t", amount=5)
    first = asyncio.create_task(r.handle("gift.redeem", payload))
    second = asyncio.create_task(r.handle("gift.redeem", payload))
    await counter.started.wait()
    counter.gate.set()
    assert await first == await second
    assert counter.calls == 1


async def test_provider_errors_are_answers_and_are_kept(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    payload = body(request_id="r2", token_id="t", amount=13)
    answer = await r.handle("gift.redeem", payload)
    assert answer.status == "error" and answer.error is not None
    assert answer.error.code is ErrorCode.INSUFFICIENT_BALANCE
    assert await r.handle("gift.redeem", payload) == answer and counter.calls == 1


async def test_a_bug_in_a_handler_is_an_internal_error_not_a_crash(tmp_path: Path) -> None:
    answer = await router(tmp_path, Counter()).handle(
        "gift.redeem", body(request_id="r3", token_id="t", amount=666)
    )
    assert answer.error is not None and answer.error.code is ErrorCode.INTERNAL


def conflict_op(answer: Response) -> str:
    """The first request's op a request_id_conflict answer names (message and details)."""
    assert answer.status == "error" and answer.error is not None, answer
    assert answer.error.code is ErrorCode.REQUEST_ID_CONFLICT, answer.error
    assert answer.error.details is not None
    first_op: str = answer.error.details["first_op"]
    assert f"already used for op '{first_op}'" in answer.error.message
    return first_op


async def test_the_same_params_spelled_differently_get_the_first_answer(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    first = await r.handle("scan.inject", b'{"request_id": "k1", "data": "100000000001"}')
    again = await r.handle(
        "scan.inject", b'{"data":"100000000001","symbology":"keyed","request_id":"k1"}'
    )
    assert counter.calls == 1 and again == first and first.status == "ok"


async def test_same_request_id_with_other_params_is_a_conflict(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    first = await r.handle("gift.redeem", body(request_id="r5", token_id="t", amount=100))
    other = await r.handle("gift.redeem", body(request_id="r5", token_id="t", amount=900))
    assert conflict_op(other) == "gift.redeem" and other.request_id == "r5"
    assert other.error is not None and "with other params" in other.error.message
    assert counter.calls == 1
    # The conflict is not kept in place of the first answer.
    assert await r.handle("gift.redeem", body(request_id="r5", token_id="t", amount=100)) == first


async def test_same_request_id_for_another_op_is_a_conflict(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    await r.handle("gift.redeem", body(request_id="r4", token_id="t", amount=5))
    answer = await r.handle("gift.reverse", body(request_id="r4", transaction_id="x"))
    assert conflict_op(answer) == "gift.redeem" and counter.calls == 1


async def test_another_op_while_the_first_is_in_flight_is_a_conflict_at_once(
    tmp_path: Path,
) -> None:
    counter = Counter()
    counter.gate = asyncio.Event()
    r = router(tmp_path, counter)
    first = asyncio.create_task(
        r.handle("gift.redeem", body(request_id="r6", token_id="t", amount=5))
    )
    await counter.started.wait()
    # Answered while the redeem still runs (the gate holds it), not with the redeem's result:
    # waiting for that would never end, so the bound only turns a hang into a failure.
    for op, payload in [
        ("device.health", body(request_id="r6")),
        ("gift.redeem", body(request_id="r6", token_id="t", amount=6)),
    ]:
        answer = await asyncio.wait_for(r.handle(op, payload), 5)
        assert conflict_op(answer) == "gift.redeem"
    assert not first.done()
    counter.gate.set()
    assert (await first).status == "ok" and counter.calls == 1


async def test_params_are_compared_across_a_restart(tmp_path: Path) -> None:
    counter = Counter()
    first = await router(tmp_path, counter).handle(
        "scan.inject", body(request_id="r7", data="100000000001")
    )
    restarted = router(tmp_path, counter)
    assert (
        await restarted.handle("scan.inject", body(request_id="r7", data="100000000001")) == first
    )
    other = await restarted.handle("scan.inject", body(request_id="r7", data="100000000002"))
    assert conflict_op(other) == "scan.inject" and counter.calls == 1
    # The table alone does not give a guessed code away: its digest is not a plain hash.
    plain = hashlib.sha256(b'{"data":"100000000001","symbology":"keyed"}').hexdigest()
    assert plain.encode() not in (tmp_path / "requests.sqlite").read_bytes()


def old_table(path: Path, request_id: str, op: str, answer: Response) -> None:
    """A response store as an agent that did not compare params left it."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE responses (request_id TEXT PRIMARY KEY, op TEXT NOT NULL,"
        " answer TEXT NOT NULL, created REAL NOT NULL)"
    )
    db.execute(
        "INSERT INTO responses VALUES (?, ?, ?, ?)",
        (request_id, op, answer.model_dump_json(), time.time()),
    )
    db.commit()
    db.close()


async def test_answers_kept_before_params_were_compared_still_answer(tmp_path: Path) -> None:
    kept = Response(request_id="old", status="ok", data={"ok": True, "items": []})
    old_table(tmp_path / "requests.sqlite", "old", "gift.redeem", kept)
    counter = Counter()
    r = router(tmp_path, counter)
    # Its params are unknown: any repeat for the same op gets the first answer, as before.
    assert await r.handle("gift.redeem", body(request_id="old", token_id="t", amount=9)) == kept
    assert conflict_op(await r.handle("device.health", body(request_id="old"))) == "gift.redeem"
    # New answers in the migrated table are compared.
    await r.handle("gift.redeem", body(request_id="new", token_id="t", amount=1))
    other = await router(tmp_path, counter).handle(
        "gift.redeem", body(request_id="new", token_id="t", amount=2)
    )
    assert conflict_op(other) == "gift.redeem" and counter.calls == 1


async def test_a_lost_digest_key_makes_kept_digests_unknown_not_conflicts(tmp_path: Path) -> None:
    counter = Counter()
    payload = body(request_id="r8", token_id="t", amount=5)
    first = await router(tmp_path, counter).handle("gift.redeem", payload)
    (tmp_path / "requests.key").unlink()
    assert await router(tmp_path, counter).handle("gift.redeem", payload) == first
    assert counter.calls == 1


@pytest.mark.parametrize(
    ("op", "payload", "code", "words"),
    [
        ("gift.redeem", b"\xff\xfe", ErrorCode.INVALID_REQUEST, "not JSON"),
        ("gift.redeem", b"[1, 2]", ErrorCode.INVALID_REQUEST, "request_id"),
        ("gift.redeem", b'{"request_id": 5}', ErrorCode.INVALID_REQUEST, "request_id"),
        ("nope", body(request_id="a"), ErrorCode.UNKNOWN_OP, "known ops"),
        (
            "gift.redeem",
            body(request_id="a", token_id="t", amount=1, quantity=1),
            ErrorCode.INVALID_REQUEST,
            "not both",
        ),
        (
            "gift.redeem",
            body(request_id="a", token_id="t", amount=1, x=1),
            ErrorCode.INVALID_REQUEST,
            "x: unknown field",
        ),
        (  # a voucher code sent as a key is not echoed back
            "gift.redeem",
            b'{"request_id": "a", "token_id": "t", "amount": 1, "100000000001": 1}',
            ErrorCode.INVALID_REQUEST,
            "(a name that is not a field name, not shown): unknown field",
        ),
        ("scan.inject", b"{" + b" " * 3000 + b"}", ErrorCode.INVALID_REQUEST, "limit is 2048"),
    ],
)
async def test_bad_requests_get_clear_errors(
    tmp_path: Path, op: str, payload: bytes, code: ErrorCode, words: str
) -> None:
    counter = Counter()
    answer = await router(tmp_path, counter).handle(op, payload)
    assert answer.status == "error" and answer.error is not None
    assert answer.error.code is code and words in answer.error.message
    assert counter.calls == 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from([*OPS, "x", ""]), payload=st.binary(max_size=300))
async def test_any_payload_gets_an_answer(tmp_path: Path, op: str, payload: bytes) -> None:
    answer = await router(tmp_path, Counter()).handle(op, payload)
    assert answer.status in {"ok", "error"}
    if answer.status == "error":
        assert answer.error is not None and answer.error.message


# --- hostile input against the real handlers --------------------------------------------------

T = TypeVar("T")
DEMO_CODES = ["100000000001", "100000000002", "100000000003", "100000000004"]


class ErrorLog(logging.Handler):
    """Collects what the agent logs at ERROR: a handler or flow that failed on some input."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class RealLane:
    """A LaneAgent on the sandbox ledger in a temporary state directory, never started: its router
    has every real handler, the bus only queues (nothing reaches a network), and no rate limit
    gets between the fuzzer and the scan pipeline."""

    def __init__(self) -> None:
        shm = Path("/dev/shm")  # the response store syncs every answer: keep it in memory
        self.dir = Path(
            tempfile.mkdtemp(prefix="lane-agent-requests-", dir=shm if shm.is_dir() else None)
        )
        config = parse_config(
            {
                "lane": {"store": "s1", "lane": "l1"},
                "providers": {"sandbox": {}},
                "state": {"dir": str(self.dir)},
                "scans": {"rate": 0},
            }
        )
        self.loop = asyncio.new_event_loop()
        self.agent = LaneAgent(config)
        for driver in self.agent.drivers:
            self.agent.devices.add(driver.device_id, driver.kind)
        self.errors = ErrorLog()
        logging.getLogger("agent").addHandler(self.errors)
        self.handled = 0
        self.token_ids = self.scan_demo_codes()
        atexit.register(self.close)

    def scan_demo_codes(self) -> list[str]:
        """Token ids of the demo gifts, scanned again so the vault keeps them (same ids)."""
        ids = []
        for code in DEMO_CODES:
            payload = json.dumps({"request_id": f"demo-{self.handled}-{code}", "data": code})
            answer = self.run(self.agent.router.handle("scan.inject", payload.encode()))
            assert answer.data is not None, answer
            ids.append(answer.data["token_id"])
        return ids

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        result = self.loop.run_until_complete(coroutine)
        # Let what the request started (a flow validating a scanned gift) finish, so its failures
        # are this input's.
        while pending := asyncio.all_tasks(self.loop):
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        return result

    def handle(self, op: str, payload: bytes) -> Response:
        self.handled += 1
        if self.handled % 1000 == 0:
            self.scan_demo_codes()
        return self.run(self.agent.router.handle(op, payload))

    def close(self) -> None:
        logging.getLogger("agent").removeHandler(self.errors)
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@functools.cache
def real_lane() -> RealLane:
    return RealLane()


MQTT_TEXT = st.characters(exclude_categories=["Cs"])  # MQTT strings are UTF-8: no surrogates
TEXT = st.text(MQTT_TEXT, max_size=20)
OP_NAMES = st.sampled_from(sorted(OPS)) | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/+#\x00"), max_size=30
)
LEAVES = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**80), 2**80) | st.floats() | TEXT
)
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
AMOUNTS = st.integers(-5, 6000) | st.integers() | JSON
LINE = st.fixed_dictionaries(
    {"id": TEXT, "name": TEXT, "quantity": AMOUNTS, "amount": AMOUNTS},
    optional={"sku": TEXT | JSON},
)


def field_values(lane_token_ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values, and wrong ones, for every field of every op's params."""
    ids = st.sampled_from(["o1", "o2", ""]) | TEXT
    return {
        "data": st.sampled_from(
            [*DEMO_CODES, "https://giftlocal.com/v/demo-gift-50", "]E05901234123457"]
        )
        | TEXT
        | st.text(MQTT_TEXT, min_size=4090, max_size=4100)
        | JSON,
        "symbology": st.sampled_from(["keyed", "qr", "gs1-128", ""])
        | st.text(MQTT_TEXT, max_size=40),
        "token_id": st.sampled_from(lane_token_ids) | st.just("tok_0000") | TEXT | JSON,
        "amount": AMOUNTS,
        "quantity": AMOUNTS,
        "confirm_repeat": st.booleans() | JSON,
        "transaction_id": TEXT | JSON,
        "transaction_ids": st.lists(TEXT, max_size=3) | JSON,
        "device_id": st.sampled_from(["keyed", "scanner"]) | TEXT | JSON,
        "level": st.sampled_from(["internal", "external"]) | JSON,
        "order_id": ids | JSON,
        "lines": st.lists(LINE | JSON, max_size=5) | JSON,
        "subtotal": AMOUNTS,
        "tax": AMOUNTS,
        "total": AMOUNTS,
        "currency": st.sampled_from(["USD", "EUR", "usd"]) | TEXT,
        "selections": st.lists(JSON, max_size=3) | JSON,
        "email_token_id": st.sampled_from(lane_token_ids) | TEXT | JSON,
        "code": st.sampled_from(["123456", "12", ""]) | TEXT | JSON,
        "accepted_terms": st.booleans() | JSON,
        "marketing_sms": st.booleans() | JSON,
        "first_name": TEXT | JSON,
        "last_name": TEXT | JSON,
        "birthday": st.sampled_from(["1990-04-01", "1990-13-01"]) | TEXT | JSON,
        # the fleet's admin ops
        "config": st.just("[providers.sandbox]\n") | TEXT | JSON,
        "timeout": AMOUNTS,
        "reason": TEXT | JSON,
        "minutes": AMOUNTS,
        "state": st.sampled_from(["open", "pending", "dead", "all"]) | TEXT,
        "limit": AMOUNTS,
        "id": AMOUNTS,
        "chunk_size": AMOUNTS,
    }


@st.composite
def requests(draw: st.DrawFn, lane: RealLane) -> tuple[str, bytes, Any]:
    """(op, payload, the JSON value sent, or the payload itself when it is raw bytes)."""
    op = draw(OP_NAMES)
    shape = draw(st.sampled_from(["request"] * 6 + ["json", "bytes"]))
    if shape == "bytes":
        payload = draw(st.binary(max_size=400))
        return op, payload, payload
    if shape == "json":
        value = draw(JSON)
    else:
        values = field_values(lane.token_ids)
        spec = OPS.get(op) or OPS[draw(st.sampled_from(sorted(OPS)))]
        value = {}
        for name in spec.params.model_fields:
            if name != "request_id" and draw(st.integers(0, 4)) > 0:
                value[name] = draw(values[name], label=name)
        if draw(st.integers(0, 9)) > 0:
            value["request_id"] = draw(st.uuids().map(str) | TEXT | JSON, label="request_id")
        value.update(draw(st.dictionaries(TEXT, JSON, max_size=2), label="stray fields"))
    return op, json.dumps(value).encode(), value


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_payload_gets_a_clear_answer_from_the_real_handlers(data: st.DataObject) -> None:
    lane = real_lane()
    op, payload, sent = data.draw(requests(lane))
    lane.errors.records.clear()
    answer = lane.handle(op, payload)
    assert isinstance(answer, Response)
    answer.model_dump_json()  # it can be published
    if answer.status == "ok":
        assert answer.error is None and answer.data is not None
        OPS[op].result.model_validate(answer.data)
    else:
        assert answer.error is not None and answer.data is None
        assert isinstance(answer.error.code, ErrorCode) and answer.error.message
        assert answer.error.code is not ErrorCode.INTERNAL, answer.error
    if isinstance(sent, dict) and isinstance(sent.get("request_id"), str) and sent["request_id"]:
        assert answer.request_id == sent["request_id"]
    assert not lane.errors.records, [r.getMessage() for r in lane.errors.records]


def test_hostile_json_is_an_error_not_an_exception() -> None:
    lane = real_lane()
    for payload, words in [
        (b"[" * 60_000, "nested deeper"),
        (
            b'{"request_id": "a", "x": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
            f"deeper than {MAX_DEPTH}",
        ),
        (b'{"request_id": "a", "amount": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"request_id": "\\ud800"}', "lone surrogate"),
        (b'{"request_id": "a", "data": "x\\udfff"}', "lone surrogate"),
        ('{"request_id": "a"}'.encode("utf-16"), "not UTF-8 at byte 0"),
    ]:
        answer = lane.handle("scan.inject", payload)
        assert answer.error is not None and answer.error.code is ErrorCode.INVALID_REQUEST
        assert words in answer.error.message and answer.request_id is None
        answer.model_dump_json()
    # Astral characters written as a surrogate pair are fine.
    answer = lane.handle("scan.inject", b'{"request_id": "pair", "data": "\\ud83d\\ude00"}')
    assert answer.status == "ok" and answer.data is not None and answer.data["valid"] is True


def test_scan_inject_data_is_capped_at_4096_characters() -> None:
    lane = real_lane()
    over = lane.handle(
        "scan.inject", json.dumps({"request_id": "cap1", "data": "1" * 4097}).encode()
    )
    assert over.error is not None and over.error.code is ErrorCode.INVALID_REQUEST
    assert over.error.message == "data: String should have at most 4096 characters"
    at = lane.handle("scan.inject", json.dumps({"request_id": "cap2", "data": "1" * 4096}).encode())
    assert at.status == "ok" and at.data is not None
    assert (at.data["valid"], at.data["error"]) == (
        False,
        "scan is 4096 characters; the limit is 512",
    )
    long_symbology = json.dumps({"request_id": "cap3", "data": "1", "symbology": "s" * 33})
    answer = lane.handle("scan.inject", long_symbology.encode())
    assert answer.error is not None and answer.error.message.startswith("symbology: ")


# --- oversized payloads --------------------------------------------------------------------


@functools.cache
def oversize_store() -> ResponseStore:
    path = Path(tempfile.mkdtemp(prefix="lane-agent-oversize-"))
    atexit.register(shutil.rmtree, path, True)
    return ResponseStore(path / "requests.sqlite")


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 70_000),
    excess=st.integers(1, 70_000),
    op=OP_NAMES,
    seed=st.binary(min_size=1, max_size=64),
    as_request=st.booleans(),
)
def test_any_payload_over_the_limit_is_refused_with_the_limit(
    limit: int, excess: int, op: str, seed: bytes, as_request: bool
) -> None:
    size = limit + excess
    if as_request:  # a well-formed request, only too big
        head = b'{"request_id": "big", "data": "'
        payload = head + b"1" * max(0, size - len(head) - 2) + b'"}'
        payload = payload[:size] if len(payload) > size else payload
    else:
        payload = (seed * (size // len(seed) + 1))[:size]
    size = len(payload)
    counter = Counter()
    router = RequestRouter(oversize_store(), dict.fromkeys(OPS, counter), max_payload=limit)
    loop = asyncio.new_event_loop()
    try:
        if size > limit:
            answer = loop.run_until_complete(router.handle(op, payload))
            assert answer.error is not None and answer.error.code is ErrorCode.INVALID_REQUEST
            assert answer.error.message == f"payload is {size} bytes; the limit is {limit}"
            assert answer.request_id is None
        at_limit = loop.run_until_complete(router.handle(op, payload[:limit]))
        assert at_limit.error is None or "the limit is" not in at_limit.error.message
    finally:
        loop.close()
    assert counter.calls <= 1  # only ever the request at the limit


async def test_a_request_the_bus_refuses_is_answered_with_its_reason_and_never_run(
    tmp_path: Path,
) -> None:
    """A retained request, or one with a Response Topic outside `reply/` (agent/bus.py)."""
    counter = Counter()
    r = router(tmp_path, counter)
    payload = body(request_id="kept-on-broker", token_id="t", amount=5)
    answer = await r.handle("gift.redeem", payload, refusal="a retained request is never run")
    assert answer.request_id == "kept-on-broker" and answer.error is not None
    assert answer.error.code is ErrorCode.INVALID_REQUEST
    assert answer.error.message == "a retained request is never run"
    assert counter.calls == 0
    again = await r.handle("gift.redeem", payload)  # not kept: sent properly, it runs
    assert again.status == "ok" and counter.calls == 1
