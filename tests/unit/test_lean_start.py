"""The agent imports only the drivers and providers its config names: a lane reading a named pipe
on the sandbox ledger loads no evdev, pyserial, pyusb, nfcpy, HTTP stack or vendor adapter
(memory and start-up time, BENCHMARKS.md). Each check runs in a fresh interpreter, since this
test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HEAVY = (
    "evdev",
    "serial",
    "usb",
    "nfc",
    "httpx",
    "drivers.keyboard",
    "drivers.keymap",
    "drivers.serial_port",
    "drivers.hidpos",
    "drivers.nfc_reader",
    "agent.providers.giftlocal",
    "agent.providers.kseries",
    "agent.providers.petz",
    "agent.providers.punchh",
    "agent.flows.card",
    "agent.flows.coupons",
    "agent.flows.loyalty",
)


def loaded(code: str) -> set[str]:
    """The HEAVY modules loaded after running `code` in a new interpreter."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps(sorted(set(sys.modules) & {set(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_importing_the_agent_loads_no_driver_or_provider() -> None:
    assert loaded("import agent.app, agent.cli") == set()


def test_a_fifo_lane_on_the_sandbox_loads_only_what_it_runs(tmp_path: Path) -> None:
    config = tmp_path / "lane.toml"
    config.write_text(
        '[lane]\nstore = "s1"\nlane = "l1"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n[providers.sandbox]\n'
        f'[devices.pipe]\ntype = "fifo"\npath = "{tmp_path / "pipe"}"\n'
    )
    build = (
        "from pathlib import Path\nfrom agent.app import LaneAgent\n"
        "from agent.config import load_config\n"
        f"LaneAgent(load_config(Path({str(config)!r})))"
    )
    assert loaded(build) == set()
    # The same lane with a serial scanner and a card provider loads exactly those.
    key = tmp_path / "kseries.key"
    key.write_text("k3y\n")
    with config.open("a") as more:
        more.write(
            '[devices.counter]\ntype = "serial"\nport = "/dev/ttyACM9"\n'
            '[providers.kseries]\nbase_url = "http://127.0.0.1:9"\n'
            f'payment_method_code = "GC"\napi_key_file = "{key}"\n'
        )
    assert loaded(build) == {
        "serial",
        "drivers.serial_port",
        "httpx",
        "agent.providers.kseries",
        "agent.flows.card",
    }
