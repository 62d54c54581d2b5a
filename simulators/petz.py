"""PETZ POS API ("posface") simulator: customers with wallets, orders, coupon authorizations and
their capture.

The public course names the paths and four fields (`device_ref`, `order_ref`, `current_phone`,
`consumer_id`); everything else here is this project's design, marked UNCERTAIN in
docs/providers/petz.md, and enforced so a test proves the adapter sends exactly these names:

- `Authorization: Token <key>` on every call (401 otherwise), JSON bodies (415 otherwise);
- request bodies with an unknown, misspelled or missing field answer 400 `invalid`;
- every error body is `{"error": {"code": "...", "message": "...", ...}}`;
- money is a decimal string (`"12.34"`); discounts are rounded to 0.01.

Ledger rules: a coupon is held by at most one open authorization; authorizing an order again
releases its previous authorization; voiding an order (`/posface/order/set/` with status `void`)
releases its open authorization; capturing moves the authorization's coupons out of the wallet
into `redemptions`, and capturing again answers the same capture without redeeming twice. Both
`/posface/auth/capture/` and `/posface/auth/redeem/` capture, since the course names both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulators.server import ApiError, Json, Request, Response, Simulator

CENT = Decimal("0.01")
MONEY = r"^-?[0-9]{1,9}(\.[0-9]{1,3})?$"
Money = Annotated[str, Field(pattern=MONEY)]
Ref = Annotated[str, Field(min_length=1, max_length=64)]

DEFAULT_KEY = "petz-sim-key"
CAPTURE_PATHS = ("/posface/auth/capture/", "/posface/auth/redeem/")

_STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
    500: "server_error",
    503: "service_unavailable",
}

_M = TypeVar("_M", bound=BaseModel)


def petz_error(status: int, code: str, message: str, **extra: Json) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message, **extra}})


# -- request bodies -----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerSetBody(_Body):
    device_ref: Ref
    current_phone: str = Field(pattern=r"^[0-9]{10}$")
    order_ref: Ref | None = None


class Identifier(_Body):
    type: Literal["upc", "ean", "gtin", "sku"]
    value: str = Field(min_length=1, max_length=64)


class Line(_Body):
    line_ref: Ref
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0)
    amount: Money
    identifiers: list[Identifier] = Field(default_factory=list)


class OrderSetBody(_Body):
    """`consumer_id` absent leaves the order's customer as it is; null removes it."""

    device_ref: Ref
    order_ref: Ref
    status: Literal["open", "paid", "void"]
    consumer_id: Ref | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    subtotal: Money
    tax: Money
    total: Money
    lines: list[Line] = Field(max_length=500)


class AuthCreateBody(_Body):
    device_ref: Ref
    order_ref: Ref
    consumer_id: Ref


class AuthCaptureBody(_Body):
    device_ref: Ref
    order_ref: Ref
    auth_id: Ref


# -- seed fixtures ------------------------------------------------------------------------------


class SeedCoupon(_Body):
    coupon_id: Ref
    title: str
    upcs: list[str]
    amount_off: Money | None = None
    percent_off: Money | None = None
    expires_in_days: int | None = Field(None, description="from the seed's load time")

    @model_validator(mode="after")
    def _one_value(self) -> SeedCoupon:
        if (self.amount_off is None) == (self.percent_off is None):
            raise ValueError("give exactly one of amount_off or percent_off")
        return self


class SeedConsumer(_Body):
    consumer_id: Ref
    phone: str = Field(pattern=r"^[0-9]{10}$")
    coupons: list[SeedCoupon] = Field(default_factory=list)


class Seed(_Body):
    """`POST /_sim/seed`: consumers are added or replaced by id; `api_keys` replaces the keys."""

    api_keys: list[str] | None = None
    consumers: list[SeedConsumer] = Field(default_factory=list)


