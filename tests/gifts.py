"""What gift provider tests share."""

from __future__ import annotations

from agent.providers.base import GiftStatus, Redemption, Reversal


def after(result: Redemption | Reversal) -> GiftStatus:
    """The gift after a redemption or reversal, which the test's provider always describes."""
    assert result.gift is not None, result
    return result.gift
