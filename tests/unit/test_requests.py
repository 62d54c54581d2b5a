"""Request decoding and idempotency, with the real SQLite response store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agent.contract import OPS, HealthResult, Request
from agent.errors import ErrorCode, LaneError
from agent.requests import RequestRouter, ResponseStore


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


async def test_same_request_id_for_another_op_is_refused(tmp_path: Path) -> None:
    counter = Counter()
    r = router(tmp_path, counter)
    await r.handle("gift.redeem", body(request_id="r4", token_id="t", amount=5))
    answer = await r.handle("gift.reverse", body(request_id="r4", transaction_id="x"))
    assert answer.error is not None and "already used for op 'gift.redeem'" in answer.error.message
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
