"""Built-in SQLite gift ledger with Gift Local semantics, so demos and first runs need no keys.

Money safety: each check-and-decrement runs in one `BEGIN IMMEDIATE` transaction on a WAL
database with `synchronous=FULL`, so a crash loses no committed redemption and two lanes sharing
the file can never spend the same balance twice. Balances are integer minor units (monetary
gifts, 2-decimal currencies) or item counts (item gifts).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ErrorCode, ProviderError
from agent.orders import OrderSnapshot
from agent.providers.base import (
    GiftRef,
    GiftStatus,
    GiftType,
    NotRedeemableReason,
    Redemption,
    Reversal,
)
from agent.providers.settings import SandboxSettings
from agent.registry import ProviderEnv

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS gifts (
    gift_id      TEXT PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE CHECK (length(code) = 12),
    public_token TEXT UNIQUE,
    type         TEXT NOT NULL CHECK (type IN ('monetary', 'item')),
    currency     TEXT CHECK ((type = 'monetary') = (currency IS NOT NULL)),
    item_label   TEXT CHECK ((type = 'item') = (item_label IS NOT NULL)),
    initial      INTEGER NOT NULL CHECK (initial > 0),
    balance      INTEGER NOT NULL CHECK (balance BETWEEN 0 AND initial),
    valid_from   TEXT,
    expires_at   TEXT,
    locations    TEXT,  -- JSON array of location ids; NULL: redeemable everywhere
    voided       INTEGER NOT NULL DEFAULT 0,
    sender       TEXT,
    recipient    TEXT
);
CREATE TABLE IF NOT EXISTS redemptions (
    transaction_id  TEXT PRIMARY KEY,
    gift_id         TEXT NOT NULL REFERENCES gifts (gift_id),
    amount          INTEGER CHECK (amount > 0),
    quantity        INTEGER CHECK (quantity > 0),
    location        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    reversed_at     TEXT,
    idempotency_key TEXT UNIQUE,  -- NULL for redemptions shipped with the demo data
    CHECK ((amount IS NULL) != (quantity IS NULL))
);
CREATE INDEX IF NOT EXISTS redemptions_by_gift ON redemptions (gift_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key        TEXT PRIMARY KEY,
    request    TEXT NOT NULL,  -- canonical JSON of the operation and its parameters
    response   TEXT NOT NULL,  -- the first result, replayed as is
    created_at TEXT NOT NULL
);
COMMIT;
"""

_GIFT_COLUMNS = (
    "gift_id, type, currency, item_label, balance, valid_from, expires_at, locations, voided, "
    "sender, recipient"
)

# Redeeming a gift that validate reports as not redeemable fails with the matching code.
_REASON_CODES = {
    NotRedeemableReason.EXPIRED: ErrorCode.EXPIRED,
    NotRedeemableReason.NOT_YET_VALID: ErrorCode.NOT_YET_VALID,
    NotRedeemableReason.WRONG_LOCATION: ErrorCode.WRONG_LOCATION,
    NotRedeemableReason.DEPLETED: ErrorCode.NOT_REDEEMABLE,
    NotRedeemableReason.VOIDED: ErrorCode.NOT_REDEEMABLE,
}

_CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "EUR": "€", "GBP": "£"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _DemoGift(BaseModel):
    """One entry of `demo_data.json`. Days count from the load date, so the demo never goes stale.

    `value` and `redeemed` are minor units for monetary gifts and counts for item gifts.
    """

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{12}$")
    public_token: str | None = None
    type: GiftType
    currency: str | None = None
    item_label: str | None = None
    value: int = Field(gt=0)
    redeemed: int = Field(default=0, ge=0)
    valid_from_days: int | None = None
    expires_in_days: int | None = None
    locations: list[str] | None = None
    voided: bool = False
    sender: str | None = None
    recipient: str | None = None


class _DemoData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gifts: list[_DemoGift]


