"""The gift redemption journal: what the lane asked a gift provider to redeem, written before
the call, so an answer lost on the way back (or the agent killed meanwhile) is settled by
re-reading the gift's balance rather than by guessing.

Gift Local has no idempotency key: retrying a redeem whose answer was lost could spend the gift
twice. Each intent records the balance the gift had when the lane decided to redeem (`before`)
and how much it asked for (`units`: minor units, or items). A later reading of the balance then
tells: `before - units` means it went through, `before` that it did not; anything else (the gift
was used elsewhere meanwhile) cannot be told apart, and the gift stays blocked on this lane for
`BLOCK_FOR` so a second redemption cannot slip through while someone checks.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

BLOCK_FOR = timedelta(hours=24)


class IntentState(enum.StrEnum):
    PENDING = "pending"  # asked, no answer yet
    APPLIED = "applied"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the answer was lost and the balance could not tell


@dataclass(frozen=True)
class Intent:
    request_id: str
    gift_id: str
    units: int
    before: int
    state: IntentState
    created: datetime

    def settle(self, balance: int) -> IntentState | None:
        """What a fresh balance says about this intent, if it says anything."""
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


class RedemptionJournal:
    def __init__(
        self, db: sqlite3.Connection, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._db = db
        self._now = now
        self._started = now()
        db.executescript(_SCHEMA)

    def begin(self, request_id: str, gift_id: str, units: int, before: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO gift_intents VALUES (?, ?, ?, ?, 'pending', ?)",
            (request_id, gift_id, units, before, self._now().isoformat()),
        )

    def mark(self, request_id: str, state: IntentState) -> None:
        self._db.execute(
            "UPDATE gift_intents SET state = ? WHERE request_id = ?", (state.value, request_id)
        )

    def get(self, request_id: str) -> Intent | None:
        row = self._db.execute(
            "SELECT request_id, gift_id, units, before, state, created FROM gift_intents "
            "WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return None if row is None else _intent(row)

    def open(self, gift_id: str) -> list[Intent]:
        """Intents of this gift whose outcome is not known: lost answers, and calls a previous
        run of the agent was making when it stopped. Older than BLOCK_FOR ones no longer count."""
        since = (self._now() - BLOCK_FOR).isoformat()
        rows = self._db.execute(
            "SELECT request_id, gift_id, units, before, state, created FROM gift_intents "
            "WHERE gift_id = ? AND created >= ? AND (state = 'unknown' OR "
            "(state = 'pending' AND created < ?)) ORDER BY created",
            (gift_id, since, self._started.isoformat()),
        ).fetchall()
        return [_intent(row) for row in rows]


def _intent(row: tuple[str, str, int, int, str, str]) -> Intent:
    request_id, gift_id, units, before, state, created = row
    return Intent(
        request_id, gift_id, units, before, IntentState(state), datetime.fromisoformat(created)
    )
