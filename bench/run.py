"""`python -m bench`: run the workloads and write BENCHMARKS.md.

    python -m bench all [--quick]     host part, then the VM part (one boot), then the report
    python -m bench host --out F      workloads 4, 5's soak and start-up, and 6 (fleet ls), here
    python -m bench host --only startup   one host workload (or more), kept beside the others
                                      (throughput, profile: its pipeline under py-spy, CPU per
                                      scan by stage; soak; startup; fleet_ls)
    python -m bench vm --out F        inside the VM (scripts/vm-test --bench runs this)
    python -m bench report            BENCHMARKS.md again from the last results

The default counts are the issue's; `--quick` divides them (about ten times shorter) for a check
that everything runs, and BENCHMARKS.md then says it was a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import IN_VM, REPO, mosquitto_version

RESULTS = REPO / "build" / "bench"
DEFAULT_TIMEOUT = 14400  # the VM part: the loss-free ladders take most of it


@dataclass(frozen=True)
class Counts:
    latency: int = 1000
    loss_free: int = 10_000
    loss_free_probe: int = 300
    nfc: int = 30
    idle_s: float = 60.0
    pipeline: int = 20_000
    normaliser: int = 100_000
    soak: int = 100_000
    starts: int = 5
    fleet_ls: int = 5


QUICK = Counts(
    latency=100,
    loss_free=1000,
    loss_free_probe=100,
    nfc=5,
    idle_s=10.0,
    pipeline=2000,
    normaliser=20_000,
    soak=10_000,
    starts=2,
    fleet_ls=2,
)

HOST_WORKLOADS = ("throughput", "profile", "soak", "startup", "fleet_ls")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def step(
    results: dict[str, Any], name: str, work: Callable[[], Any], out: Path | None = None
) -> None:
    """Run one workload; a failure is recorded in the results (and the report), not fatal.
    With `out`, the results so far are written after it, so a run cut short by the VM's
    time limit still reports what it finished."""
    print(f"bench: {name} ...", flush=True)
    started = time.monotonic()
    load = loadavg()
    try:
        results[name] = work()
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results[name]["_wall_s"] = round(time.monotonic() - started, 1)
    results[name]["_loadavg"] = [load, loadavg()]
    print(f"bench: {name} done in {results[name]['_wall_s']} s", flush=True)
    if out is not None:
        write(out, results)


def write(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def host_part(out: Path, counts: Counts, only: list[str] | None = None) -> None:
    """The host workloads; with `only`, just those, written into `out` beside the results of
    the others from an earlier run (the report reads one host.json)."""
    from bench import cost, fleet_ls, profile, startup, throughput

    work = RESULTS / "host-work"
    runs: dict[str, Callable[[], Any]] = {
        "throughput": lambda: throughput.run_workload(work, counts.pipeline, counts.normaliser),
        "profile": lambda: profile.run_workload(work / "profile", counts.pipeline),
        "soak": lambda: cost.soak(work, counts.soak),
        "startup": lambda: startup.run_workload(work / "startup", counts.starts),
        "fleet_ls": lambda: fleet_ls.run_workload(work / "fleet_ls", counts.fleet_ls),
    }
    results: dict[str, Any] = {"counts": asdict(counts)}
    if only and out.exists():
        results = json.loads(out.read_text())
    for name in only or HOST_WORKLOADS:
        step(results, name, runs[name])
    write(out, results)


def vm_part(out: Path, counts: Counts) -> None:
    import tempfile

    from bench import cost, keyboard_latency, loss_free, nfc_latency
    from bench.context import run_context
    from bench.keyboard import Scanner
    from tests.hardware.gadgets import UInputKeyboard

    results: dict[str, Any] = {
        "counts": asdict(counts),
        "guest": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "mem_kib": meminfo_kib(),
            "cpu_model": cpu_model(),
        },
    }
    work = Path(tempfile.mkdtemp(prefix="lane-bench-"))
    realtime(results)
    scanner = Scanner()
    # barcode-server's own keyboard for the idle workload: a grab is exclusive.
    other = UInputKeyboard("Bench Barcode Scanner B", 0x0C2E, 0x0BE1)
    try:
        with run_context(work) as run:
            step(
                results,
                "keyboard_latency",
                lambda: keyboard_latency.run_workload(run, scanner, counts.latency),
                out,
            )
            step(results, "nfc_latency", lambda: nfc_latency.run_workload(run, counts.nfc), out)
            step(
                results,
                "idle",
                lambda: cost.idle(
                    run, scanner.usb_id, "Bench Barcode Scanner B", other.path, counts.idle_s
                ),
                out,
            )
            # The longest (up to an hour with the counts) last.
            step(
                results,
                "loss_free",
                lambda: loss_free.run_workload(
                    run, scanner, counts.loss_free, counts.loss_free_probe
                ),
                out,
            )
    finally:
        scanner.close()
        other.close()
        write(out, results)


def realtime(results: dict[str, Any]) -> None:
    """The bench's typist (its main thread) runs SCHED_FIFO in the VM, so the emulated machine's
    scheduler does not pause it in the middle of a scan; it only sleeps between key reports, so
    it takes no CPU from the daemons. Reset on fork: the daemons, the broker and the bench's
    other threads it starts run under the normal policy."""
    try:
        policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
        os.sched_setscheduler(0, policy, os.sched_param(10))
        results["bench_scheduling"] = "SCHED_FIFO 10"
    except OSError as exc:
        results["bench_scheduling"] = f"default ({exc.strerror})"


def meminfo_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    """Every program and library a number depends on, read from the installed copies."""
    from importlib import metadata

    from bench.daemons import BARCODE_SERVER_BIN, NFC2MQTT_BIN

    found = {
        "lane-agent commit": commit(),
        "python (lane-agent)": platform.python_version(),
        "mosquitto": mosquitto_version(),
    }
    for dist in ("lane-agent", "aiomqtt", "paho-mqtt", "pydantic", "evdev", "nfcpy"):
        found[f"{dist} (lane-agent venv)"] = metadata.version(dist)
    probe = (
        "import importlib.metadata as m, platform, sys, json; "
        "print(json.dumps({'python': platform.python_version(), "
        "**{d: m.version(d) for d in sys.argv[1:]}}))"
    )
    for label, bin_dir, dists in (
        ("barcode-server venv", BARCODE_SERVER_BIN, ("barcode-server", "aiomqtt", "evdev")),
        ("nfc2mqtt venv", NFC2MQTT_BIN, ("nfc2mqtt", "nfcpy", "paho-mqtt", "cryptography")),
    ):
        out = subprocess.run(
            [str(bin_dir / "python"), "-c", probe, *dists],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            for name, version in json.loads(out.stdout).items():
                found[f"{name} ({label})"] = version
        except ValueError:
            found[label] = f"not installed: {out.stderr.strip()[-200:]}"
    return found


def commit() -> str:
    """The commit measured, and whether the work tree differed from it (read-only git)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "agent", "drivers"],
        check=False,
    ).returncode
    return (sha or "unknown") + (" with uncommitted changes to agent/ or drivers/" if dirty else "")


