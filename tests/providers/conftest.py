"""The adapters' tests reach their simulator in-process unless a test asks for loopback HTTP."""

from __future__ import annotations

import pytest

from tests.served import Carrier


@pytest.fixture
def carrier(request: pytest.FixtureRequest) -> Carrier:
    """`in_process`, or what `tests.served.OVER_BOTH` / `OVER_LOOPBACK` parametrize."""
    chosen: Carrier = getattr(request, "param", "in_process")
    return chosen
