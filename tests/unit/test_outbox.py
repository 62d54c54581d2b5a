"""The outbox's store and delivery rules, on a real SQLite file with a controlled clock; the
work itself is a plain function standing in for a flow's provider calls."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.contract import StepOutcome
from agent.errors import ErrorCode, LaneError
from agent.flows.orders import outcome
from agent.outbox import Backoff, Entry, EntryState, Outbox, OutboxWorker

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Work:
    """Answers per flow, in order; records what was attempted."""

    def __init__(self, **answers: list[str | None]) -> None:
        self.answers = answers
        self.attempted: list[str] = []

    async def __call__(self, entry: Entry) -> list[StepOutcome]:
        self.attempted.append(entry.key)
        queue = self.answers.get(entry.flow, [])
        answer = queue.pop(0) if queue else None
        if answer is None:
            return [outcome(entry.flow, "sim", "step", "done")]
        code, message = answer.split(": ", 1)
        return [outcome(entry.flow, "sim", "step", "step", LaneError(ErrorCode(code), message))]


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Outbox:
    return Outbox(connect(tmp_path / "orders.sqlite"), keep_for=timedelta(hours=1), now=clock)


def worker(outbox: Outbox, work: Work, clock: Clock, dead: list[str]) -> OutboxWorker:
    return OutboxWorker(
        outbox,
        work,
        on_dead=lambda entry, why: dead.append(f"{entry.key} {why}"),
        backoff=Backoff(base=10, cap=100),
        now=clock,
    )


def test_writing_the_same_work_twice_keeps_one_entry_in_order(outbox: Outbox) -> None:
    outbox.add("A1", ["coupons", "loyalty"], "paid")
    outbox.add("A1", ["coupons", "loyalty"], "paid")
    assert [e.key for e in outbox.entries()] == ["A1:coupons:paid", "A1:loyalty:paid"]


async def test_one_orders_entries_go_in_sequence_orders_side_by_side(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add("A1", ["coupons", "loyalty"], "paid")
    outbox.add("B2", ["loyalty"], "void")
    work = Work()
    run = worker(outbox, work, clock, [])
    assert await run.run_once() == 2
    assert work.attempted == ["A1:coupons:paid", "B2:loyalty:void"]
    await run.run_once()
    assert work.attempted[-1] == "A1:loyalty:paid"
    assert {e.state for e in outbox.entries()} == {EntryState.DONE}


async def test_a_failing_entry_holds_back_the_rest_of_its_order_and_is_retried_later(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add("A1", ["loyalty", "coupons"], "paid")
    work = Work(loyalty=["provider_unavailable: Punchh cannot be reached"])
    run = worker(outbox, work, clock, [])
    await run.run_once()
    entry = outbox.entries()[0]
    assert (entry.state, entry.attempts) == (EntryState.PENDING, 1)
    assert entry.last_error == "provider_unavailable: step: Punchh cannot be reached"
    assert 5 <= (entry.next_at - clock.now).total_seconds() <= 10  # base 10, jittered
    assert await run.run_once() == 0  # not due yet; and coupons waits behind it
    # The worker sleeps until the entry holding the order back is due, not until coupons' time.
    assert outbox.next_wakeup() == entry.next_at
    clock.advance(10)
    await run.run_once()
    await run.run_once()
    assert work.attempted == ["A1:loyalty:paid", "A1:loyalty:paid", "A1:coupons:paid"]


async def test_an_error_no_retry_can_fix_is_dead_lettered_at_once(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add("A1", ["coupons"], "paid")
    dead: list[str] = []
    await worker(
        outbox, Work(coupons=["not_redeemable: authorization released"]), clock, dead
    ).run_once()
    assert dead == ["A1:coupons:paid not_redeemable: step: authorization released"]
    assert outbox.entries(EntryState.DEAD)[0].attempts == 1


async def test_an_entry_still_failing_after_its_deadline_is_dead_lettered(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add("A1", ["loyalty"], "paid")
    dead: list[str] = []
    failing = Work(loyalty=["provider_unavailable: down"] * 100)
    run = worker(outbox, failing, clock, dead)
    while not dead:
        await run.run_once()
        clock.advance(100)
    assert clock.now - T0 >= timedelta(hours=1)
    assert "gave up after its deadline" in dead[0]


async def test_a_bug_in_a_flow_is_retried_not_fatal(outbox: Outbox, clock: Clock) -> None:
    outbox.add("A1", ["loyalty"], "paid")

    async def broken(entry: Entry) -> list[StepOutcome]:
        raise RuntimeError("boom")

    await OutboxWorker(outbox, broken, on_dead=lambda e, w: None, now=clock).run_once()
    entry = outbox.entries()[0]
    assert entry.state is EntryState.PENDING and entry.last_error == "internal: boom"


async def test_retry_now_revives_a_dead_entry_and_drop_removes_it(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add("A1", ["coupons"], "paid")
    await worker(outbox, Work(coupons=["not_found: no such auth"]), clock, []).run_once()
    [entry] = outbox.entries(EntryState.DEAD)
    assert outbox.retry_now(entry.id)
    assert [e.key for e in outbox.due()] == ["A1:coupons:paid"]
    assert outbox.drop(entry.id) and outbox.entries() == []
    assert not outbox.retry_now(entry.id)


def test_entries_survive_the_process(tmp_path: Path, clock: Clock) -> None:
    """Written before the first attempt: a kill -9 right after leaves the work on disk."""
    first = connect(tmp_path / "orders.sqlite")
    Outbox(first, now=clock).add("A1", ["loyalty"], "paid")
    first.close()
    again = Outbox(connect(tmp_path / "orders.sqlite"), now=clock)
    assert [e.key for e in again.due()] == ["A1:loyalty:paid"]


@given(attempts=st.integers(0, 10_000), rand=st.floats(0, 1))
def test_backoff_grows_is_capped_and_jittered(attempts: int, rand: float) -> None:
    backoff = Backoff(base=2, cap=600)
    delay = backoff.delay(attempts, lambda: rand)
    ceiling = min(600, 2 * 2**attempts)
    assert ceiling / 2 <= delay <= ceiling
