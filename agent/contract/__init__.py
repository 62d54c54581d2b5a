"""The MQTT contract: every topic's payload and every request op, as pydantic models.

This package is the single source of truth: `lane-agent schema` prints JSON Schemas generated
from it and `docs/mqtt-api.md` gets its tables from it (see `agent.docgen`). One module per
concern (the lane, gifts and cards, orders, ...) declares its payloads, its `EVENTS` and its
`OPS`; this module assembles them. Payloads never carry a clear voucher code, card number or
token: scans carry a masked `display` and an opaque `token_id`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from agent.contract import admin, coupons, gift, lane, loyalty, orders
from agent.contract.base import (
    Envelope,
    ErrorBody,
    OpSpec,
    Request,
    Response,
    _Payload,
    utc_now,
)
from agent.contract.gift import (
    CardBalanceData,
    CardInvalidData,
    CardPaidData,
    CardReversedData,
    GiftInvalidData,
    GiftRedeemedData,
    GiftRedeemParams,
    GiftReversedData,
    GiftReverseParams,
    GiftValidatedData,
    GiftValidateParams,
    PaymentInstruction,
    RedeemResult,
    ReverseResult,
    ValidateResult,
)
from agent.contract.lane import (
    AgentState,
    DeviceCounters,
    DeviceHealthParams,
    DeviceRecord,
    HealthItem,
    HealthResult,
    NfcInfo,
    NfcRecordInfo,
    NfcRemovedData,
    ScanInjectParams,
    ScanMessage,
)
from agent.contract.orders import (
    OrderClosedData,
    OrderCloseParams,
    OrderInfo,
    OrderResult,
    OrderUpdatedData,
    OrderUpdateParams,
    StepOutcome,
)

_MODULES = (lane, gift, orders, coupons, loyalty, admin)

EVENT_DATA: dict[str, type[_Payload]] = {k: v for m in _MODULES for k, v in m.EVENTS.items()}
OPS: dict[str, OpSpec] = {k: v for m in _MODULES for k, v in m.OPS.items()}


class Event(Envelope):
    """`{base}/event`: a flow outcome, QoS 1, not retained. `data` depends on `type`."""

    type: str = Field(json_schema_extra={"enum": list(EVENT_DATA)})
    data: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in EVENT_DATA:
            raise ValueError(f"unknown event type {value!r}")
        return value


TOPICS: dict[str, tuple[str, type[_Payload], str]] = {
    "state": ("agent →", AgentState, 'retained; the last will publishes `{"state":"offline"}`'),
    "devices/{device_id}": ("agent →", DeviceRecord, "retained; one per input device"),
    "scan": ("agent →", ScanMessage, "QoS 1; one per scan, masked"),
    "event": ("agent →", Event, "QoS 1; flow outcomes, `data` by `type`"),
    "request/{op}": ("POS →", Request, "QoS 1; params by op"),
    "response/{op}": ("agent →", Response, "QoS 1; also to the v5 Response Topic"),
    "info": ("agent →", admin.LaneInfo, "retained; for the fleet (docs/fleet.md)"),
    "admin/bundle/{request_id}": (
        "agent →",
        admin.BundleChunk,
        "QoS 1; `admin.diag.bundle`'s archive, in order; fleet only",
    ),
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


__all__ = [
    "EVENT_DATA",
    "OPS",
    "TOPICS",
    "AgentState",
    "CardBalanceData",
    "CardInvalidData",
    "CardPaidData",
    "CardReversedData",
    "DeviceCounters",
    "DeviceHealthParams",
    "DeviceRecord",
    "Envelope",
    "ErrorBody",
    "Event",
    "GiftInvalidData",
    "GiftRedeemParams",
    "GiftRedeemedData",
    "GiftReverseParams",
    "GiftReversedData",
    "GiftValidateParams",
    "GiftValidatedData",
    "HealthItem",
    "HealthResult",
    "NfcInfo",
    "NfcRecordInfo",
    "NfcRemovedData",
    "OpSpec",
    "OrderCloseParams",
    "OrderClosedData",
    "OrderInfo",
    "OrderResult",
    "OrderUpdateParams",
    "OrderUpdatedData",
    "PaymentInstruction",
    "RedeemResult",
    "Request",
    "Response",
    "ReverseResult",
    "ScanInjectParams",
    "ScanMessage",
    "StepOutcome",
    "ValidateResult",
    "json_schemas",
    "utc_now",
]
