"""The one list of the lane's flows and of the providers that can run them.

Config models, `check-config`, the default routing of token kinds and the docs tables are derived
from these rows; the agent imports an adapter or a flow module only when the config names it, so
a lane pays (in memory and start-up time) for what it runs. Adding a provider is one settings
model (agent/providers/settings.py), one adapter module, one row here, its simulator, its docs
page and its tests: docs/providers/adding.md walks through it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from agent.providers.settings import (
    GiftLocalSettings,
    KSeriesSettings,
    PetzSettings,
    PunchhSettings,
    SandboxSettings,
)

FlowName = Literal["gift", "card", "coupons", "loyalty"]
FLOW_NAMES: tuple[FlowName, ...] = get_args(FlowName)


@dataclass(frozen=True)
class FlowSpec:
    name: FlowName
    summary: str
    flow: str
    """`module:Class`, built as `Class(provider, FlowContext)` (agent/flows/base.py)."""
    interface: str
    """`module:Protocol` its provider implements."""
    tenders: bool = False
    """Its money steps are tenders of the order, taken and given back with the `gift.*` ops."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    """Its `[providers.<name>]` table and the name events and health items carry."""
    flow: FlowName
    settings: type[BaseModel]
    adapter: str
    """`module:Class` with `Class.create(settings, ProviderEnv)`."""
    keys: tuple[str, ...]
    """Settings naming key files (`agent.secrets.read_key`): read by `check-config` too."""
    docs: str


@dataclass(frozen=True)
class ProviderEnv:
    """What an adapter may know of the lane besides its own table."""

    store: str
    lane: str
    state_dir: Path
    transport: Any = None
    """An `httpx.AsyncBaseTransport` to use instead of the network (in-process tests)."""


FLOWS: tuple[FlowSpec, ...] = (
    FlowSpec(
        "gift",
        "gift vouchers: validate, redeem an amount or items, reverse",
        "agent.flows.gift:GiftFlow",
        "agent.providers.base:GiftProvider",
        tenders=True,
    ),
    FlowSpec(
        "card",
        "gift card payments: balance, pay (partial) for the order, reverse",
        "agent.flows.card:CardFlow",
        "agent.providers.cards:CardProvider",
        tenders=True,
    ),
    FlowSpec(
        "coupons",
        "coupons: customer by phone, authorize, capture after payment",
        "agent.flows.coupons:CouponFlow",
        "agent.providers.coupons:CouponProvider",
    ),
    FlowSpec(
        "loyalty",
        "loyalty: identify the guest, redemptions, commit, check-in",
        "agent.flows.loyalty:LoyaltyFlow",
        "agent.providers.loyalty:LoyaltyProvider",
    ),
)

PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "sandbox",
        "gift",
        SandboxSettings,
        "agent.providers.sandbox:SandboxLedger",
        (),
        "docs/config.md",
    ),
    ProviderSpec(
        "giftlocal",
        "gift",
        GiftLocalSettings,
        "agent.providers.giftlocal:GiftLocalProvider",
        ("api_key_file",),
        "docs/providers/giftlocal.md",
    ),
    ProviderSpec(
        "kseries",
        "card",
        KSeriesSettings,
        "agent.providers.kseries:KSeriesCardProvider",
        ("api_key_file",),
        "docs/providers/kseries.md",
    ),
    ProviderSpec(
        "petz",
        "coupons",
        PetzSettings,
        "agent.providers.petz:PetzCouponProvider",
        ("api_key_file",),
        "docs/providers/petz.md",
    ),
    ProviderSpec(
        "punchh",
        "loyalty",
        PunchhSettings,
        "agent.providers.punchh:PunchhLoyaltyProvider",
        ("location_key_file", "business_key_file"),
        "docs/providers/punchh.md",
    ),
)

ROUTES: dict[str, tuple[FlowName, ...]] = {
    "gift_voucher_code": ("gift", "card"),
    "gift_voucher_token": ("gift",),
    "nfc_uid": ("card",),
    "loyalty_card": ("loyalty", "card"),
    "loyalty_user_qr": ("loyalty",),
    "loyalty_single_scan": ("loyalty",),
    "loyalty_redemption_code": ("loyalty",),
    "email": ("loyalty",),
    "phone": ("coupons", "loyalty"),
}
"""Token kind → the flows it goes to by default, the first one that has a provider on the lane
winning; `[flows.routes]` overrides it per kind."""


def provider_spec(name: str) -> ProviderSpec:
    return next(spec for spec in PROVIDERS if spec.name == name)


def flow_spec(name: str) -> FlowSpec:
    return next(spec for spec in FLOWS if spec.name == name)


def able(flow_name: FlowName) -> tuple[str, ...]:
    """The providers that can run `flow_name`."""
    return tuple(spec.name for spec in PROVIDERS if spec.flow == flow_name)


def load(ref: str) -> Any:
    """The object a `module:name` reference names, importing its module now."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
