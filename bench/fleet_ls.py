"""Workload 6 on the host: `lane-agent fleet ls` over 2,000 lanes (issue 16's scale figure).

One mosquitto holds the retained `info` and `state` of 100 stores of 20 simulated lanes, what
2,000 agents keep on a central broker (tests/fleet_lanes.py, the fleet-scale test's own fleet).
Then, `runs` times: the operator's command as a process, `lane-agent fleet --config central.toml
ls --json`, timed from fork to exit and checked to list every lane online with its fields; and,
for where that time goes, the same listing in this process with the command's own code
(agent/fleet.py): connecting, the last retained message arriving, the quiet wait that ends the
listing (MQTT has no end-of-retained marker), building the rows. Also the broker's memory before
and after it holds the fleet. No peer has a fleet view to compare with.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import MqttSettings
from agent.fleet import Central, list_lanes
from bench.common import REPO, Broker, rss_kib
from bench.startup import commit, spread
from tests.fleet_lanes import LANES, STORES, VERSION, publish, retained

if TYPE_CHECKING:
    from bench.report import Line

WAIT = 1.0  # `fleet ls --wait`'s default: the quiet period that ends the listing
STEPS = ("connect_s", "last_message_s", "rows_s")


def run_workload(workdir: Path, runs: int) -> dict[str, Any]:
    broker = Broker(workdir / "fleet-broker")
    broker.start()
    assert broker.process is not None
    try:
        empty_kib = rss_kib(broker.process.pid)
        messages = retained()
        began = time.monotonic()
        asyncio.run(publish(broker.port, messages))
        published_s = time.monotonic() - began
        central = workdir / "central.toml"
        central.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
        command: list[float] = []
        steps: dict[str, list[float]] = {step: [] for step in STEPS}
        for _ in range(runs):
            command.append(fleet_ls(central))
            for step, seconds in asyncio.run(listing(broker.port)).items():
                steps[step].append(seconds)
        return {
            "runs": runs,
            "stores": STORES,
            "lanes": STORES * LANES,
            "retained_messages": len(messages),
            "retained_bytes": sum(len(payload) for _, payload in messages),
            "published_s": round(published_s, 2),
            "command_s": spread(command) | {"each": command},
            "steps": {step: spread(values) for step, values in steps.items()},
            "wait_s": WAIT,
            "broker_rss_kib": {"empty": empty_kib, "holding": rss_kib(broker.process.pid)},
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "commit": commit(),
        }
    finally:
        broker.stop()


def fleet_ls(central: Path) -> float:
    """Seconds from fork to exit of `lane-agent fleet ls --json`; it must list every lane."""
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "fleet", "--config", str(central), "ls", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    took = time.monotonic() - began
    if out.returncode != 0:
        raise RuntimeError(f"fleet ls failed ({out.returncode}): {out.stderr[-500:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    listed = {(r["state"], r["version"], r["health"], r["outbox_pending"]) for r in rows}
    if len(rows) != STORES * LANES or listed != {("online", VERSION, "ok", 0)}:
        raise RuntimeError(f"fleet ls listed {len(rows)} lanes: {sorted(listed)[:3]}")
    return round(took, 3)


async def listing(port: int) -> dict[str, float]:
    """What one listing spends, step by step, in the command's own code."""
    began = time.monotonic()
    async with Central.connect(MqttSettings(host="127.0.0.1", port=port)) as central:
        connected = time.monotonic()
        rows = await list_lanes(central, None, WAIT)
        listed = time.monotonic()
    if len(rows) != STORES * LANES:
        raise RuntimeError(f"the listing had {len(rows)} lanes")
    # The quiet period ends WAIT s after the last message, by construction; then the rows.
    return {
        "connect_s": round(connected - began, 3),
        "last_message_s": round(central.last_arrival - connected, 3),
        "rows_s": round(listed - central.last_arrival - WAIT, 3),
    }


# ------------------------------------------------------------------------------ the report

PEER = "no peer has a fleet view"

METHOD = """- **6. `fleet ls` over 2,000 lanes** (host): one mosquitto holds the retained `info` and
  `state` of 100 stores of 20 simulated lanes (4,000 retained messages, each lane healthy with
  two devices and two providers: `tests/fleet_lanes.py`, the fleet-scale test's own), published
  once. Then, each run, the operator's command as a process, `lane-agent fleet --config
  central.toml ls --json`, from fork to exit (Python start-up and imports included), checked to
  list all 2,000 lanes online with their version, health and outbox; and the same listing in the
  bench's process with the command's code, step by step. A listing ends after a quiet period
  (`--wait`, 1 s by default), because MQTT has no end-of-retained-messages marker. The broker's
  VmRSS empty and holding the fleet. barcode-server and nfc2mqtt each serve one device and
  publish no inventory: there is no peer figure.
"""


def summary_line(host: dict[str, Any]) -> Line:
    from bench.report import Line, get

    median = get(host, "fleet_ls", "command_s", "median")
    return Line("fleet_ls", "6. `fleet ls`, 2,000 lanes (host)", PEER, median, None, "s", True)


def details(host: dict[str, Any]) -> str:
    from bench.report import error_of, kib_mib, num, table

    section = host.get("fleet_ls")
    if not section:
        return ""
    heading = "### 6. `fleet ls` over 2,000 lanes (host)\n\n"
    if "error" in section:
        return heading + error_of(section)
    command, steps = section["command_s"], section["steps"]
    names = {
        "connect_s": "connected to the broker (TCP, MQTT CONNECT)",
        "last_message_s": f"subscribed; the last of the {num(section['retained_messages'])} "
        "retained messages in",
        "rows_s": f"after the quiet period, {num(section['lanes'])} rows built from them",
    }
    rows = [["`fleet ls --json`, fork to exit (what the operator waits)", *spread3(command, 2)]]
    rows += [[f"of which: {names[step]}", *spread3(steps[step], 3)] for step in STEPS[:2]]
    wait = num(section["wait_s"], 3)
    rows.append(["of which: the quiet period after it (`--wait`, a setting)", wait, wait, wait])
    rows.append([f"of which: {names['rows_s']}", *spread3(steps["rows_s"], 3)])
    beyond = command["median"] - section["wait_s"] - sum(steps[s]["median"] for s in STEPS)
    rss = section["broker_rss_kib"]
    load = section.get("_loadavg") or [None, None]
    size = num(section["retained_bytes"] / 1e6, 1)
    return (
        f"{heading}{num(section['lanes'])} lanes in {num(section['stores'])} stores, "
        f"{num(section['retained_messages'])} retained messages, {size} MB, published in "
        f"{num(section['published_s'], 1)} s; {section['runs']} runs, {section.get('date')}, "
        f"lane-agent commit {section.get('commit')}, load average {load[0]} at the start, "
        f"{load[1]} at the end (`python -m bench host --only fleet_ls` runs it alone):\n\n"
        + table(["", "median s", "lowest s", "highest s"], rows)
        + f"\n\nThe command's time beyond those steps ({num(beyond, 2)} s at the median) is the "
        "interpreter starting, importing agent/fleet.py's dependencies and printing the rows. "
        f"mosquitto's VmRSS: {num(kib_mib(rss['empty']))} MiB empty, "
        f"{num(kib_mib(rss['holding']))} MiB holding the fleet's retained messages. "
        f"{PEER.capitalize()} (barcode-server and nfc2mqtt serve one device each and publish no "
        "inventory), so the summary's verdict for this line is n/a."
    )


def spread3(values: dict[str, float], digits: int) -> list[str]:
    from bench.report import num

    return [num(values[key], digits) for key in ("median", "min", "max")]
