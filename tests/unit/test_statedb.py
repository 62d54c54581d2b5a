"""Versioned state files: fresh and unversioned files reach the current schema without losing a
row, a step runs once, and a file from a newer agent (a downgrade) is refused untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent import orders, requests, statedb
from agent.orders import OrderBook
from agent.requests import ResponseStore


def test_a_fresh_orders_file_gets_the_current_version(tmp_path: Path) -> None:
    book = OrderBook(tmp_path / "orders.sqlite")
    assert statedb.version(book.db) == len(orders.MIGRATIONS)


def test_an_unversioned_requests_file_keeps_its_rows(tmp_path: Path) -> None:
    """What the agents before versioning left: the table without params_digest, version 0."""
    path = tmp_path / "requests.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE responses (request_id TEXT PRIMARY KEY, op TEXT NOT NULL,"
        " answer TEXT NOT NULL, created REAL NOT NULL)"
    )
    db.execute("INSERT INTO responses VALUES ('r1', 'gift.redeem', '{}', strftime('%s','now'))")
    db.commit()
    db.close()
    ResponseStore(path)
    db = sqlite3.connect(path)
    assert statedb.version(db) == len(requests.MIGRATIONS)
    assert db.execute("SELECT request_id, params_digest FROM responses").fetchall() == [
        ("r1", None)
    ]


def test_steps_run_once_in_order(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    ran: list[int] = []
    steps = [lambda _db, n=n: ran.append(n) for n in (1, 2, 3)]
    assert statedb.migrate(db, tmp_path, steps[:2]) == 2
    assert statedb.migrate(db, tmp_path, steps) == 3
    assert statedb.migrate(db, tmp_path, steps) == 3
    assert ran == [1, 2, 3]


def test_a_failing_step_leaves_the_version_and_its_changes_undone(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        statedb.migrate(db, tmp_path, [statedb.script("CREATE TABLE a (x)"), broken])
    assert statedb.version(db) == 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"a"}


def test_state_from_a_newer_agent_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "orders.sqlite"
    OrderBook(path).db.close()
    db = sqlite3.connect(path, isolation_level=None)
    newer = len(orders.MIGRATIONS) + 1
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    with pytest.raises(statedb.NewerStateError, match="written by a newer lane-agent"):
        OrderBook(path)
    db = sqlite3.connect(path)
    assert statedb.version(db) == newer


def test_an_unversioned_orders_file_gets_the_journal_columns(tmp_path: Path) -> None:
    """A redemption journal from before `told`/`redemption`: its rows count as answered."""
    path = tmp_path / "orders.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE gift_intents (request_id TEXT PRIMARY KEY, gift_id TEXT NOT NULL,"
        " units INTEGER NOT NULL, before INTEGER NOT NULL, state TEXT NOT NULL,"
        " created TEXT NOT NULL)"
    )
    db.execute("INSERT INTO gift_intents VALUES ('r1', 'g1', 100, 500, 'applied', '2026-01-01')")
    db.commit()
    db.close()
    book = OrderBook(path)
    assert statedb.version(book.db) == len(orders.MIGRATIONS)
    rows = book.db.execute("SELECT request_id, told, redemption FROM gift_intents").fetchall()
    assert rows == [("r1", 1, None)]
