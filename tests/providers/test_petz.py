"""The PETZ adapter against the PETZ simulator: every operation, every error mapped to the
vocabulary, and the fault cases that must never redeem a coupon twice. In-process for speed; the
tests marked OVER_BOTH or OVER_LOOPBACK also run over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import ErrorCode, ProviderError
from agent.normalise.gs1 import check_digit
from agent.orders import OrderLine, OrderSnapshot
from agent.providers.coupons import CouponAuthorization, CouponRejection
from agent.providers.petz import (
    PetzCouponProvider,
    classify,
    from_money,
    order_body,
    product_identifiers,
    to_money,
)
from agent.providers.settings import PetzSettings
from agent.tokens import mask
from simulators.petz import DEFAULT_KEY, OrderSetBody, PetzSimulator
from simulators.server import Request, Response
from tests.served import OVER_BOTH, OVER_LOOPBACK, Carrier, Served, served

KIBBLE = "012345678905"  # cpn_kibble2: $2.00 off
TREATS = "036000291452"  # cpn_treats15: 15% off
CATNIP = "081234000004"  # cpn_catnip1: expired
OTHER = "041000000638"  # no coupon
PHONE = "5551234567"  # consumer c_1001
LANE = "lane-1"
TIMEOUT = 0.5


@pytest.fixture
def sim(carrier: Carrier) -> Iterator[Served]:
    with served(PetzSimulator(), carrier) as running:
        yield running


def settings(running: Served, tmp_path: Path, key: str = DEFAULT_KEY, **extra: Any) -> PetzSettings:
    key_file = tmp_path / "petz_api_key"
    key_file.write_text(key + "\n", encoding="utf-8")
    return PetzSettings(base_url=running.url, api_key_file=key_file, timeout=TIMEOUT, **extra)


@pytest.fixture
async def petz(sim: Served, tmp_path: Path) -> AsyncIterator[PetzCouponProvider]:
    provider = PetzCouponProvider(settings(sim, tmp_path), transport=sim.transport)
    yield provider
    await provider.aclose()


def snapshot(order_id: str = "o-1", *skus: str | None, amount: int = 1299) -> OrderSnapshot:
    skus = skus or (KIBBLE, TREATS)
    lines = [
        OrderLine(id=str(n), name=f"item {n}", quantity=1, amount=amount, sku=sku)
        for n, sku in enumerate(skus, start=1)
    ]
    subtotal = sum(x.amount for x in lines)
    return OrderSnapshot(
        order_id=order_id,
        lines=lines,
        subtotal=subtotal,
        tax=100,
        total=subtotal + 100,
        currency="USD",
    )


async def fails(code: ErrorCode, call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    assert caught.value.code == code, caught.value.message
    return caught.value


async def authorized(petz: PetzCouponProvider, order: OrderSnapshot) -> CouponAuthorization:
    await petz.set_order(order, device_ref=LANE, consumer_id=None, status="open")
    customer = await petz.set_customer(PHONE, order=order, device_ref=LANE)
    return await petz.authorize(order, device_ref=LANE, consumer_id=customer.consumer_id)


# -- happy paths --------------------------------------------------------------------------------


@OVER_BOTH
async def test_set_customer_returns_the_wallet_in_minor_units(
    petz: PetzCouponProvider, sim: Served
) -> None:
    customer = await petz.set_customer(PHONE, order=snapshot(), device_ref=LANE)
    assert customer.consumer_id == "c_1001"
    assert customer.phone_masked == mask(PHONE) and PHONE not in customer.model_dump_json()
    assert customer.wallet_url is not None
    kibble, treats, catnip = customer.wallet
    assert (kibble.coupon_id, kibble.amount_off, kibble.percent_off, kibble.upcs) == (
        "cpn_kibble2",
        200,
        None,
        [KIBBLE],
    )
    assert (treats.amount_off, treats.percent_off) == (None, Decimal(15))
    assert catnip.expires_at is not None
    assert sim.ledger()["orders"]["o-1"]["consumer_id"] == "c_1001"


async def test_set_order_sends_lines_identifiers_and_decimal_amounts(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot("o-1", KIBBLE, "0" + TREATS, "ACME-5LB", None)
    await petz.set_order(order, device_ref=LANE, consumer_id="c_1001", status="open")
    state = sim.ledger()["orders"]["o-1"]
    assert (state["status"], state["consumer_id"], state["total"]) == ("open", "c_1001", "52.96")
    assert [x["identifiers"] for x in state["lines"]] == [
        [{"type": "upc", "value": KIBBLE}],
        [{"type": "ean", "value": "0" + TREATS}, {"type": "upc", "value": TREATS}],
        [{"type": "sku", "value": "ACME-5LB"}],
        [],
    ]
    assert state["lines"][0]["amount"] == "12.99"
    await petz.set_order(order, device_ref=LANE, consumer_id=None, status="paid")
    state = sim.ledger()["orders"]["o-1"]
    assert (state["status"], state["consumer_id"]) == ("paid", None)


async def test_authorize_gives_discounts_and_reasons(petz: PetzCouponProvider, sim: Served) -> None:
    auth = await authorized(petz, snapshot("o-1", KIBBLE, TREATS, CATNIP, OTHER))
    assert auth.order_id == "o-1" and auth.consumer_id == "c_1001"
    assert [(d.coupon_id, d.amount, d.line_ids) for d in auth.applied] == [
        ("cpn_kibble2", 200, ["1"]),
        ("cpn_treats15", 195, ["2"]),  # 15% of 12.99, half up
    ]
    assert auth.total_discount == 395
    (expired,) = [d for d in auth.discounts if d.rejected is not None]
    assert (expired.coupon_id, expired.amount, expired.rejected) == (
        "cpn_catnip1",
        0,
        CouponRejection.EXPIRED,
    )
    assert expired.reason == "Coupon has expired."
    assert sim.ledger()["authorizations"][auth.auth_id]["status"] == "authorized"


async def test_authorize_syncs_the_order_first(petz: PetzCouponProvider, sim: Served) -> None:
    await petz.set_order(snapshot("o-1", OTHER), device_ref=LANE, consumer_id=None, status="open")
    # The POS added the kibble since PETZ last saw the order: the authorization still sees it.
    auth = await petz.authorize(
        snapshot("o-1", OTHER, KIBBLE), device_ref=LANE, consumer_id="c_1001"
    )
    assert [d.line_ids for d in auth.applied] == [["2"]]
    assert sim.ledger()["orders"]["o-1"]["consumer_id"] == "c_1001"


@OVER_BOTH
async def test_capture_redeems_and_a_second_capture_changes_nothing(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    auth = await authorized(petz, order)
    first = await petz.capture(auth, order=order, device_ref=LANE)
    assert (first.auth_id, first.coupon_ids, first.total_discount) == (
        auth.auth_id,
        ["cpn_kibble2", "cpn_treats15"],
        395,
    )
    again = await petz.capture(auth.auth_id, order=order, device_ref=LANE)
    assert again == first
    state = sim.ledger()
    assert len(state["redemptions"]) == 2
    assert state["consumers"]["c_1001"]["wallet"] == ["cpn_catnip1"]


async def test_capture_path_is_a_setting(sim: Served, tmp_path: Path) -> None:
    petz = PetzCouponProvider(
        settings(sim, tmp_path, capture_path="/posface/auth/redeem/"), transport=sim.transport
    )
    order = snapshot()
    auth = await authorized(petz, order)
    await petz.capture(auth, order=order, device_ref=LANE)
    assert sim.sent()[-1]["path"] == "/posface/auth/redeem/"
    assert sim.ledger()["authorizations"][auth.auth_id]["status"] == "captured"
    await petz.aclose()


async def test_release_voids_the_order_and_frees_the_coupons(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    auth = await authorized(petz, order)
    await petz.release(auth.auth_id, order=order, device_ref=LANE)
    await petz.release(auth.auth_id, order=order, device_ref=LANE)  # again: a no-op
    state = sim.ledger()
    assert state["authorizations"][auth.auth_id]["status"] == "released"
    assert state["orders"]["o-1"]["status"] == "void"
    assert state["orders"]["o-1"]["consumer_id"] == "c_1001"  # the customer stays on the order
    # The coupons are free for the next order.
    again = await petz.authorize(snapshot("o-2"), device_ref=LANE, consumer_id="c_1001")
    assert again.total_discount == 395


async def test_check_health(petz: PetzCouponProvider, sim: Served, tmp_path: Path) -> None:
    assert await petz.check_health() == (True, "PETZ answers and accepts the API key")
    wrong = PetzCouponProvider(settings(sim, tmp_path, key="wrong"), transport=sim.transport)
    assert await wrong.check_health() == (False, "Invalid token.")
    await wrong.aclose()
    with served(PetzSimulator(), "loopback") as gone:
        url = gone
    down = PetzCouponProvider(settings(url, tmp_path))
    healthy, message = await down.check_health()
    assert not healthy and "cannot be reached" in message
    await down.aclose()


# -- errors -------------------------------------------------------------------------------------


async def test_wrong_phone_is_not_found_in_petz_words(petz: PetzCouponProvider) -> None:
    error = await fails(
        ErrorCode.NOT_FOUND, petz.set_customer("5550000000", order=snapshot(), device_ref=LANE)
    )
    assert error.message.startswith("No PETZ account matches this phone number")


async def test_malformed_phone_is_invalid_request(petz: PetzCouponProvider) -> None:
    error = await fails(
        ErrorCode.INVALID_REQUEST, petz.set_customer("555-1234", order=snapshot(), device_ref=LANE)
    )
    assert "current_phone" in error.message


async def test_nothing_applicable_is_not_redeemable_with_the_reasons(
    petz: PetzCouponProvider,
) -> None:
    error = await fails(
        ErrorCode.NOT_REDEEMABLE,
        petz.authorize(snapshot("o-1", OTHER, CATNIP), device_ref=LANE, consumer_id="c_1001"),
    )
    assert error.message == "No PETZ coupon in the customer's wallet applies to this order."
    assert error.details is not None
    rejected = {d["coupon_id"]: d["rejected"] for d in error.details["discounts"]}
    assert rejected == {
        "cpn_kibble2": "product_mismatch",
        "cpn_treats15": "product_mismatch",
        "cpn_catnip1": "expired",
    }


async def test_authorize_for_an_unknown_consumer_is_not_found(petz: PetzCouponProvider) -> None:
    await fails(
        ErrorCode.NOT_FOUND, petz.authorize(snapshot(), device_ref=LANE, consumer_id="c_nobody")
    )


async def test_a_closed_order_is_invalid_request(petz: PetzCouponProvider) -> None:
    order = snapshot()
    await petz.set_order(order, device_ref=LANE, consumer_id=None, status="paid")
    error = await fails(
        ErrorCode.INVALID_REQUEST, petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
    )
    assert error.message == "Order o-1 is already paid."
    await fails(ErrorCode.INVALID_REQUEST, petz.release("pa_x", order=order, device_ref=LANE))


async def test_capture_of_an_unknown_auth_is_not_found(petz: PetzCouponProvider) -> None:
    order = snapshot()
    await authorized(petz, order)
    await fails(ErrorCode.NOT_FOUND, petz.capture("pa_nope", order=order, device_ref=LANE))


async def test_capture_of_a_released_auth_is_not_redeemable(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    first = await authorized(petz, order)
    await petz.authorize(order, device_ref=LANE, consumer_id="c_1001")  # replaces the first
    error = await fails(ErrorCode.NOT_REDEEMABLE, petz.capture(first, order=order, device_ref=LANE))
    assert "released (replaced)" in error.message
    await petz.release(first.auth_id, order=order, device_ref=LANE)
    await fails(ErrorCode.NOT_REDEEMABLE, petz.capture(first, order=order, device_ref=LANE))
    assert sim.ledger()["redemptions"] == []


async def test_release_of_an_unknown_auth_is_not_found(petz: PetzCouponProvider) -> None:
    order = snapshot()
    await authorized(petz, order)
    await fails(ErrorCode.NOT_FOUND, petz.release("pa_nope", order=order, device_ref=LANE))


async def test_release_after_capture_is_refused(petz: PetzCouponProvider, sim: Served) -> None:
    order = snapshot()
    auth = await authorized(petz, order)
    await petz.capture(auth, order=order, device_ref=LANE)
    error = await fails(
        ErrorCode.INVALID_REQUEST, petz.release(auth.auth_id, order=order, device_ref=LANE)
    )
    assert "captured" in error.message
    assert len(sim.ledger()["redemptions"]) == 2


async def test_a_wrong_key_is_not_configured(sim: Served, tmp_path: Path) -> None:
    petz = PetzCouponProvider(settings(sim, tmp_path, key="wrong"), transport=sim.transport)
    error = await fails(
        ErrorCode.NOT_CONFIGURED, petz.set_customer(PHONE, order=snapshot(), device_ref=LANE)
    )
    assert error.message == "Invalid token."
    await petz.aclose()


def test_a_missing_key_is_not_configured_at_construction(
    sim: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ProviderError) as caught:
        PetzCouponProvider(PetzSettings(base_url=sim.url))
    assert caught.value.code == ErrorCode.NOT_CONFIGURED
    assert "LoadCredential=petz_api_key" in caught.value.message


def test_device_ref_defaults_to_the_lane(sim: Served) -> None:
    assert PetzSettings(base_url=sim.url).device_ref_for(LANE) == LANE
    assert PetzSettings(base_url=sim.url, device_ref="reg-7").device_ref_for(LANE) == "reg-7"


def test_refusals_without_a_known_code_fall_back_to_the_status() -> None:
    assert classify(httpx.Response(302))[0] == ErrorCode.NOT_CONFIGURED
    assert classify(httpx.Response(429, text="slow down"))[0] == ErrorCode.PROVIDER_UNAVAILABLE
    odd = httpx.Response(409, json={"error": {"code": "new_in_v2", "message": "m"}})
    assert classify(odd)[0] == ErrorCode.INVALID_REQUEST
    assert classify(httpx.Response(418, json={}))[0] == ErrorCode.INVALID_REQUEST


# -- faults -------------------------------------------------------------------------------------


@OVER_BOTH
async def test_503_on_capture_applies_nothing(petz: PetzCouponProvider, sim: Served) -> None:
    order = snapshot()
    auth = await authorized(petz, order)
    sim.arm(path="/posface/auth/capture/", kind="error", status=503)
    await fails(ErrorCode.PROVIDER_UNAVAILABLE, petz.capture(auth, order=order, device_ref=LANE))
    state = sim.ledger()
    assert state["redemptions"] == []
    assert state["authorizations"][auth.auth_id]["status"] == "authorized"


@OVER_BOTH
async def test_dropped_capture_is_unknown_outcome_and_redeems_once(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    auth = await authorized(petz, order)
    sim.arm(path="/posface/auth/capture/", kind="drop_after_apply")
    await fails(ErrorCode.UNKNOWN_OUTCOME, petz.capture(auth, order=order, device_ref=LANE))
    assert [r["coupon_id"] for r in sim.ledger()["redemptions"]] == ["cpn_kibble2", "cpn_treats15"]
    # Resolving with the same auth id answers the capture that happened, without a second one.
    capture = await petz.capture(auth, order=order, device_ref=LANE)
    assert capture.total_discount == 395
    assert len(sim.ledger()["redemptions"]) == 2


async def test_dropped_authorization_is_unknown_outcome_and_a_retry_holds_once(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    sim.arm(path="/posface/auth/create/", kind="drop_after_apply")
    await fails(
        ErrorCode.UNKNOWN_OUTCOME, petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
    )
    auth = await petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
    states = {k: v["status"] for k, v in sim.ledger()["authorizations"].items()}
    assert sorted(states.values()) == ["authorized", "released"]
    assert states[auth.auth_id] == "authorized"


@OVER_LOOPBACK
async def test_a_silent_provider_is_bounded_by_the_timeout(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    sim.arm(path="/posface/auth/create/", kind="timeout")
    sim.arm(path="/posface/customer/set/", kind="timeout")
    async with asyncio.timeout(TIMEOUT * 10):  # a bound, not a measurement
        await fails(
            ErrorCode.UNKNOWN_OUTCOME, petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
        )
        await fails(
            ErrorCode.PROVIDER_UNAVAILABLE, petz.set_customer(PHONE, order=order, device_ref=LANE)
        )


async def test_a_dropped_order_update_is_safe_to_resend(
    petz: PetzCouponProvider, sim: Served
) -> None:
    order = snapshot()
    sim.arm(path="/posface/order/set/", kind="drop_after_apply")
    await fails(
        ErrorCode.PROVIDER_UNAVAILABLE,
        petz.set_order(order, device_ref=LANE, consumer_id=None, status="open"),
    )
    await petz.set_order(order, device_ref=LANE, consumer_id=None, status="open")
    assert list(sim.ledger()["orders"]) == ["o-1"]


class ChangedAnswers(PetzSimulator):
    """A PETZ that applies each request as usual and then answers in a shape the adapter does
    not know: a capture without its id, a wallet coupon with neither value."""

    def __init__(self) -> None:
        super().__init__()
        self.route("POST", "/posface/auth/capture/", self.changed_capture)
        self.route("POST", "/posface/customer/set/", self.changed_customer)
        self.routes[:0] = self.routes[-2:]  # ahead of the normal routes

    def changed_capture(self, request: Request) -> Response:
        self.auth_capture(request)
        return Response(200, {"result": "ok"})

    def changed_customer(self, request: Request) -> Response:
        answer = self.customer_set(request)
        answer.body["wallet"][0]["amount_off"] = None
        return answer


async def test_an_odd_wallet_coupon_is_left_out_and_a_capture_without_its_id_is_unknown(
    tmp_path: Path,
) -> None:
    with served(ChangedAnswers()) as running:
        petz = PetzCouponProvider(settings(running, tmp_path), transport=running.transport)
        order = snapshot()
        customer = await petz.set_customer(PHONE, order=order, device_ref=LANE)
        assert customer.consumer_id == "c_1001"
        assert "cpn_kibble2" not in [c.coupon_id for c in customer.wallet]
        auth = await petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
        await fails(ErrorCode.UNKNOWN_OUTCOME, petz.capture(auth, order=order, device_ref=LANE))
        assert len(running.ledger()["redemptions"]) == 2
        await petz.aclose()


class TrimmedAnswers(PetzSimulator):
    """A PETZ answering with only the one identifier each answer needs (seed 001's
    `consumer_id`; `auth_id`, `capture_id`), or with every field plus names never seen."""

    def __init__(self, extra: bool) -> None:
        super().__init__()
        self.extra = extra
        for path, handler in (
            ("/posface/customer/set/", self.customer_set),
            ("/posface/order/set/", self.order_set),
            ("/posface/auth/create/", self.auth_create),
            ("/posface/auth/capture/", self.auth_capture),
        ):
            self.route("POST", path, self.changed(handler))
        self.routes[:0] = self.routes[-4:]

    def changed(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def answer(request: Request) -> Response:
            body = handler(request).body
            if self.extra:
                body = {**body, "apiVersion": "9", "links": {"self": "/x"}}
            else:  # the first of these the answer has, alone
                ids = [k for k in ("capture_id", "auth_id", "consumer_id") if k in body]
                body = {ids[0]: body[ids[0]]} if ids else {}
            return Response(200, body)

        return answer


@pytest.mark.parametrize("extra", [False, True], ids=["minimal", "extra-fields"])
async def test_minimal_and_extra_field_answers_never_end_in_unknown_outcome(
    tmp_path: Path, extra: bool
) -> None:
    with served(TrimmedAnswers(extra)) as running:
        petz = PetzCouponProvider(settings(running, tmp_path), transport=running.transport)
        order = snapshot()
        customer = await petz.set_customer(PHONE, order=order, device_ref=LANE)
        assert customer.consumer_id == "c_1001"
        auth = await petz.authorize(order, device_ref=LANE, consumer_id="c_1001")
        assert auth.consumer_id == "c_1001" and auth.auth_id
        capture = await petz.capture(auth, order=order, device_ref=LANE)
        assert capture.auth_id == auth.auth_id and capture.capture_id
        # What the minimal answer leaves out is what was authorized.
        assert capture.total_discount == auth.total_discount
        assert capture.coupon_ids == [d.coupon_id for d in auth.applied]
        await petz.aclose()


async def test_diag_finds_a_wrong_order_path(tmp_path: Path, sim: Served) -> None:
    """Every endpoint is tried with an empty body: 400 where the path exists, 404 where not."""
    wrong = settings(sim, tmp_path, order_path="/posface/orders/set/")
    petz = PetzCouponProvider(wrong, transport=sim.transport)
    checks = await petz.check_endpoints()
    assert [(c.path, c.ok) for c in checks] == [
        ("/posface/customer/set/", True),
        ("/posface/orders/set/", False),
        ("/posface/auth/create/", True),
        ("/posface/auth/capture/", True),
    ]
    assert "no such endpoint" in checks[1].detail
    assert sim.ledger()["authorizations"] == {} and sim.ledger()["redemptions"] == []
    await petz.aclose()


# -- wire format properties ---------------------------------------------------------------------


@given(st.integers(-(10**12), 10**12), st.integers(0, 3))
def test_money_round_trips(minor: int, decimals: int) -> None:
    text = to_money(minor, decimals)
    assert from_money(Decimal(text), decimals) == minor
    assert ("." in text) == (decimals > 0)


@given(st.from_regex(r"[0-9]{11}", fullmatch=True))
def test_product_codes_are_classified_by_check_digit(body: str) -> None:
    upc = body + str(check_digit(body))
    assert product_identifiers(upc) == [{"type": "upc", "value": upc}]
    assert {"type": "upc", "value": upc} in product_identifiers("0" + upc)
    wrong = body + str((check_digit(body) + 1) % 10)
    assert product_identifiers(wrong) == [{"type": "sku", "value": wrong}]


line_text = st.text(min_size=1, max_size=64).filter(lambda s: s.strip() == s and s)


@st.composite
def snapshots(draw: st.DrawFn) -> OrderSnapshot:
    lines = draw(
        st.lists(
            st.builds(
                OrderLine,
                id=line_text,
                name=line_text,
                quantity=st.integers(1, 999),
                amount=st.integers(-(10**8), 10**8),
                sku=st.none()
                | st.text(max_size=64)
                | st.from_regex(r"[0-9]{12,13}", fullmatch=True),
            ),
            max_size=8,
        )
    )
    subtotal = draw(st.integers(0, 10**8))
    tax = draw(st.integers(0, 10**7))
    return OrderSnapshot(
        order_id=draw(line_text),
        lines=lines,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        currency="USD",
    )


@given(snapshots(), st.sampled_from(["open", "paid", "void"]), st.none() | line_text)
def test_every_order_body_is_one_petz_accepts(
    order: OrderSnapshot, status: Any, consumer_id: str | None
) -> None:
    body = order_body(order, device_ref=LANE, status=status, decimals=2, consumer_id=consumer_id)
    parsed = OrderSetBody.model_validate(body)
    assert [Decimal(x.amount) for x in parsed.lines] == [
        Decimal(x.amount).scaleb(-2) for x in order.lines
    ]
