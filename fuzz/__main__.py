"""`make fuzz`: every target under atheris (libFuzzer) for FUZZ_RUNS inputs each.

    python -m fuzz [TARGET ...]        FUZZ_RUNS=1000000 (inputs per target), FUZZ_JOBS=CPUs

Each target runs in its own process (`python -m fuzz.run`), FUZZ_JOBS of them at a time (by
default as many as the machine has CPUs). libFuzzer starts from the seed corpus in
`fuzz/corpus/TARGET/` and from what earlier runs found, kept in `build/fuzz/TARGET/corpus/` (where
it writes the inputs that reach new code; the seed corpus is only read). Its log is
`build/fuzz/TARGET/log`. Per target this prints the inputs run, the time (wall clock, and CPU,
which other load on the machine does not inflate) and the coverage. An input that fails a
property is saved as `build/fuzz/TARGET/crash-<sha1>` and printed with its traceback and the
command that replays it; the exit status is then 1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fuzz.targets import DICTIONARIES, MAX_LENGTHS, TARGETS

SEEDS = Path(__file__).parent / "corpus"
WORK = Path("build/fuzz")
TIMEOUT = 10
"""Seconds one input may take before libFuzzer reports it as a hang (and saves it)."""


@dataclass(frozen=True)
class Outcome:
    name: str
    status: int
    runs: int
    seconds: float
    cpu_seconds: float
    coverage: str
    log: Path
    failure: str
    artifacts: list[str]


def run(name: str, runs: int) -> Outcome:
    work = WORK / name
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    log = work / "log"
    command = [
        sys.executable,
        "-m",
        "fuzz.run",
        name,
        f"-runs={runs}",
        f"-max_len={MAX_LENGTHS[name]}",
        f"-timeout={TIMEOUT}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        str(corpus),
        str(SEEDS / name),
    ]
    if name in DICTIONARIES:
        dictionary = work / "dictionary"
        dictionary.write_text("".join(f"{_quoted(word)}\n" for word in DICTIONARIES[name]))
        command.insert(-2, f"-dict={dictionary}")
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, wait_status, usage = os.wait4(process.pid, 0)  # this child's own CPU time
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    executed = re.search(r"stat::number_of_executed_units: (\d+)", text)
    coverage = re.findall(r"\bcov: (\d+) ft: (\d+)", text)
    failure = re.search(
        r"=== Uncaught Python exception: ===\n(.*?)\n(?:==\d+== ERROR|$)", text, re.S
    )
    return Outcome(
        name=name,
        status=os.waitstatus_to_exitcode(wait_status),
        runs=int(executed[1]) if executed else 0,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        coverage=f"{coverage[-1][0]} edges, {coverage[-1][1]} features" if coverage else "-",
        log=log,
        failure=failure[1] if failure else "",
        artifacts=re.findall(r"Test unit written to (\S+)", text),
    )


def _quoted(word: bytes) -> str:
    """A libFuzzer dictionary entry: printable ASCII as itself, the rest as \\xNN."""
    return (
        '"'
        + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}" for b in word)
        + '"'
    )


def report(outcome: Outcome) -> None:
    rate = outcome.runs / outcome.cpu_seconds if outcome.cpu_seconds else 0.0
    head = (
        f"{outcome.name}: {outcome.runs:,} inputs in {outcome.seconds:.0f} s "
        f"({outcome.cpu_seconds:.0f} s of CPU, {rate:,.0f}/s), coverage {outcome.coverage}"
    )
    if outcome.status == 0:
        print(f"{head}; no failure", flush=True)
        return
    print(f"{head}; FAILED (exit status {outcome.status}, log {outcome.log})")
    print(outcome.failure or "(no Python traceback: see the log)")
    for artifact in outcome.artifacts:
        print(f"failing input saved as {artifact}; replay: ", end="")
        print(f"{sys.executable} -m fuzz.run {outcome.name} {artifact}")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    runs = int(os.environ.get("FUZZ_RUNS", "1000000"))
    jobs = int(os.environ.get("FUZZ_JOBS", "0")) or os.cpu_count() or 1
    names = [n for n in TARGETS if not argv or any(a in n for a in argv)]
    if not names:
        print(f"no target matches {argv}; targets: {', '.join(TARGETS)}")
        return 2
    print(
        f"fuzzing {', '.join(names)}: {runs:,} inputs each, {jobs} at a time "
        f"(logs in {WORK}/TARGET/log)",
        flush=True,
    )
    begin = time.monotonic()
    outcomes = []
    with ThreadPoolExecutor(jobs) as pool:
        for outcome in pool.map(lambda name: run(name, runs), names):
            report(outcome)
            outcomes.append(outcome)
    failed = [o.name for o in outcomes if o.status != 0 or o.runs < runs]
    summary = f"{len(failed)} failed: {', '.join(failed)}" if failed else "no failure"
    total = sum(o.runs for o in outcomes)
    print(f"{total:,} inputs in all in {time.monotonic() - begin:.0f} s; {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
