"""The MQTT contract: every topic's payload and every request op, as pydantic models.

This module is the single source of truth: `lane-agent schema` prints JSON Schemas generated from
it and `docs/mqtt-api.md` gets its tables from it (see `agent.docgen`). Payloads never carry a
clear voucher code, card number or token: scans carry a masked `display` and an opaque `token_id`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.errors import ErrorCode, LaneError
from agent.orders import OrderSnapshot, OrderStatus
from agent.providers.base import GiftStatus, Redemption, Reversal
from agent.providers.cards import CardBalance, CardRedemption, CardReversal
from drivers.base import DeviceState, HealthLevel


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class Envelope(_Payload):
    """Every event carries these so consumers can drop QoS 1 duplicates."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    ts: datetime = Field(default_factory=utc_now, description="RFC 3339, UTC")


# --- retained state ------------------------------------------------------------------------------


class AgentState(_Payload):
    """`{base}/state`, retained. The broker publishes `{"state":"offline"}` as the last will."""

    state: Literal["online", "offline"]
    version: str | None = None
    since: datetime | None = None
    reason: str | None = Field(None, description="why the agent went offline, when it knows")


class DeviceCounters(_Payload):
    scans: int = 0
    rejects: int = Field(0, description="scans the normaliser marked invalid")
    drops: int = Field(0, description="input the driver had to discard (e.g. SYN_DROPPED)")
    reconnects: int = 0


class DeviceRecord(_Payload):
    """`{base}/devices/{device_id}`, retained: one per configured input device."""

    device_id: str
    kind: str = Field(description="driver type: keyed, fifo, evdev, serial, hidpos, nfc")
    state: DeviceState
    last_error: str | None = None
    since: datetime = Field(description="when the device entered `state`")
    counters: DeviceCounters = DeviceCounters()


# --- streams -------------------------------------------------------------------------------------


class NfcRecordInfo(_Payload):
    type: str = Field(description="NDEF record type, e.g. urn:nfc:wkt:U")
    display: str | None = Field(None, description="masked URI or text of the record")


class NfcInfo(_Payload):
    """What an NFC reader saw besides the token: the tag and its NDEF records, masked."""

    tag_type: str
    uid: str = Field(description="masked tag UID")
    records: list[NfcRecordInfo] = []


class ScanMessage(Envelope):
    """`{base}/scan`: one normalised scan, QoS 1, not retained."""

    device_id: str
    symbology: str
    kind: str = Field(
        description="token kind from the normaliser (brief §5), e.g. gift_voucher_code"
    )
    valid: bool
    error: str | None = None
    display: str = Field(description="masked text for the screen; never the clear code")
    token_id: str | None = Field(
        None, description="opaque reference to the code for requests; null for invalid scans"
    )
    value: str | None = Field(
        None,
        description="the clear value, only for non-secret kinds (product_gtin, coupon, gs1, url)",
    )
    ais: dict[str, str] | None = Field(None, description="GS1 application identifiers")
    nfc: NfcInfo | None = Field(None, description="only for scans from an NFC reader")


EventType = Literal[
    "gift.validated",
    "gift.invalid",
    "gift.redeemed",
    "gift.reversed",
    "nfc.removed",
    "card.balance",
    "card.invalid",
    "card.paid",
    "order.updated",
    "order.committed",
    "order.voided",
    "order.abandoned",
]


class GiftValidatedData(_Payload):
    token_id: str
    display: str
    provider: str
    gift: GiftStatus


class GiftInvalidData(_Payload):
    """A scanned gift code the provider could not validate (not found, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class GiftRedeemedData(_Payload):
    token_id: str | None
    display: str | None
    provider: str
    redemption: Redemption


class GiftReversedData(_Payload):
    provider: str
    reversal: Reversal


class CardBalanceData(_Payload):
    """A scanned gift card's balance, for the POS display (K-Series: `pos_postMessage`)."""

    token_id: str
    display: str
    provider: str
    card: CardBalance


class CardInvalidData(_Payload):
    """A scanned gift card the provider could not look up (unknown card, provider down...)."""

    token_id: str
    display: str
    provider: str
    error: ErrorBody


class PaymentInstruction(_Payload):
    """What the POS adds as a payment (K-Series: `pos_addPayment(amount_cents, code, cb)`)."""

    amount_cents: int = Field(gt=0, description="minor units")
    payment_method_code: str
    currency: str


