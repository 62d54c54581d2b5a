"""The in-process transport is faithful: each real adapter, run through the same calls and faults
over the loopback server and over `SimulatorTransport`, gets the same answers, the same errors,
sends the same requests and leaves the same ledger. Then what only the transport has: closing it,
and sync clients."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel

from agent.errors import ErrorCode, ProviderError
from agent.orders import OrderLine, OrderSnapshot
from agent.providers.base import GiftRef
from agent.providers.giftlocal import GiftLocalProvider
from agent.providers.http import ProviderClient
from agent.providers.kseries import KSeriesCardProvider
from agent.providers.loyalty import Selection
from agent.providers.petz import PetzCouponProvider
from agent.providers.punchh import PunchhLoyaltyProvider
from agent.providers.settings import (
    GiftLocalSettings,
    HttpProviderSettings,
    KSeriesSettings,
    PetzSettings,
    PunchhSettings,
)
from simulators import giftlocal, kseries, petz, punchh
from simulators.__main__ import load
from simulators.server import Fault
from simulators.transport import BASE_URL, SimulatorTransport
from tests.served import CARRIERS, Carrier, Json, Served, served
from tests.simulators.test_server import Counter

T = TypeVar("T")
# Every call but the one a `timeout` fault holds gets this long; that one gets SHORT.
TIMEOUT = 2.0
SHORT = 0.2
# Timestamps differ between two runs; everything else must not.
WHEN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


class Run:
    """One scenario over one carrier: each call's outcome, in order."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.outcomes: list[tuple[str, Json]] = []

    async def step(self, call: Awaitable[T], **fault: Any) -> T | None:
        """Arm `fault` (if any), make the call, record its result or its error."""
        if fault:
            self.served.arm(**fault)
        try:
            result = await call
        except ProviderError as exc:
            self.outcomes.append(("error", [exc.code, exc.message, exc.details]))
            return None
        dumped = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        self.outcomes.append(("ok", dumped))
        return result

    def codes(self) -> list[ErrorCode]:
        return [outcome[0] for kind, outcome in self.outcomes if kind == "error"]

    def record(self) -> Json:
        """What must be the same over both carriers (bar timestamps and the Host header)."""
        sent = [{**r, "headers": r["headers"] | {"host": "-"}} for r in self.served.sent()]
        return WHEN.sub("<when>", repr([self.outcomes, sent, self.served.ledger()]))


def key_file(directory: Path, name: str, key: str) -> Path:
    path = directory / name
    path.write_text(key + "\n", encoding="utf-8")
    return path


async def gift_local(run: Run, tmp_path: Path) -> list[ErrorCode]:
    def make(timeout: float) -> GiftLocalProvider:
        settings = GiftLocalSettings.model_validate(
            {
                "base_url": run.served.url,
                "api_key_file": key_file(tmp_path, "gl", giftlocal.BAKERY_KEY),
                "timeout": timeout,
            }
        )
        return GiftLocalProvider(settings, transport=run.served.transport)

    gl, short = make(TIMEOUT), make(SHORT)
    fifty = GiftRef(code="100000000001")
    gift = await run.step(gl.validate(fifty, location=None))
    assert gift is not None
    paid = await run.step(gl.redeem(gift.gift_id, amount=1250, location=None, idempotency_key="a"))
    assert paid is not None
    await run.step(gl.validate(GiftRef(code="999999999999"), location=None))
    redeem = giftlocal.REDEEM
    await run.step(
        gl.redeem(gift.gift_id, amount=100, location=None, idempotency_key="b"),
        path=redeem,
        kind="error",
        status=503,
    )
    await run.step(
        gl.validate(fifty, location=None), path=giftlocal.VALIDATE, kind="slow", delay=0.05
    )
    await run.step(
        gl.redeem(gift.gift_id, amount=700, location=None, idempotency_key="c"),
        path=redeem,
        kind="drop_after_apply",
    )
    await run.step(
        short.redeem(gift.gift_id, amount=100, location=None, idempotency_key="d"),
        path=redeem,
        kind="timeout",
    )
    await run.step(gl.reverse(paid.transaction_id, location=None, idempotency_key="e"))
    await gl.aclose()
    await short.aclose()
    return [
        ErrorCode.NOT_FOUND,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.UNKNOWN_OUTCOME,
    ]


