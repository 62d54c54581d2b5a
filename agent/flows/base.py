"""What a provider flow plugs into: the lane's shared parts, and the shape the app expects.

A flow module exposes `build(ctx) -> Flow | None` (None when the config gives the flow no
provider); the app registers what the flow returns: its scan handler for the token kinds routed
to it, its order hooks, its request ops and its provider's health check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import Config
from agent.contract import (
    Event,
    GiftRedeemParams,
    GiftReverseParams,
    GiftValidateParams,
    RedeemResult,
    ReverseResult,
    ValidateResult,
)
from agent.flows.orders import OrderFlow
from agent.normalise import Token
from agent.orders import OrderBook
from agent.registry import FlowName
from agent.tenders import Tender
from agent.tokens import TokenVault

Handler = Callable[[Any], Awaitable[Any]]


class Provider(Protocol):
    """What the agent itself needs of every provider, whatever its flow."""

    name: str

    async def check_health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class FlowContext:
    config: Config
    vault: TokenVault
    book: OrderBook
    emit: Callable[[Event], None]

    def kinds(self, flow: FlowName) -> frozenset[str]:
        """The token kinds the config routes to `flow`."""
        return frozenset(k for k, f in self.config.kind_routes().items() if f == flow)

    @property
    def lane_ref(self) -> str:
        """`store:lane`, which makes per-lane ids (request ids, order ids) unique at a provider."""
        return f"{self.config.lane.store}:{self.config.lane.lane}"

    def reference(self, request_id: str) -> str:
        """The tender reference of the money step a request takes: unique across lanes."""
        return f"{self.lane_ref}:{request_id}"


class LaneFlow(OrderFlow, Protocol):
    name: str

    @property
    def provider(self) -> Provider: ...

    async def on_scan(self, token: Token, token_id: str) -> None: ...

    def handlers(self) -> dict[str, Handler]:
        """The request ops this flow answers (`coupon.authorize` ...)."""
        ...


class TenderFlow(LaneFlow, Protocol):
    """A flow whose money steps are tenders of the order (registry: `tenders=True`): the POS
    takes and gives them back with `gift.validate`, `gift.redeem` and `gift.reverse`."""

    def handles(self, token_id: str) -> bool:
        """Whether the token's kind is routed to this flow."""
        ...

    async def validate(self, params: GiftValidateParams) -> ValidateResult: ...

    async def redeem(self, params: GiftRedeemParams) -> RedeemResult: ...

    async def reverse(self, params: GiftReverseParams, tender: Tender) -> ReverseResult: ...
