"""A loopback simulator of the Punchh (PAR) POS API: guest look-up, Redemptions 2.0, check-in and
receipt details, with a ledger of points, rewards, banked currency, baskets and receipts.

It enforces what docs/providers/punchh.md lists as the contract, so an adapter that passes here
sends the right wire format:

- every call: `Authorization: Token token=<location key>, btoken=<business key>` (else 401
  `["Invalid LocationKey"]`) and a User-Agent `<Integrator>/<IntegrationType>/<Version>`;
  Redemptions 2.0 calls also `Content-Type` and `Accept: application/json`;
- field names per endpoint: an unknown field is refused with 400 naming it, which is how a
  `menu_items` name in an R2 `line_items` entry (or `line_items` in a check-in) is caught;
  a missing one with Punchh's "Required parameter missing or the value is empty: <name>";
- Redemptions 2.0: the basket is locked to the `external_uid` that selected into it (422 for
  any other); the commit omits `query` (`query: false` is refused), must carry the dry run's
  `line_items` unchanged (422 otherwise, as Punchh re-validates) and is applied at most once per
  `external_uid`: a repeated commit returns the first answer (the real API's replay behaviour
  is UNCERTAIN);
- check-in and receipt details per the public POS spec (tests/contracts/punchh): its field
  names, `revenue_id`/`revenue_code` on a check-in, `transaction_no` an integer;
- a check-in repeated with the same `external_uid` returns the first answer and earns nothing
  more (UNCERTAIN for the real API, which only says it "prevents duplicates");
- identify: Create New User (`POST /api/pos/users`, `phone` required, a phone or email already
  taken refused with 422, our guess at its words) and Advanced Authentication's one-time
  passwords (`/api2/password_less/token` and `/verify`: no location key, the
  `punchh-app-device-id` header, the business's OAuth `client`, PKCE S256, privacy policy and
  terms agreed; a verified contact nobody has yet becomes a new guest). The passwords "sent"
  are in the ledger's `otp_outbox`, as a guest's phone would show them. What Send OTP takes
  beyond `client` and the verify body's code field are the adapter's guesses, repeated here;
- error bodies in Punchh's three shapes: `{"error": "..."}`, `["..."]` and
  `{"error": {"message", "code"}}`.

Simulator-only strictness (not documented Punchh behaviour): check-in and receipt details must
balance (subtotal = ΣM − ΣD, subtotal + ΣS + ΣT = ΣP); amounts must be JSON numbers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from simulators.server import ApiError, Json, Request, Response, Simulator

LOCATION_KEY: Final = "sim-location-key-0001"
BUSINESS_KEY: Final = "3b0a4a3e-6f38-4a53-9d5c-2f6c8e1e7a10"
AUTHORIZATION: Final = f"Token token={LOCATION_KEY}, btoken={BUSINESS_KEY}"
USER_AGENT: Final = re.compile(
    r"[A-Za-z0-9._-]+/(POS|Kiosk|OnlineOrder|Mobile|Web|SystemIntegrator|Middleware)/[^\s/]+"
)
OAUTH_CLIENT: Final = "sim-oauth-client"
ADVANCED_AUTH: Final = re.compile(r"/api2/password_less/.*")
CLIENT_TYPES: Final = frozenset({"external_mobile_app", "online_ordering"})
R2_PATHS: Final = re.compile(r"/api/pos/(discounts/.*|batch_redemptions(/.*)?)")
LOCKED: Final = "Unable to access the user's Discount Basket, the Basket is currently locked"
SEARCH_PARAMS: Final = (
    "phone",
    "email",
    "card_number",
    "user_as_qrcode",
    "single_scan_code",
    "redemption_code",
)
UNSUPPORTED_TYPES: Final = frozenset({"card_completion", "subscription", "fuel_reward"})
SERIAL: Final = re.compile(r"[0-9]+\.[0-9]+")
BLANK_OK: Final = frozenset({"item_family", "item_group", "menu_family", "menu_major_group"})


# -- seed fixtures ---------------------------------------------------------------------------


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedReward(_Seed):
    id: int
    name: str
    discount_amount: Decimal = Field(gt=0)
    end_date_tz: str | None = None


class SeedCode(_Seed):
    code: str = Field(pattern=r"^[0-9]{7}$")
    name: str
    discount_amount: Decimal = Field(gt=0)


class SeedGuest(_Seed):
    id: int
    first_name: str
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    card_number: str | None = None
    user_as_qrcode: str | None = None
    single_scan_code: str | None = None
    points_balance: int = Field(0, ge=0)
    banked_rewards: Decimal = Field(Decimal(0), ge=0)
    rewards: list[SeedReward] = []
    redemption_codes: list[SeedCode] = []


class SeedRedeemable(_Seed):
    redeemable_id: int
    name: str
    points_required_to_redeem: int = Field(gt=0)
    discount_amount: Decimal = Field(gt=0)


class SeedLocation(_Seed):
    location_id: int = 1001
    location_name: str = "Simulated Store"
    business_name: str = "Simulated Burgers"
    short_key: int = Field(6624, ge=0, le=8191)


class PunchhSeed(_Seed):
    """`POST /_sim/seed`: guests are added or replaced by id; the others replace when given."""

    guests: list[SeedGuest] = []
    redeemables: list[SeedRedeemable] | None = None
    location: SeedLocation | None = None


DEFAULT_SEED: Final = PunchhSeed(
    guests=[
        SeedGuest(
            id=101,
            first_name="Ana",
            last_name="Lima",
            email="ana@example.com",
            phone="5550100001",
            card_number="6000000000000001",
            user_as_qrcode="P1A2B3C4D",
            single_scan_code="9f1c2e3a-4b5d-4e6f-8a7b-1c2d3e4f5a6b",
            points_balance=240,
            banked_rewards=Decimal("5.00"),
            rewards=[SeedReward(id=7001, name="Free Coffee", discount_amount=Decimal("3.50"))],
        ),
        SeedGuest(
            id=102,
            first_name="Ben",
            last_name="Okafor",
            email="ben@example.com",
            phone="5550100002",
            card_number="6000000000000002",
            user_as_qrcode="PunchhBEN102QRPunchh",
            single_scan_code="a1b2c3d4e5f6",
            points_balance=40,
            rewards=[SeedReward(id=7002, name="Free Fries", discount_amount=Decimal("2.99"))],
            redemption_codes=[
                SeedCode(code="1234567", name="$2 Off", discount_amount=Decimal("2.00"))
            ],
        ),
        SeedGuest(
            id=103,
            first_name="Cy",
            last_name="Park",
            email="cy@example.com",
            phone="5550100003",
            card_number="6000000000000003",
            user_as_qrcode="S1234567",
            single_scan_code="b0c1d2e3f4a5b6c7",
            redemption_codes=[
                SeedCode(code="7654321", name="$1.50 Off", discount_amount=Decimal("1.50"))
            ],
        ),
    ],
    redeemables=[
        SeedRedeemable(
            redeemable_id=501,
            name="$5 Off",
            points_required_to_redeem=100,
            discount_amount=Decimal("5.00"),
        ),
        SeedRedeemable(
            redeemable_id=502,
            name="Free Cookie",
            points_required_to_redeem=50,
            discount_amount=Decimal("1.99"),
        ),
    ],
    location=SeedLocation(),
)


# -- state -----------------------------------------------------------------------------------


@dataclass
class BasketItem:
    item_id: int
    discount_type: str
    discount_id: str | None
    value: Decimal | None
    name: str = ""


@dataclass
class Basket:
    ref: str
    items: list[BasketItem] = field(default_factory=list)
    locked_by: str | None = None


@dataclass
class Guest:
    seed: SeedGuest
    points: int
    banked: Decimal
    rewards: dict[str, SeedReward]
    codes: dict[str, SeedCode]
    basket: Basket
    visits: int = 0


@dataclass(frozen=True)
class Offer:
    """What a basket item is worth to this guest and what redeeming it costs them."""

    name: str
    face: Decimal
    points: int = 0
    source: SeedReward | SeedCode | None = None  # taken from the guest on commit


@dataclass
class Applied:
    """A basket item priced against one receipt: what it takes off, or why it cannot."""

    item: BasketItem
    offer: Offer
    amount: Decimal
    failure: str | None


@dataclass
class Redemption:
    ref: str
    user_id: int
    external_uid: str | None
    lines: list[Applied]
    voided: bool = False


@dataclass(frozen=True)
class Fields:
    required: frozenset[str]
    optional: frozenset[str] = frozenset()


def _fields(required: str, optional: str = "") -> Fields:
    return Fields(frozenset(required.split()), frozenset(optional.split()))


LINE_ITEM: Final = _fields(
    "item_name item_qty amount item_type item_id serial_number", "item_family item_group"
)
MENU_ITEM: Final = _fields(
    "item_name item_qty item_amount menu_item_type menu_item_id menu_family menu_major_group "
    "serial_number"
)
LOOKUP: Final = _fields(
    "user_id receipt_datetime subtotal_amount receipt_amount",
    "line_items business_date punchh_key transaction_no external_uid",
)
SELECT: Final = _fields("user_id discount_basket_items_attributes", "external_uid")
SELECTION: Final = _fields("discount_type", "discount_id discount_value")
BATCH: Final = _fields(
    "user_id line_items receipt_datetime subtotal_amount receipt_amount",
    "query punchh_key transaction_no external_uid",
)
UNLOCK: Final = _fields("user_id external_uid")
VOID: Final = _fields("user_id")
RECEIPT: Final = _fields(
    "transaction_no amount receipt_amount subtotal_amount payable receipt_datetime pos_version "
    "pos_type punchh_key menu_items",
    "vendor_transaction_no employee_id employee_name revenue_id revenue_code cc_last4 status "
    "is_test channel",
)
NEW_USER: Final = _fields(
    "phone",
    "email card_number first_name last_name birthday address_line1 city gender zip_code "
    "terms_and_conditions send_compliance_sms favourite_locations signup_channel "
    "age_verified_status marketing_email_subscription",
)
CONTACT: Final = "phone_ext phone_number email"
SEND_OTP: Final = _fields("client code_challenge code_challenge_method", CONTACT)
VERIFY_OTP: Final = _fields(
    "client code_verifier token privacy_policy terms_and_conditions", CONTACT
)
CHECKIN: Final = _fields(
    "pos_version transaction_no receipt_datetime revenue_code revenue_id menu_items "
    "receipt_amount subtotal_amount punchh_key pos_type channel payable",
    " ".join(
        ["sequence_no employee_id employee_name cc_last4 external_uid process", *SEARCH_PARAMS]
    ),
)


def _bad(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def _missing(name: str) -> ApiError:
    return _bad(f"Required parameter missing or the value is empty: {name}")


def _rejected(message: str) -> ApiError:
    return ApiError(422, {"error": message})


def check_fields(obj: Json, spec: Fields, suffix: str = "") -> dict[str, Any]:
    """Unknown names first (so a misspelt field is named), then missing or empty ones."""
    if not isinstance(obj, dict):
        raise _bad(f"expected a JSON object{suffix and ' for item ' + suffix.lstrip('_')}")
    for name in obj:
        if name not in spec.required and name not in spec.optional:
            raise _bad(f"Unknown parameter: {name}{suffix}")
    for name in sorted(spec.required):
        if obj.get(name) is None or (obj[name] == "" and name not in BLANK_OK):
            raise _missing(f"{name}{suffix}")
    return obj


def _number(obj: dict[str, Any], name: str, *, minimum: Decimal | None = None) -> Decimal:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name} must be a number")
    number = Decimal(str(value))
    if minimum is not None and number < minimum:
        raise _bad(f"{name} must be at least {minimum}")
    return number


def _integer(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer")
    return value


def _datetime(obj: dict[str, Any]) -> None:
    try:
        moment = datetime.fromisoformat(str(obj["receipt_datetime"]))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _bad("receipt_datetime must be ISO 8601 with a UTC offset")


def _items(body: dict[str, Any], name: str, spec: Fields) -> list[dict[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list) or not items:
        raise _missing(name)
    return [check_fields(item, spec, f"_{i}") for i, item in enumerate(items)]


def _line_items(body: dict[str, Any]) -> str:
    """Check R2 `line_items`; return their canonical JSON (what a commit must repeat)."""
    for i, item in enumerate(_items(body, "line_items", LINE_ITEM)):
        if item["item_type"] == "D":
            raise _bad(
                f"item_type_{i}: discount (D) items are not accepted in line_items; "
                "send the discounted amount"
            )
        if item["item_type"] not in {"M", "S", "T", "P"}:
            raise _bad(f"item_type_{i} must be one of M, S, T, P")
        if _integer(item, "item_qty") <= 0:
            raise _bad(f"item_qty_{i} must be positive")
        _integer(item, "item_id")
        _number(item, "amount", minimum=Decimal(0))
        if not SERIAL.fullmatch(str(item["serial_number"])):
            raise _bad(f"serial_number_{i} must look like 1.0")
    return json.dumps(body["line_items"], separators=(",", ":"))


def _menu_items(body: dict[str, Any]) -> None:
    """Check `menu_items` and that the check balances: subtotal = ΣM − ΣD and
    subtotal + ΣS + ΣT = ΣP = payable."""
    sums = dict.fromkeys("MDSTP", Decimal(0))
    for i, item in enumerate(_items(body, "menu_items", MENU_ITEM)):
        kind = item["menu_item_type"]
        if kind not in sums:
            raise _bad(f"menu_item_type_{i} must be one of M, D, S, T, P")
        _number(item, "item_qty", minimum=Decimal(0))
        sums[kind] += _number(item, "item_amount", minimum=Decimal(0))
        if not SERIAL.fullmatch(str(item["serial_number"])):
            raise _bad(f"serial_number_{i} must look like 1.0")
    subtotal = _number(body, "subtotal_amount", minimum=Decimal(0))
    if _number(body, "receipt_amount") != subtotal:
        raise _bad("receipt_amount and subtotal_amount must be equal")
    if _number(body, "payable", minimum=Decimal(0)) != sums["P"]:
        raise _bad(f"menu_items do not balance: payable != P {sums['P']}")
    if sums["M"] - sums["D"] != subtotal:
        raise _bad(f"menu_items do not balance: M {sums['M']} - D {sums['D']} != {subtotal}")
    if subtotal + sums["S"] + sums["T"] != sums["P"]:
        raise _bad(f"menu_items do not balance: subtotal + S + T != P {sums['P']}")


def _money(value: Decimal) -> float:
    return float(value)


class PunchhSimulator(Simulator):
    name = "punchh"

    def __init__(self) -> None:
        super().__init__()
        self._clear()
        self.seed(DEFAULT_SEED.model_dump(mode="json"))
        self.route("GET", "/api/pos/locations/configuration", self.location_configuration)
        self.route("GET", "/api/pos/users/search", self.search)
        self.route("POST", "/api/pos/discounts/lookup", self.lookup)
        self.route("POST", "/api/pos/discounts/select", self.select)
        self.route("PUT", "/api/pos/discounts/unlock", self.unlock)
        self.route("POST", "/api/pos/batch_redemptions", self.batch)
        self.route("DELETE", "/api/pos/batch_redemptions/{redemption_ref}", self.void)
        self.route("POST", "/api/pos/checkins", self.checkin)
        self.route("POST", "/receipt_details", self.receipt_details)
        self.route("POST", "/api/pos/users", self.create_user)
        self.route("POST", "/api2/password_less/token", self.send_otp)
        self.route("POST", "/api2/password_less/verify", self.verify_otp)

    def _clear(self) -> None:
        self.guests: dict[int, Guest] = {}
        self.redeemables: dict[str, SeedRedeemable] = {}
        self.location = SeedLocation()
        self.redemptions: dict[str, Redemption] = {}
        self.queries: dict[str, str] = {}  # external_uid → the dry run's canonical line_items
        self.commits: dict[str, Json] = {}  # external_uid → the first commit's answer
        self.checkins: dict[str, Json] = {}  # external_uid → the first check-in's answer
        self.checkin_log: list[dict[str, Any]] = []
        self.receipts: dict[str, list[dict[str, Any]]] = {}
        self.challenges: dict[str, tuple[str, str]] = {}  # contact → (code, PKCE challenge)
        self.otp_outbox: list[dict[str, str]] = []
        self.counter = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _new_basket(self) -> Basket:
        return Basket(ref=f"RREF{self._next():06d}")

    # -- Simulator hooks -------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        agent = request.header("user-agent") or ""
        if not USER_AGENT.fullmatch(agent):
            raise _bad("User-Agent is required as <Integrator>/<IntegrationType>/<Version>")
        if ADVANCED_AUTH.fullmatch(request.path):  # the business's OAuth client instead
            if not request.header("punchh-app-device-id"):
                raise _missing("punchh-app-device-id")
            return
        if request.header("authorization") != AUTHORIZATION:
            raise ApiError(401, ["Invalid LocationKey"])
        if R2_PATHS.fullmatch(request.path):
            content_type = (request.header("content-type") or "").split(";")[0].strip()
            if content_type != "application/json":
                raise _bad("Content-Type must be application/json")
            if "application/json" not in (request.header("accept") or ""):
                raise _bad("Accept must be application/json")

    def seed(self, data: Json) -> None:
        seed = PunchhSeed.model_validate(data)
        for g in seed.guests:
            self._add_guest(g)
        if seed.redeemables is not None:
            self.redeemables = {str(r.redeemable_id): r for r in seed.redeemables}
        if seed.location is not None:
            self.location = seed.location

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self._clear()
            self.seed(DEFAULT_SEED.model_dump(mode="json"))

    def usage(self) -> list[str]:
        lines = [
            f"location key (credential punchh_location_key): {LOCATION_KEY}",
            f"business key (credential punchh_business_key): {BUSINESS_KEY}",
            "User-Agent: <Integrator>/POS/<version>, e.g. LaneAgent/POS/0.1.0",
            f"location {self.location.location_name!r}, short_key {self.location.short_key}",
            f"redeemables: {', '.join(f'{k} {r.name}' for k, r in self.redeemables.items())}",
        ]
        for g in self.guests.values():
            ids = [
                f"{name}={value}"
                for name in SEARCH_PARAMS[:-1]
                if (value := getattr(g.seed, name)) is not None
            ] + [f"redemption_code={code}" for code in g.codes]
            lines.append(
                f"guest {g.seed.id} {g.seed.first_name}: {g.points} points, banked {g.banked:.2f}, "
                f"rewards {sorted(g.rewards)}; " + " ".join(ids)
            )
        return lines

    def ledger(self) -> Json:
        return {
            "guests": {
                str(uid): {
                    "points_balance": g.points,
                    "banked_rewards": f"{g.banked:.2f}",
                    "rewards": sorted(g.rewards),
                    "redemption_codes": sorted(g.codes),
                    "visits": g.visits,
                    "basket": {
                        "redemption_ref": g.basket.ref,
                        "locked_by": g.basket.locked_by,
                        "items": [[i.discount_type, i.discount_id] for i in g.basket.items],
                    },
                }
                for uid, g in self.guests.items()
            },
            "redemptions": {
                ref: {
                    "user_id": r.user_id,
                    "external_uid": r.external_uid,
                    "voided": r.voided,
                    "lines": [
                        {
                            "discount_type": a.item.discount_type,
                            "discount_id": a.item.discount_id,
                            "amount": f"{a.amount:.2f}",
                        }
                        for a in r.lines
                    ],
                }
                for ref, r in self.redemptions.items()
            },
            "checkins": self.checkin_log,
            "receipts": self.receipts,
            "otp_outbox": self.otp_outbox,
        }

    # -- helpers -------------------------------------------------------------------------------

    def _user(self, body: dict[str, Any]) -> Guest:
        guest = self.guests.get(_integer(body, "user_id"))
        if guest is None:
            raise ApiError(404, {"error": "User not found"})
        return guest

    def _add_guest(self, seed: SeedGuest) -> Guest:
        guest = Guest(
            seed=seed,
            points=seed.points_balance,
            banked=seed.banked_rewards,
            rewards={str(r.id): r for r in seed.rewards},
            codes={c.code: c for c in seed.redemption_codes},
            basket=self._new_basket(),
        )
        self.guests[seed.id] = guest
        return guest

    def _new_id(self) -> int:
        return max([1000, *self.guests]) + 1

    def _find(self, param: str, value: str) -> Guest | None:
        for g in self.guests.values():
            if param == "redemption_code":
                if value in g.codes:
                    return g
            elif param == "email":
                if (g.seed.email or "").lower() == value.lower():
                    return g
            elif getattr(g.seed, param) == value:
                return g
        return None

    @staticmethod
    def _access(guest: Guest, external_uid: str | None) -> Basket:
        """The guest's basket, unless another transaction holds its lock."""
        basket = guest.basket
        if basket.locked_by is not None and basket.locked_by != external_uid:
            raise _rejected(LOCKED)
        return basket

    def _user_json(self, g: Guest) -> dict[str, Any]:
        rewards = [
            {
                "id": r.id,
                "name": r.name,
                "discount_amount": _money(r.discount_amount),
                "points": 0,
                "type": "reward",
                "end_date_tz": r.end_date_tz,
            }
            for r in g.rewards.values()
        ] + [
            {
                "id": r.redeemable_id,
                "name": r.name,
                "discount_amount": _money(r.discount_amount),
                "points": r.points_required_to_redeem,
                "type": "redeemable",
                "end_date_tz": None,
            }
            for r in self.redeemables.values()
            if r.points_required_to_redeem <= g.points
        ]
        return {
            "id": g.seed.id,
            "first_name": g.seed.first_name,
            "last_name": g.seed.last_name,
            "email": g.seed.email,
            "phone": g.seed.phone,
            "balance": {
                "banked_rewards": f"{g.banked:.2f}",
                "net_balance": g.points,
                "points_balance": g.points,
                "pending_points": 0,
                "unredeemed_cards": 0,
                "total_visits": g.visits,
            },
            "rewards": rewards,
        }

    def _offer(self, guest: Guest, item: BasketItem) -> Offer:
        """What a basket item is for this guest; ApiError (422) if they cannot redeem it."""
        key = item.discount_id or ""
        if item.discount_type == "reward":
            if key not in guest.rewards:
                raise _rejected("Given reward is not accessible for this customer")
            reward = guest.rewards[key]
            return Offer(reward.name, reward.discount_amount, source=reward)
        if item.discount_type == "redeemable":
            redeemable = self.redeemables.get(key)
            if redeemable is None:
                raise _rejected("Invalid redeemable")
            cost = redeemable.points_required_to_redeem
            if guest.points < cost:
                raise _rejected("Points Balance is insufficient to redeem this redeemable")
            return Offer(redeemable.name, redeemable.discount_amount, points=cost)
        if item.discount_type == "discount_amount":
            if item.value is None or item.value <= 0:
                raise _missing("discount_value")
            if item.value > guest.banked:
                raise _rejected("Banked Rewards balance is insufficient")
            return Offer("Banked Rewards", item.value)
        if item.discount_type == "redemption_code":
            if key not in guest.codes:
                raise _rejected("Redemption code is invalid or already used")
            code = guest.codes[key]
            return Offer(code.name, code.discount_amount, source=code)
        if item.discount_type in UNSUPPORTED_TYPES:
            raise _rejected(
                "Your current loyalty program configuration does not support this feature"
            )
        raise _rejected(f"Invalid discount_type {item.discount_type}")

    def _price(self, guest: Guest, items: list[BasketItem], receipt: Decimal) -> list[Applied]:
        """Each item against the receipt in basket order: none takes more than is left of the
        receipt, and together they spend no more points or banked currency than the guest has."""
        left, points, banked = receipt, guest.points, guest.banked
        priced: list[Applied] = []
        for item in items:
            try:
                offer = self._offer(guest, item)
            except ApiError as exc:
                failed = Offer(item.discount_type, Decimal(0))
                priced.append(Applied(item, failed, Decimal(0), str(exc.body["error"])))
                continue
            amount = min(offer.face, left)
            if item.discount_type == "discount_amount":
                amount = min(amount, banked)
            failure = None
            if offer.points > points:
                failure = "Points Balance is insufficient to redeem this redeemable"
            elif amount <= 0:
                failure = "Nothing left to discount on this receipt"
            if failure is not None:
                priced.append(Applied(item, offer, Decimal(0), failure))
                continue
            left -= amount
            points -= offer.points
            if item.discount_type == "discount_amount":
                banked -= amount
            priced.append(Applied(item, offer, amount, None))
        return priced

    @staticmethod
    def _discount_json(a: Applied, *, basket: bool = True) -> dict[str, Any]:
        return {
            **({"discount_basket_item_id": a.item.item_id} if basket else {}),
            "discount_type": a.item.discount_type,
            "discount_id": a.item.discount_id,
            "discount_amount": _money(a.amount),
            "qualified": a.failure is None,
            "discount_details": {"name": a.offer.name, "base_amount": _money(a.offer.face)},
            "qualified_items": [],
        }

    def _receipt_amount(self, body: dict[str, Any]) -> Decimal:
        _datetime(body)
        receipt = _number(body, "receipt_amount")
        _number(body, "subtotal_amount")
        if receipt <= 0:
            raise _rejected("Invalid Receipt Amount")
        return receipt

    # -- endpoints -----------------------------------------------------------------------------

    def location_configuration(self, request: Request) -> Response:
        loc = self.location
        return Response(
            200,
            {
                "location_id": loc.location_id,
                "location_name": loc.location_name,
                "business_name": loc.business_name,
                "short_key": str(loc.short_key),
                "print_barcodes": "1",
                "header": f"Welcome to {loc.business_name}",
                "trailer_1": "Scan this receipt in our app to earn",
                "update_interval": "60",
                "log_level": "2",
                "send_to_datasink": "1",
                "multiple_redemption_on_location": True,
            },
        )

    def search(self, request: Request) -> Response:
        for name in request.query:
            if name not in SEARCH_PARAMS:
                raise _bad(f"Unknown parameter: {name}")
        given = [(k, v[0]) for k, v in request.query.items() if v and v[0]]
        if len(given) != 1:
            raise _missing("exactly one of " + ", ".join(SEARCH_PARAMS))
        guest = self._find(*given[0])
        if guest is None:
            raise ApiError(404, {"error": "User not found"})
        return Response(200, self._user_json(guest))

    def lookup(self, request: Request) -> Response:
        body = check_fields(request.json(), LOOKUP)
        guest = self._user(body)
        if "line_items" in body:
            _line_items(body)
        receipt = self._receipt_amount(body)
        basket = self._access(guest, body.get("external_uid"))
        selected = self._price(guest, basket.items, receipt)
        in_basket = {(i.discount_type, i.discount_id) for i in basket.items}
        offers = [BasketItem(0, "reward", reward_id, None) for reward_id in guest.rewards] + [
            BasketItem(0, "redeemable", key, None)
            for key, r in self.redeemables.items()
            if r.points_required_to_redeem <= guest.points
        ]
        if guest.banked > 0:
            offers.append(BasketItem(0, "discount_amount", None, guest.banked))
        # Each other offer as if it alone were added to the basket.
        left = receipt - sum(a.amount for a in selected)
        unselected = [
            self._price(guest, [offer], left)[0]
            for offer in offers
            if (offer.discount_type, offer.discount_id) not in in_basket
        ]
        return Response(
            200,
            {
                "selected_discounts": [self._discount_json(a) for a in selected],
                "unselected_discounts": [self._discount_json(a, basket=False) for a in unselected],
            },
        )

    def select(self, request: Request) -> Response:
        body = check_fields(request.json(), SELECT)
        guest = self._user(body)
        uid = body.get("external_uid")
        basket = self._access(guest, uid)
        selections = body["discount_basket_items_attributes"]
        if not isinstance(selections, list):
            raise _missing("discount_basket_items_attributes")
        added: list[BasketItem] = []
        chosen = {(i.discount_type, i.discount_id) for i in basket.items}
        for i, raw in enumerate(selections):
            entry = check_fields(raw, SELECTION, f"_{i}")
            value = None if "discount_value" not in entry else _number(entry, "discount_value")
            discount_id = entry.get("discount_id")
            item = BasketItem(
                self._next(),
                str(entry["discount_type"]),
                None if discount_id is None else str(discount_id),
                value,
            )
            if (item.discount_type, item.discount_id) in chosen:
                raise _rejected("Discount is already in the basket")
            chosen.add((item.discount_type, item.discount_id))
            # Any invalid selection fails the whole request.
            item.name = self._offer(guest, item).name
            added.append(item)
        basket.items += added
        basket.locked_by = uid
        return Response(200, self._basket_json(guest))

    def _basket_json(self, guest: Guest) -> dict[str, Any]:
        basket = guest.basket
        return {
            "user_id": guest.seed.id,
            "external_uid": basket.locked_by,
            "redemption_ref": basket.ref,
            "locked": basket.locked_by is not None,
            "discount_basket_items": [
                {
                    "discount_basket_item_id": i.item_id,
                    "discount_type": i.discount_type,
                    "discount_id": i.discount_id,
                    "discount_value": None if i.value is None else _money(i.value),
                    "discount_details": {"name": i.name},
                }
                for i in basket.items
            ],
        }

    def unlock(self, request: Request) -> Response:
        body = check_fields(request.json(), UNLOCK)
        guest = self._user(body)
        self._access(guest, body["external_uid"]).locked_by = None
        return Response(200, self._basket_json(guest))

    def batch(self, request: Request) -> Response:
        body = check_fields(request.json(), BATCH)
        guest = self._user(body)
        canonical = _line_items(body)
        receipt = self._receipt_amount(body)
        if "query" in body and body["query"] is not True:
            raise _bad("query: send true for a dry run; omit it to process the redemptions")
        query = "query" in body
        uid = body.get("external_uid")
        if not query and uid is not None and uid in self.commits:
            return Response(200, self.commits[uid])  # processed already: the first answer
        basket = self._access(guest, uid)
        if not basket.items:
            raise _rejected("No Basket found")
        if query and uid is not None:
            self.queries[uid] = canonical
        elif uid is not None and self.queries.get(uid, canonical) != canonical:
            raise _rejected(
                "Receipt details have changed since the redemption query; send the same line_items"
            )
        priced = self._price(guest, basket.items, receipt)
        answer = {
            "redemption_ref": basket.ref,
            "success": [
                {**self._discount_json(a), "redemption_id": self._next(), "message": []}
                for a in priced
                if a.failure is None
            ],
            "failures": [
                {**self._discount_json(a), "message": [a.failure]}
                for a in priced
                if a.failure is not None
            ],
        }
        if query:
            return Response(200, answer)
        granted = [a for a in priced if a.failure is None]
        for a in granted:
            self._take(guest, a)
        self.redemptions[basket.ref] = Redemption(basket.ref, guest.seed.id, uid, granted)
        guest.basket = self._new_basket()
        if uid is not None:
            self.commits[uid] = answer
        return Response(200, answer)

    @staticmethod
    def _take(guest: Guest, a: Applied, *, back: bool = False) -> None:
        """Deduct what a granted redemption costs the guest, or (`back`) give it back."""
        sign = 1 if back else -1
        guest.points += sign * a.offer.points
        if a.item.discount_type == "discount_amount":
            guest.banked += sign * a.amount
        source = a.offer.source
        if isinstance(source, SeedReward):
            if back:
                guest.rewards[str(source.id)] = source
            else:
                del guest.rewards[str(source.id)]
        elif isinstance(source, SeedCode):
            if back:
                guest.codes[source.code] = source
            else:
                del guest.codes[source.code]

    def void(self, request: Request) -> Response:
        body = check_fields(request.json(), VOID)
        guest = self._user(body)
        ref = request.params["redemption_ref"]
        redemption = self.redemptions.get(ref)
        if redemption is None or redemption.user_id != guest.seed.id:
            if guest.basket.ref == ref and guest.basket.items:
                guest.basket = self._new_basket()  # nothing committed: drop the basket
                return Response(202)
            raise ApiError(404, {"error": "Redemption not found"})
        if redemption.external_uid in self.checkins:
            raise ApiError(
                410,
                {
                    "error": {
                        "message": f"Checkin associated with external_uid "
                        f"{redemption.external_uid} has been committed.",
                        "code": "commited",
                    }
                },
            )
        if not redemption.voided:
            for a in redemption.lines:
                self._take(guest, a, back=True)
            redemption.voided = True
        return Response(202)

    def checkin(self, request: Request) -> Response:
        body = check_fields(request.json(), CHECKIN)
        given = [name for name in SEARCH_PARAMS if body.get(name)]
        if len(given) != 1:
            raise _missing("exactly one of " + ", ".join(SEARCH_PARAMS))
        _datetime(body)
        _integer(body, "transaction_no")
        _menu_items(body)
        guest = self._find(given[0], str(body[given[0]]))
        if guest is None:
            raise ApiError(404, ["User not found"])
        uid = body.get("external_uid")
        if uid is not None and uid in self.checkins:
            return Response(200, self.checkins[uid])
        earned = int(_number(body, "receipt_amount"))
        guest.points += earned
        guest.visits += 1
        answer = {**self._user_json(guest), "points_earned": earned}
        self.checkin_log.append(
            {
                "user_id": guest.seed.id,
                "external_uid": uid,
                "transaction_no": body["transaction_no"],
                "punchh_key": body["punchh_key"],
                "receipt_amount": f"{_number(body, 'receipt_amount'):.2f}",
                "points_earned": earned,
            }
        )
        if uid is not None:
            self.checkins[uid] = answer
        return Response(200, answer)

    def receipt_details(self, request: Request) -> Response:
        body = check_fields(request.json(), RECEIPT)
        _datetime(body)
        _integer(body, "transaction_no")
        _menu_items(body)
        self.receipts.setdefault(str(body["punchh_key"]), []).append(
            {
                "transaction_no": body["transaction_no"],
                "subtotal_amount": f"{_number(body, 'subtotal_amount'):.2f}",
                "payable": f"{_number(body, 'payable'):.2f}",
                "status": body.get("status", "closed"),
            }
        )
        return Response(200, {})

    # -- identify --------------------------------------------------------------------------------

    def create_user(self, request: Request) -> Response:
        body = check_fields(request.json(), NEW_USER)
        phone = re.sub(r"-", "", str(body["phone"]))
        if not re.fullmatch(r"[0-9]{10}", phone):
            raise _bad("phone must be 10 digits (dashes allowed)")
        email = body.get("email")
        if self._find("phone", phone) is not None:
            raise ApiError(422, ["Phone has already been taken"])
        if email and self._find("email", str(email)) is not None:
            raise ApiError(422, ["Email has already been taken"])
        seed = SeedGuest(
            id=self._new_id(),
            first_name=str(body.get("first_name") or ""),
            last_name=str(body.get("last_name") or ""),
            email=str(email).lower() if email else None,
            phone=phone,
        )
        return Response(200, self._user_json(self._add_guest(seed)))

    @staticmethod
    def _contact(body: dict[str, Any]) -> str:
        if body.get("email"):
            return str(body["email"]).lower()
        if not body.get("phone_number"):
            raise _missing("phone_number")
        if not re.fullmatch(r"\+[0-9]{1,4}", str(body.get("phone_ext", ""))):
            raise _bad("phone_ext must be a country code such as +1")
        return str(body["phone_number"])

    @staticmethod
    def _client(body: dict[str, Any]) -> None:
        if body["client"] != OAUTH_CLIENT:
            raise ApiError(401, {"error": "Invalid client"})

    def send_otp(self, request: Request) -> Response:
        body = check_fields(request.json(), SEND_OTP)
        self._client(body)
        if body["code_challenge_method"] != "S256":
            raise _bad("code_challenge_method must be S256")
        contact = self._contact(body)
        code = f"{secrets.randbelow(10**6):06d}"
        self.challenges[contact] = (code, str(body["code_challenge"]))
        self.otp_outbox.append({"to": contact, "code": code})
        return Response(200, {})

    def verify_otp(self, request: Request) -> Response:
        if request.header("client-type") not in CLIENT_TYPES:
            raise _missing("client-type")
        body = check_fields(request.json(), VERIFY_OTP)
        self._client(body)
        if body["privacy_policy"] is not True or body["terms_and_conditions"] is not True:
            raise _rejected("Please agree on given privacy policy")
        contact = self._contact(body)
        code, challenge = self.challenges.get(contact, ("", ""))
        digest = hashlib.sha256(str(body["code_verifier"]).encode()).digest()
        proof = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not code or body["token"] != code or proof != challenge:
            raise _rejected("Invalid or expired OTP")
        del self.challenges[contact]
        kind = "email" if "@" in contact else "phone"
        if self._find(kind, contact) is None:  # signing in and up are one flow
            self._add_guest(SeedGuest(id=self._new_id(), first_name="", **{kind: contact}))
        token = secrets.token_hex(16)
        tokens = {"access_token": token, "token_type": "Bearer", "refresh_token": token[::-1]}
        return Response(200, {"data": {**tokens, "expires_in": 1800}})
