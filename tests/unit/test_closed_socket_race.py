"""The loop exception handler the daemon installs for aiomqtt's socket-watch race, on a real
event loop and a real closed socket."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from agent.bus import ignore_closed_socket_race


def closed_fd() -> int:
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    return fd


async def run_soon(callback: object, *args: object) -> None:
    loop = asyncio.get_running_loop()
    loop.call_soon(callback, *args)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # one loop pass runs the scheduled callback
    await asyncio.sleep(0)


async def test_watching_a_socket_closed_meanwhile_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    ignore_closed_socket_race(loop)
    caplog.set_level(logging.DEBUG)
    await run_soon(loop.add_writer, closed_fd(), lambda: None)
    await run_soon(loop.add_reader, closed_fd(), lambda: None)
    assert [r.levelno for r in caplog.records if r.name == "asyncio"] == []
    assert [r.getMessage() for r in caplog.records if r.name == "agent.bus"] == [
        "MQTT socket closed before the loop could watch it; reconnecting"
    ] * 2


async def test_other_callback_errors_still_reach_the_default_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    ignore_closed_socket_race(loop)

    def broken() -> None:
        raise OSError(9, "a bad descriptor somewhere else")

    await run_soon(broken)
    errors = [r for r in caplog.records if r.name == "asyncio" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "a bad descriptor somewhere else" in str(errors[0].exc_info[1])