@dataclass(frozen=True)
class _Gift:
    gift_id: str
    type: GiftType
    currency: str | None
    item_label: str | None
    balance: int
    valid_from: datetime | None
    expires_at: datetime | None
    locations: tuple[str, ...] | None
    voided: bool
    sender: str | None
    recipient: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> _Gift:
        return cls(
            gift_id=row["gift_id"],
            type=GiftType(row["type"]),
            currency=row["currency"],
            item_label=row["item_label"],
            balance=row["balance"],
            valid_from=_parse_time(row["valid_from"]),
            expires_at=_parse_time(row["expires_at"]),
            locations=None if row["locations"] is None else tuple(json.loads(row["locations"])),
            voided=bool(row["voided"]),
            sender=row["sender"],
            recipient=row["recipient"],
        )

    def balance_text(self, units: int) -> str:
        """`$50.00` or `3 × Coffee`: how a cashier reads a quantity of this gift."""
        if self.currency is None:
            return f"{units} × {self.item_label}"
        money = f"{units // 100:,}.{units % 100:02d}"
        symbol = _CURRENCY_SYMBOLS.get(self.currency)
        return f"{symbol}{money}" if symbol else f"{money} {self.currency}"

    def unredeemable(self, location: str, now: datetime) -> tuple[NotRedeemableReason, str] | None:
        """Why the gift cannot be redeemed here and now, most permanent reason first."""
        if self.voided:
            return NotRedeemableReason.VOIDED, "Voided"
        if self.balance == 0:
            return NotRedeemableReason.DEPLETED, "Fully redeemed"
        if self.expires_at is not None and now >= self.expires_at:
            return NotRedeemableReason.EXPIRED, f"Expired on {self.expires_at:%Y-%m-%d}"
        if self.valid_from is not None and now < self.valid_from:
            return NotRedeemableReason.NOT_YET_VALID, f"Valid from {self.valid_from:%Y-%m-%d}"
        if self.locations is not None and location not in self.locations:
            return NotRedeemableReason.WRONG_LOCATION, "Not valid at this location"
        return None

    def status(self, location: str, now: datetime) -> GiftStatus:
        blocked = self.unredeemable(location, now)
        eligible = 0 if blocked else self.balance
        monetary = self.type is GiftType.MONETARY
        return GiftStatus(
            gift_id=self.gift_id,
            type=self.type,
            currency=self.currency,
            balance=self.balance if monetary else None,
            item_label=self.item_label,
            item_quantity=None if monetary else self.balance,
            eligible_value=eligible if monetary else 0,
            eligible_quantity=0 if monetary else eligible,
            is_redeemable=blocked is None,
            reason=blocked[0] if blocked else None,
            description=blocked[1] if blocked else f"{self.balance_text(self.balance)} available",
            valid_from=self.valid_from,
            expires_at=self.expires_at,
            sender=self.sender,
            recipient=self.recipient,
        )


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _fingerprint(op: str, **params: object) -> str:
    """What an idempotency key was first used for, so a reuse for anything else is refused."""
    return json.dumps({"op": op, **params}, sort_keys=True)