class CardPaidData(_Payload):
    token_id: str
    display: str
    provider: str
    order_id: str
    payment: PaymentInstruction
    redemption: CardRedemption
    remaining: int = Field(description="what is left to pay on the order, minor units")


class NfcRemovedData(_Payload):
    """The tag left the reader; the POS can clear what it showed for it."""

    device_id: str
    uid: str = Field(description="masked tag UID, as in the scan's `nfc.uid`")


class OrderInfo(_Payload):
    order_id: str
    status: OrderStatus
    total: int = Field(description="minor units, tax included")
    currency: str
    lines: int = Field(description="number of lines")


class StepOutcome(_Payload):
    """One provider call an order's closing made (a commit, a capture, a release...)."""

    flow: str = Field(description="gift, card, coupons or loyalty")
    provider: str
    step: str = Field(description="e.g. capture, commit, checkin, receipt, release, reverse")
    ok: bool
    detail: str = Field(description="what happened, for the cashier or the support log")
    error: ErrorBody | None = None


class OrderClosedData(_Payload):
    """`order.committed` after `order.paid`, `order.voided` after `order.void`, and
    `order.abandoned` when a new order id replaced an open order: what each flow did."""

    order: OrderInfo
    steps: list[StepOutcome]
    reason: str | None = None


class OrderUpdatedData(_Payload):
    order: OrderInfo
    replaced: str | None = Field(None, description="the open order this one replaced, if any")


class Event(Envelope):
    """`{base}/event`: a flow outcome, QoS 1, not retained. `data` depends on `type`."""

    type: EventType
    data: dict[str, Any]


EVENT_DATA: dict[str, type[_Payload]] = {
    "gift.validated": GiftValidatedData,
    "gift.invalid": GiftInvalidData,
    "gift.redeemed": GiftRedeemedData,
    "gift.reversed": GiftReversedData,
    "nfc.removed": NfcRemovedData,
    "card.balance": CardBalanceData,
    "card.invalid": CardInvalidData,
    "card.paid": CardPaidData,
    "order.updated": OrderUpdatedData,
    "order.committed": OrderClosedData,
    "order.voided": OrderClosedData,
    "order.abandoned": OrderClosedData,
}


# --- requests and responses ----------------------------------------------------------------------


class Request(_Payload):
    """Every request carries a `request_id`; repeating it returns the first answer again."""

    request_id: str = Field(min_length=1, max_length=128)


class ScanInjectParams(Request):
    """Keyed entry from the POS screen: handled exactly like a scan from a device."""

    data: str = Field(min_length=1, max_length=4096)
    symbology: str = Field("keyed", max_length=32)


class GiftValidateParams(Request):
    token_id: str


class GiftRedeemParams(Request):
    """`amount` (monetary gifts and gift cards, minor units) or `quantity` (item gifts). For a
    gift card payment `amount` may be left out: the agent then pays what is left of the open
    order's total (tax included)."""

    token_id: str
    amount: int | None = Field(None, gt=0, description="minor units, e.g. cents")
    quantity: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _at_most_one(self) -> GiftRedeemParams:
        if self.amount is not None and self.quantity is not None:
            raise ValueError("give amount (minor units) or quantity, not both")
        return self


class GiftReverseParams(Request):
    transaction_id: str = Field(min_length=1, max_length=128)


class OrderUpdateParams(Request, OrderSnapshot):
    """The whole order as the POS has it now (after store promotions), sent on every change.
    A new `order_id` starts a new order; the lane keeps one open order at a time."""

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot.model_validate(self.model_dump(exclude={"request_id"}))


class OrderCloseParams(Request):
    order_id: str = Field(min_length=1, max_length=64)


class DeviceHealthParams(Request):
    device_id: str | None = Field(None, description="one device; default: all")
    level: HealthLevel = HealthLevel.INTERNAL


class ErrorBody(_Payload):
    code: ErrorCode
    message: str = Field(
        description="readable by a cashier; the provider's own words when it gave any"
    )
    details: dict[str, Any] | None = Field(
        None,
        description="facts the POS can act on, e.g. `available` and `currency` with "
        "insufficient_balance so it can offer a partial payment",
    )

    @classmethod
    def of(cls, exc: LaneError) -> ErrorBody:
        return cls(code=exc.code, message=exc.message, details=exc.details)