async def k_series(run: Run, tmp_path: Path) -> list[ErrorCode]:
    def make(timeout: float) -> KSeriesCardProvider:
        settings = KSeriesSettings.model_validate(
            {
                "base_url": run.served.url,
                "api_key_file": key_file(tmp_path, "ks", kseries.API_KEY),
                "payment_method_code": "GIFTCARD",
                "timeout": timeout,
            }
        )
        return KSeriesCardProvider(settings, transport=run.served.transport)

    cards, short = make(TIMEOUT), make(SHORT)
    card, redemptions = "6006490000000001", "/v1/redemptions"
    await run.step(cards.balance(card))
    paid = await run.step(cards.redeem(card, amount=1250, currency="USD", reference="r1"))
    assert paid is not None
    await run.step(cards.balance("6006499999999999"))
    await run.step(
        cards.redeem(card, amount=100, currency="USD", reference="r2"),
        path=redemptions,
        kind="error",
        status=503,
    )
    await run.step(
        cards.redeem(card, amount=300, currency="USD", reference="r3"),
        path=redemptions,
        kind="drop_after_apply",
    )
    await run.step(cards.find_redemption("r3"), path=redemptions, kind="slow", delay=0.05)
    await run.step(
        short.reverse(paid.transaction_id, reference="v1"), path=".*/reversal", kind="timeout"
    )
    await run.step(cards.reverse(paid.transaction_id, reference="v1"))
    await cards.aclose()
    await short.aclose()
    return [
        ErrorCode.NOT_FOUND,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.UNKNOWN_OUTCOME,
    ]


async def petz_coupons(run: Run, tmp_path: Path) -> list[ErrorCode]:
    def make(timeout: float) -> PetzCouponProvider:
        settings = PetzSettings(
            base_url=run.served.url,
            api_key_file=key_file(tmp_path, "petz", petz.DEFAULT_KEY),
            timeout=timeout,
        )
        return PetzCouponProvider(settings, transport=run.served.transport)

    coupons, short = make(TIMEOUT), make(SHORT)
    lines = [
        OrderLine(id="1", name="kibble", quantity=1, amount=1299, sku="012345678905"),
        OrderLine(id="2", name="treats", quantity=1, amount=1299, sku="036000291452"),
    ]
    order = OrderSnapshot(
        order_id="o-1", lines=lines, subtotal=2598, tax=100, total=2698, currency="USD"
    )
    lane, capture = "lane-1", "/posface/auth/capture/"
    customer = await run.step(coupons.set_customer("5551234567", order=order, device_ref=lane))
    assert customer is not None
    await run.step(coupons.set_customer("5550000000", order=order, device_ref=lane))
    auth = await run.step(
        coupons.authorize(order, device_ref=lane, consumer_id=customer.consumer_id)
    )
    assert auth is not None
    await run.step(
        coupons.capture(auth, order=order, device_ref=lane), path=capture, kind="error", status=503
    )
    await run.step(
        coupons.capture(auth, order=order, device_ref=lane), path=capture, kind="drop_after_apply"
    )
    await run.step(
        coupons.capture(auth, order=order, device_ref=lane), path=capture, kind="slow", delay=0.05
    )
    await run.step(
        short.authorize(order, device_ref=lane, consumer_id=customer.consumer_id),
        path="/posface/auth/create/",
        kind="timeout",
    )
    await coupons.aclose()
    await short.aclose()
    return [
        ErrorCode.NOT_FOUND,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.UNKNOWN_OUTCOME,
    ]


async def punchh_loyalty(run: Run, tmp_path: Path) -> list[ErrorCode]:
    def make(timeout: float) -> PunchhLoyaltyProvider:
        settings = PunchhSettings.model_validate(
            {
                "base_url": run.served.url,
                "location_key_file": key_file(tmp_path, "location", punchh.LOCATION_KEY),
                "business_key_file": key_file(tmp_path, "business", punchh.BUSINESS_KEY),
                "timeout": timeout,
            }
        )
        return PunchhLoyaltyProvider(settings, transport=run.served.transport)

    loyalty, short = make(TIMEOUT), make(SHORT)
    order = OrderSnapshot(
        order_id="A-1001",
        lines=[OrderLine(id="1", name="Burger", quantity=1, amount=1000, sku="101")],
        subtotal=1000,
        tax=80,
        total=1080,
        currency="USD",
    )
    when = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    tx = {"external_uid": "uid-1", "receipt_key": "000000000001", "transaction_no": "T1"}
    search, batch = "/api/pos/users/search", "/api/pos/batch_redemptions"
    guest = await run.step(loyalty.find_guest("phone", "5550100001"))
    assert guest is not None
    await run.step(loyalty.find_guest("phone", "5550199999"))
    await run.step(loyalty.find_guest("phone", "5550100001"), path=search, kind="error", status=503)
    await run.step(loyalty.select(guest, [Selection("redeemable", "501")], external_uid="uid-1"))
    await run.step(loyalty.redeem_query(guest, order, receipt_datetime=when, **tx))
    commit = loyalty.redeem_commit(guest, order, receipt_datetime=when, **tx)
    await run.step(commit, path=batch, kind="drop_after_apply")
    commit = loyalty.redeem_commit(guest, order, receipt_datetime=when, **tx)
    await run.step(commit, path=batch, kind="slow", delay=0.05)
    checkin = short.checkin(
        ("phone", "5550100001"),
        order,
        receipt_datetime=when,
        external_uid="uid-1",
        receipt_key="000000000001",
        transaction_no="T1",
    )
    await run.step(checkin, path="/api/pos/checkins", kind="timeout")
    await loyalty.aclose()
    await short.aclose()
    return [
        ErrorCode.NOT_FOUND,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.UNKNOWN_OUTCOME,
    ]