def _public_token(value: str) -> str:
    """Gift Local accepts the QR's whole URL as well as its path component (the token)."""
    parts = urlsplit(value.strip())
    if parts.scheme and parts.netloc:
        return parts.path.rstrip("/").rsplit("/", 1)[-1]
    return value.strip()


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: the write lock is taken before the first read, not at the update."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _replay(conn: sqlite3.Connection, key: str, request: str, model: type[_M]) -> _M | None:
    row = conn.execute(
        "SELECT request, response FROM idempotency_keys WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row["request"] != request:
        raise ProviderError(
            ErrorCode.INVALID_REQUEST, "Idempotency key was already used for a different request"
        )
    return model.model_validate_json(row["response"])


def _remember(
    conn: sqlite3.Connection, key: str, request: str, response: BaseModel, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO idempotency_keys (key, request, response, created_at) VALUES (?, ?, ?, ?)",
        (key, request, response.model_dump_json(), _format_time(now)),
    )


def _load_gift(conn: sqlite3.Connection, where: str, value: str) -> _Gift | None:
    row = conn.execute(f"SELECT {_GIFT_COLUMNS} FROM gifts WHERE {where} = ?", (value,)).fetchone()
    return None if row is None else _Gift.from_row(row)


def _require_key(idempotency_key: str) -> None:
    if not idempotency_key:
        raise ProviderError(ErrorCode.INVALID_REQUEST, "An idempotency key is required")


class SandboxLedger:
    """`GiftProvider` over a local SQLite file: validate, partial redeem, reverse, idempotent."""

    name = "sandbox"

    def __init__(
        self,
        db_path: Path,
        *,
        location: str,
        load_demo: bool,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Open (creating if missing) the ledger; blocking, so prefer `from_settings` in a loop."""
        self._path = db_path
        self._location = location
        self._now = now
        # A threading lock, not an asyncio one: a cancelled caller must not free the connection
        # while its worker thread is still inside a transaction.
        self._lock = threading.Lock()
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn: sqlite3.Connection | None = self._open(db_path, load_demo)
        except (OSError, sqlite3.Error) as exc:
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"Cannot open sandbox ledger {db_path}: {exc}"
            ) from exc

    @classmethod
    def create(cls, settings: SandboxSettings, env: ProviderEnv) -> SandboxLedger:
        """Build from `[providers.sandbox]`: the ledger lives in the state directory and
        redeems at the lane's store unless the table says otherwise."""
        return cls(
            settings.db or env.state_dir / "sandbox.sqlite",
            location=settings.location or env.store,
            load_demo=settings.demo_data,
        )

    def _open(self, db_path: Path, load_demo: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
            if load_demo:
                self._seed_demo(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _seed_demo(self, conn: sqlite3.Connection) -> None:
        """Load the shipped demo gifts, only into an empty ledger so restarts keep balances."""
        text = resources.files("agent.providers").joinpath("demo_data.json").read_text("utf-8")
        demo = _DemoData.model_validate_json(text)
        now = self._now()
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        def day(offset: int | None) -> str | None:
            return None if offset is None else _format_time(today + timedelta(days=offset))

        with _immediate(conn):
            if conn.execute("SELECT count(*) FROM gifts").fetchone()[0]:
                return
            for gift in demo.gifts:
                gift_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO gifts (gift_id, code, public_token, type, currency, item_label,"
                    " initial, balance, valid_from, expires_at, locations, voided, sender,"
                    " recipient) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        gift_id,
                        gift.code,
                        gift.public_token,
                        gift.type.value,
                        gift.currency,
                        gift.item_label,
                        gift.value,
                        gift.value - gift.redeemed,
                        day(gift.valid_from_days),
                        day(gift.expires_in_days),
                        None if gift.locations is None else json.dumps(gift.locations),
                        gift.voided,
                        gift.sender,
                        gift.recipient,
                    ),
                )
                if gift.redeemed:
                    # A real redemption row keeps balance = initial - unreversed redemptions.
                    monetary = gift.type is GiftType.MONETARY
                    conn.execute(
                        "INSERT INTO redemptions (transaction_id, gift_id, amount, quantity,"
                        " location, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            f"txn_{uuid.uuid4().hex}",
                            gift_id,
                            gift.redeemed if monetary else None,
                            None if monetary else gift.redeemed,
                            self._location,
                            _format_time(now),
                        ),
                    )

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._locked, work)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """A read-only `work` runs here, on the loop, when the connection is free: one indexed
        lookup in a WAL database (where readers do not wait for writers) costs a few µs, the
        hand-off to a worker thread and back ten times that. While a redeem or reverse holds
        the connection (perhaps in an fsync), the read waits for it in a thread instead."""
        if not self._lock.acquire(blocking=False):
            return await self._call(work)
        try:
            return self._run(work)
        finally:
            self._lock.release()

    def _locked(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            return self._run(work)

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """`work` on the connection; the caller holds the lock."""
        if self._conn is None:
            raise ProviderError(ErrorCode.PROVIDER_UNAVAILABLE, "Sandbox ledger is closed")
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            # A failed SQLite transaction is rolled back whole: the outcome is known (nothing).
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"Sandbox ledger error: {exc}"
            ) from exc

    async def validate(
        self, ref: GiftRef, *, location: str | None, ticket: OrderSnapshot | None = None
    ) -> GiftStatus:
        """Found is success even when not redeemable, as in Gift Local; `reason` says why. The
        ticket goes unread: the sandbox's item gifts apply to any item."""
        if ref.code is not None:
            where, value = "code", ref.code.strip()
            if not (len(value) == 12 and value.isascii() and value.isdigit()):
                raise ProviderError(ErrorCode.INVALID_REQUEST, "Gift code must be 12 digits")
        else:
            assert ref.public_token is not None  # GiftRef guarantees exactly one
            where, value = "public_token", _public_token(ref.public_token)
        here = location or self._location

        def work(conn: sqlite3.Connection) -> GiftStatus:
            gift = _load_gift(conn, where, value)
            if gift is None:
                raise ProviderError(ErrorCode.NOT_FOUND, "Gift not found")
            return gift.status(here, self._now())

        return await self._read(work)

    async def redeem(
        self,
        gift_id: str,
        *,
        amount: int | None = None,
        quantity: int | None = None,
        location: str | None,
        idempotency_key: str,
    ) -> Redemption:
        """Partial redemption; a repeated key returns the first result, so retries never double."""
        _require_key(idempotency_key)
        if amount is not None and quantity is None:
            units = amount
        elif quantity is not None and amount is None:
            units = quantity
        else:
            raise ProviderError(
                ErrorCode.INVALID_REQUEST,
                "Give an amount for a monetary gift or a quantity for an item gift",
            )
        if units <= 0:
            raise ProviderError(ErrorCode.INVALID_REQUEST, "Redemption must be greater than zero")
        here = location or self._location
        request = _fingerprint(
            "redeem", gift_id=gift_id, amount=amount, quantity=quantity, location=here
        )

        def work(conn: sqlite3.Connection) -> Redemption:
            now = self._now()
            with _immediate(conn):
                replay = _replay(conn, idempotency_key, request, Redemption)
                if replay is not None:
                    return replay
                gift = _load_gift(conn, "gift_id", gift_id)
                if gift is None:
                    raise ProviderError(ErrorCode.NOT_FOUND, "Gift not found")
                if (gift.type is GiftType.MONETARY) != (amount is not None):
                    raise ProviderError(
                        ErrorCode.INVALID_REQUEST,
                        f"A {gift.type.value} gift is redeemed by "
                        + ("amount" if gift.type is GiftType.MONETARY else "quantity"),
                    )
                blocked = gift.unredeemable(here, now)
                if blocked is not None:
                    raise ProviderError(_REASON_CODES[blocked[0]], blocked[1])
                # The guarded update is the balance check, inside the same write transaction.
                updated = conn.execute(
                    "UPDATE gifts SET balance = balance - ? WHERE gift_id = ? AND balance >= ?",
                    (units, gift_id, units),
                ).rowcount
                if updated != 1:
                    raise ProviderError(
                        ErrorCode.INSUFFICIENT_BALANCE,
                        f"Only {gift.balance_text(gift.balance)} available",
                    )
                transaction_id = f"txn_{uuid.uuid4().hex}"
                conn.execute(
                    "INSERT INTO redemptions (transaction_id, gift_id, amount, quantity, location,"
                    " created_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        transaction_id,
                        gift_id,
                        amount,
                        quantity,
                        here,
                        _format_time(now),
                        idempotency_key,
                    ),
                )
                after = _load_gift(conn, "gift_id", gift_id)
                assert after is not None
                result = Redemption(
                    transaction_id=transaction_id,
                    gift_id=gift_id,
                    amount=amount,
                    quantity=quantity,
                    gift=after.status(here, now),
                )
                _remember(conn, idempotency_key, request, result, now)
                return result

        return await self._call(work)

    async def reverse(
        self, transaction_id: str, *, location: str | None, idempotency_key: str
    ) -> Reversal:
        """Restore a redemption's value; any location of the account may reverse it."""
        _require_key(idempotency_key)
        here = location or self._location
        request = _fingerprint("reverse", transaction_id=transaction_id)

        def work(conn: sqlite3.Connection) -> Reversal:
            now = self._now()
            with _immediate(conn):
                replay = _replay(conn, idempotency_key, request, Reversal)
                if replay is not None:
                    return replay
                row = conn.execute(
                    "SELECT gift_id, amount, quantity, reversed_at FROM redemptions"
                    " WHERE transaction_id = ?",
                    (transaction_id,),
                ).fetchone()
                if row is None:
                    raise ProviderError(ErrorCode.NOT_FOUND, "Redemption not found")
                if row["reversed_at"] is not None:
                    raise ProviderError(
                        ErrorCode.ALREADY_REVERSED,
                        f"Redemption already reversed at {row['reversed_at']}",
                    )
                amount: int | None = row["amount"]
                quantity: int | None = row["quantity"]
                conn.execute(
                    "UPDATE redemptions SET reversed_at = ? WHERE transaction_id = ?",
                    (_format_time(now), transaction_id),
                )
                conn.execute(
                    "UPDATE gifts SET balance = balance + ? WHERE gift_id = ?",
                    (amount if amount is not None else quantity, row["gift_id"]),
                )
                after = _load_gift(conn, "gift_id", row["gift_id"])
                assert after is not None
                result = Reversal(
                    transaction_id=transaction_id,
                    gift_id=after.gift_id,
                    amount=amount,
                    quantity=quantity,
                    reversed_at=now,
                    gift=after.status(here, now),
                )
                _remember(conn, idempotency_key, request, result, now)
                return result

        return await self._call(work)

    async def check_health(self) -> tuple[bool, str]:
        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM gifts").fetchone()[0])

        try:
            gifts = await self._read(count)
        except ProviderError as exc:
            return False, exc.message
        return True, f"ledger at {self._path}: {gifts} gifts"

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
