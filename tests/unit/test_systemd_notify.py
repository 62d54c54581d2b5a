"""sd_notify against real AF_UNIX datagram sockets standing in for systemd's notification socket.

Every assertion is on the exact bytes a listening socket received; waits are socket receives
with a timeout, never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import systemd
from agent.systemd import Notifier, run_watchdog, watchdog_interval

RECV_TIMEOUT = 5.0


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a file system path, as systemd's /run/systemd/notify is."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT)
    yield str(path), sock
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to an abstract name, given to the notifier as `@name`."""
    name = f"lane-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT)
    yield "@" + name, sock
    sock.close()


def _recv(sock: socket.socket) -> bytes:
    return sock.recv(8192)


def _assert_queue_empty(sock: socket.socket) -> None:
    # Sends to a local datagram socket are queued before sendto() returns, so an empty queue
    # right after the calls means nothing else was sent.
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(8192)


def test_messages_to_path_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.enabled

    notifier.ready("ready: 2 scanners, broker connected")
    assert _recv(sock) == b"READY=1\nSTATUS=ready: 2 scanners, broker connected"
    notifier.status("waiting for broker 10.0.0.5:1883")
    assert _recv(sock) == b"STATUS=waiting for broker 10.0.0.5:1883"
    notifier.watchdog()
    assert _recv(sock) == b"WATCHDOG=1"
    notifier.stopping("stopping: SIGTERM")
    assert _recv(sock) == b"STOPPING=1\nSTATUS=stopping: SIGTERM"
    _assert_queue_empty(sock)
    notifier.close()


def test_messages_to_abstract_socket(abstract_listener: tuple[str, socket.socket]) -> None:
    name, sock = abstract_listener
    notifier = Notifier(name)
    assert notifier.enabled

    notifier.ready("ready")
    assert _recv(sock) == b"READY=1\nSTATUS=ready"
    notifier.watchdog()
    assert _recv(sock) == b"WATCHDOG=1"
    notifier.close()


def test_socket_taken_from_environment(
    listener: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.enabled
    notifier.status("from env")
    assert _recv(sock) == b"STATUS=from env"
    notifier.close()


def test_status_is_one_line(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    notifier.status("broker down\nretrying in 2 s\r\n\nscanner ok\0")
    assert _recv(sock) == b"STATUS=broker down | retrying in 2 s | scanner ok"
    notifier.ready("a\nb")
    assert _recv(sock) == b"READY=1\nSTATUS=a | b"
    notifier.close()


def test_long_status_is_truncated_to_fit_systemds_buffer(
    listener: tuple[str, socket.socket],
) -> None:
    path, sock = listener
    notifier = Notifier(path)
    notifier.stopping("é" * 5000)
    data = _recv(sock)
    assert data.startswith("STOPPING=1\nSTATUS=éé".encode())
    assert data.endswith("…".encode())
    status = data.removeprefix(b"STOPPING=1\nSTATUS=")
    assert len(status) <= systemd.STATUS_MAX_BYTES
    status.decode("utf-8")  # cut on a character boundary
    notifier.close()


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("ready")
    notifier.status("status")
    notifier.watchdog()
    notifier.stopping("stopping")
    assert notifier._sock is None  # never even opened a socket
    assert not Notifier(None).enabled


def test_empty_or_unsupported_socket_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert not Notifier().enabled
    assert not Notifier("vsock:2:1234").enabled
    assert not Notifier("relative/path").enabled


def test_send_errors_are_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="agent.systemd"):
        notifier.ready("ready")
        notifier.watchdog()
    failures = [r for r in caplog.records if "sending" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.levelno == logging.DEBUG for r in failures)
    notifier.close()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("1000", None, 0.0005),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("", None, None),
        ("30000000", "not-a-pid", None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    elif pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    else:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert watchdog_interval() == expected


class _ScriptedHealth:
    """Answers health checks from a script; after it, stays unhealthy and signals `done`.

    Staying unhealthy once withheld sends nothing more, so the datagrams received are exactly
    those the script produced, however many extra checks run before the task is cancelled.
    """

    def __init__(self, script: list[bool | Exception]) -> None:
        self._script = list(script)
        self.done = asyncio.Event()

    def __call__(self) -> bool:
        if not self._script:
            self.done.set()
            return False
        answer = self._script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _watch(
    notifier: Notifier, health: _ScriptedHealth, sock: socket.socket, count: int
) -> list[bytes]:
    """Run the watchdog until `count` datagrams arrived and the script ran out; return them."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    task = asyncio.create_task(run_watchdog(notifier, health, 0.01))
    try:
        received = [
            await asyncio.wait_for(loop.sock_recv(sock, 8192), RECV_TIMEOUT) for _ in range(count)
        ]
        await asyncio.wait_for(health.done.wait(), RECV_TIMEOUT)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return received


async def test_watchdog_pings_while_healthy_and_withholds_while_unhealthy(
    listener: tuple[str, socket.socket],
) -> None:
    path, sock = listener
    notifier = Notifier(path)
    health = _ScriptedHealth([True, True, False, False, False, True, True, False])
    withheld = b"STATUS=watchdog withheld: unhealthy"

    received = await _watch(notifier, health, sock, 6)

    assert received == [
        b"WATCHDOG=1",
        b"WATCHDOG=1",
        withheld,  # once, although three checks in a row failed
        b"WATCHDOG=1",  # resumed
        b"WATCHDOG=1",
        withheld,  # a new unhealthy spell says so again
    ]
    _assert_queue_empty(sock)
    notifier.close()


async def test_watchdog_health_check_that_raises_counts_as_unhealthy(
    listener: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = listener
    notifier = Notifier(path)
    health = _ScriptedHealth([True, RuntimeError("scanner loop gone"), True])

    received = await _watch(notifier, health, sock, 4)

    assert received == [
        b"WATCHDOG=1",
        b"STATUS=watchdog withheld: unhealthy",
        b"WATCHDOG=1",
        b"STATUS=watchdog withheld: unhealthy",
    ]
    assert any("health check raised" in r.getMessage() for r in caplog.records)
    _assert_queue_empty(sock)
    notifier.close()


async def test_watchdog_without_systemd_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    health = _ScriptedHealth([True, False, True])
    task = asyncio.create_task(run_watchdog(Notifier(), health, 0.01))
    await asyncio.wait_for(health.done.wait(), RECV_TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
