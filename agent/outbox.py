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

from pydantic import TypeAdapter

from agent.contract.orders import StepOutcome
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
    steps: list[StepOutcome]  # of the last attempt

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


DEFAULT_BACKOFF = Backoff()
# The worker also looks every POLL seconds, for entries `lane-agent outbox retry` revived from
# another process.
POLL = 10.0

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
    steps      TEXT NOT NULL DEFAULT '[]',
    created    TEXT NOT NULL,
    UNIQUE (order_id, flow, phase)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, order_id, id);
"""

_COLUMNS = (
    "id, order_id, flow, phase, state, attempts, next_at, deadline, last_error, created, steps"
)
_STEPS = TypeAdapter(list[StepOutcome])


def _entry(row: tuple[object, ...]) -> Entry:
    id_, order_id, flow, phase, state, attempts, next_at, deadline, last_error, created, steps = row
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
        steps=_STEPS.validate_json(str(steps)),
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

    def add(self, order_id: str, flows: Iterable[str], phase: str, *, hold: float = 0.0) -> None:
        """Write one entry per flow, in this order; an entry already written stays as it is.
        Call inside the transaction that closes the order. `hold` keeps the worker off the
        entries for that many seconds while the caller makes the first attempt itself."""
        now = self._now()
        deadline = now + self._keep_for
        start = now + timedelta(seconds=hold)
        self._db.executemany(
            "INSERT OR IGNORE INTO outbox (order_id, flow, phase, next_at, deadline, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (order_id, flow, phase, start.isoformat(), deadline.isoformat(), now.isoformat())
                for flow in flows
            ],
        )

    def release_holds(self) -> int:
        """At start-up: entries whose first attempt the previous process was making when it
        died are due now, not when their hold runs out."""
        return self._db.execute(
            "UPDATE outbox SET next_at = ? WHERE state = 'pending' AND attempts = 0",
            (self._now().isoformat(),),
        ).rowcount

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
        """When the earliest order's next entry is due. Only each order's first pending entry
        counts: a later one waits for it, whatever its own time says."""
        row = self._db.execute(
            "SELECT MIN(next_at) FROM outbox WHERE id IN ("
            "  SELECT MIN(id) FROM outbox WHERE state = 'pending' GROUP BY order_id)"
        ).fetchone()
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

    def summary(self) -> tuple[int, int, datetime | None]:
        """How many entries are pending and dead, and when the oldest of them was written."""
        counts = dict(
            self._db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE state != 'done' GROUP BY state"
            ).fetchall()
        )
        (oldest,) = self._db.execute(
            "SELECT MIN(created) FROM outbox WHERE state != 'done'"
        ).fetchone()
        return (
            int(counts.get("pending", 0)),
            int(counts.get("dead", 0)),
            None if oldest is None else datetime.fromisoformat(oldest),
        )

    def get(self, entry_id: int) -> Entry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (entry_id,))
        found = row.fetchone()
        return None if found is None else _entry(found)

    def done(self, entry_id: int, steps: list[StepOutcome]) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'done', last_error = NULL, steps = ? WHERE id = ?",
            (_STEPS.dump_json(steps).decode(), entry_id),
        )

    def retry_later(
        self, entry_id: int, error: str, delay: float, steps: list[StepOutcome]
    ) -> None:
        at = self._now() + timedelta(seconds=delay)
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ?, steps = ? "
            "WHERE id = ?",
            (error, at.isoformat(), _STEPS.dump_json(steps).decode(), entry_id),
        )

    def dead(self, entry_id: int, error: str, steps: list[StepOutcome]) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, "
            "steps = ? WHERE id = ?",
            (error, _STEPS.dump_json(steps).decode(), entry_id),
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


Attempt = Callable[[Entry], Awaitable[list[StepOutcome]]]
"""Runs an entry's work once (a flow's hook for the order and phase); every step ok is done."""


def failure(steps: list[StepOutcome]) -> str | None:
    """`code: message` of the first failed step, or None when every step succeeded."""
    for step in steps:
        if not step.ok:
            code = step.error.code.value if step.error else ErrorCode.INTERNAL.value
            return f"{code}: {step.detail}"
    return None


class OutboxWorker:
    """Delivers due entries, one order's entries in sequence, orders side by side."""

    def __init__(
        self,
        outbox: Outbox,
        attempt: Attempt,
        *,
        on_dead: Callable[[Entry, str], None],
        on_done: Callable[[Entry, list[StepOutcome]], None] = lambda entry, steps: None,
        backoff: Backoff = DEFAULT_BACKOFF,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outbox = outbox
        self._attempt = attempt
        self._on_dead = on_dead
        self._on_done = on_done  # for work that needed more than one attempt
        self._backoff = backoff
        self._now = now
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Future[list[StepOutcome]]] = {}

    def wake(self) -> None:
        """Something was written: look at once rather than at the next scheduled time."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every entry due now; return how many were attempted."""
        entries = self._outbox.due()
        await asyncio.gather(*(self.deliver(entry) for entry in entries))
        return len(entries)

    async def run(self) -> None:
        if released := self._outbox.release_holds():
            log.info("outbox: %d entries left unfinished by the last run are due now", released)
        while True:
            self._wake.clear()
            while await self.run_once():
                pass
            wakeup = self._outbox.next_wakeup()
            wait = POLL if wakeup is None else max(0.0, (wakeup - self._now()).total_seconds())
            wait = min(wait, POLL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def deliver(self, entry: Entry) -> list[StepOutcome]:
        """Attempt one entry and record the outcome; return its steps. An entry already being
        attempted (the worker and a POS retry at once) is not attempted twice: the second
        caller gets the first attempt's steps."""
        running = self._inflight.get(entry.id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[list[StepOutcome]] = asyncio.get_running_loop().create_future()
        self._inflight[entry.id] = future
        try:
            steps = await self._deliver(entry)
            future.set_result(steps)
            return steps
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # nobody may be waiting; mark it retrieved
            raise
        finally:
            del self._inflight[entry.id]

    async def _deliver(self, entry: Entry) -> list[StepOutcome]:
        try:
            steps = await self._attempt(entry)
            error = failure(steps)
        except Exception as exc:  # a bug in a flow must not stop every other order's work
            log.exception("outbox entry %s (%s) failed", entry.id, entry.key)
            steps, error = [], f"{ErrorCode.INTERNAL.value}: {exc}"
        if error is None:
            self._outbox.done(entry.id, steps)
            log.info("outbox entry %s (%s) done", entry.id, entry.key)
            if entry.attempts:
                self._on_done(entry, steps)
            return steps
        self._settle(entry, error, steps)
        return steps

    def _settle(self, entry: Entry, error: str, steps: list[StepOutcome]) -> None:
        code = error.split(":", 1)[0]
        final = code not in RETRYABLE
        if final or self._now() >= entry.deadline:
            reason = error if final else f"{error} (gave up after its deadline)"
            self._outbox.dead(entry.id, reason, steps)
            log.error("outbox entry %s (%s) dead-lettered: %s", entry.id, entry.key, reason)
            self._on_dead(entry, reason)
            return
        delay = self._backoff.delay(entry.attempts)
        self._outbox.retry_later(entry.id, error, delay, steps)
        log.warning("outbox entry %s (%s): %s; retry in %.0f s", entry.id, entry.key, error, delay)
