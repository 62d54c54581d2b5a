"""The settings model of every provider's `[providers.<name>]` table, kept apart from the
adapters so that reading and checking a config imports pydantic only, never an HTTP stack or a
vendor module (agent/registry.py names each model once).

A key file setting ends in `_key_file`; its systemd credential is `<provider>_<setting without
_file>` (`agent.secrets.read_key`), e.g. `giftlocal_api_key`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from agent import __version__
from agent.providers import punchh_key


class HttpProviderSettings(BaseModel):
    """Keys every remote provider table shares; adapters subclass it with their own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: HttpUrl
    api_key_file: Path | None = Field(
        None,
        description="file holding the API key; default: the systemd credential named "
        "`<provider>_api_key`",
    )
    timeout: float = Field(
        8.0, gt=0, le=120, description="seconds for a whole call, answer included"
    )
    connect_timeout: float = Field(3.0, gt=0, le=60)


class SandboxSettings(BaseModel):
    """The `[providers.sandbox]` table; empty is valid, so the demo needs no configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db: Path | None = Field(None, description="ledger file; default: <state dir>/sandbox.sqlite")
    demo_data: bool = Field(True, description="load the shipped demo gifts into an empty ledger")
    location: str | None = Field(
        None, description="location id this lane redeems at; default: the lane's store id"
    )


class GiftLocalSettings(HttpProviderSettings):
    """The `[providers.giftlocal]` table. At most one of the two location keys: without either,
    the lane's store id is sent as `pointOfSaleSystemOrganizationIdentifier`."""

    organization_id: UUID | None = Field(
        None, description="Gift Local location GUID, sent as organizationID"
    )
    pos_location_id: str | None = Field(
        None,
        min_length=1,
        description="this POS's location id as registered at Gift Local, sent as "
        "pointOfSaleSystemOrganizationIdentifier",
    )
    currency: str = Field(
        "USD",
        pattern=r"^[A-Z]{3}$",
        description="the account's currency: scales redeem amounts for a gift this process "
        "has not validated (Gift Local amounts carry no currency)",
    )
    validation_options: dict[str, str | int | bool] = Field(
        default_factory=dict,
        max_length=32,
        description='Gift Local\'s optional "Validation Options" as names and values, sent as '
        "given with validate and redeem; seed 003 names the input but not its fields, so set "
        "only what Gift Local tells you. None by default",
    )

    @model_validator(mode="after")
    def _one_location(self) -> GiftLocalSettings:
        if self.organization_id is not None and self.pos_location_id is not None:
            raise ValueError("set organization_id or pos_location_id, not both")
        return self


class KSeriesSettings(HttpProviderSettings):
    """The `[providers.kseries]` table."""

    payment_method_code: str = Field(
        min_length=1,
        max_length=64,
        description="the gift card payment method code set up in the K-Series Back Office; "
        "the POS passes it to pos_addPayment",
    )
    currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of the lane's card payments"
    )


class PetzSettings(HttpProviderSettings):
    """`[providers.petz]`: where PETZ is and how this register is known to it."""

    device_ref: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="this register's reference at PETZ (`/posface/register/set/`); "
        "default: the lane id",
    )
    capture_path: Literal["/posface/auth/capture/", "/posface/auth/redeem/"] = Field(
        "/posface/auth/capture/",
        description="seed 001 names both: 'Coupon Redemption: /posface/auth/capture/' and "
        "'capturing the coupon authorization through the /posface/auth/redeem/ endpoint' "
        "(UNCERTAIN which is live; `lane-agent diag providers` tries it)",
    )
    order_path: str = Field(
        "/posface/order/set/",
        pattern=r"^/[\x21-\x7e]*$",
        description="order sync, authorization release (order sent as void): NOT in seed 001, "
        "our guess in the style of its /posface/customer/set/ (UNCERTAIN; `lane-agent diag "
        "providers` tries it)",
    )
    currency_decimals: int = Field(
        2, ge=0, le=3, description="decimal places of the store currency (PETZ sends decimals)"
    )

    def device_ref_for(self, lane: str) -> str:
        return self.device_ref or lane


class PunchhSettings(HttpProviderSettings):
    """`[providers.punchh]`: the store's Punchh host and the POS identity Punchh issued."""

    location_key_file: Path | None = Field(
        None,
        description="file holding the location (API) key; default: the systemd credential "
        "`punchh_location_key`",
    )
    business_key_file: Path | None = Field(
        None,
        description="file holding the business key; default: the systemd credential "
        "`punchh_business_key`",
    )
    integrator: str = Field(
        "LaneAgent",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="integrator name registered with Punchh, the first part of the User-Agent",
    )
    pos_type: str = Field(
        "Proprietary POS", min_length=1, max_length=64, description="`pos_type` on check-ins"
    )
    pos_version: str = Field(
        __version__, min_length=1, max_length=32, description="`pos_version` on check-ins"
    )
    channel: Literal["pos", "kiosk", "online_order", "web", "mobile", "dashboard", "chatbot"] = (
        "pos"
    )
    revenue_id: str = Field(
        "2",
        min_length=1,
        max_length=32,
        description="`revenue_id` on check-ins and receipts: the POS's id of how the order is "
        "fulfilled (Punchh's examples: 1 dine-in, 2 to-go)",
    )
    revenue_code: str = Field(
        "To Go",
        min_length=1,
        max_length=64,
        description="`revenue_code`: the name of that fulfilment method",
    )
    short_key: int | None = Field(
        None,
        ge=0,
        le=punchh_key.MAX_SHORT_KEY,
        description="13-bit location short key for receipt keys; default: read from "
        "GET /api/pos/locations/configuration",
    )
    currency_decimals: int = Field(
        2, ge=0, le=3, description="decimal places of the store currency (Punchh sends decimals)"
    )
    oauth_client: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the OAuth client id the business issued for Advanced Authentication "
        "(`loyalty.otp_send`, `loyalty.otp_verify`); unset: those ops answer not_configured",
    )
    phone_ext: str = Field(
        "+1",
        pattern=r"^\+[0-9]{1,4}$",
        description="the country code sent as `phone_ext` with a guest's phone number for a "
        "one-time password",
    )

    @model_validator(mode="after")
    def _no_api_key_file(self) -> PunchhSettings:
        if self.api_key_file is not None:
            raise ValueError(
                "punchh takes two keys: set location_key_file and business_key_file, "
                "not api_key_file"
            )
        return self
