"""What every workload shares: a real mosquitto, a timestamping subscriber, /proc readers.

All times are `time.monotonic_ns()` (CLOCK_MONOTONIC), one clock for every process of a machine,
so a keystroke written by the bench and a message received by its subscriber are comparable.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
IN_VM = os.environ.get("LANE_AGENT_VM") == "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_ns() -> int:
    return time.monotonic_ns()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_port() -> int:
    """A free UDP port without a service name (nfcpy's udp driver chokes on named ports)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            number: int = sock.getsockname()[1]
        try:
            socket.getservbyport(number, "udp")
        except OSError:
            return number


def wait_until(check: Callable[[], bool], what: str, timeout: float, step: float = 0.02) -> None:
    """Poll a condition; every wait in the bench is bounded, so a stuck daemon ends the run."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def wait_for_port(port: int, timeout: float) -> None:
    def accepting() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(accepting, f"127.0.0.1:{port}", timeout)


# ------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: always a value that was measured, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(latencies_ns: Sequence[int]) -> dict[str, Any]:
    """Percentiles for the report, and every sample (ms, in the order measured) for its
    pictures (bench/plots.py)."""
    ms = [v / 1e6 for v in latencies_ns]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else math.nan,
        "mean": sum(ms) / len(ms) if ms else math.nan,
        "samples_ms": [round(v, 3) for v in ms],
    }


# ------------------------------------------------------------------------------------ /proc


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def smaps_rss_kib(pid: int) -> dict[str, int]:
    """A live process's resident memory by mapping, from /proc/PID/smaps, in KiB: "anonymous"
    (the heap and every unnamed mapping: Python objects, native allocations, thread stacks) and
    each mapped file by its name (the interpreter, shared libraries, extension modules)."""
    by_name: dict[str, int] = {}
    name = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            path = head[5].strip() if len(head) > 5 else ""
            name = Path(path).name if path.startswith("/") else "anonymous"
        elif head and head[0] == "Rss:":
            by_name[name] = by_name.get(name, 0) + int(head[1])
    return by_name


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own threads included), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --------------------------------------------------------------------------------- broker


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed: run scripts/system-deps.sh test")
    return found


def mosquitto_version() -> str:
    out = subprocess.run(
        [mosquitto_binary(), "-h"], capture_output=True, text=True, check=False
    ).stdout
    return out.splitlines()[0].replace("mosquitto version ", "") if out else "unknown"


@dataclass
class Broker:
    """One mosquitto on loopback that every daemon of a run shares."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 200000\nmax_inflight_messages 100\n"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass(frozen=True, slots=True)
class Received:
    at_ns: int
    topic: str
    payload: bytes


class Subscriber:
    """A POS stand-in that timestamps every message the moment paho's network thread parses it.

    The same subscriber (paho, MQTT v5, QoS 1 subscription) receives from every daemon, so its
    own overhead is the same on both sides of a comparison.
    """

    def __init__(self, port: int, topics: Sequence[str]) -> None:
        self.messages: list[Received] = []
        self._arrived = threading.Condition()
        self._connected = threading.Event()
        self._topics = list(topics)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-sub-{os.getpid()}-{port}",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.connect("127.0.0.1", port, keepalive=60)
        self._client.loop_start()
        if not self._connected.wait(30):
            raise TimeoutError("the bench subscriber could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        result, mid = client.subscribe([(t, 1) for t in self._topics])
        del result, mid
        self._connected.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(now_ns(), message.topic, bytes(message.payload))
        with self._arrived:
            self.messages.append(received)
            self._arrived.notify_all()

    def mark(self) -> int:
        with self._arrived:
            return len(self.messages)

    def wait_for(
        self, match: Callable[[Received], bool], timeout: float, start: int = 0
    ) -> Received | None:
        """First message from index `start` that matches, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._arrived:
            while True:
                while seen < len(self.messages):
                    message = self.messages[seen]
                    seen += 1
                    if match(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._arrived.wait(left)

    def since(self, start: int) -> list[Received]:
        with self._arrived:
            return self.messages[start:]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


# -------------------------------------------------------------------------------- systemd


class NotifySocket:
    """The sd_notify socket systemd would give a Type=notify service; READY=1 is start-up done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with_suppressed_unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait_ready(self, timeout: float) -> int:
        """monotonic_ns when READY=1 arrived."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no READY=1 on the notify socket")
            self.sock.settimeout(left)
            datagram = self.sock.recv(4096)
            if b"READY=1" in datagram.split(b"\n"):
                return now_ns()

    def close(self) -> None:
        self.sock.close()
        with_suppressed_unlink(self.path)


def with_suppressed_unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def ean8(number: int) -> str:
    """An EAN-8 with a correct check digit: lane-agent reads it as a product_gtin whose value is
    published in clear, and every peer passes it through, so scans can be matched one to one."""
    digits = f"{number % 10_000_000:07d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)
