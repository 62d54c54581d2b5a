"""The daemon's side of Type=notify: READY only once the broker is up, readable STATUS lines,
watchdog pings, STOPPING on shutdown. A real datagram socket stands in for systemd's, speaking
the same sd_notify protocol, with the agent as a real process."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentProcess, Broker, write_config


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(20)
        self.seen: list[str] = []

    def until(self, needle: str) -> str:
        """Receive datagrams until one contains `needle` (socket timeout bounds the wait)."""
        while True:
            datagram = self.sock.recv(4096).decode()
            self.seen.append(datagram)
            if needle in datagram:
                return datagram


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    n = NotifySocket(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def test_ready_waits_for_the_broker_and_watchdog_pings_while_healthy(
    tmp_path: Path, notify: NotifySocket
) -> None:
    broker = Broker(tmp_path)  # not started yet: the lane boots before the store broker
    agent = AgentProcess(write_config(tmp_path / "lane.toml", broker.port), tmp_path / "a.log")
    agent.start(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="200000")
    try:
        waiting = notify.until("unreachable")
        assert f"127.0.0.1:{broker.port}" in waiting and "retry in" in waiting
        notify.until("WATCHDOG=1")  # the bus keeps trying, so the agent counts as healthy
        assert not any("READY=1" in d for d in notify.seen)
        broker.start()
        ready = notify.until("READY=1")
        assert "STATUS=lane-agent/s1/l1 on 127.0.0.1" in ready and "providers: sandbox" in ready
        mark = len(notify.seen)
        notify.until("WATCHDOG=1")
        assert len(notify.seen) > mark
        agent.signal(signal.SIGTERM)
        assert "STATUS=stopping" in notify.until("STOPPING=1")
    finally:
        if agent.process is not None:
            agent.signal(signal.SIGKILL)
        broker.stop()


def test_bad_config_says_why_in_status_and_exits_2(tmp_path: Path, notify: NotifySocket) -> None:
    config = tmp_path / "lane.toml"
    config.write_text('[lane]\nstore = "s1"\nlane = "l1"\n[mqtt]\nport = 0\n')
    agent = AgentProcess(config, tmp_path / "a.log")
    agent.start(NOTIFY_SOCKET=str(notify.path))
    assert agent.process is not None
    assert agent.process.wait(timeout=30) == 2
    agent.process = None
    assert "invalid config" in notify.until("STATUS=")
    assert "mqtt.port: must be 1..65535" in agent.log()
