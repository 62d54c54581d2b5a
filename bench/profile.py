"""Where the throughput pipeline's CPU goes, stage by stage: a sampling profile of workload 4.

    python -m bench host --only profile     (part of `make bench`'s host part)

Runs workload 4's pipeline (bench/throughput.py: the real daemon pinned to one CPU, fed the demo
voucher through its named pipe) with py-spy (from the bench tooling, `pip install '.[bench]'`)
attached to the lane-agent for the measured part only. Each sample goes to the stage of the
innermost frame that names one (STAGES, first match wins within a frame), or to "event loop and
the rest"; a stage's share of the samples times the agent's CPU seconds per validated scan is
its cost in µs of CPU per scan. py-spy's collapsed stacks are kept in the work directory
(profile.txt) for a closer look.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE_HZ = 250
REST = "event loop and the rest"

# (stage, frame substrings): a frame is "function (path/file.py)" with the line number dropped.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("log lines", ("(logging/",)),
    ("normalise", ("Normaliser.normalise",)),
    ("token vault, mask", ("TokenVault.", "(agent/tokens.py)")),
    ("device record (counters)", ("DeviceRegistry.",)),
    (
        "serialise and queue a message (Bus.publish)",
        ("Bus.publish", "Bus.set_retained", "Bus.retain", "Bus._enqueue"),
    ),
    ("MQTT out and acks (aiomqtt, paho)", ("Bus._", "(aiomqtt/", "(paho/")),
    ("thread hand-off (to_thread, worker)", ("to_thread", "(concurrent/", "(threading.py)")),
    ("open-order lookup", ("OrderBook.current",)),
    ("sandbox ledger (its SQLite query)", ("(agent/providers/sandbox.py)",)),
    ("validate and its event (GiftFlow.on_scan)", ("GiftFlow.on_scan",)),
    ("scan message (ScanPipeline)", ("ScanPipeline.",)),
    ("read the named pipe (fifo driver, supervisor)", ("FifoScanner.", "Supervisor.")),
)

_LINE_NUMBER = re.compile(r":\d+\)$")


def stage_of(stack: list[str]) -> str:
    """The stage of one sample: its innermost frame that matches a stage."""
    for frame in reversed(stack):
        name = _LINE_NUMBER.sub(")", frame)
        for stage, marks in STAGES:
            if any(mark in name for mark in marks):
                return stage
    return REST


def attribute(collapsed: Iterable[str]) -> Counter[str]:
    """Samples per stage from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    samples: Counter[str] = Counter()
    for line in collapsed:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            samples[stage_of(stack.split(";"))] += int(count)
    return samples


def per_scan_us(samples: Counter[str], cpu_us_per_scan: float) -> dict[str, float]:
    """Each stage's µs of CPU per scan, largest first."""
    total = sum(samples.values())
    return {
        stage: round(count / total * cpu_us_per_scan, 1) for stage, count in samples.most_common()
    }


@contextlib.contextmanager
def sampling(pid: int, out: Path, rate: int = RATE_HZ) -> Iterator[None]:
    """py-spy sampling `pid` (all its threads) while the block runs; collapsed stacks to `out`."""
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        _, err = spy.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def run_workload(workdir: Path, count: int, rate: int = RATE_HZ) -> dict[str, Any]:
    from bench.throughput import pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    stacks = workdir / "profile.txt"
    stacks.unlink(missing_ok=True)
    measured = pipeline(workdir, count, profile=lambda pid: sampling(pid, stacks, rate))
    samples = attribute(stacks.read_text().splitlines())
    cpu_us = measured["agent_cpu_s"] * 1e6 / measured["scans"]
    stages = per_scan_us(samples, cpu_us)
    for stage, us in stages.items():
        print(f"bench: profile {us:8.1f} µs  {stage}", flush=True)
    from bench.run import commit

    return {
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "pipeline": measured,
        "samples": sum(samples.values()),
        "rate_hz": rate,
        "stacks": str(stacks),
        "us_per_scan": stages,
    }
