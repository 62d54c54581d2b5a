"""Fixtures for the broker security tests: a throwaway CA, mosquitto started from the documented
config and ACL (docs/security/), clients that log in as lanes and POS screens, and agents."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentProcess
from tests.integration.secure_broker import Clients, Pki, SecureBroker, lane_passwords


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def secure_broker(tmp_path: Path, pki: Pki) -> Iterator[SecureBroker]:
    """The documented set-up: lanes on TLS with user and password, POS screens on wss."""
    broker = SecureBroker(tmp_path / "broker", pki, lane_passwords())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def clients(secure_broker: SecureBroker) -> AsyncIterator[Clients]:
    made = Clients(secure_broker)
    yield made
    await made.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[Path], AgentProcess]]:
    """`agents(config)`: an agent process (not started); every one is killed at teardown."""
    made: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        made.append(AgentProcess(config, tmp_path / f"agent{len(made)}.log"))
        return made[-1]

    yield make
    for proc in made:
        if proc.process is not None:
            proc.signal(signal.SIGKILL)
