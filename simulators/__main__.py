"""`python -m simulators NAME`: run one provider simulator until Ctrl+C."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import threading
from pathlib import Path

from simulators import SIMULATORS
from simulators.server import Simulator, serve


def load(name: str) -> Simulator:
    module, _, cls = SIMULATORS[name].partition(":")
    simulator: Simulator = getattr(importlib.import_module(module), cls)()
    return simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators",
        description="Run a provider API simulator on loopback, for integration work without "
        "the provider's sandbox. It checks paths, headers, auth and field names, keeps a "
        "ledger (GET /_sim/ledger), logs requests (GET /_sim/requests) and injects faults "
        "(POST /_sim/faults). Point the agent's [providers.NAME] base_url at it.",
    )
    parser.add_argument("name", choices=sorted(SIMULATORS), help="which API")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--seed", type=Path, help="JSON fixtures to load (as POST /_sim/seed)")
    args = parser.parse_args(argv)
    simulator = load(args.name)
    if args.seed is not None:
        simulator.seed(json.loads(args.seed.read_text(encoding="utf-8")))
    with serve(simulator, args.host, args.port) as running:
        print(f"{args.name} simulator listening on {running.url}", flush=True)
        for line in simulator.usage():
            print(f"  {line}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
