"""Simulator of the stored-value card API behind the K-Series gift card payment.

Lightspeed K-Series has no gift card API: its web extension calls the integrator's application,
which checks a card backend and then adds the payment with `pos_addPayment`. The API simulated
here is OUR design of what such a backend must expose (docs/providers/kseries.md), in the style of
Square's gift card activities and Lightspeed X-Series gift card transactions:

- `Authorization: Bearer <key>` on every call; a JSON body (`Content-Type: application/json`) on
  every POST; unknown or misspelled fields are refused (400), amounts are integer minor units;
- `POST /v1/cards/lookup {number}`: balance and status. The number travels in a body, never in a
  path or query, so no access log, proxy or HTTP client log records it (Square's
  `POST /v2/gift-cards/from-gan` does the same for the same reason);
- `POST /v1/redemptions {card_number, amount, currency, reference}`: 201 with the debit.
  Idempotent by `reference`: the same request again answers 200 with the same debit and moves
  nothing; the reference reused for another card, amount or currency is a 409. A refused debit
  does not bind its reference;
- `POST /v1/redemptions/{id}/reversal {reference}`: 201, the amount goes back on the card; the
  same reference again answers 200; another reference for a reversed debit is 409;
- `GET /v1/redemptions?reference=...`: `{"data": [...]}` with the debit made under it, if any.

Errors are `{"error": {"code", "message", ...}}`; `insufficient_funds` adds `available` and
`currency`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from simulators.server import ApiError, Json, Request, Response, Simulator

API_KEY = "sim-kseries-key"

# A printed card number (digits) or an NFC card's UID (upper-case hex).
CardNumber = Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{8,20}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Reference = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,255}$")]

# The `code` of an error body when the status is all there is (routing, injected faults).
_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


def _error(status: int, code: str, message: str, **extra: Json) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message, **extra}})


def _money(amount: int, currency: str) -> str:
    return f"{amount // 100}.{amount % 100:02d} {currency}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Lookup(_Body):
    number: CardNumber


class _Redeem(_Body):
    card_number: CardNumber
    amount: int = Field(gt=0)
    currency: Currency
    reference: Reference


class _Reverse(_Body):
    reference: Reference


_B = TypeVar("_B", bound=_Body)


def _parse(model: type[_B], request: Request) -> _B:
    """The body as `model`; anything else (not JSON, a missing, extra or mistyped field) is a
    400 naming each offending field."""
    try:
        return model.model_validate_json(request.body or b"null")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        raise _error(400, "invalid_request", problems) from None


class CardSeed(BaseModel):
    """One card of `POST /_sim/seed {"cards": [...]}`; a seeded number replaces that card."""

    model_config = ConfigDict(extra="forbid")

    number: CardNumber
    balance: int = Field(ge=0, description="minor units")
    currency: Currency = "USD"
    blocked: bool = False
    expires_on: date | None = None


class Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cards: list[CardSeed]


DEFAULT_SEED = Seed(
    cards=[
        CardSeed(number="6006490000000001", balance=5000, expires_on=date(2099, 12, 31)),
        CardSeed(number="6006490000000002", balance=1250),
        CardSeed(number="6006490000000003", balance=2500, blocked=True),
        CardSeed(number="6006490000000004", balance=10000, expires_on=date(2020, 12, 31)),
        CardSeed(number="6006490000000005", balance=3000, currency="EUR"),
        CardSeed(number="6006490000000006", balance=0),
        CardSeed(number="04A1B2C3D4E5F6", balance=2000),  # an NFC card known by its UID
    ]
)


@dataclass
class _Card:
    number: str
    balance: int
    currency: str
    blocked: bool
    expires_on: date | None

    def status(self, today: date) -> str:
        if self.blocked:
            return "blocked"
        if self.expires_on is not None and today > self.expires_on:
            return "expired"
        return "active"


@dataclass
class _Redemption:
    id: str
    card_number: str
    amount: int
    currency: str
    reference: str
    balance_after: int
    created_at: datetime
    reversal_id: str | None = None

    def body(self) -> Json:
        return {
            "id": self.id,
            "card_last4": self.card_number[-4:],
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "balance_after": self.balance_after,
            "status": "completed" if self.reversal_id is None else "reversed",
            "reversal_id": self.reversal_id,
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class _Reversal:
    id: str
    redemption: _Redemption
    reference: str
    balance_after: int
    created_at: datetime

    def body(self) -> Json:
        return {
            "id": self.id,
            "redemption_id": self.redemption.id,
            "card_last4": self.redemption.card_number[-4:],
            "amount": self.redemption.amount,
            "currency": self.redemption.currency,
            "reference": self.reference,
            "balance_after": self.balance_after,
            "created_at": self.created_at.isoformat(),
        }


def _today() -> date:
    return datetime.now(UTC).date()


class CardSimulator(Simulator):
    """The card backend: cards with balances, debits and reversals, idempotent by reference."""

    name = "kseries"

    def __init__(self, today: Callable[[], date] = _today) -> None:
        super().__init__()
        self._today = today
        self.cards: dict[str, _Card] = {}
        self.redemptions: dict[str, _Redemption] = {}
        self.reversals: dict[str, _Reversal] = {}
        self._load(DEFAULT_SEED)
        self.route("POST", "/v1/cards/lookup", self.lookup)
        self.route("POST", "/v1/redemptions", self.redeem)
        self.route("GET", "/v1/redemptions", self.find)
        self.route("POST", "/v1/redemptions/{redemption_id}/reversal", self.reverse)

    # -- framework hooks ------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        auth = request.header("authorization")
        if auth is None or not auth.startswith("Bearer "):
            raise _error(401, "unauthorized", "Missing bearer API key")
        if auth.removeprefix("Bearer ") != API_KEY:
            raise _error(401, "unauthorized", "Invalid API key")
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        if request.method == "POST" and content_type != "application/json":
            raise _error(415, "unsupported_media_type", "Send the body as application/json")

    def error_body(self, status: int, message: str) -> Json:
        code = _STATUS_CODES.get(status, "server_error" if status >= 500 else "invalid_request")
        return {"error": {"code": code, "message": message}}

    def usage(self) -> list[str]:
        today = self._today()
        return [f"Authorization: Bearer {API_KEY}"] + [
            f"card {card.number}  {_money(card.balance, card.currency)}  {card.status(today)}"
            for card in self.cards.values()
        ]

    def ledger(self) -> Json:
        today = self._today()
        return {
            "cards": {
                card.number: {
                    "balance": card.balance,
                    "currency": card.currency,
                    "status": card.status(today),
                }
                for card in self.cards.values()
            },
            "redemptions": {
                r.id: {**r.body(), "card_number": r.card_number} for r in self.redemptions.values()
            },
            "reversals": {r.id: r.body() for r in self.reversals.values()},
        }

    def seed(self, data: Json) -> None:
        self._load(Seed.model_validate(data))

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.cards.clear()
            self.redemptions.clear()
            self.reversals.clear()
            self._load(DEFAULT_SEED)

    def _load(self, seed: Seed) -> None:
        for card in seed.cards:
            self.cards[card.number] = _Card(
                card.number, card.balance, card.currency, card.blocked, card.expires_on
            )

    # -- API ------------------------------------------------------------------------------------

    def _card(self, number: str) -> _Card:
        card = self.cards.get(number)
        if card is None:
            raise _error(404, "card_not_found", "Card not found")
        return card

    def _by_reference(self, reference: str) -> _Redemption | None:
        return next((r for r in self.redemptions.values() if r.reference == reference), None)

    def lookup(self, request: Request) -> Response:
        card = self._card(_parse(_Lookup, request).number)
        return Response(
            200,
            {
                "last4": card.number[-4:],
                "balance": card.balance,
                "currency": card.currency,
                "status": card.status(self._today()),
                "expires_on": None if card.expires_on is None else card.expires_on.isoformat(),
            },
        )

    def redeem(self, request: Request) -> Response:
        body = _parse(_Redeem, request)
        earlier = self._by_reference(body.reference)
        if earlier is not None:
            if (earlier.card_number, earlier.amount, earlier.currency) != (
                body.card_number,
                body.amount,
                body.currency,
            ):
                raise _error(
                    409,
                    "reference_conflict",
                    f"Reference {body.reference} was already used for a different redemption",
                    redemption_id=earlier.id,
                )
            return Response(200, earlier.body())
        card = self._card(body.card_number)
        status = card.status(self._today())
        if status == "blocked":
            raise _error(422, "card_blocked", "Card is blocked")
        if status == "expired":
            raise _error(422, "card_expired", f"Card expired on {card.expires_on}")
        if body.currency != card.currency:
            raise _error(
                422,
                "currency_mismatch",
                f"Card is in {card.currency}, not {body.currency}",
                card_currency=card.currency,
            )
        if body.amount > card.balance:
            raise _error(
                422,
                "insufficient_funds",
                f"Insufficient funds: {_money(card.balance, card.currency)} available",
                available=card.balance,
                currency=card.currency,
            )
        card.balance -= body.amount
        redemption = _Redemption(
            id=f"red_{uuid.uuid4().hex}",
            card_number=card.number,
            amount=body.amount,
            currency=body.currency,
            reference=body.reference,
            balance_after=card.balance,
            created_at=datetime.now(UTC),
        )
        self.redemptions[redemption.id] = redemption
        return Response(201, redemption.body())

    def reverse(self, request: Request) -> Response:
        body = _parse(_Reverse, request)
        redemption = self.redemptions.get(request.params["redemption_id"])
        if redemption is None:
            raise _error(404, "redemption_not_found", "Redemption not found")
        earlier = next((r for r in self.reversals.values() if r.reference == body.reference), None)
        if earlier is not None:
            if earlier.redemption is not redemption:
                raise _error(
                    409,
                    "reference_conflict",
                    f"Reference {body.reference} was already used for another reversal",
                    reversal_id=earlier.id,
                )
            return Response(200, earlier.body())
        if redemption.reversal_id is not None:
            raise _error(
                409,
                "already_reversed",
                f"Redemption {redemption.id} was already reversed",
                reversal_id=redemption.reversal_id,
            )
        card = self.cards[redemption.card_number]
        card.balance += redemption.amount
        reversal = _Reversal(
            id=f"rev_{uuid.uuid4().hex}",
            redemption=redemption,
            reference=body.reference,
            balance_after=card.balance,
            created_at=datetime.now(UTC),
        )
        self.reversals[reversal.id] = reversal
        redemption.reversal_id = reversal.id
        return Response(201, reversal.body())

    def find(self, request: Request) -> Response:
        if set(request.query) != {"reference"} or len(request.query["reference"]) != 1:
            raise _error(400, "invalid_request", "Give exactly one query parameter: reference")
        found = self._by_reference(request.query["reference"][0])
        return Response(200, {"data": [] if found is None else [found.body()]})


# -- K-Series' side of the real-time notifications (RTN) ------------------------------------------


class ReceiptNotifier:
    """Sends what K-Series' cloud would send the integrator's webhook when a receipt is
    finalized or voided, with the webhook's Basic credentials. The payload repeats the
    receiver's guesses (agent/kseries_notify.py, UNCERTAIN there): a test of the receiver's
    transport, authentication and lane logic, never proof of the real payload."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self.auth = (username, password)

    @staticmethod
    def payload(account: str, kind: Literal["finalized", "voided"], **extra: Json) -> Json:
        if kind == "voided":
            return {"type": "VOID", "initialAccountId": account, **extra}
        return {"notificationType": "CLOSE", "ikentooAccountIdentifier": account, **extra}

    def send(
        self,
        account: str,
        kind: Literal["finalized", "voided"],
        *,
        auth: tuple[str, str] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        """POST one notification; `auth` overrides the credentials (a forgery), `key` is the
        delivery's idempotency key (the same for a redelivery)."""
        body = self.payload(account, kind, businessLocationId=247158188015618)
        headers = {"X-Lightspeed-Idempotency-Key": key or uuid.uuid4().hex}
        return httpx.post(self.url, json=body, auth=auth or self.auth, headers=headers, timeout=60)
