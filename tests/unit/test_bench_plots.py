"""`make bench`'s pictures: from a small result set shaped like the VM part's, one CDF per pair
and the loss-free ladder are written as PNG files holding the series the results carry, and the
report links them (and stays whole without them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from bench import plots
from bench.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def trial(rate: float, scans: int, missing: int = 0, garbled: int = 0) -> dict[str, Any]:
    """One trial as bench/loss_free.py records it."""
    return {
        "kind": "probe",
        "interval_ms": 1.0,
        "gap_ms": 0.0,
        "scans": scans,
        "keys_per_s": rate * 9,
        "scans_per_s_typed": rate,
        "intact": missing == garbled == 0,
        "missing": missing,
        "garbled": garbled,
        "duplicates": 0,
        "driver_drops": 0,
        "writer_stalls": 0,
        "drain_s": 0.5,
    }


VM: dict[str, Any] = {
    "keyboard_latency": {
        "lane-agent": {"samples_ms": [12.0, 10.0, 11.0, 30.0]},
        "barcode-server": {"samples_ms": [34.0, 36.0, 240.0]},
    },
    "nfc_latency": {
        "lane-agent": {"samples_ms": [1800.0, 900.0]},
        "nfc2mqtt": {"samples_ms": [1400.0, 7000.0, 2000.0]},
    },
    "loss_free": {
        "lane-agent": {"trials": [trial(40.0, 300, missing=3), trial(20.0, 1000)]},
        "barcode-server": {"trials": [trial(9.0, 300, garbled=30), trial(8.5, 1000)]},
    },
}


def xs(line: Line2D) -> list[float]:
    values: list[float] = np.asarray(line.get_xdata()).tolist()
    return values


def ys(line: Line2D) -> list[float]:
    values: list[float] = np.asarray(line.get_ydata()).tolist()
    return values


def test_each_pair_gets_a_cdf_and_the_ladder_its_trials(tmp_path: Path) -> None:
    drawn = plots.draw(VM, tmp_path)
    assert [p.path.name for p in drawn] == [
        "keyboard_latency-cdf.png",
        "nfc_latency-cdf.png",
        "loss_free-ladder.png",
    ]
    for picture in drawn:
        assert picture.path.read_bytes().startswith(PNG)


def test_a_cdf_steps_through_each_daemons_sorted_latencies() -> None:
    series = plots.latency_series(VM["keyboard_latency"], "barcode-server")
    lines = plots.cdf("keyboard", series).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["lane-agent (n=4)", "barcode-server (n=3)"]
    assert xs(lines[0]) == [10.0, 10.0, 11.0, 12.0, 30.0]
    assert ys(lines[0]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert xs(lines[1]) == [34.0, 34.0, 36.0, 240.0]


def test_the_ladder_plots_rate_against_the_share_lost() -> None:
    lines = plots.ladder(plots.ladder_series(VM["loss_free"])).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["lane-agent", "barcode-server"]
    assert xs(lines[0]) == [20.0, 40.0]
    assert ys(lines[0]) == [0.0, 1.0]
    assert xs(lines[1]) == [8.5, 9.0]
    assert ys(lines[1]) == [0.0, 10.0]


def test_missing_results_draw_nothing_and_leave_no_stale_picture(tmp_path: Path) -> None:
    plots.draw(VM, tmp_path)
    assert plots.draw({"keyboard_latency": {"error": "VM timed out"}}, tmp_path) == []
    assert list(tmp_path.glob("*.png")) == []


def test_the_report_links_the_pictures_it_drew(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "vm.json").write_text(json.dumps(VM))
    report = tmp_path / "BENCHMARKS.md"
    write_report(results, report)
    text = report.read_text()
    for name in ("keyboard_latency-cdf.png", "nfc_latency-cdf.png", "loss_free-ladder.png"):
        assert f"]({plots.FOLDER}/{name})" in text
        assert (tmp_path / plots.FOLDER / name).exists()
    assert "## Results" in text  # the tables are all there too
