"""Gift Local (seed 003) redemption API on loopback: validate-gift, redeem-gift and the reversal.

What it enforces, from Gift Local's public guidance pages (docs/providers/giftlocal.md has the
sources and the list of UNCERTAIN choices):

- `Authorization: <API key>`, the whole header value, no `Bearer`; anything else is 401. The key
  names the merchant account; gifts of other accounts do not exist for it (404);
- JSON bodies with the documented field names only: an unknown or misspelled field is 400;
- exactly one of `voucherCode` (the 12-digit code, a JSON number in Gift Local's example, so
  leading zeros are padded back; a 12-digit string is accepted too) or `voucherPublicToken` (the
  QR URL's path segment, or the whole URL);
- a location as `organizationID` (GUID) or `pointOfSaleSystemOrganizationIdentifier`, required
  when the account has more than one location;
- validate answers 200 for every gift of the account, redeemable or not: `voucher.isRedeemable`
  and the eligible value or quantity say whether it can be redeemed here and now;
- redeem takes `amount` as a decimal in the gift's currency (an integer quantity for item gifts)
  and refuses what validate reports as not redeemable, or more than the eligible value. There is
  no idempotency key: a repeated redeem redeems again, as the real API presumably does;
- our guesses for seed 003's optional inputs are accepted and checked for shape, never acted on:
  `posTicket` on validate, `validationOptions` on validate and redeem.

Answers come in two forms (`Seed.answers`): `full`, every field the adapter can read (names
beyond the seed's are our guesses, which this simulator repeats, so it proves nothing about
them), and `seed`, only what seed 003 describes: the four fields it names plus `voucherID`
(which redeem needs, per the public guidance page), the redemption's transaction id, and for a
reversal the transaction record alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from simulators.server import ApiError, Json, Request, Response, Simulator

VALIDATE: Final = "/api/integration/redemption/validate-gift"
REDEEM: Final = "/api/integration/redemption/redeem-gift"
REVERSE: Final = "/api/integration/redemption/reverse-redemption"  # UNCERTAIN: path not published

DENIED: Final = "Authorization has been denied for this request."

# Currencies whose minor unit is not a hundredth; the simulator's own table, kept apart from the
# adapter's so a wrong scale on either side shows up in tests.
_EXPONENTS: Final = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
_SYMBOLS: Final = {"USD": "$", "CAD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

_M = TypeVar("_M", bound=BaseModel)
_Number = StrictInt | Annotated[Decimal, Strict()]  # JSON decimals parse as Decimal


def _exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def voucher_code(value: int | str) -> str | None:
    """The 12-digit code from either JSON form; a number has lost its leading zeros."""
    if isinstance(value, int):
        return f"{value:012d}" if 0 <= value < 10**12 else None
    return value if len(value) == 12 and value.isascii() and value.isdigit() else None


def _public_token(value: str) -> str:
    """Gift Local prefers the QR URL's path segment but accepts the whole URL."""
    parts = urlsplit(value.strip())
    if parts.scheme and parts.netloc:
        return parts.path.rstrip("/").rsplit("/", 1)[-1]
    return value.strip()


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(status, {"message": message, "errorCode": code, **extra})


# -- seed fixtures --------------------------------------------------------------------------------


class _SeedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedLocation(_SeedModel):
    organization_id: UUID
    pos_id: str | None = Field(None, description="pointOfSaleSystemOrganizationIdentifier")
    name: str


class SeedAccount(_SeedModel):
    id: str
    name: str
    api_key: str = Field(min_length=1)
    locations: list[SeedLocation] = Field(min_length=1)


class SeedGift(_SeedModel):
    """One gift. `value`/`redeemed` are minor units (monetary) or counts (item); days count from
    the day the seed is loaded, so fixtures never go stale."""

    account: str
    voucher_id: UUID | None = None
    code: str = Field(pattern=r"^\d{12}$")
    public_token: str | None = None
    type: Literal["monetary", "item"]
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    item_label: str | None = None
    value: int = Field(gt=0)
    redeemed: int = Field(0, ge=0)
    valid_from_days: int | None = None
    expires_in_days: int | None = None
    locations: list[UUID] | None = Field(None, description="organizationIDs; None: all")
    voided: bool = False
    sender: str | None = None
    recipient: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SeedGift:
        if (self.type == "monetary") != (self.currency is not None):
            raise ValueError(f"gift {self.code}: a currency is for monetary gifts only")
        if (self.type == "item") != (self.item_label is not None):
            raise ValueError(f"gift {self.code}: an item_label is for item gifts only")
        if self.redeemed > self.value:
            raise ValueError(f"gift {self.code}: redeemed exceeds value")
        return self


