"""What a fresh balance says about a redemption whose answer was lost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.journal import UNKNOWN_BALANCE, Intent, IntentState


def intent(before: int, units: int = 300) -> Intent:
    return Intent("r1", "g1", units, before, IntentState.UNKNOWN, datetime.now(UTC), False, None)


@pytest.mark.parametrize(
    ("before", "balance", "state"),
    [
        (1000, 700, IntentState.APPLIED),
        (1000, 1000, IntentState.FAILED),
        (1000, 400, None),  # something else moved it too: the balance cannot tell
        # A provider that gives no balance: unknown before and after look "unchanged", which
        # must not read as failed (a retry would redeem twice).
        (UNKNOWN_BALANCE, UNKNOWN_BALANCE, None),
        (UNKNOWN_BALANCE, 700, None),
        (1000, UNKNOWN_BALANCE, None),
    ],
)
def test_settle(before: int, balance: int, state: IntentState | None) -> None:
    assert intent(before).settle(balance) is state