Scenario = Callable[[Run, Path], Awaitable[list[ErrorCode]]]
SCENARIOS: dict[str, Scenario] = {
    "giftlocal": gift_local,
    "kseries": k_series,
    "petz": petz_coupons,
    "punchh": punchh_loyalty,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_adapter_sees_the_same_provider_over_the_transport_as_over_loopback(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: dict[Carrier, Json] = {}
    for carrier in CARRIERS:
        # The simulators' ids come from uuid4: the same sequence in both runs.
        ids = itertools.count(1)
        monkeypatch.setattr(uuid, "uuid4", lambda ids=ids: uuid.UUID(int=next(ids)))
        with served(load(name), carrier) as api:
            run = Run(api)
            expected = await SCENARIOS[name](run, tmp_path)
            assert run.codes() == expected, carrier
            records[carrier] = run.record()
    assert records["in_process"] == records["loopback"]


# -- what only the transport has ------------------------------------------------------------------


def counter_client(transport: SimulatorTransport, timeout: float = TIMEOUT) -> ProviderClient:
    settings = HttpProviderSettings(base_url=BASE_URL, timeout=timeout)
    return ProviderClient("Counter", settings, headers={"Authorization": "k"}, transport=transport)


@pytest.mark.parametrize(
    ("fault", "code", "value"),
    [
        ({"kind": "timeout"}, ErrorCode.UNKNOWN_OUTCOME, 0),
        ({"kind": "slow", "delay": 30}, None, 1),
    ],
)
async def test_closing_the_transport_ends_a_held_request_as_server_shutdown_does(
    fault: Json, code: ErrorCode | None, value: int
) -> None:
    """A held `timeout` closes without an answer and applies nothing; a `slow` one answers now."""
    counter = Counter()
    counter.arm([Fault.model_validate({"path": "/count", **fault})])
    transport = SimulatorTransport(counter)
    api = counter_client(transport, timeout=60)
    call = asyncio.create_task(api.call("POST", "/count", write=True))
    async with asyncio.timeout(5):
        while not counter.requests:  # noqa: ASYNC110
            await asyncio.sleep(0)  # until the request is in: held by the fault
        await transport.aclose()
        outcome = await asyncio.gather(call, return_exceptions=True)
    if code is None:
        assert isinstance(outcome[0], httpx.Response) and outcome[0].json() == {"value": 1}
    else:
        assert isinstance(outcome[0], ProviderError) and outcome[0].code == code
    assert counter.value == value
    await api.aclose()


def test_a_sync_client_reaches_the_api_and_the_control_endpoints() -> None:
    counter, key = Counter(), {"Authorization": "k"}
    with httpx.Client(base_url=BASE_URL, transport=SimulatorTransport(counter)) as sync:
        assert sync.post("/count", headers=key).json() == {"value": 1}
        sync.post("/_sim/faults", json=[{"kind": "slow", "delay": 0.01}]).raise_for_status()
        assert sync.post("/count", headers=key).json() == {"value": 2}
        sync.post("/_sim/faults", json=[{"kind": "drop_after_apply"}]).raise_for_status()
        with pytest.raises(httpx.RemoteProtocolError):
            sync.post("/count", headers=key)
        assert sync.get("/_sim/ledger").json() == {"value": 3}
        assert [r["status"] for r in sync.get("/_sim/requests").json()] == [200, 200, None]