class Seed(_SeedModel):
    """`POST /_sim/seed` body: replaces every account, gift and redemption."""

    accounts: list[SeedAccount] = Field(min_length=1)
    gifts: list[SeedGift] = []
    answers: Literal["full", "seed"] = Field(
        "full", description="`seed`: answers carry only what seed 003 describes"
    )

    @model_validator(mode="after")
    def _references(self) -> Seed:
        accounts = {a.id: a for a in self.accounts}
        if len(accounts) != len(self.accounts):
            raise ValueError("account ids must be unique")
        if len({a.api_key for a in self.accounts}) != len(self.accounts):
            raise ValueError("api keys must be unique")
        if len({g.code for g in self.gifts}) != len(self.gifts):
            raise ValueError("gift codes must be unique")
        for gift in self.gifts:
            account = accounts.get(gift.account)
            if account is None:
                raise ValueError(f"gift {gift.code}: unknown account {gift.account!r}")
            known = {loc.organization_id for loc in account.locations}
            if gift.locations is not None and not set(gift.locations) <= known:
                raise ValueError(f"gift {gift.code}: location not in account {account.id}")
        return self


BAKERY_KEY: Final = "gl-sim-bakery-key"
HARBOR_KEY: Final = "gl-sim-harbor-key"
BAKERY_MAIN: Final = "0b6a9c51-3c39-4b8e-9d0e-2f1f5a6d1c01"
HARBOR_PIER: Final = "7d2e4f10-8a5b-4c6d-9e7f-0a1b2c3d4e01"
HARBOR_MARKET: Final = "7d2e4f10-8a5b-4c6d-9e7f-0a1b2c3d4e02"

DEFAULT_SEED: Final[Json] = {
    "accounts": [
        {
            "id": "bakery",
            "name": "Corner Bakery",
            "api_key": BAKERY_KEY,
            "locations": [
                {"organization_id": BAKERY_MAIN, "pos_id": "bakery-main", "name": "Main St"}
            ],
        },
        {
            "id": "harbor",
            "name": "Harbor Cafés",
            "api_key": HARBOR_KEY,
            "locations": [
                {"organization_id": HARBOR_PIER, "pos_id": "harbor-pier", "name": "Pier"},
                {"organization_id": HARBOR_MARKET, "pos_id": "harbor-market", "name": "Market"},
            ],
        },
    ],
    "gifts": [
        {"account": "bakery", "code": "100000000001", "public_token": "gl-bakery-50",
         "type": "monetary", "currency": "USD", "value": 5000,
         "sender": "Maya Chen", "recipient": "Sam Rivera"},
        {"account": "bakery", "code": "100000000002", "public_token": "gl-bakery-coffee",
         "type": "item", "item_label": "Coffee", "value": 3,
         "sender": "Corner Bakery", "recipient": "Alex Kim"},
        {"account": "bakery", "code": "100000000003", "type": "monetary", "currency": "USD",
         "value": 1000, "valid_from_days": -40, "expires_in_days": -10,
         "sender": "Corner Bakery", "recipient": "Chris Novak"},
        {"account": "bakery", "code": "100000000004", "type": "monetary", "currency": "USD",
         "value": 2500, "redeemed": 2500, "sender": "Jordan Lee", "recipient": "Priya Patel"},
        {"account": "bakery", "code": "100000000005", "type": "monetary", "currency": "USD",
         "value": 1500, "valid_from_days": 5, "expires_in_days": 60,
         "sender": "Corner Bakery", "recipient": "Dana Ortiz"},
        {"account": "bakery", "code": "100000000006", "type": "monetary", "currency": "USD",
         "value": 2000, "voided": True, "sender": "Lee Park", "recipient": "Ravi Shah"},
        {"account": "bakery", "code": "012345678901", "type": "monetary", "currency": "USD",
         "value": 3000, "sender": "Ana Lima", "recipient": "Tom Berg"},
        {"account": "harbor", "code": "200000000001", "public_token": "gl-harbor-40",
         "type": "monetary", "currency": "USD", "value": 4000,
         "sender": "Eli Moss", "recipient": "Noor Haddad"},
        {"account": "harbor", "code": "200000000002", "type": "item", "item_label": "Pastry",
         "value": 2, "locations": [HARBOR_PIER],
         "sender": "Harbor Cafés", "recipient": "Kim Wu"},
        {"account": "harbor", "code": "200000000003", "type": "monetary", "currency": "JPY",
         "value": 5000, "sender": "Yuki Sato", "recipient": "Ken Ito"},
    ],
}  # fmt: skip