def host_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_kib": meminfo_kib(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg_at_start": loadavg(),
    }


def run_all(counts: Counts, quick: bool, vm_args: list[str], reuse_host: bool = False) -> int:
    from bench.report import OUTPUT, write_report

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"quick": quick, "host": host_info(), "versions": versions()}
    started = time.monotonic()
    host_out = RESULTS / "host.json"
    if not (reuse_host and host_out.exists()):
        host_part(host_out, counts)
    vm_out = RESULTS / "vm.json"
    vm_out.unlink(missing_ok=True)
    env = {**os.environ, "LANE_AGENT_BENCH_OUT": str(vm_out)}
    env.setdefault("LANE_AGENT_VM_TIMEOUT", str(DEFAULT_TIMEOUT))
    argv = [str(REPO / "scripts" / "vm-test"), "--bench", *vm_args]
    if quick:
        argv.append("--quick")
    rc = subprocess.run(argv, env=env, check=False).returncode
    meta["vm_exit_code"] = rc
    meta["wall_s"] = round(time.monotonic() - started)
    meta["host"]["loadavg_at_end"] = loadavg()
    write(RESULTS / "meta.json", meta)
    write_report()
    print(f"bench: wrote {OUTPUT} in {meta['wall_s']} s", flush=True)
    return 0 if rc == 0 else rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", choices=["all", "host", "vm", "report"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="about ten times shorter counts")
    parser.add_argument(
        "--only",
        action="append",
        choices=HOST_WORKLOADS,
        help="host: run only this workload (repeatable); the others' results in --out are kept",
    )
    parser.add_argument(
        "--reuse-host", action="store_true", help="all: keep build/bench/host.json, redo the VM"
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else Counts()
    if args.part == "all":
        return run_all(counts, args.quick, [], args.reuse_host)
    if args.part == "host":
        host_part(args.out or RESULTS / "host.json", counts, args.only)
    elif args.part == "vm":
        if not IN_VM:
            print("bench vm: runs inside the VM; use scripts/vm-test --bench", file=sys.stderr)
            return 2
        vm_part(args.out or RESULTS / "vm.json", counts)
    else:
        from bench.report import write_report

        write_report()
    return 0
