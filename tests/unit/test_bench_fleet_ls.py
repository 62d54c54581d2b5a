"""BENCHMARKS.md's `fleet ls` lines (bench/fleet_ls.py): from a result shaped like the workload's,
the summary line has no peer and says so, and the section splits the command's time into its
steps; a failed run is reported as failed; no run, no section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import write_report


def spread(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high}


FLEET_LS: dict[str, Any] = {
    "runs": 3,
    "stores": 100,
    "lanes": 2000,
    "retained_messages": 4000,
    "retained_bytes": 1_488_800,
    "published_s": 1.2,
    "command_s": spread(3.2, 2.9, 3.5) | {"each": [3.2, 2.9, 3.5]},
    "steps": {
        "connect_s": spread(0.004, 0.002, 0.1),
        "last_message_s": spread(1.1, 0.7, 1.5),
        "rows_s": spread(0.2, 0.1, 0.3),
    },
    "wait_s": 1.0,
    "broker_rss_kib": {"empty": 8704, "holding": 13824},
    "date": "2026-12-07 06:40 UTC",
    "commit": "abc1234",
    "_loadavg": [[1.0, 1.0, 1.0], [1.5, 1.0, 1.0]],
}


def report(tmp_path: Path, host: dict[str, Any]) -> str:
    (tmp_path / "host.json").write_text(json.dumps(host))
    write_report(tmp_path, tmp_path / "BENCHMARKS.md")
    return (tmp_path / "BENCHMARKS.md").read_text()


def test_fleet_ls_has_no_peer_and_its_time_by_step(tmp_path: Path) -> None:
    text = report(tmp_path, {"fleet_ls": FLEET_LS})
    line = "| 6. `fleet ls`, 2,000 lanes (host) | 3.2 s | no peer has a fleet view | – | n/a |"
    assert line in text
    section = text.split("### 6. `fleet ls` over 2,000 lanes (host)", 1)[1]
    assert "| `fleet ls --json`, fork to exit (what the operator waits) | 3.20 | 2.90 | 3.50 |" in (
        section
    )
    assert "the last of the 4,000 retained messages in | 1.100 | 0.700 | 1.500 |" in section
    assert "(`--wait`, a setting) | 1.000 | 1.000 | 1.000 |" in section
    # 3.2 - 1.0 - (0.004 + 1.1 + 0.2): start-up, imports and output.
    assert "beyond those steps (0.90 s at the median)" in section
    assert "8.5 MiB empty, 13.5 MiB holding" in section
    assert section.index("## Closing note") > 0  # the last section of the results


def test_a_failed_or_missing_run_is_said_so(tmp_path: Path) -> None:
    failed = report(tmp_path, {"fleet_ls": {"error": "RuntimeError: fleet ls listed 3 lanes"}})
    assert "**This workload failed: RuntimeError: fleet ls listed 3 lanes**" in failed
    assert "| 6. `fleet ls`, 2,000 lanes (host) | – | no peer has a fleet view | – | n/a |" in (
        failed
    )
    assert "### 6." not in report(tmp_path, {})
