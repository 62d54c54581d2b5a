"""Each op's declared error codes (`OpSpec.errors`, docs/mqtt-api.md "Which op answers which")
against what the real handlers answer.

A `LaneAgent` that is never started gives its router every real handler; gift vouchers run on
the sandbox ledger and card payments on the card API simulator over loopback, with its faults
for the provider's failures and a store that refuses writes for a full disk. The gift, card,
order and keyed-entry ops are driven into every code they declare (but those noted in
`NOT_PROVOKED`), so a list can neither miss a code these ops answer nor claim one they cannot.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import LaneAgent
from agent.config import parse_config
from agent.contract import OPS, ErrorBody, Response
from agent.contract.base import EVERY_OP_ERRORS
from agent.errors import ErrorCode
from agent.providers.kseries import LOOKUP_PATH, REDEMPTIONS_PATH
from simulators.kseries import API_KEY, CardSimulator
from simulators.server import Fault, Running, serve
from tests.lane import settle

CARD = "6006490000000001"  # 50.00 USD, active: a 16-digit number, so a `loyalty_card` kind
LOW = "6006490000000002"  # 12.50 USD
BLOCKED = "6006490000000003"
EXPIRED_CARD = "6006490000000004"
UNKNOWN_CARD = "6006490000000099"
GIFT = "100000000001"  # the sandbox's demo gifts: 50.00 USD
EXPIRED_GIFT = "100000000004"
UNKNOWN_GIFT = "100000000099"
PRODUCT = "5901234123457"  # an EAN-13: `product_gtin`, which no flow takes
REVERSAL = r"/v1/redemptions/[^/]+/reversal"
GIFT_OPS = ("gift.validate", "gift.redeem", "gift.reverse")
ORDER_OPS = ("order.update", "order.paid", "order.void")

NOT_PROVOKED = {
    "gift.redeem": {
        ErrorCode.NOT_YET_VALID,
        ErrorCode.WRONG_LOCATION,
        ErrorCode.EARLIER_REDEMPTION,
    },
    "gift.reverse": {ErrorCode.NOT_CONFIGURED},
}
"""Gift Local refuses a redeem with these; the sandbox's gifts that are not valid yet or not
here are refused by the flow before the ledger is asked, as `not_redeemable`. An earlier
redemption of unknown outcome needs a provider that loses answers, which the sandbox never does
(tests/flows/test_money_after_faults.py provokes it on Gift Local). A reversal is
`not_configured` when a provider refuses the lane's key, or the flow that took the tender has
since been configured away; an unknown transaction id is `not_found` whatever the lane runs."""


def disk_full(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Lane:
    """A LaneAgent never started: the bus only queues, nothing reaches a broker."""

    def __init__(self, providers: dict[str, Any], state_dir: Path, scans: dict[str, Any]) -> None:
        config = parse_config(
            {
                "lane": {"store": "s1", "lane": "l1"},
                "providers": providers,
                "state": {"dir": str(state_dir)},
                "scans": scans,
            }
        )
        self.agent = LaneAgent(config)
        for driver in self.agent.drivers:  # as `run` would, so scans can be counted
            self.agent.devices.add(driver.device_id, driver.kind)
        self.answered: dict[str, set[ErrorCode]] = defaultdict(set)

    async def ask(self, op: str, **params: Any) -> Response:
        payload = json.dumps({"request_id": uuid.uuid4().hex, **params}).encode()
        answer = await self.agent.router.handle(op, payload)
        await settle()
        if answer.error is not None:
            self.answered[op].add(answer.error.code)
        return answer

    async def ok(self, op: str, **params: Any) -> dict[str, Any]:
        answer = await self.ask(op, **params)
        assert answer.data is not None, answer
        return answer.data

    async def scan(self, data: str) -> str:
        token_id = (await self.ok("scan.inject", data=data))["token_id"]
        assert isinstance(token_id, str)
        return token_id

    async def refused(self, code: ErrorCode, op: str, **params: Any) -> ErrorBody:
        answer = await self.ask(op, **params)
        assert answer.error is not None and answer.error.code is code, answer
        assert code in OPS[op].errors + EVERY_OP_ERRORS, f"{op} answers {code}, undeclared"
        return answer.error

    async def close(self) -> None:
        for provider in self.agent.providers:
            await provider.aclose()


@pytest.fixture
def cards_api() -> Iterator[Running]:
    with serve(CardSimulator()) as running:
        yield running


@pytest.fixture
async def lanes(tmp_path: Path, cards_api: Running) -> AsyncIterator[Callable[..., Lane]]:
    key_file = tmp_path / "kseries.key"
    key_file.write_text(API_KEY, encoding="utf-8")
    kseries = {
        "base_url": cards_api.url,
        "api_key_file": str(key_file),
        "payment_method_code": "GIFTCARD",
        "timeout": 2.0,
    }
    made: list[Lane] = []

    def make(*providers: str, scans: dict[str, Any] | None = None) -> Lane:
        tables = {name: kseries if name == "kseries" else {} for name in providers}
        lane = Lane(tables, tmp_path / f"lane{len(made)}", scans or {"rate": 0})
        made.append(lane)
        return lane

    yield make
    for lane in made:
        await lane.close()


def specific(answered: dict[str, set[ErrorCode]], op: str) -> set[ErrorCode]:
    return answered[op] - set(EVERY_OP_ERRORS)


def test_ops_declare_only_their_own_codes_each_once() -> None:
    for op, spec in OPS.items():
        assert len(set(spec.errors)) == len(spec.errors), op
        assert not set(spec.errors) & {*EVERY_OP_ERRORS, ErrorCode.UNKNOWN_OP}, op


async def test_gift_and_card_ops_answer_exactly_what_they_declare(
    lanes: Callable[..., Lane], cards_api: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = lanes("sandbox", "kseries")  # 16 digits go to the card flow: no loyalty provider
    cards_only = lanes("kseries")
    sim = cards_api.simulator
    gift, expired_gift, unknown_gift = [
        await lane.scan(code) for code in (GIFT, EXPIRED_GIFT, UNKNOWN_GIFT)
    ]
    card, low, blocked, expired_card, unknown_card = [
        await lane.scan(number) for number in (CARD, LOW, BLOCKED, EXPIRED_CARD, UNKNOWN_CARD)
    ]
    product = await cards_only.scan(PRODUCT)

    await lane.refused(ErrorCode.UNKNOWN_TOKEN, "gift.validate", token_id="tok_0000")
    await lane.refused(ErrorCode.NOT_FOUND, "gift.validate", token_id=unknown_gift)
    await lane.refused(ErrorCode.NOT_FOUND, "gift.validate", token_id=unknown_card)
    sim.arm([Fault(kind="error", path=LOOKUP_PATH)])
    await lane.refused(ErrorCode.PROVIDER_UNAVAILABLE, "gift.validate", token_id=card)
    await cards_only.refused(ErrorCode.NOT_CONFIGURED, "gift.validate", token_id=product)

    await lane.refused(ErrorCode.UNKNOWN_TOKEN, "gift.redeem", token_id="tok_0000", amount=100)
    await lane.refused(ErrorCode.NOT_FOUND, "gift.redeem", token_id=unknown_gift, amount=100)
    refused = await lane.refused(
        ErrorCode.NOT_REDEEMABLE, "gift.redeem", token_id=expired_gift, amount=100
    )
    assert refused.details == {"reason": "expired"}
    await lane.refused(ErrorCode.INSUFFICIENT_BALANCE, "gift.redeem", token_id=gift, amount=999_999)
    await cards_only.refused(ErrorCode.NOT_CONFIGURED, "gift.redeem", token_id=product, amount=100)
    voucher = (await lane.ok("gift.redeem", token_id=gift, amount=100))["redemption"]
    await lane.ok("gift.reverse", transaction_id=voucher["transaction_id"])
    await lane.refused(
        ErrorCode.ALREADY_REVERSED, "gift.reverse", transaction_id=voucher["transaction_id"]
    )
    await lane.refused(ErrorCode.NOT_FOUND, "gift.reverse", transaction_id="txn_unknown")
    await cards_only.refused(ErrorCode.NOT_FOUND, "gift.reverse", transaction_id="txn_unknown")

    await lane.ok(
        "order.update",
        order_id="A1",
        lines=[{"id": "1", "name": "Latte", "quantity": 1, "amount": 5000}],
        subtotal=5000,
        total=5000,
        currency="USD",
    )
    short = await lane.refused(
        ErrorCode.INSUFFICIENT_BALANCE, "gift.redeem", token_id=low, amount=2000
    )
    assert short.details == {"available": 1250, "currency": "USD"}
    await lane.refused(ErrorCode.NOT_REDEEMABLE, "gift.redeem", token_id=blocked, amount=100)
    await lane.refused(ErrorCode.EXPIRED, "gift.redeem", token_id=expired_card, amount=100)
    await lane.refused(ErrorCode.NOT_FOUND, "gift.redeem", token_id=unknown_card, amount=100)
    sim.arm([Fault(kind="error", method="POST", path=REDEMPTIONS_PATH)])
    await lane.refused(ErrorCode.PROVIDER_UNAVAILABLE, "gift.redeem", token_id=card, amount=100)
    sim.arm(
        [
            Fault(kind="drop_after_apply", method="POST", path=REDEMPTIONS_PATH),
            Fault(kind="error", method="GET", path=REDEMPTIONS_PATH),
        ]
    )
    await lane.refused(ErrorCode.UNKNOWN_OUTCOME, "gift.redeem", token_id=card, amount=100)

    paid = (await lane.ok("gift.redeem", token_id=card, amount=100))["card"]
    sim.arm([Fault(kind="error", method="POST", path=REVERSAL)])
    await lane.refused(
        ErrorCode.PROVIDER_UNAVAILABLE, "gift.reverse", transaction_id=paid["transaction_id"]
    )
    sim.arm([Fault(kind="drop_after_apply", method="POST", path=REVERSAL)])
    await lane.refused(
        ErrorCode.UNKNOWN_OUTCOME, "gift.reverse", transaction_id=paid["transaction_id"]
    )
    # Sent again under a new request, so another reference: the card service already did it.
    await lane.refused(
        ErrorCode.ALREADY_REVERSED, "gift.reverse", transaction_id=paid["transaction_id"]
    )

    kept = (await lane.ok("gift.redeem", token_id=gift, amount=100))["redemption"]
    monkeypatch.setattr(lane.agent.orders.book, "save_flow_state", disk_full)
    await lane.refused(ErrorCode.STORAGE_FULL, "gift.redeem", token_id=card, amount=100)
    # A voucher redeemed as the disk fills is answered all the same; until its record is
    # written, no other gift step is taken.
    monkeypatch.setattr(lane.agent.tenders, "update", disk_full)
    await lane.ok("gift.redeem", token_id=gift, amount=100)
    await lane.refused(
        ErrorCode.STORAGE_FULL, "gift.reverse", transaction_id=kept["transaction_id"]
    )

    for op in GIFT_OPS:
        answered = specific(lane.answered, op) | specific(cards_only.answered, op)
        assert answered == set(OPS[op].errors) - NOT_PROVOKED.get(op, set()), op


async def test_order_ops_answer_exactly_what_they_declare(
    lanes: Callable[..., Lane], monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = lanes("sandbox")
    order = {"order_id": "A1", "lines": [], "subtotal": 0, "total": 0, "currency": "USD"}
    await lane.refused(ErrorCode.NOT_FOUND, "order.paid", order_id="never-sent")
    await lane.refused(ErrorCode.NOT_FOUND, "order.void", order_id="never-sent")
    await lane.ok("order.update", **order)
    book = lane.agent.orders.book
    monkeypatch.setattr(book, "close", disk_full)
    await lane.refused(ErrorCode.STORAGE_FULL, "order.paid", order_id="A1")
    await lane.refused(ErrorCode.STORAGE_FULL, "order.void", order_id="A1")
    monkeypatch.setattr(book, "update", disk_full)
    await lane.refused(ErrorCode.STORAGE_FULL, "order.update", **order)
    for op in ORDER_OPS:
        assert specific(lane.answered, op) == set(OPS[op].errors), op


async def test_keyed_entry_answers_rate_limited(lanes: Callable[..., Lane]) -> None:
    lane = lanes("sandbox", scans={"rate": 0.01, "burst": 1})
    await lane.scan(GIFT)
    await lane.refused(ErrorCode.RATE_LIMITED, "scan.inject", data=GIFT)
    assert specific(lane.answered, "scan.inject") == set(OPS["scan.inject"].errors)


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("coupon.customer", {"token_id": "tok_0000"}),
        ("coupon.authorize", {}),
        ("coupon.capture", {"order_id": "A1"}),
        ("loyalty.lookup", {"token_id": "tok_0000"}),
        ("loyalty.select", {}),
    ],
)
async def test_flow_ops_without_a_provider_answer_not_configured(
    lanes: Callable[..., Lane], op: str, params: dict[str, Any]
) -> None:
    await lanes("sandbox").refused(ErrorCode.NOT_CONFIGURED, op, **params)
