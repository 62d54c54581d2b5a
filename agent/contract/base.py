"""Shared shapes of every MQTT payload: the envelope of events, requests, responses, errors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agent.errors import ErrorCode, LaneError
from agent.logs import printable


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Payload(BaseModel):
    # Validators and serializers are built on first use: a lane uses the few ops and events of
    # the providers it configures, and building all of them at import cost 0.7 MiB of its idle
    # memory (bench/rss_steps.py).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class Envelope(_Payload):
    """Every event carries these so consumers can drop QoS 1 duplicates."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    ts: datetime = Field(default_factory=utc_now, description="RFC 3339, UTC")


class Request(_Payload):
    """Every request has a `request_id`; repeated with the same params, it gets the first answer."""

    request_id: str = Field(min_length=1, max_length=128)


class ErrorBody(_Payload):
    code: ErrorCode
    message: Annotated[str, AfterValidator(printable)] = Field(
        description="readable by a cashier; the provider's own words when it gave any (control "
        "characters escaped)"
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


EVERY_OP_ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode.INVALID_REQUEST,
    ErrorCode.BUSY,
    ErrorCode.INTERNAL,
)
"""What any op can answer: params that fail validation, a `request_id` already used for another
op, a request the lane's state does not allow (no open order...); the lane over its request
limit (never for `device.health`); and a bug in the agent."""


@dataclass(frozen=True)
class OpSpec:
    params: type[Request]
    result: type[_Payload]
    summary: str
    errors: tuple[ErrorCode, ...]
    """The codes this op can answer besides `EVERY_OP_ERRORS`: from its own checks, and from the
    answers of the provider calls it makes (docs/providers/*.md map them). Required, so a new op
    states them."""
    reads_only: bool = False
    """It changes nothing anywhere: its answer is not kept for repeats (a screen reading the
    order on every event would otherwise write to the lane's disk each time)."""
    outcome_learnt_later: bool = False
    """Its flow may learn later what an `unknown_outcome` answer could not tell (a voucher's
    balance read by the next redeem of it): that answer is not kept, so the same request sent
    again is answered with what the lane knows by then."""
