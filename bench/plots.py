"""The pictures beside BENCHMARKS.md, from the same results as the report (build/bench/*.json).

- one latency distribution (CDF) per pair: keyboard scan→MQTT (lane-agent, barcode-server) and
  NFC tag→MQTT (lane-agent, nfc2mqtt), from each workload's `samples_ms`;
- the loss-free ladder: every trial's achieved rate against the share of its scans lost
  (missing, garbled or published twice), one series per daemon.

matplotlib (the bench extra) draws them on its Agg canvas, with no display and no global state.
A figure whose results are missing is not drawn; the report links only what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

FOLDER = "benchmarks"  # beside BENCHMARKS.md
PAIRS = (
    ("keyboard_latency", "barcode-server", "Keyboard scan → MQTT latency (VM)"),
    ("nfc_latency", "nfc2mqtt", "NFC tag → MQTT latency (VM)"),
)
DAEMONS = ("lane-agent", "barcode-server")


@dataclass(frozen=True)
class Picture:
    title: str
    path: Path


def cdf(title: str, series: dict[str, list[float]]) -> Figure:
    """Each daemon's latencies, sorted, against the share of scans at or below each."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for label, values in series.items():
        ordered = sorted(values)
        shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
        # From 0 at the fastest sample: the line rises at each measured latency.
        name = f"{label} (n={len(ordered)})"
        axes.step([ordered[0], *ordered], [0.0, *shares], where="post", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("latency, ms (log scale)")
    axes.set_ylabel("share of scans at or below")
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def ladder(series: dict[str, list[tuple[float, float]]]) -> Figure:
    """Each trial as (achieved scans/s, % of its scans lost), one line per daemon."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for label, points in series.items():
        ordered = sorted(points)
        axes.plot(
            [rate for rate, _ in ordered], [lost for _, lost in ordered], marker="o", label=label
        )
    axes.set_xlabel("achieved rate, scans/s (8 digits + Enter)")
    axes.set_ylabel("scans lost, % (missing, garbled, twice)")
    axes.set_title("Loss-free ladder (VM): every trial")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best")
    return figure


def latency_series(section: dict[str, Any], peer: str) -> dict[str, list[float]]:
    series = {}
    for label in ("lane-agent", peer):
        samples = (section.get(label) or {}).get("samples_ms")
        if samples:
            series[label] = [float(v) for v in samples]
    return series


def ladder_series(section: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    series = {}
    for label in DAEMONS:
        points = []
        for trial in (section.get(label) or {}).get("trials", []):
            rate, scans = trial.get("scans_per_s_typed"), trial.get("scans")
            if rate and scans:
                lost = trial["missing"] + trial["garbled"] + trial["duplicates"]
                points.append((float(rate), 100.0 * lost / scans))
        if points:
            series[label] = points
    return series


def draw(vm: dict[str, Any], folder: Path) -> list[Picture]:
    """Every picture the results allow, written into `folder` (PNG); what was drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # a picture this run cannot draw must not linger
        stale.unlink()
    drawn = []
    for key, peer, title in PAIRS:
        series = latency_series(vm.get(key) or {}, peer)
        if series:
            drawn.append(save(cdf(title, series), folder / f"{key}-cdf.png", title))
    points = ladder_series(vm.get("loss_free") or {})
    if points:
        drawn.append(save(ladder(points), folder / "loss_free-ladder.png", "Loss-free ladder"))
    return drawn


def save(figure: Figure, path: Path, title: str) -> Picture:
    figure.savefig(path, dpi=100)
    return Picture(title, path)
