"""Versioned SQLite state: each database file of the state directory carries the number of
schema steps applied to it (`PRAGMA user_version`), so a package upgrade can migrate it and an
older agent can refuse state it does not understand instead of misreading money records.

A store lists its steps in order, oldest first, and never edits or removes one that shipped: a
schema change is a new step at the end. The first step of each store creates what the
unversioned agents created with `CREATE TABLE IF NOT EXISTS`, and every step is written to be
safe on a file an unversioned agent left behind (version 0 with the tables already there).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.errors import ErrorCode, LaneError

Step = Callable[[sqlite3.Connection], None]


class NewerStateError(LaneError):
    """The state was written by a newer agent (a downgrade): refuse rather than misread it."""


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path, steps: Sequence[Step]) -> int:
    """Apply the steps `db` lacks, each in its own transaction with its version bump; return
    the version. A file from a newer agent raises NewerStateError and is left untouched."""
    have = version(db)
    if have > len(steps):
        raise NewerStateError(
            ErrorCode.NOT_CONFIGURED,
            f"{path} has state schema version {have}, written by a newer lane-agent; this one "
            f"knows up to version {len(steps)}. Install the newer package again, or move the "
            "state directory away to start empty (open orders and queued work would be lost)",
        )
    for number, step in enumerate(steps[have:], start=have + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(steps)


def script(sql: str) -> Step:
    """A step made of SQL statements (without a transaction of their own)."""
    statements = [s.strip() for s in sql.split(";") if s.strip()]

    def run(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    run.__doc__ = sql
    return run
