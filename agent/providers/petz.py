"""PETZ POS API ("posface") adapter: customer by phone, order sync, coupon authorization before
payment and its capture after.

The public course (seed 001, docs/providers/petz.md) names the paths and four fields:
`device_ref`, `order_ref`, `current_phone`, `consumer_id`. Everything else on the wire is this
project's design, UNCERTAIN until a PETZ sandbox answers, and kept in one place each:

- the auth header (`AUTH_SCHEME`), the health probe (`HEALTH_PROBE`), the way an authorization is
  released (`RELEASE_STATUS`), the order status words (`WIRE_STATUS`);
- the request bodies (`customer_body`, `order_body`, `auth_body`, `capture_body`) and the
  response models (`_Api*`), with money as decimal strings (`to_money`, `from_money`);
- the error codes (`ERROR_CODES`, `STATUS_CODES`) and the coupon rejection codes (`REJECTIONS`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ErrorCode, ProviderError
from agent.normalise.gs1 import check_digit
from agent.orders import OrderSnapshot
from agent.providers.coupons import (
    CouponAuthorization,
    CouponCapture,
    CouponCustomer,
    CouponDiscount,
    CouponRejection,
    OrderState,
    WalletCoupon,
)
from agent.providers.http import EndpointCheck, ProviderClient, error_message, probe
from agent.providers.settings import PetzSettings
from agent.registry import ProviderEnv
from agent.secrets import read_key
from agent.tokens import mask

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

NAME: Final = "petz"

# Seed 001 names these two; the capture path (it names two) and the order sync path (it names
# none) are settings: `capture_path`, `order_path` (`lane-agent diag providers` tries each).
CUSTOMER_PATH: Final = "/posface/customer/set/"
AUTH_PATH: Final = "/posface/auth/create/"

AUTH_SCHEME: Final = "Token"
"""`Authorization: Token <api key>` (UNCERTAIN: PETZ does not publish its scheme; this is Django
REST Framework's token scheme, which the trailing-slash `/posface/.../set/` paths suggest)."""

HEALTH_PROBE: Final[tuple[str, dict[str, Any]]] = (CUSTOMER_PATH, {})
"""PETZ documents no status endpoint. An empty customer look-up changes nothing: an API that
checks the key before the body answers 401 for a bad key and 400 for a good one (UNCERTAIN)."""

RELEASE_STATUS: Final[OrderState] = "void"
"""PETZ documents no void endpoint for an authorization (UNCERTAIN). The course says the order is
sent again at its final status; `release` sends it as void, which releases the order's open
authorization, and reads the authorization's state back from the answer."""

WIRE_STATUS: Final[Mapping[OrderState, str]] = {"open": "open", "paid": "paid", "void": "void"}
"""The order status words on `/posface/order/set/` (UNCERTAIN)."""

GTIN_TYPES: Final[Mapping[int, str]] = {8: "ean", 12: "upc", 13: "ean", 14: "gtin"}
"""Identifier type of a product code by length (with a valid GS1 check digit); others are `sku`."""

ERROR_CODES: Final[Mapping[str, ErrorCode]] = {
    "invalid": ErrorCode.INVALID_REQUEST,
    "unsupported_media_type": ErrorCode.INVALID_REQUEST,
    "not_authenticated": ErrorCode.NOT_CONFIGURED,
    "authentication_failed": ErrorCode.NOT_CONFIGURED,
    "permission_denied": ErrorCode.NOT_CONFIGURED,
    "customer_not_found": ErrorCode.NOT_FOUND,
    "order_not_found": ErrorCode.NOT_FOUND,
    "authorization_not_found": ErrorCode.NOT_FOUND,
    "order_closed": ErrorCode.INVALID_REQUEST,
    "no_applicable_coupons": ErrorCode.NOT_REDEEMABLE,
    "authorization_released": ErrorCode.NOT_REDEEMABLE,
}
"""PETZ's `error.code` → the vocabulary (UNCERTAIN: codes designed here, see the docs page)."""

STATUS_CODES: Final[Mapping[int, ErrorCode]] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.NOT_CONFIGURED,
    403: ErrorCode.NOT_CONFIGURED,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.INVALID_REQUEST,
    422: ErrorCode.NOT_REDEEMABLE,
    429: ErrorCode.PROVIDER_UNAVAILABLE,
}
"""Fallback by HTTP status for an error body without a known code."""

