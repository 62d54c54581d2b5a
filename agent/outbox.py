"""The durable outbox: what must happen after an order closes (loyalty commit and check-in,
coupon capture, releases, reversals) is written down before the first attempt and delivered
until it is done, however often the provider, the uplink or the agent itself fails meanwhile.

Each entry is one flow's work for one order and phase (`paid`, `void`, `abandoned`), keyed
`order:flow:phase` so writing it twice is a no-op. Entries of one order are delivered in the
order they were written, each only after the ones before it are done, so a check-in never
overtakes its commit. A failed attempt is retried with exponential backoff, full jitter and a
cap; an entry still failing past its deadline, or failing in a way no retry can fix, is
dead-lettered for a person to look at (`lane-agent outbox`). The flows' steps are idempotent at
their providers (references, external ids, saved progress), which is what makes retrying safe.

The entries live in the order book's SQLite file (WAL, `synchronous=FULL`), written in the same
transaction that closes the order, so a closed order always has its work recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.errors import ErrorCode

log = logging.getLogger(__name__)

# Errors a later attempt can fix; any other code is final and dead-letters the entry at once.
RETRYABLE = frozenset(
    {ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.UNKNOWN_OUTCOME, ErrorCode.INTERNAL}
)


class EntryState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class Entry:
    id: int
    order_id: str
    flow: str
    phase: str
    state: EntryState
    attempts: int
    next_at: datetime
    deadline: datetime
    last_error: str | None
    created: datetime

    @property
    def key(self) -> str:
        return f"{self.order_id}:{self.flow}:{self.phase}"


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1: `base * 2**n`, capped, times a random factor in [0.5, 1]."""

    base: float = 2.0
    cap: float = 600.0

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * float(2 ** min(attempts, 32)))
        return ceiling * (0.5 + rand() / 2)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   TEXT NOT NULL,
    flow       TEXT NOT NULL,
    phase      TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    TEXT NOT NULL,
    deadline   TEXT NOT NULL,
    last_error TEXT,
    created    TEXT NOT NULL,
    UNIQUE (order_id, flow, phase)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, order_id, id);
"""

_COLUMNS = "id, order_id, flow, phase, state, attempts, next_at, deadline, last_error, created"


def _entry(row: tuple[object, ...]) -> Entry:
    id_, order_id, flow, phase, state, attempts, next_at, deadline, last_error, created = row
    return Entry(
        id=int(str(id_)),
        order_id=str(order_id),
        flow=str(flow),
        phase=str(phase),
        state=EntryState(str(state)),
        attempts=int(str(attempts)),
        next_at=datetime.fromisoformat(str(next_at)),
        deadline=datetime.fromisoformat(str(deadline)),
        last_error=None if last_error is None else str(last_error),
        created=datetime.fromisoformat(str(created)),
    )


class Outbox:
    """The entries, on a connection the caller owns (the order book's), so that closing an order
    and writing its work can be one transaction."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        keep_for: timedelta = timedelta(days=10),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._keep_for = keep_for
        self._now = now
        db.executescript(_SCHEMA)

    def add(self, order_id: str, flows: Iterable[str], phase: str) -> None:
        """Write one entry per flow, in this order; an entry already written stays as it is.
        Call inside the transaction that closes the order."""
        now = self._now()
        deadline = now + self._keep_for
        self._db.executemany(
            "INSERT OR IGNORE INTO outbox (order_id, flow, phase, next_at, deadline, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (order_id, flow, phase, now.isoformat(), deadline.isoformat(), now.isoformat())
                for flow in flows
            ],
        )

    def due(self) -> list[Entry]:
        """The first pending entry of each order, when its time has come, oldest order first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE id IN ("
            "  SELECT MIN(id) FROM outbox WHERE state = 'pending' GROUP BY order_id"
            ") AND next_at <= ? ORDER BY id",
            (self._now().isoformat(),),
        ).fetchall()
        return [_entry(row) for row in rows]

    def next_wakeup(self) -> datetime | None:
        row = self._db.execute("SELECT MIN(next_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else datetime.fromisoformat(row[0])

    def entries(self, state: EntryState | None = None, order_id: str | None = None) -> list[Entry]:
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE 1 = 1"
        args: list[str] = []
        if state is not None:
            sql += " AND state = ?"
            args.append(state.value)
        if order_id is not None:
            sql += " AND order_id = ?"
            args.append(order_id)
        return [_entry(row) for row in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def get(self, entry_id: int) -> Entry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (entry_id,))
        found = row.fetchone()
        return None if found is None else _entry(found)

    def done(self, entry_id: int) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'done', last_error = NULL WHERE id = ?", (entry_id,)
        )

    def retry_later(self, entry_id: int, error: str, delay: float) -> None:
        at = self._now() + timedelta(seconds=delay)
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
            (error, at.isoformat(), entry_id),
        )

    def dead(self, entry_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ? "
            "WHERE id = ?",
            (error, entry_id),
        )

    def retry_now(self, entry_id: int) -> bool:
        """A person asked to try a pending or dead entry again now, with a fresh deadline."""
        now = self._now()
        changed = self._db.execute(
            "UPDATE outbox SET state = 'pending', next_at = ?, deadline = ? "
            "WHERE id = ? AND state != 'done'",
            (now.isoformat(), (now + self._keep_for).isoformat(), entry_id),
        )
        return changed.rowcount == 1

    def drop(self, entry_id: int) -> bool:
        """A person decided this work will never be done (e.g. settled by hand)."""
        return self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,)).rowcount == 1


Attempt = Callable[[Entry], Awaitable[str | None]]
"""Runs an entry's work once: None when all done, else the error (`code: message`)."""


class OutboxWorker:
    """Delivers due entries, one order's entries in sequence, orders side by side."""

    def __init__(
        self,
        outbox: Outbox,
        attempt: Attempt,
        *,
        on_dead: Callable[[Entry, str], None],
        backoff: Backoff = Backoff(),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outbox = outbox
        self._attempt = attempt
        self._on_dead = on_dead
        self._backoff = backoff
        self._now = now
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was written: look at once rather than at the next scheduled time."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every entry due now; return how many were attempted."""
        entries = self._outbox.due()
        await asyncio.gather(*(self._deliver(entry) for entry in entries))
        return len(entries)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            while await self.run_once():
                pass
            wakeup = self._outbox.next_wakeup()
            wait = None if wakeup is None else max(0.0, (wakeup - self._now()).total_seconds())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _deliver(self, entry: Entry) -> None:
        try:
            error = await self._attempt(entry)
        except Exception as exc:  # a bug in a flow must not stop every other order's work
            log.exception("outbox entry %s (%s) failed", entry.id, entry.key)
            error = f"{ErrorCode.INTERNAL.value}: {exc}"
        if error is None:
            self._outbox.done(entry.id)
            log.info("outbox entry %s (%s) done", entry.id, entry.key)
            return
        code = error.split(":", 1)[0]
        final = code not in RETRYABLE
        if final or self._now() >= entry.deadline:
            reason = error if final else f"{error} (gave up after its deadline)"
            self._outbox.dead(entry.id, reason)
            log.error("outbox entry %s (%s) dead-lettered: %s", entry.id, entry.key, reason)
            self._on_dead(entry, reason)
            return
        delay = self._backoff.delay(entry.attempts)
        self._outbox.retry_later(entry.id, error, delay)
        log.warning("outbox entry %s (%s): %s; retry in %.0f s", entry.id, entry.key, error, delay)