class Response(_Payload):
    """`{base}/response/{op}`; with MQTT v5 also sent to the request's Response Topic."""

    request_id: str | None
    status: Literal["ok", "error"]
    data: dict[str, Any] | None = None
    error: ErrorBody | None = None
    ts: datetime = Field(default_factory=utc_now)


class HealthItem(_Payload):
    name: str = Field(description="device id, `broker`, or `provider:<name>`")
    ok: bool
    detail: str


class HealthResult(_Payload):
    ok: bool
    items: list[HealthItem]


class RedeemResult(_Payload):
    """A gift voucher redemption (`redemption`) or a gift card payment (`card` and `payment`:
    add `payment` to the order, e.g. with K-Series `pos_addPayment`)."""

    provider: str
    redemption: Redemption | None = None
    card: CardRedemption | None = None
    payment: PaymentInstruction | None = None
    remaining: int | None = Field(
        None, description="card payments: what is left to pay on the order, minor units"
    )


class ReverseResult(_Payload):
    """A gift voucher redemption reversed (`reversal`), or a gift card payment (`card`)."""

    provider: str
    reversal: Reversal | None = None
    card: CardReversal | None = None


class ValidateResult(_Payload):
    """A gift voucher (`gift`) or a gift card's balance (`card`)."""

    provider: str
    gift: GiftStatus | None = None
    card: CardBalance | None = None


class OrderResult(_Payload):
    order: OrderInfo
    replaced: str | None = Field(None, description="the open order this one replaced, if any")


@dataclass(frozen=True)
class OpSpec:
    params: type[Request]
    result: type[_Payload]
    summary: str


OPS: dict[str, OpSpec] = {
    "scan.inject": OpSpec(
        ScanInjectParams, ScanMessage, "keyed entry; answered with the scan it produced"
    ),
    "gift.validate": OpSpec(
        GiftValidateParams,
        ValidateResult,
        "validate a scanned gift voucher or read a gift card's balance again",
    ),
    "gift.redeem": OpSpec(
        GiftRedeemParams,
        RedeemResult,
        "redeem a gift voucher, or pay with a gift card (amount defaults to what is left)",
    ),
    "gift.reverse": OpSpec(
        GiftReverseParams,
        ReverseResult,
        "reverse a gift redemption or an open order's card payment by its transaction id",
    ),
    "order.update": OpSpec(
        OrderUpdateParams, OrderResult, "open or update the lane's order (lines, amounts)"
    ),
    "order.paid": OpSpec(
        OrderCloseParams,
        OrderClosedData,
        "the order is paid: commit loyalty redemptions, check in, capture coupons",
    ),
    "order.void": OpSpec(
        OrderCloseParams,
        OrderClosedData,
        "the order is voided: release coupons, unlock the basket, reverse card payments",
    ),
    "device.health": OpSpec(
        DeviceHealthParams, HealthResult, "health checks of devices, broker and providers"
    ),
}

GiftInvalidData.model_rebuild()
CardInvalidData.model_rebuild()
StepOutcome.model_rebuild()


TOPICS: dict[str, tuple[str, type[_Payload], str]] = {
    "state": ("agent →", AgentState, 'retained; the last will publishes `{"state":"offline"}`'),
    "devices/{device_id}": ("agent →", DeviceRecord, "retained; one per input device"),
    "scan": ("agent →", ScanMessage, "QoS 1; one per scan, masked"),
    "event": ("agent →", Event, "QoS 1; flow outcomes, `data` by `type`"),
    "request/{op}": ("POS →", Request, "QoS 1; params by op"),
    "response/{op}": ("agent →", Response, "QoS 1; also to the v5 Response Topic"),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of every payload, keyed `topic:…`, `event:…`, `request:…`, `result:…`."""
    out: dict[str, dict[str, Any]] = {}
    for topic, (_direction, model, _note) in TOPICS.items():
        out[f"topic:{topic}"] = model.model_json_schema()
    for event_type, model in EVENT_DATA.items():
        out[f"event:{event_type}"] = model.model_json_schema()
    for op, spec in OPS.items():
        out[f"request:{op}"] = spec.params.model_json_schema()
        out[f"result:{op}"] = spec.result.model_json_schema()
    return out