# -- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    organization_id: str
    pos_id: str | None
    name: str


@dataclass(frozen=True)
class _Account:
    id: str
    name: str
    api_key: str
    locations: tuple[_Location, ...]


@dataclass
class _Gift:
    voucher_id: str
    account: str
    code: str
    public_token: str | None
    monetary: bool
    currency: str | None
    item_label: str | None
    initial: int
    balance: int
    valid_from: datetime | None
    expires_on: datetime | None
    locations: frozenset[str] | None
    voided: bool
    sender: str | None
    recipient: str | None

    def number(self, units: int) -> int | float:
        """Units as Gift Local's JSON number: a decimal for money, a count for items."""
        if not self.monetary or self.currency is None or _exponent(self.currency) == 0:
            return units
        return float(Decimal(units).scaleb(-_exponent(self.currency)))

    def text(self, units: int) -> str:
        if self.currency is None:
            return f"{units} × {self.item_label}"
        exponent = _exponent(self.currency)
        money = f"{Decimal(units).scaleb(-exponent):,.{exponent}f}"
        symbol = _SYMBOLS.get(self.currency)
        return f"{symbol}{money}" if symbol else f"{money} {self.currency}"

    def blocked(self, location: _Location, now: datetime) -> tuple[str, str] | None:
        """(redeemableStatus, message) when it cannot be redeemed here and now."""
        if self.voided:
            return "Voided", "This gift has been voided"
        if self.balance == 0:
            return "FullyRedeemed", "This gift has been fully redeemed"
        if self.expires_on is not None and now >= self.expires_on:
            return "Expired", f"This gift expired on {self.expires_on:%Y-%m-%d}"
        if self.valid_from is not None and now < self.valid_from:
            return "NotYetValid", f"This gift is valid from {self.valid_from:%Y-%m-%d}"
        if self.locations is not None and location.organization_id not in self.locations:
            return "NotValidAtLocation", f"This gift cannot be redeemed at {location.name}"
        return None


@dataclass
class _Transaction:
    id: str
    voucher_id: str
    units: int
    organization_id: str
    redeemed_on: datetime
    reversed_on: datetime | None = None


# -- request bodies (the wire names are the aliases) ---------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organization_id: UUID | None = Field(None, alias="organizationID")
    pos_id: StrictStr | None = Field(None, alias="pointOfSaleSystemOrganizationIdentifier")

    @model_validator(mode="after")
    def _one_location(self) -> _Body:
        if self.organization_id is not None and self.pos_id is not None:
            raise ValueError(
                "send organizationID or pointOfSaleSystemOrganizationIdentifier, not both"
            )
        return self


class _TicketLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: StrictStr = Field(alias="lineID")
    description: StrictStr
    sku: StrictStr | None = None
    quantity: StrictInt
    amount: _Number


class _Ticket(BaseModel):
    """Our guess (UNCERTAIN) at seed 003's "POS ticket data"."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: StrictStr = Field(alias="ticketID")
    currency_code: StrictStr = Field(alias="currencyCode")
    subtotal: _Number
    tax: _Number
    total: _Number
    items: list[_TicketLine]


class _Options(_Body):
    """Our guess (UNCERTAIN) at seed 003's "Validation Options": accepted, not acted on."""

    validation_options: dict[str, StrictStr | StrictInt | StrictBool] | None = Field(
        None, alias="validationOptions"
    )


