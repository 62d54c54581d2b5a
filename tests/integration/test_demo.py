"""`lane-agent demo` (what `make demo` runs): type a code, watch the gift flow on MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

# A bound, not a timing check: a loaded CI machine starts the demo's broker and agent slowly.
DEMO_WAIT = 60.0


class DemoSession:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []

    async def expect(self, text: str) -> str:
        """Read the live view until a line contains `text`; return that line."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(DEMO_WAIT):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"demo exited before {text!r}:\n" + "".join(self.output))
                line = raw.decode()
                self.output.append(line)
                if text in line:
                    return line

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()


@contextlib.asynccontextmanager
async def demo_session(tmp_path: Path, broker: str) -> AsyncIterator[DemoSession]:
    """`lane-agent demo` in its own process group, so a failed test also stops the broker it
    started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--port",
        str(free_port()),
        "--broker",
        broker,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield DemoSession(proc)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
async def test_demo_validates_redeems_and_reverses_a_keyed_voucher(
    tmp_path: Path, broker: str
) -> None:
    async with demo_session(tmp_path, broker) as demo:
        await demo.expect("lane-agent demo: lane lane-agent/demo/1")
        await demo.expect("[state]    agent online")
        await demo.type("100000000001")
        scan = await demo.expect("[scan]     gift_voucher_code")
        assert "100000000001" not in scan and "0001" in scan
        validated = await demo.expect("[event]    gift.validated")
        assert "$50.00 available" in validated and "redeemable" in validated
        await demo.type("redeem 1250")
        redeemed = await demo.expect("[event]    gift.redeemed")
        assert "$37.50 available" in redeemed
        await demo.type("reverse")
        reversed_ = await demo.expect("[event]    gift.reversed")
        assert "$50.00 available" in reversed_
        await demo.type("quit")
        async with asyncio.timeout(DEMO_WAIT):
            assert await demo.proc.wait() == 0
