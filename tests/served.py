"""A provider simulator served to a test over loopback HTTP or in-process, behind one shape: the
adapter takes `url` and `transport`, the test reads and arms the simulator through `control`.
Tests run in-process for speed; those that also run over loopback prove the transport faithful.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest

from simulators.server import Simulator, serve
from simulators.transport import BASE_URL, SimulatorTransport

Json = Any
Carrier = Literal["loopback", "in_process"]
CARRIERS: tuple[Carrier, ...] = ("loopback", "in_process")


@dataclass
class Served:
    """Where the adapter under test points, and a client to the simulator's `/_sim/` endpoints."""

    simulator: Simulator
    url: str
    transport: SimulatorTransport | None  # None over loopback: the adapter opens real sockets
    control: httpx.Client

    def ledger(self) -> Json:
        return self.control.get("/_sim/ledger").raise_for_status().json()

    def sent(self, path: str | None = None) -> list[Json]:
        """The API requests the simulator received (on `path`), in order."""
        log: list[Json] = self.control.get("/_sim/requests").raise_for_status().json()
        return [r for r in log if path is None or r["path"] == path]

    def arm(self, **fault: Any) -> None:
        self.control.post("/_sim/faults", json=[fault]).raise_for_status()

    def reset(self) -> None:
        self.control.post("/_sim/reset").raise_for_status()


@contextmanager
def served(simulator: Simulator, carrier: Carrier = "in_process") -> Iterator[Served]:
    if carrier == "loopback":
        with serve(simulator) as running, httpx.Client(base_url=running.url) as control:
            yield Served(simulator, running.url, None, control)
        return
    transport = SimulatorTransport(simulator)
    with httpx.Client(base_url=BASE_URL, transport=transport) as control:
        yield Served(simulator, BASE_URL, transport, control)


# For a test that takes a `carrier` fixture (tests/providers/conftest.py), in-process by default:
# these run it over real loopback HTTP too, or only, as the outer proof.
OVER_BOTH = pytest.mark.parametrize("carrier", CARRIERS, indirect=True)
OVER_LOOPBACK = pytest.mark.parametrize("carrier", ["loopback"], indirect=True)