REJECTIONS: Final[Mapping[str, CouponRejection]] = {
    "product_mismatch": CouponRejection.PRODUCT_MISMATCH,
    "expired": CouponRejection.EXPIRED,
    "in_use": CouponRejection.IN_USE,
    "fully_discounted": CouponRejection.FULLY_DISCOUNTED,
}
"""PETZ's `reason_code` of a coupon it did not apply; any other code is `not_applicable`."""


# -- wire format --------------------------------------------------------------------------------


def to_money(minor: int, decimals: int) -> str:
    """Minor units → PETZ's decimal string (`1234`, 2 → `"12.34"`)."""
    return str(Decimal(minor).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))


def from_money(value: Decimal, decimals: int) -> int:
    """A PETZ decimal amount → minor units (half up, should PETZ send more places)."""
    return int(value.scaleb(decimals).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def product_identifiers(sku: str | None) -> list[dict[str, str]]:
    """A line's product code as PETZ identifiers: UPC/EAN/GTIN when it is one (valid check
    digit), also as UPC-A when an EAN-13 starts with 0 (coupons list UPCs); else a plain SKU."""
    code = (sku or "").strip()
    if not code:
        return []
    kind = GTIN_TYPES.get(len(code))
    is_gtin = kind is not None and code.isascii() and code.isdigit()
    if kind is None or not is_gtin or check_digit(code[:-1]) != int(code[-1]):
        return [{"type": "sku", "value": code}]
    identifiers = [{"type": kind, "value": code}]
    if len(code) == 13 and code.startswith("0"):
        identifiers.append({"type": "upc", "value": code[1:]})
    return identifiers


def customer_body(phone: str, order: OrderSnapshot, device_ref: str) -> dict[str, Any]:
    return {"device_ref": device_ref, "order_ref": order.order_id, "current_phone": phone}


def order_body(
    order: OrderSnapshot,
    *,
    device_ref: str,
    status: OrderState,
    decimals: int,
    consumer_id: str | None = None,
    keep_customer: bool = False,
) -> dict[str, Any]:
    """The whole order, as PETZ keeps it. `consumer_id` null removes the customer; with
    `keep_customer` the key is left out, so PETZ keeps the customer it has."""
    body: dict[str, Any] = {
        "device_ref": device_ref,
        "order_ref": order.order_id,
        "status": WIRE_STATUS[status],
        "currency": order.currency,
        "subtotal": to_money(order.subtotal, decimals),
        "tax": to_money(order.tax, decimals),
        "total": to_money(order.total, decimals),
        "lines": [
            {
                "line_ref": line.id,
                "name": line.name,
                "quantity": line.quantity,
                "amount": to_money(line.amount, decimals),
                "identifiers": product_identifiers(line.sku),
            }
            for line in order.lines
        ],
    }
    if not keep_customer:
        body["consumer_id"] = consumer_id
    return body


def auth_body(order: OrderSnapshot, device_ref: str, consumer_id: str) -> dict[str, Any]:
    return {"device_ref": device_ref, "order_ref": order.order_id, "consumer_id": consumer_id}


def capture_body(order: OrderSnapshot, device_ref: str, auth_id: str) -> dict[str, Any]:
    return {"device_ref": device_ref, "order_ref": order.order_id, "auth_id": auth_id}


class _Api(BaseModel):
    """PETZ answers: read what we need, log (never fail on) the names we do not know."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="after")
    def _log_unknown(self) -> _Api:
        if self.model_extra:
            log.info("petz: %s had fields we do not read: %s", type(self).__name__,
                     sorted(self.model_extra))  # fmt: skip
        return self


def readable(model: type[_M], items: list[Any], what: str) -> list[_M]:
    """The items of a list that fit `model`; one that does not is logged and left out, so one
    odd wallet coupon never hides the customer."""
    read = []
    for item in items:
        try:
            read.append(model.model_validate(item))
        except ValidationError as exc:
            log.warning("petz: a %s we cannot read was left out: %s", what, exc.errors()[0]["msg"])
    return read


class _ApiCoupon(_Api):
    coupon_id: str
    title: str = ""
    upcs: list[str] = Field(default_factory=list)
    amount_off: Decimal | None = Field(None, ge=0)
    percent_off: Decimal | None = Field(None, gt=0, le=100)
    expires_at: datetime | None = None


class _ApiCustomer(_Api):
    consumer_id: str  # seed 001's name: the one field a customer answer needs
    wallet: list[Any] = Field(default_factory=list)  # of _ApiCoupon, read item by item
    wallet_url: str | None = None


class _ApiCouponResult(_Api):
    coupon_id: str
    title: str = ""
    status: str = Field(description="`applied` gives the discount; any other word rejects it")
    discount: Decimal = Field(Decimal(0), ge=0)
    line_refs: list[str] = Field(default_factory=list)
    reason_code: str | None = None
    reason: str | None = None

    @property
    def applied(self) -> bool:
        return self.status.lower() == "applied"


class _ApiAuth(_Api):
    """A write: created when the status is 2xx and `auth_id` is there; the rest has defaults
    (the consumer we sent, the applied coupons' sum)."""

    auth_id: str
    consumer_id: str | None = None
    total_discount: Decimal | None = Field(None, ge=0)
    coupons: list[_ApiCouponResult] = Field(default_factory=list)


class _ApiCapture(_Api):
    """A write: captured when the status is 2xx and `capture_id` is there."""

    capture_id: str
    auth_id: str | None = None
    coupon_ids: list[str] | None = None
    total_discount: Decimal | None = Field(None, ge=0)
    captured_at: datetime | None = None


class _ApiOrderAuth(_Api):
    auth_id: str
    status: str


class _ApiOrder(_Api):
    """Order sync's answer: nothing in it is needed but the authorizations `release` reads."""

    order_ref: str | None = None  # seed 001's name
    status: str | None = None
    authorizations: list[Any] = Field(default_factory=list)  # of _ApiOrderAuth


class _ApiErrorDetail(_Api):
    code: str | None = None
    coupons: list[_ApiCouponResult] = Field(default_factory=list)


class _ApiError(_Api):
    error: _ApiErrorDetail


def classify(response: httpx.Response) -> tuple[ErrorCode, _ApiErrorDetail | None]:
    """The vocabulary code for a PETZ refusal (any status from 300 to 499), and its details."""
    if response.status_code < 400:
        return ErrorCode.NOT_CONFIGURED, None  # a redirect: base_url points at the wrong place
    try:
        detail: _ApiErrorDetail | None = _ApiError.model_validate_json(response.content).error
    except ValidationError:
        detail = None
    by_status = STATUS_CODES.get(response.status_code, ErrorCode.INVALID_REQUEST)
    if detail is None or detail.code is None:
        return by_status, detail
    return ERROR_CODES.get(detail.code, by_status), detail


@contextmanager
def reading(*, write: bool) -> Iterator[None]:
    """Around reading a PETZ answer into our models: an answer that does not fit them is the
    provider's fault, and one to a write may still have been applied."""
    try:
        yield
    except ValidationError as exc:
        log.warning("petz answered something unreadable: %s", exc)
        if write:
            raise ProviderError(
                ErrorCode.UNKNOWN_OUTCOME,
                "PETZ accepted the request but its answer cannot be read; it may have been "
                "applied. Do not retry until it is checked.",
            ) from None
        raise ProviderError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "PETZ answered with something the agent cannot read. Try again.",
        ) from None


class PetzCouponProvider:
    """One store's PETZ POS API client (`CouponProvider`)."""

    name = NAME

    def __init__(
        self,
        settings: PetzSettings,
        *,
        device_ref: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = read_key(f"providers.{NAME}", settings, "api_key_file")
        self.device_ref = settings.device_ref or device_ref or NAME
        """How PETZ knows this register: the configured one, else the lane id."""
        self._settings = settings
        self._decimals = settings.currency_decimals
        self._client = ProviderClient(
            "PETZ",
            settings,
            headers={
                "Authorization": f"{AUTH_SCHEME} {key.reveal()}",
                "Accept": "application/json",
            },
            transport=transport,
        )

    @classmethod
    def create(cls, settings: PetzSettings, env: ProviderEnv) -> PetzCouponProvider:
        return cls(settings, device_ref=env.lane, transport=env.transport)

    # -- plumbing --------------------------------------------------------------------------------

    async def _post(
        self, path: str, what: str, body: dict[str, Any], *, write: bool
    ) -> httpx.Response:
        """One request; any refusal becomes a `ProviderError` with PETZ's own words."""
        response = await self._client.call("POST", path, write=write, json=body)
        status = response.status_code
        if status >= 300:
            message = error_message(response, f"PETZ refused the {what} (HTTP {status})")
            code, detail = classify(response)
            log.info("petz %s refused: HTTP %s %s", what, status, message)
            details = None
            if detail is not None and detail.coupons:
                discounts = [self._discount(c).model_dump(mode="json") for c in detail.coupons]
                details = {"discounts": discounts}
            raise ProviderError(code, message, details=details)
        return response

    def _minor(self, value: Decimal) -> int:
        return from_money(value, self._decimals)

    def _wallet_coupon(self, coupon: _ApiCoupon) -> WalletCoupon | None:
        """A wallet coupon, or None (logged) when it has not exactly one kind of value."""
        try:
            return WalletCoupon(
                coupon_id=coupon.coupon_id,
                description=coupon.title,
                upcs=coupon.upcs,
                amount_off=None if coupon.amount_off is None else self._minor(coupon.amount_off),
                percent_off=coupon.percent_off,
                expires_at=coupon.expires_at,
            )
        except ValidationError as exc:
            log.warning(
                "petz: wallet coupon %s left out: %s", coupon.coupon_id, exc.errors()[0]["msg"]
            )
            return None

    def _discount(self, result: _ApiCouponResult) -> CouponDiscount:
        rejected = not result.applied
        return CouponDiscount(
            coupon_id=result.coupon_id,
            description=result.title,
            amount=0 if rejected else self._minor(result.discount),
            line_ids=[] if rejected else result.line_refs,
            rejected=REJECTIONS.get(result.reason_code or "", CouponRejection.NOT_APPLICABLE)
            if rejected
            else None,
            reason=(result.reason or f"PETZ says {result.status}") if rejected else None,
        )

    async def _set_order(
        self,
        order: OrderSnapshot,
        device_ref: str,
        status: OrderState,
        *,
        consumer_id: str | None = None,
        keep_customer: bool = False,
    ) -> _ApiOrder:
        body = order_body(
            order,
            device_ref=device_ref,
            status=status,
            decimals=self._decimals,
            consumer_id=consumer_id,
            keep_customer=keep_customer,
        )
        # An upsert of the whole order: sending it again is the recovery, so not a `write`.
        response = await self._post(self._settings.order_path, "order update", body, write=False)
        with reading(write=False):
            return _ApiOrder.model_validate_json(response.content)

    # -- CouponProvider ----------------------------------------------------------------------------

    async def set_customer(
        self, phone: str, *, order: OrderSnapshot, device_ref: str
    ) -> CouponCustomer:
        """Match the phone to a PETZ account and attach it to the order; the wallet comes back."""
        log.info("petz customer look-up %s for order %s", mask(phone), order.order_id)
        body = customer_body(phone, order, device_ref)
        # Idempotent: the same phone attaches the same customer again.
        response = await self._post(CUSTOMER_PATH, "customer look-up", body, write=False)
        with reading(write=False):
            customer = _ApiCustomer.model_validate_json(response.content)
            return CouponCustomer(
                consumer_id=customer.consumer_id,
                phone_masked=mask(phone),
                wallet=[
                    coupon
                    for c in readable(_ApiCoupon, customer.wallet, "wallet coupon")
                    if (coupon := self._wallet_coupon(c)) is not None
                ],
                wallet_url=customer.wallet_url,
            )

    async def set_order(
        self,
        order: OrderSnapshot,
        *,
        device_ref: str,
        consumer_id: str | None,
        status: OrderState,
    ) -> None:
        """Send the order as it stands: when it opens or changes, when the customer is added or
        removed (`consumer_id` None), and at its final status."""
        await self._set_order(order, device_ref, status, consumer_id=consumer_id)

    async def authorize(
        self, order: OrderSnapshot, *, device_ref: str, consumer_id: str
    ) -> CouponAuthorization:
        """Hold the wallet's applicable coupons for this order (after store promotions).

        The order is sent first, so PETZ prices exactly this snapshot; authorizing again
        replaces (releases) the order's previous authorization.
        """
        await self._set_order(order, device_ref, "open", consumer_id=consumer_id)
        response = await self._post(
            AUTH_PATH, "coupon authorization", auth_body(order, device_ref, consumer_id), write=True
        )
        with reading(write=True):
            auth = _ApiAuth.model_validate_json(response.content)
            discounts = [self._discount(c) for c in auth.coupons]
            total = (
                sum(d.amount for d in discounts)
                if auth.total_discount is None
                else self._minor(auth.total_discount)
            )
            return CouponAuthorization(
                auth_id=auth.auth_id,
                order_id=order.order_id,
                consumer_id=auth.consumer_id or consumer_id,
                discounts=discounts,
                total_discount=total,
            )

    async def capture(
        self, auth: CouponAuthorization | str, *, order: OrderSnapshot, device_ref: str
    ) -> CouponCapture:
        """Redeem the authorized coupons after payment. The simulator answers a second capture
        with the first one; whether PETZ does is UNCERTAIN, so resolve an `unknown_outcome`
        with the same auth id, never with a new authorization."""
        auth_id = auth if isinstance(auth, str) else auth.auth_id
        response = await self._post(
            self._settings.capture_path,
            "coupon capture",
            capture_body(order, device_ref, auth_id),
            write=True,
        )
        with reading(write=True):
            capture = _ApiCapture.model_validate_json(response.content)
        held = None if isinstance(auth, str) else auth
        # What the answer leaves out is what was authorized: capture takes the authorization whole.
        coupon_ids = capture.coupon_ids
        if coupon_ids is None:
            coupon_ids = [] if held is None else [d.coupon_id for d in held.applied]
        if capture.total_discount is not None:
            total = self._minor(capture.total_discount)
        else:
            total = 0 if held is None else held.total_discount
        return CouponCapture(
            capture_id=capture.capture_id,
            auth_id=capture.auth_id or auth_id,
            coupon_ids=coupon_ids,
            total_discount=total,
            captured_at=capture.captured_at,
        )

    async def refund(
        self, capture: CouponCapture, *, order: OrderSnapshot, device_ref: str
    ) -> None:
        """PETZ publishes no call that gives captured coupons back (seed 001 names create,
        capture and redeem only), so nothing is sent: the refusal says what to do instead."""
        raise ProviderError(
            ErrorCode.NOT_CONFIGURED,
            f"PETZ has no refund call: coupons {', '.join(capture.coupon_ids)} stay redeemed "
            f"({capture.total_discount} off); refund their value by store policy or have PETZ "
            "support re-issue them",
        )

    async def release(self, auth_id: str, *, order: OrderSnapshot, device_ref: str) -> None:
        """Release the authorization by sending the order at `RELEASE_STATUS` (see there); the
        order keeps its customer. Releasing again is a no-op."""
        answer = await self._set_order(order, device_ref, RELEASE_STATUS, keep_customer=True)
        held = readable(_ApiOrderAuth, answer.authorizations, "authorization")
        state = next((a.status for a in held if a.auth_id == auth_id), None)
        if state is None:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                f"PETZ has no authorization {auth_id} on order {order.order_id}.",
            )
        if state != "released":
            raise ProviderError(
                ErrorCode.INVALID_REQUEST,
                f"PETZ kept authorization {auth_id} {state}: the coupons cannot be released.",
            )

    async def check_health(self) -> tuple[bool, str]:
        path, body = HEALTH_PROBE
        try:
            response = await self._client.call("POST", path, write=False, json=body)
        except ProviderError as exc:
            return False, exc.message
        if response.status_code in (400, 200):
            return True, "PETZ answers and accepts the API key"
        return False, error_message(response, f"PETZ answered HTTP {response.status_code}")

    async def check_endpoints(self) -> list[EndpointCheck]:
        """Each path with an empty body, which names no customer, order or authorization: an
        endpoint that exists answers 400, a wrong path 404 (`lane-agent diag providers`)."""
        paths = [
            ("customer look-up (seed 001)", CUSTOMER_PATH),
            ("order sync (order_path, not in seed 001)", self._settings.order_path),
            ("coupon authorization (seed 001)", AUTH_PATH),
            ("coupon capture (capture_path, seed 001)", self._settings.capture_path),
        ]
        return [await probe(self._client, what, "POST", path, json={}) for what, path in paths]

    async def aclose(self) -> None:
        await self._client.aclose()
