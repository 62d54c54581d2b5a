"""Every money step the lane takes, as a tender record: which order it paid for, which flow and
provider took it, the provider's transaction id, the masked card or voucher, the amount and
where it stands.

The records are how the lane answers for money it moved: `order.void`, a replaced order and
`order.refund` give back exactly the order's tenders; `gift.reverse` finds the flow that owns a
transaction id here (closed orders included), never by trying providers in turn; `order.get`
lists them. A record is written before the provider call (`pending`), so a crash can never leave
money taken that the lane does not know to look for, and it lives in the order book's SQLite
file, in the same transactions as the flows' own state.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


class TenderState(enum.StrEnum):
    PENDING = "pending"  # sent, or about to be; the outcome is not known yet
    TAKEN = "taken"
    REFUNDING = "refunding"  # taken; `order.refund` asked to give it back
    REVERSED = "reversed"  # given back (a reversal, a void, a refund)
    FAILED = "failed"  # refused by the provider: nothing was taken


class Tender(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str = Field(description="the lane-unique reference it was taken under")
    order_id: str | None = Field(description="the order it paid for; None: no order was open")
    flow: str = Field(description="gift or card")
    provider: str
    transaction_id: str | None = Field(None, description="the provider's; None while pending")
    display: str = Field(description="the masked voucher code or card number")
    amount: int | None = Field(None, description="minor units")
    quantity: int | None = Field(None, description="items, for an item gift")
    currency: str | None = None
    state: TenderState
    created: datetime

    @property
    def holds_money(self) -> bool:
        """Whether this tender may have taken money that has not been given back."""
        return self.state in (TenderState.PENDING, TenderState.TAKEN, TenderState.REFUNDING)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenders (
    reference      TEXT PRIMARY KEY,
    order_id       TEXT,
    transaction_id TEXT,
    body           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tenders_order ON tenders (order_id);
CREATE INDEX IF NOT EXISTS tenders_transaction ON tenders (transaction_id);
"""


class TenderBook:
    """The tender records, on the order book's connection (writes join its transactions)."""

    def __init__(
        self, db: sqlite3.Connection, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._db = db
        self._now = now
        db.executescript(_SCHEMA)

    def begin(
        self,
        reference: str,
        *,
        order_id: str | None,
        flow: str,
        provider: str,
        display: str,
        amount: int | None = None,
        quantity: int | None = None,
        currency: str | None = None,
    ) -> Tender:
        """Record a tender about to be taken; the same reference again keeps the first."""
        existing = self.get(reference)
        if existing is not None:
            return existing
        tender = Tender(
            reference=reference,
            order_id=order_id,
            flow=flow,
            provider=provider,
            display=display,
            amount=amount,
            quantity=quantity,
            currency=currency,
            state=TenderState.PENDING,
            created=self._now(),
        )
        self.save(tender)
        return tender

    def save(self, tender: Tender) -> None:
        self._db.execute(
            "INSERT INTO tenders VALUES (?, ?, ?, ?) ON CONFLICT (reference) DO UPDATE SET "
            "order_id = excluded.order_id, transaction_id = excluded.transaction_id, "
            "body = excluded.body",
            (tender.reference, tender.order_id, tender.transaction_id, tender.model_dump_json()),
        )

    def update(self, tender: Tender, **changes: object) -> Tender:
        changed = tender.model_copy(update=changes)
        self.save(changed)
        return changed

    def get(self, reference: str) -> Tender | None:
        row = self._db.execute(
            "SELECT body FROM tenders WHERE reference = ?", (reference,)
        ).fetchone()
        return None if row is None else Tender.model_validate_json(row[0])

    def owner(self, transaction_id: str) -> Tender | None:
        """The tender a provider transaction id belongs to, whatever its order's state."""
        row = self._db.execute(
            "SELECT body FROM tenders WHERE transaction_id = ?", (transaction_id,)
        ).fetchone()
        return None if row is None else Tender.model_validate_json(row[0])

    def of_order(self, order_id: str, flow: str | None = None) -> list[Tender]:
        rows = self._db.execute(
            "SELECT body FROM tenders WHERE order_id = ? ORDER BY rowid", (order_id,)
        ).fetchall()
        tenders = [Tender.model_validate_json(row[0]) for row in rows]
        return [t for t in tenders if flow is None or t.flow == flow]
