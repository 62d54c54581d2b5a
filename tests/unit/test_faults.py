"""The test-only fault hook is off by default and, when on, really blocks the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from agent import faults


async def test_off_without_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    loop = asyncio.get_running_loop()
    assert faults.install(loop) is False
    assert loop.remove_signal_handler(faults.BLOCK_LOOP_SIGNAL) is False


def test_sigusr2_blocks_the_loop_when_on() -> None:
    # In a child process, since the hook never returns: a watcher thread looks at the loop
    # thread's stack until it sits in the hook (exit 0), or gives up after 10 s (exit 1). Had
    # the loop gone on, the coroutine would report it (exit 2).
    child = textwrap.dedent(
        """
        import asyncio, os, signal, sys, threading, time
        from agent import faults

        loop_thread = threading.get_ident()

        def watch():
            for _ in range(1000):
                frame = sys._current_frames().get(loop_thread)
                while frame is not None:
                    if frame.f_code is faults._block_loop.__code__:
                        os._exit(0)
                    frame = frame.f_back
                time.sleep(0.01)
            os._exit(1)

        async def main():
            assert faults.install(asyncio.get_running_loop())
            threading.Thread(target=watch, daemon=True).start()
            os.kill(os.getpid(), faults.BLOCK_LOOP_SIGNAL)
            await asyncio.sleep(30)
            os._exit(2)

        asyncio.run(main())
        """
    )
    env = {**os.environ, faults.ENV: "1"}
    result = subprocess.run([sys.executable, "-c", child], env=env, timeout=60, check=False)
    assert result.returncode == 0