DEFAULT_SEED: Json = {
    "api_keys": [DEFAULT_KEY],
    "consumers": [
        {
            "consumer_id": "c_1001",
            "phone": "5551234567",
            "coupons": [
                {
                    "coupon_id": "cpn_kibble2",
                    "title": "$2.00 off Acme Kibble 5 lb",
                    "upcs": ["012345678905"],
                    "amount_off": "2.00",
                    "expires_in_days": 30,
                },
                {
                    "coupon_id": "cpn_treats15",
                    "title": "15% off PupTreats",
                    "upcs": ["036000291452", "073100000010"],
                    "percent_off": "15",
                    "expires_in_days": 30,
                },
                {
                    "coupon_id": "cpn_catnip1",
                    "title": "$1.00 off Catnip Mice (expired)",
                    "upcs": ["081234000004"],
                    "amount_off": "1.00",
                    "expires_in_days": -1,
                },
            ],
        },
        {"consumer_id": "c_1002", "phone": "5559876543", "coupons": []},
    ],
}


# -- domain -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coupon:
    coupon_id: str
    title: str
    upcs: tuple[str, ...]
    amount_off: Decimal | None
    percent_off: Decimal | None
    expires_at: datetime | None

    def wire(self) -> Json:
        return {
            "coupon_id": self.coupon_id,
            "title": self.title,
            "upcs": list(self.upcs),
            "amount_off": None if self.amount_off is None else str(self.amount_off),
            "percent_off": None if self.percent_off is None else str(self.percent_off),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


@dataclass
class Consumer:
    consumer_id: str
    phone: str
    wallet: dict[str, Coupon]
    redeemed: list[str] = field(default_factory=list)


@dataclass
class Order:
    order_ref: str
    device_ref: str
    status: str
    consumer_id: str | None
    currency: str = "USD"
    total: Decimal = Decimal(0)
    lines: list[Line] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One coupon evaluated against an order: a discount, or the reason there is none."""

    coupon: Coupon
    discount: Decimal = Decimal(0)
    line_refs: tuple[str, ...] = ()
    reason_code: str | None = None
    reason: str | None = None

    def wire(self) -> Json:
        return {
            "coupon_id": self.coupon.coupon_id,
            "title": self.coupon.title,
            "status": "rejected" if self.reason_code else "applied",
            "discount": str(self.discount.quantize(CENT)),
            "line_refs": list(self.line_refs),
            "reason_code": self.reason_code,
            "reason": self.reason,
        }


@dataclass
class Authorization:
    auth_id: str
    order_ref: str
    consumer_id: str
    device_ref: str
    outcomes: list[Outcome]
    status: str = "authorized"  # → released | captured
    released_reason: str | None = None
    capture_id: str | None = None
    captured_at: datetime | None = None

    @property
    def applied(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.reason_code is None]

    @property
    def total(self) -> Decimal:
        return sum((o.discount for o in self.applied), Decimal(0)).quantize(CENT)


def gtin_key(code: str) -> str | None:
    """The GTIN-14 form of a UPC/EAN/GTIN, so UPC-A `0123…` and EAN-13 `00123…` match."""
    if not (code.isascii() and code.isdigit()) or len(code) not in (8, 12, 13, 14):
        return None
    return code.zfill(14)


def evaluate(
    coupons: Iterable[Coupon], lines: Sequence[Line], *, held: set[str], now: datetime
) -> list[Outcome]:
    """Match wallet coupons to order lines by UPC, in wallet order. A coupon takes its value
    (or percentage) off what is left of its matching lines, so coupons on one item never take
    more than the item's amount."""
    remaining = {line.line_ref: max(Decimal(line.amount), Decimal(0)) for line in lines}
    keys = {
        line.line_ref: {gtin_key(i.value) for i in line.identifiers if i.type != "sku"} - {None}
        for line in lines
    }
    outcomes = []
    for coupon in coupons:
        wanted = {gtin_key(upc) for upc in coupon.upcs} - {None}
        matching = [line.line_ref for line in lines if keys[line.line_ref] & wanted]
        base = sum((remaining[ref] for ref in matching), Decimal(0))
        if coupon.expires_at is not None and coupon.expires_at <= now:
            outcomes.append(Outcome(coupon, reason_code="expired", reason="Coupon has expired."))
        elif coupon.coupon_id in held:
            outcomes.append(
                Outcome(
                    coupon,
                    reason_code="in_use",
                    reason="Coupon is authorized on another open order.",
                )
            )
        elif not matching:
            outcomes.append(
                Outcome(
                    coupon,
                    reason_code="product_mismatch",
                    reason="No item in this order matches the coupon's products.",
                )
            )
        else:
            value = (
                coupon.amount_off
                if coupon.amount_off is not None
                else base * (coupon.percent_off or Decimal(0)) / 100
            )
            discount = min(value.quantize(CENT, ROUND_HALF_UP), base)
            if discount <= 0:
                outcomes.append(
                    Outcome(
                        coupon,
                        reason_code="fully_discounted",
                        reason="The coupon's items have nothing left to discount.",
                    )
                )
                continue
            left, refs = discount, []
            for ref in matching:
                take = min(remaining[ref], left)
                if take > 0:
                    remaining[ref] -= take
                    left -= take
                    refs.append(ref)
            outcomes.append(Outcome(coupon, discount=discount, line_refs=tuple(refs)))
    return outcomes


class PetzSimulator(Simulator):
    name = "petz"

    def __init__(self) -> None:
        super().__init__()
        self.api_keys: set[str] = set()
        self.consumers: dict[str, Consumer] = {}
        self.orders: dict[str, Order] = {}
        self.auths: dict[str, Authorization] = {}
        self.redemptions: list[Json] = []
        self.route("POST", "/posface/customer/set/", self.customer_set)
        self.route("POST", "/posface/order/set/", self.order_set)
        self.route("POST", "/posface/auth/create/", self.auth_create)
        for path in CAPTURE_PATHS:
            self.route("POST", path, self.auth_capture)
        self.seed(DEFAULT_SEED)

    # -- framework hooks --------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        scheme, _, key = (request.header("authorization") or "").partition(" ")
        if not scheme:
            raise petz_error(
                401, "not_authenticated", "Authentication credentials were not provided."
            )
        if scheme != "Token" or key not in self.api_keys:
            raise petz_error(401, "authentication_failed", "Invalid token.")

    def error_body(self, status: int, message: str) -> Json:
        return {"error": {"code": _STATUS_CODES.get(status, "error"), "message": message}}

    def seed(self, data: Json) -> None:
        try:
            seed = Seed.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, {"error": str(exc)}) from None
        now = datetime.now(UTC)
        if seed.api_keys is not None:
            self.api_keys = set(seed.api_keys)
        for consumer in seed.consumers:
            coupons = [
                Coupon(
                    coupon_id=c.coupon_id,
                    title=c.title,
                    upcs=tuple(c.upcs),
                    amount_off=None if c.amount_off is None else Decimal(c.amount_off),
                    percent_off=None if c.percent_off is None else Decimal(c.percent_off),
                    expires_at=None
                    if c.expires_in_days is None
                    else now + timedelta(days=c.expires_in_days),
                )
                for c in consumer.coupons
            ]
            self.consumers[consumer.consumer_id] = Consumer(
                consumer.consumer_id, consumer.phone, {c.coupon_id: c for c in coupons}
            )

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.consumers.clear()
            self.orders.clear()
            self.auths.clear()
            self.redemptions.clear()
            self.seed(DEFAULT_SEED)

    def ledger(self) -> Json:
        return {
            "consumers": {
                c.consumer_id: {"wallet": list(c.wallet), "redeemed": c.redeemed}
                for c in self.consumers.values()
            },
            "orders": {
                o.order_ref: {
                    "device_ref": o.device_ref,
                    "status": o.status,
                    "consumer_id": o.consumer_id,
                    "currency": o.currency,
                    "total": str(o.total),
                    "lines": [line.model_dump() for line in o.lines],
                }
                for o in self.orders.values()
            },
            "authorizations": {a.auth_id: self._auth_wire(a) for a in self.auths.values()},
            "redemptions": self.redemptions,
        }

    def usage(self) -> list[str]:
        lines = [f"API key: send `Authorization: Token {key}`" for key in sorted(self.api_keys)]
        for consumer in self.consumers.values():
            lines.append(f"phone {consumer.phone} → consumer {consumer.consumer_id}")
            for c in consumer.wallet.values():
                value = (
                    f"{c.amount_off} off" if c.amount_off is not None else f"{c.percent_off}% off"
                )
                expiry = "no expiry" if c.expires_at is None else f"expires {c.expires_at:%Y-%m-%d}"
                lines.append(f"  {c.coupon_id}: {value} UPC {', '.join(c.upcs)} ({expiry})")
        return lines

    # -- API ------------------------------------------------------------------------------------

    def customer_set(self, request: Request) -> Response:
        body = self._parse(CustomerSetBody, request)
        consumer = next((c for c in self.consumers.values() if c.phone == body.current_phone), None)
        if consumer is None:
            raise petz_error(
                404,
                "customer_not_found",
                "No PETZ account matches this phone number. Check the number with the customer.",
            )
        if body.order_ref is not None:
            order = self.orders.get(body.order_ref)
            if order is None:  # PETZ has not seen the order yet: order/set fills it in later
                order = self.orders[body.order_ref] = Order(
                    body.order_ref, body.device_ref, "open", None
                )
            self._require_open(order)
            order.consumer_id = consumer.consumer_id
        return Response(
            200,
            {
                "consumer_id": consumer.consumer_id,
                "wallet_url": f"https://wallet.petz.invalid/w/{consumer.consumer_id}/",
                "wallet": [c.wire() for c in consumer.wallet.values()],
            },
        )

    def order_set(self, request: Request) -> Response:
        body = self._parse(OrderSetBody, request)
        if body.consumer_id is not None:
            self._consumer(body.consumer_id)
        order = self.orders.get(body.order_ref)
        if order is not None and order.status != "open":
            if order.status != body.status:
                raise petz_error(
                    409, "order_closed", f"Order {order.order_ref} is already {order.status}."
                )
            return Response(200, self._order_wire(order))  # the final status again: no change
        if order is None:
            order = self.orders[body.order_ref] = Order(
                body.order_ref, body.device_ref, body.status, None
            )
        order.device_ref = body.device_ref
        order.status = body.status
        order.currency = body.currency
        order.total = Decimal(body.total)
        order.lines = list(body.lines)
        if "consumer_id" in body.model_fields_set:
            order.consumer_id = body.consumer_id
        if body.status == "void":
            self._release_open(order.order_ref, "order void")
        return Response(200, self._order_wire(order))

    def auth_create(self, request: Request) -> Response:
        body = self._parse(AuthCreateBody, request)
        consumer = self._consumer(body.consumer_id)
        order = self.orders.get(body.order_ref)
        if order is None:
            raise petz_error(
                404, "order_not_found", f"Order {body.order_ref} is unknown; send it first."
            )
        self._require_open(order)
        held = {
            o.coupon.coupon_id
            for a in self.auths.values()
            if a.status == "authorized" and a.order_ref != order.order_ref
            for o in a.applied
        }
        outcomes = evaluate(consumer.wallet.values(), order.lines, held=held, now=datetime.now(UTC))
        self._release_open(order.order_ref, "replaced")
        if not any(o.reason_code is None for o in outcomes):
            raise petz_error(
                422,
                "no_applicable_coupons",
                "No PETZ coupon in the customer's wallet applies to this order.",
                coupons=[o.wire() for o in outcomes],
            )
        auth = Authorization(
            auth_id=f"pa_{uuid.uuid4().hex[:16]}",
            order_ref=order.order_ref,
            consumer_id=consumer.consumer_id,
            device_ref=body.device_ref,
            outcomes=outcomes,
        )
        self.auths[auth.auth_id] = auth
        order.consumer_id = consumer.consumer_id
        return Response(201, self._auth_wire(auth))

    def auth_capture(self, request: Request) -> Response:
        body = self._parse(AuthCaptureBody, request)
        auth = self.auths.get(body.auth_id)
        if auth is None or auth.order_ref != body.order_ref:
            raise petz_error(
                404,
                "authorization_not_found",
                f"No authorization {body.auth_id} on order {body.order_ref}.",
            )
        if auth.status == "released":
            raise petz_error(
                409,
                "authorization_released",
                f"Authorization {auth.auth_id} was released ({auth.released_reason}); "
                "authorize the coupons again.",
            )
        if auth.status == "authorized":
            consumer = self.consumers[auth.consumer_id]
            auth.status = "captured"
            auth.capture_id = f"pc_{uuid.uuid4().hex[:16]}"
            auth.captured_at = datetime.now(UTC)
            for outcome in auth.applied:
                coupon_id = outcome.coupon.coupon_id
                del consumer.wallet[coupon_id]
                consumer.redeemed.append(coupon_id)
                self.redemptions.append(
                    {
                        "capture_id": auth.capture_id,
                        "auth_id": auth.auth_id,
                        "order_ref": auth.order_ref,
                        "coupon_id": coupon_id,
                        "amount": str(outcome.discount),
                    }
                )
        return Response(200, self._capture_wire(auth))

    # -- helpers --------------------------------------------------------------------------------

    def _parse(self, model: type[_M], request: Request) -> _M:
        if not (request.header("content-type") or "").startswith("application/json"):
            raise petz_error(415, "unsupported_media_type", "Send the body as application/json.")
        try:
            data: Any = json.loads(request.body or b"null")
        except ValueError as exc:
            raise petz_error(400, "invalid", f"Body is not JSON: {exc}") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fields: dict[str, list[str]] = {}
            for error in exc.errors():
                name = ".".join(str(p) for p in error["loc"]) or "body"
                message = "Unknown field." if error["type"] == "extra_forbidden" else error["msg"]
                fields.setdefault(name, []).append(message)
            summary = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
            raise petz_error(400, "invalid", f"Invalid request: {summary}", fields=fields) from None

    def _consumer(self, consumer_id: str) -> Consumer:
        consumer = self.consumers.get(consumer_id)
        if consumer is None:
            raise petz_error(
                404, "customer_not_found", f"No PETZ account with consumer_id {consumer_id}."
            )
        return consumer

    @staticmethod
    def _require_open(order: Order) -> None:
        if order.status != "open":
            raise petz_error(
                409, "order_closed", f"Order {order.order_ref} is already {order.status}."
            )

    def _release_open(self, order_ref: str, reason: str) -> None:
        for auth in self.auths.values():
            if auth.order_ref == order_ref and auth.status == "authorized":
                auth.status = "released"
                auth.released_reason = reason

    def _order_wire(self, order: Order) -> Json:
        return {
            "order_ref": order.order_ref,
            "status": order.status,
            "consumer_id": order.consumer_id,
            "authorizations": [
                {"auth_id": a.auth_id, "status": a.status}
                for a in self.auths.values()
                if a.order_ref == order.order_ref
            ],
        }

    @staticmethod
    def _auth_wire(auth: Authorization) -> Json:
        return {
            "auth_id": auth.auth_id,
            "order_ref": auth.order_ref,
            "consumer_id": auth.consumer_id,
            "device_ref": auth.device_ref,
            "status": auth.status,
            "released_reason": auth.released_reason,
            "total_discount": str(auth.total),
            "coupons": [o.wire() for o in auth.outcomes],
        }

    @staticmethod
    def _capture_wire(auth: Authorization) -> Json:
        return {
            "capture_id": auth.capture_id,
            "auth_id": auth.auth_id,
            "order_ref": auth.order_ref,
            "status": auth.status,
            "coupon_ids": [o.coupon.coupon_id for o in auth.applied],
            "total_discount": str(auth.total),
            "captured_at": None if auth.captured_at is None else auth.captured_at.isoformat(),
        }
