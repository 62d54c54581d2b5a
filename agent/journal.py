"""The gift redemption journal: what the lane asked a gift provider to redeem, written before
the call, so an answer lost on the way back (or the agent killed meanwhile) is settled by
re-reading the gift's balance rather than by guessing.

Gift Local has no idempotency key: retrying a redeem whose answer was lost could spend the gift
twice. Each intent records the balance the gift had when the lane decided to redeem (`before`)
and how much it asked for (`units`: minor units, or items). A later reading of the balance then
tells: `before - units` means it went through, `before` that it did not; anything else (the gift
was used elsewhere meanwhile) cannot be told apart.

Each intent also records whether a screen was told its outcome (`told`): the answer to its own
request tells it; a redemption found applied only later (after a crash, a lost answer) was told
to nobody, so until a screen hears it (the same request sent again, or a new redeem that says
`confirm_repeat`), it and one whose outcome is unknown hold up every other redemption of the
gift on this lane for `BLOCK_FOR`, so a second one cannot slip through while someone checks.
An applied intent keeps the provider's answer (`redemption`), which the same request sent
again is answered with.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.providers.base import Redemption

BLOCK_FOR = timedelta(hours=24)


class IntentState(enum.StrEnum):
    PENDING = "pending"  # asked, no answer yet
    APPLIED = "applied"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the answer was lost and the balance could not tell


# Stands for a balance the provider did not give (a gift flow's `before` or a fresh balance).
UNKNOWN_BALANCE = -1


@dataclass(frozen=True)
class Intent:
    request_id: str
    gift_id: str
    units: int
    before: int
    state: IntentState
    created: datetime
    told: bool  # a screen was told the outcome
    redemption: Redemption | None  # the provider's answer, once applied

    def settle(self, balance: int) -> IntentState | None:
        """What a fresh balance says about this intent, if it says anything (nothing when
        either balance is unknown)."""
        if UNKNOWN_BALANCE in (balance, self.before):
            return None
        if balance == self.before - self.units:
            return IntentState.APPLIED
        if balance == self.before:
            return IntentState.FAILED
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gift_intents (
    request_id TEXT PRIMARY KEY,
    gift_id    TEXT NOT NULL,
    units      INTEGER NOT NULL,
    before     INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gift_intents_open ON gift_intents (gift_id, state);
"""
# Columns added after the first release; rows written before them were answered at the time.
_ADDED = {"told": "INTEGER NOT NULL DEFAULT 1", "redemption": "TEXT"}


def create_schema(db: sqlite3.Connection) -> None:
    """The gift_intents table, with the columns added later: a step of orders.sqlite's schema
    (agent/orders.py MIGRATIONS), safe on a file an unversioned agent left with or without
    them."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(gift_intents)")}
    for name, kind in _ADDED.items():
        if name not in columns:
            db.execute(f"ALTER TABLE gift_intents ADD COLUMN {name} {kind}")


_COLUMNS = "request_id, gift_id, units, before, state, created, told, redemption"


class RedemptionJournal:
    """Gift redemptions in flight, in orders.sqlite, whose schema OrderBook keeps."""

    def __init__(
        self, db: sqlite3.Connection, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._db = db
        self._now = now
        self._started = now()

    def begin(self, request_id: str, gift_id: str, units: int, before: int) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO gift_intents ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, 'pending', ?, 0, NULL)",
            (request_id, gift_id, units, before, self._now().isoformat()),
        )

    def mark(
        self,
        request_id: str,
        state: IntentState,
        *,
        told: bool = True,
        redemption: Redemption | None = None,
    ) -> None:
        """Record what became of the intent, and whether a screen is being told (by the answer
        to its own request)."""
        body = None if redemption is None else redemption.model_dump_json()
        self._db.execute(
            "UPDATE gift_intents SET state = ?, told = ?, redemption = COALESCE(?, redemption) "
            "WHERE request_id = ?",
            (state.value, told, body, request_id),
        )

    def acknowledge(self, request_ids: list[str]) -> None:
        """A screen now knows these outcomes: they no longer hold up the gift."""
        self._db.executemany(
            "UPDATE gift_intents SET told = 1 WHERE request_id = ?", [(r,) for r in request_ids]
        )

    def get(self, request_id: str) -> Intent | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM gift_intents WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else _intent(row)

    def before_start(self, intent: Intent) -> bool:
        """Whether a previous run of the agent wrote it (a pending one was cut by a stop)."""
        return intent.created < self._started

    def untold(self, gift_id: str) -> list[Intent]:
        """Intents of this gift whose outcome no screen knows: lost answers, calls a previous
        run of the agent was making when it stopped, and redemptions found applied after such
        a fault. Older than BLOCK_FOR ones no longer count."""
        since = (self._now() - BLOCK_FOR).isoformat()
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM gift_intents WHERE gift_id = ? AND told = 0 AND "
            "created >= ? AND (state IN ('unknown', 'applied') OR "
            "(state = 'pending' AND created < ?)) ORDER BY created",
            (gift_id, since, self._started.isoformat()),
        ).fetchall()
        return [_intent(row) for row in rows]


def _intent(row: tuple[str, str, int, int, str, str, int, str | None]) -> Intent:
    request_id, gift_id, units, before, state, created, told, redemption = row
    return Intent(
        request_id,
        gift_id,
        units,
        before,
        IntentState(state),
        datetime.fromisoformat(created),
        told=bool(told),
        redemption=None if redemption is None else Redemption.model_validate_json(redemption),
    )