class _ValidateBody(_Options):
    pos_ticket: _Ticket | None = Field(None, alias="posTicket")
    voucher_code: StrictInt | StrictStr | None = Field(None, alias="voucherCode")
    voucher_public_token: StrictStr | None = Field(None, alias="voucherPublicToken")

    @model_validator(mode="after")
    def _one_voucher(self) -> _ValidateBody:
        if (self.voucher_code is None) == (self.voucher_public_token is None):
            raise ValueError("send exactly one of voucherCode or voucherPublicToken")
        return self


class _RedeemBody(_Options):
    voucher_id: UUID = Field(alias="voucherID")
    amount: _Number


class _ReverseBody(_Body):
    redemption_transaction_id: UUID = Field(alias="redemptionTransactionID")


def _parse(request: Request, model: type[_M]) -> _M:
    """The body as `model`; JSON decimals stay `Decimal` so amounts are checked exactly."""
    try:
        data = json.loads(request.body or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise _error(
            400, "ValidationFailed", f"The request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise _error(400, "ValidationFailed", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _error(400, "ValidationFailed", f"The request is invalid: {problems}") from None


class GiftLocalSimulator(Simulator):
    """Accounts (one API key each, one or more locations), their gifts and redemptions."""

    name = "giftlocal"

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self._now = now
        self.accounts: dict[str, _Account] = {}
        self.gifts: dict[str, _Gift] = {}
        self.transactions: dict[str, _Transaction] = {}
        self._fixtures: Json = DEFAULT_SEED
        self.answers: Literal["full", "seed"] = "full"
        self.route("POST", VALIDATE, self.validate)
        self.route("POST", REDEEM, self.redeem)
        self.route("POST", REVERSE, self.reverse)
        self.seed(DEFAULT_SEED)

    # -- framework hooks ------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        self._account(request)

    def error_body(self, status: int, message: str) -> Json:
        return {"message": message}

    def seed(self, data: Json) -> None:
        """Replace all state with `Seed` fixtures; `reset` goes back to the last ones loaded."""
        seed = Seed.model_validate(data)
        today = self._now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        def day(offset: int | None) -> datetime | None:
            return None if offset is None else today + timedelta(days=offset)

        with self.lock:
            self.accounts = {
                a.id: _Account(
                    a.id,
                    a.name,
                    a.api_key,
                    tuple(_Location(str(x.organization_id), x.pos_id, x.name) for x in a.locations),
                )
                for a in seed.accounts
            }
            self.gifts, self.transactions = {}, {}
            for g in seed.gifts:
                gift = _Gift(
                    voucher_id=str(g.voucher_id or uuid.uuid4()),
                    account=g.account,
                    code=g.code,
                    public_token=g.public_token,
                    monetary=g.type == "monetary",
                    currency=g.currency,
                    item_label=g.item_label,
                    initial=g.value,
                    balance=g.value - g.redeemed,
                    valid_from=day(g.valid_from_days),
                    expires_on=day(g.expires_in_days),
                    locations=None if g.locations is None else frozenset(map(str, g.locations)),
                    voided=g.voided,
                    sender=g.sender,
                    recipient=g.recipient,
                )
                self.gifts[gift.voucher_id] = gift
                if g.redeemed:  # balance = initial - unreversed redemptions, always
                    where = self.accounts[g.account].locations[0].organization_id
                    self._new_transaction(gift, g.redeemed, where)
            self.answers = seed.answers
            self._fixtures = data

    def reset(self) -> None:
        super().reset()
        self.seed(self._fixtures)

    def ledger(self) -> Json:
        """Gifts by code (balances in minor units or counts) and every redemption."""
        return {
            "gifts": {
                g.code: {
                    "voucher_id": g.voucher_id,
                    "account": g.account,
                    "type": "monetary" if g.monetary else "item",
                    "currency": g.currency,
                    "initial": g.initial,
                    "balance": g.balance,
                }
                for g in self.gifts.values()
            },
            "redemptions": {
                t.id: {
                    "voucher_id": t.voucher_id,
                    "units": t.units,
                    "organization_id": t.organization_id,
                    "reversed": t.reversed_on is not None,
                }
                for t in self.transactions.values()
            },
        }

    def usage(self) -> list[str]:
        lines = ["Authorization: <API key> (the whole header value, no Bearer)"]
        now = self._now()
        for account in self.accounts.values():
            lines.append(f"API key {account.api_key}: {account.name}")
            for loc in account.locations:
                lines.append(
                    f"  location {loc.name}: organizationID {loc.organization_id}, "
                    f"pointOfSaleSystemOrganizationIdentifier {loc.pos_id}"
                )
            for gift in (g for g in self.gifts.values() if g.account == account.id):
                places = [
                    x
                    for x in account.locations
                    if gift.locations is None or x.organization_id in gift.locations
                ]
                why = gift.blocked((places or list(account.locations))[0], now)
                state = why[0] if why else "redeemable"
                if gift.locations is not None:
                    state += f" only at {', '.join(x.name for x in places) or 'no location'}"
                token = f" (QR token {gift.public_token})" if gift.public_token else ""
                lines.append(f"  gift {gift.code}{token}: {gift.text(gift.balance)}, {state}")
        return lines

    # -- routes ---------------------------------------------------------------------------------

    def validate(self, request: Request) -> Response:
        account = self._account(request)
        body = _parse(request, _ValidateBody)
        location = self._location(account, body)
        if body.voucher_code is not None:
            code = voucher_code(body.voucher_code)
            if code is None:
                raise _error(400, "ValidationFailed", "voucherCode must be the 12-digit code.")
            found = [g for g in self.gifts.values() if g.code == code]
        else:
            assert body.voucher_public_token is not None
            token = _public_token(body.voucher_public_token)
            found = [g for g in self.gifts.values() if token and g.public_token == token]
        gift = next((g for g in found if g.account == account.id), None)
        if gift is None:
            raise _error(404, "VoucherNotFound", "Gift not found.")
        return Response(200, self._payload(gift, location))

    def redeem(self, request: Request) -> Response:
        account = self._account(request)
        body = _parse(request, _RedeemBody)
        location = self._location(account, body)
        gift = self.gifts.get(str(body.voucher_id))
        if gift is None or gift.account != account.id:
            raise _error(404, "VoucherNotFound", "Gift not found.")
        units = self._units(gift, body.amount)
        blocked = gift.blocked(location, self._now())
        if blocked is not None:
            raise _error(422, blocked[0], blocked[1])
        if units > gift.balance:
            raise _error(
                422,
                "InsufficientBalance",
                f"Only {gift.text(gift.balance)} is available on this gift.",
                **self._payload(gift, location),
            )
        gift.balance -= units
        transaction = self._new_transaction(gift, units, location.organization_id)
        return Response(200, self._payload(gift, location, transaction))

    def reverse(self, request: Request) -> Response:
        account = self._account(request)
        body = _parse(request, _ReverseBody)
        location = self._location(account, body)
        transaction = self.transactions.get(str(body.redemption_transaction_id))
        if transaction is None or self.gifts[transaction.voucher_id].account != account.id:
            raise _error(404, "RedemptionNotFound", "Redemption transaction not found.")
        if transaction.reversed_on is not None:
            raise _error(
                409,
                "RedemptionAlreadyReversed",
                f"This redemption was already reversed on {transaction.reversed_on:%Y-%m-%d}.",
            )
        gift = self.gifts[transaction.voucher_id]
        transaction.reversed_on = self._now()
        gift.balance += transaction.units
        if self.answers == "seed":  # "Redemption transaction record data"
            return Response(200, self._record(gift, transaction))
        return Response(200, self._payload(gift, location, transaction))

    # -- helpers --------------------------------------------------------------------------------

    def _account(self, request: Request) -> _Account:
        key = request.header("authorization")
        account = next((a for a in self.accounts.values() if a.api_key == key), None)
        if account is None:
            raise ApiError(401, {"message": DENIED})
        return account

    def _location(self, account: _Account, body: _Body) -> _Location:
        if body.organization_id is not None:
            wanted = str(body.organization_id)
            found = [x for x in account.locations if x.organization_id == wanted]
            field = f"organizationID {wanted}"
        elif body.pos_id is not None:
            found = [x for x in account.locations if x.pos_id == body.pos_id]
            field = f"pointOfSaleSystemOrganizationIdentifier {body.pos_id!r}"
        elif len(account.locations) == 1:
            return account.locations[0]
        else:
            raise _error(
                400,
                "LocationRequired",
                f"This account has {len(account.locations)} locations: send organizationID "
                "or pointOfSaleSystemOrganizationIdentifier.",
            )
        if not found:
            raise _error(400, "InvalidLocation", f"{field} is not a location of this account.")
        return found[0]

    def _units(self, gift: _Gift, amount: int | Decimal) -> int:
        """The redeemed units: a whole count for items, exact minor units for money."""
        if not gift.monetary:
            if not isinstance(amount, int):
                raise _error(400, "ValidationFailed", "amount must be a whole item quantity.")
            units = amount
        else:
            assert gift.currency is not None
            scaled = Decimal(amount).scaleb(_exponent(gift.currency))
            if scaled != scaled.to_integral_value():
                raise _error(
                    400,
                    "ValidationFailed",
                    f"amount has more than {_exponent(gift.currency)} decimal places "
                    f"for {gift.currency}.",
                )
            units = int(scaled)
        if units <= 0:
            raise _error(400, "ValidationFailed", "amount must be greater than zero.")
        return units

    def _new_transaction(self, gift: _Gift, units: int, organization_id: str) -> _Transaction:
        transaction = _Transaction(
            str(uuid.uuid4()), gift.voucher_id, units, organization_id, self._now()
        )
        self.transactions[transaction.id] = transaction
        return transaction

    def _payload(
        self, gift: _Gift, location: _Location, transaction: _Transaction | None = None
    ) -> Json:
        """The validate answer (also the gift part of redeem and reverse answers)."""
        blocked = gift.blocked(location, self._now())
        eligible = 0 if blocked else gift.balance
        seed_named: Json = {
            "voucherEligibleValue": gift.number(eligible) if gift.monetary else 0,
            "voucherEligibleItemQuantity": 0 if gift.monetary else eligible,
            "voucherPresentValueDescription": (
                blocked[1] if blocked else f"{gift.text(gift.balance)} remaining"
            ),
        }
        if self.answers == "seed":
            payload: Json = {
                "voucher": {"voucherID": gift.voucher_id, "isRedeemable": blocked is None},
                **seed_named,
            }
            if transaction is not None:
                payload["redemptionTransaction"] = {"redemptionTransactionID": transaction.id}
            return payload
        voucher = {
            "voucherID": gift.voucher_id,
            "voucherType": "Monetary" if gift.monetary else "Item",
            "currencyCode": gift.currency,
            "originalValue": gift.number(gift.initial) if gift.monetary else None,
            "remainingValue": gift.number(gift.balance) if gift.monetary else None,
            "itemLabel": gift.item_label,
            "originalItemQuantity": None if gift.monetary else gift.initial,
            "remainingItemQuantity": None if gift.monetary else gift.balance,
            "isRedeemable": blocked is None,
            "redeemableStatus": blocked[0] if blocked else "Redeemable",
            "validFrom": _time(gift.valid_from),
            "expiresOn": _time(gift.expires_on),
            "senderName": gift.sender,
            "recipientName": gift.recipient,
        }
        payload = {"voucher": voucher, **seed_named}
        if transaction is not None:
            payload["redemptionTransaction"] = self._record(gift, transaction)
        return payload

    @staticmethod
    def _record(gift: _Gift, transaction: _Transaction) -> Json:
        """The redemption transaction record (every name our guess)."""
        return {
            "redemptionTransactionID": transaction.id,
            "voucherID": transaction.voucher_id,
            "organizationID": transaction.organization_id,
            "amount": gift.number(transaction.units),
            "redeemedOn": _time(transaction.redeemed_on),
            "isReversed": transaction.reversed_on is not None,
            "reversedOn": _time(transaction.reversed_on),
        }
