"""`make fuzz`: the hostile-input properties of the test suite, run for minutes instead of seconds.

    python -m tests.fuzz [TARGET ...]      FUZZ_SECONDS=120 (in all, shared between the targets)

Each target is a hypothesis property marked `@fuzz_target` (tests/fuzzing.py): the normaliser,
the HID-POS report decoder, the MQTT request decoder with the real handlers, and the scan
pipeline. Each gets an equal share of FUZZ_SECONDS, in hypothesis runs of CHUNK inputs with
fresh random seeds (a run is not started when it would end past the target's share), and prints
how many inputs it tried. A failure prints hypothesis' falsifying (shrunk) example and a
`@reproduce_failure` line; the exit status is 1 when any target failed.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import traceback

import hypothesis
from hypothesis import HealthCheck, Phase, settings

from tests import fuzzing

MODULES = (
    "tests.unit.test_normalise_properties",
    "tests.unit.test_hidpos_report",
    "tests.unit.test_requests",
    "tests.unit.test_scans",
)
CHUNK = 500


def main(argv: list[str]) -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "120"))
    # Warnings (a full MQTT queue that nothing drains, a rejected scan) are expected here; what
    # the agent logs at ERROR still reaches the targets that check for it.
    logging.basicConfig(level=logging.ERROR)
    fuzzing.FUZZING = settings(
        max_examples=CHUNK,
        deadline=None,
        derandomize=False,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    for module in MODULES:
        importlib.import_module(module)
    targets = {n: t for n, t in fuzzing.TARGETS.items() if not argv or any(a in n for a in argv)}
    if not targets:
        print(f"no target matches {argv}; targets: {', '.join(fuzzing.TARGETS)}")
        return 2
    share = seconds / len(targets)
    print(
        f"fuzzing {len(targets)} targets for {seconds:g} s ({share:.0f} s each), "
        f"hypothesis {hypothesis.__version__}",
        flush=True,
    )
    failed: list[str] = []
    total = 0
    begin = time.monotonic()
    for number, (name, target) in enumerate(targets.items(), start=1):
        started = time.monotonic()
        deadline = begin + share * number  # time a target leaves unused goes to the next ones
        error: BaseException | None = None
        runs = 0
        while True:
            now = time.monotonic()
            per_run = (now - started) / runs if runs else 0.0
            if runs and now + per_run > deadline:
                break
            runs += 1
            try:
                target()
            except Exception as exc:
                error = exc
                break
        elapsed = time.monotonic() - started
        tried = fuzzing.TRIED[name]
        total += tried
        if error is None:
            print(f"{name}: {tried} inputs in {elapsed:.1f} s, no failure", flush=True)
        else:
            failed.append(name)
            traceback.print_exception(error, file=sys.stdout)
            print(f"{name}: FAILED after {tried} inputs in {elapsed:.1f} s (above)", flush=True)
    outcome = f"{len(failed)} failed: {', '.join(failed)}" if failed else "no failure"
    print(f"{total} inputs in all in {time.monotonic() - begin:.0f} s; {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
