"""The lane's order context: what the POS last told the agent about the open order.

The POS sends `order.update` whenever the order changes and closes it with `order.paid` or
`order.void`; flows read the lines and amounts from here (PETZ order sync and coupon
authorization, Punchh redemptions and check-in, the card payment's total). Amounts are integer
minor units; `total` includes tax, as K-Series' `pos_getCurrentAccount` does.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from agent import statedb
from agent.errors import ErrorCode, LaneError
from agent.tenders import TenderBook

_S = TypeVar("_S", bound=BaseModel)

MAX_MINOR = 10**12
"""The largest amount the lane takes, in minor units (ten billion in a two-decimal currency):
beyond it a number is a mistake, and SQLite's integers and providers' decimals stay far from
overflowing."""

Minor = Annotated[int, Strict(), Field(ge=-MAX_MINOR, le=MAX_MINOR)]
"""An amount of money in minor units: a JSON integer, never `"100"`, `1.0` or `true`."""
Count = Annotated[int, Strict(), Field(gt=0, le=100_000)]
"""A number of items: a JSON integer."""


class OrderStatus(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    ABANDONED = "abandoned"  # another order id was opened while this one was still open
    REFUNDED = "refunded"  # paid, then given back whole (`order.refund`)


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, description="the POS's line id, stable per line")
    name: str = Field(min_length=1, max_length=200)
    quantity: Count = Field(description="whole units")
    amount: Minor = Field(description="line total in minor units, after store promotions")
    sku: str | None = Field(None, max_length=64, description="product code (UPC/EAN/SKU)")


class OrderSnapshot(BaseModel):
    """An order as the POS described it in its last `order.update`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str = Field(min_length=1, max_length=64)
    lines: list[OrderLine] = Field(default_factory=list, max_length=500)
    subtotal: Minor = Field(ge=0, description="minor units, before tax")
    tax: Minor = Field(0, ge=0)
    total: Minor = Field(ge=0, description="minor units, including tax")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")

    @model_validator(mode="after")
    def _total_adds_up(self) -> OrderSnapshot:
        if self.subtotal + self.tax != self.total:
            raise ValueError(f"total {self.total} is not subtotal {self.subtotal} + tax {self.tax}")
        return self


class Order(BaseModel):
    """The lane's current order and where it is in its life."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot: OrderSnapshot
    status: OrderStatus = OrderStatus.OPEN
    opened_at: datetime
    closed_at: datetime | None = None

    @property
    def order_id(self) -> str:
        return self.snapshot.order_id


def can_close(current: OrderStatus, to: OrderStatus) -> bool:
    """An open order closes any way; an abandoned one can still be voided (which finishes giving
    back what it had taken), and a paid one refunded."""
    return (
        current is OrderStatus.OPEN
        or (current is OrderStatus.ABANDONED and to is OrderStatus.VOID)
        or (current is OrderStatus.PAID and to is OrderStatus.REFUNDED)
    )


class OrderBook:
    """The lane's orders and each flow's state for them, in SQLite so a restart resumes them.

    Flow state is a small JSON document per (order, flow): the PETZ authorization, the Punchh
    guest and the snapshot its redemption query used, the card payments made. It is written
    before the flow's next step depends on it (`synchronous=FULL`).
    """

    def __init__(self, path: Path, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        statedb.migrate(self._db, path, MIGRATIONS)
        self.tenders = TenderBook(self._db, now)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for records that must be written with an order (the outbox)."""
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: e.g. an order closed together with the work its closing owes. Inside
        another transaction it joins it."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def current(self) -> Order | None:
        """The open order, if any."""
        row = self._db.execute(
            "SELECT body FROM orders WHERE status = 'open' ORDER BY opened_at DESC LIMIT 1"
        ).fetchone()
        return None if row is None else Order.model_validate_json(row[0])

    def get(self, order_id: str) -> Order | None:
        row = self._db.execute("SELECT body FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else Order.model_validate_json(row[0])

    def update(self, snapshot: OrderSnapshot) -> tuple[Order, Order | None]:
        """Record the POS's latest view of an order; return it and the open order it replaced
        (another order id still open), which the caller closes as abandoned."""
        existing = self.get(snapshot.order_id)
        if existing is not None and existing.status is not OrderStatus.OPEN:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"order {snapshot.order_id} is already {existing.status}; start a new order id",
            )
        previous = self.current()
        replaced = (
            previous if previous is not None and previous.order_id != snapshot.order_id else None
        )
        order = (
            existing.model_copy(update={"snapshot": snapshot})
            if existing is not None
            else Order(snapshot=snapshot, opened_at=self._now())
        )
        self._save(order)
        return order, replaced

    def close(self, order_id: str, status: OrderStatus) -> Order:
        """Mark the order paid, void or abandoned; closing it again the same way is a no-op."""
        order = self.require(order_id)
        if order.status is status:
            return order
        if not can_close(order.status, status):
            raise LaneError(
                ErrorCode.INVALID_REQUEST, f"order {order_id} is already {order.status}"
            )
        closed = order.model_copy(update={"status": status, "closed_at": self._now()})
        self._save(closed)
        return closed

    def require(self, order_id: str) -> Order:
        order = self.get(order_id)
        if order is None:
            raise LaneError(
                ErrorCode.NOT_FOUND,
                f"order {order_id} is unknown on this lane; send order.update first",
            )
        return order

    def require_open(self) -> Order:
        order = self.current()
        if order is None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST, "no open order on this lane; send order.update first"
            )
        return order

    def flow_state(self, order_id: str, flow: str, model: type[_S]) -> _S | None:
        row = self._db.execute(
            "SELECT body FROM flow_state WHERE order_id = ? AND flow = ?", (order_id, flow)
        ).fetchone()
        return None if row is None else model.model_validate_json(row[0])

    def save_flow_state(self, order_id: str, flow: str, state: BaseModel) -> None:
        self._db.execute(
            "INSERT INTO flow_state VALUES (?, ?, ?) ON CONFLICT (order_id, flow) "
            "DO UPDATE SET body = excluded.body",
            # Computed fields are derived on load; strict models would refuse them as input.
            (order_id, flow, state.model_dump_json(exclude_computed_fields=True)),
        )

    def close_db(self) -> None:
        self._db.close()

    def _save(self, order: Order) -> None:
        self._db.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "status = excluded.status, opened_at = excluded.opened_at, body = excluded.body",
            (
                order.order_id,
                order.status.value,
                order.opened_at.isoformat(),
                order.model_dump_json(),
            ),
        )


def _journal_schema(db: sqlite3.Connection) -> None:
    # Imported here: the journal's Redemption model imports this module.
    from agent.journal import create_schema

    create_schema(db)


# orders.sqlite's schema steps (agent/statedb.py): orders and flow_state here, the gift flow's
# redemption journal; the tenders and outbox tables that share the file still create themselves
# (IF NOT EXISTS) and take their future changes as steps here too.
MIGRATIONS: tuple[statedb.Step, ...] = (
    statedb.script(
        """
        CREATE TABLE IF NOT EXISTS orders (
            order_id  TEXT PRIMARY KEY,
            status    TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            body      TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS flow_state (
            order_id TEXT NOT NULL,
            flow     TEXT NOT NULL,
            body     TEXT NOT NULL,
            PRIMARY KEY (order_id, flow)
        )
        """
    ),
    _journal_schema,
)
