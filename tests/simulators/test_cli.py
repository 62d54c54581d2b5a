"""`python -m simulators NAME`, the command integrators run: it says where it listens and what
credentials and test data it has, and serves the API and its control endpoints there."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from simulators import SIMULATORS
from tests.conftest import REPO


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_each_simulator_runs_from_the_command_line(name: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators", name],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"{name} simulator listening on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[1].strip()
        usage = process.stdout.readline()
        assert usage.startswith("  ") and usage.strip(), "usage lines name the credentials"
        answer = httpx.get(f"{url}/_sim/ledger", timeout=10)
        assert answer.status_code == 200 and answer.json()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_help_says_what_it_is_for() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulators", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ledger" in out and "faults" in out and "giftlocal" in out
