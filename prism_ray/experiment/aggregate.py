"""From run directories to numbers: per-run results, mean ± std over seeds, paired differences
and learning curves. Reading is defensive only where older runs may lack a key
(``caption_fidelity``); everything else here is pure arithmetic on plain values."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# (key, column title): the final evaluation row, then accuracy after SFT and after alignment.
METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "held-out accuracy"),
    ("caption_fidelity", "caption fidelity"),
    ("format_rate", "format rate"),
    ("response_len", "response tokens"),
    ("sft_accuracy", "accuracy after SFT"),
    ("align_accuracy", "accuracy after align"),
    ("wall_s", "run wall time (s)"),
)
CURVE_METRIC = "rollout/accuracy"


@dataclass(frozen=True)
class RunResult:
    arm: str
    seed: int
    status: str  # done | reused | failed | skipped
    run_dir: Path
    values: dict[str, float | None] = field(default_factory=dict)  # METRICS keys
    rows: tuple[dict, ...] = ()  # the run's evaluations.json
    curve: tuple[tuple[float, float], ...] = ()  # (policy rollouts so far, rollout accuracy)
    message: str = ""  # why it failed or was skipped
    overrides: tuple[str, ...] = ()  # what followed the recipe on its command line

    @property
    def ok(self) -> bool:
        return self.status in ("done", "reused")


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation; None below two values
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


# ───────────────────────────── reading one run ─────────────────────────────


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "evaluations.json"
    return json.loads(path.read_text()) if path.is_file() else []


def read_curve(metrics_file: Path, rlvr: str, offset: int,
               per_step: int) -> list[tuple[float, float]]:
    """RLVR rollout accuracy against policy rollouts spent (``offset`` before RLVR began).

    A resumed run may have logged a step twice; the last record of a step wins.
    """
    key = f"{rlvr}/{CURVE_METRIC}"
    by_step: dict[int, float] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if key in record:
                by_step[record["phase_step"]] = record[key]
    return [(offset + (s + 1) * per_step, by_step[s]) for s in sorted(by_step)]


def row_after(rows: list[dict] | tuple[dict, ...], label: str) -> dict | None:
    return next((r for r in reversed(rows) if r.get("after") == label), None)


def run_values(rows: list[dict], names: dict[str, str], sft_rows: list[dict],
               wall_s: float | None) -> dict[str, float | None]:
    """The METRICS of one run. ``names``: phase kind → phase name. ``sft_rows``: the
    evaluations of the run whose SFT this one started from (its own when it ran SFT)."""
    final = row_after(rows, names["rlvr"]) or (rows[-1] if rows else {})
    sft = row_after(rows, names["sft"]) or row_after(sft_rows, names["sft"]) or {}
    align = row_after(rows, names["align"]) or {}
    return {
        "accuracy": final.get("accuracy"),
        "caption_fidelity": final.get("caption_fidelity"),  # absent in older runs
        "format_rate": final.get("format_rate"),
        "response_len": final.get("response_len"),
        "sft_accuracy": sft.get("accuracy"),
        "align_accuracy": align.get("accuracy"),
        "wall_s": wall_s,
    }


# ───────────────────────────── statistics ─────────────────────────────


def mean_std(values) -> Stat:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Stat(None, None, 0)
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return Stat(mean, None, 1)
    return Stat(mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)), len(xs))


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> Stat:
    """a − b over the seeds where both have a value."""
    return mean_std([a[s] - b[s] for s in sorted(a) if a[s] is not None
                     and b.get(s) is not None])


def by_seed(results: list[RunResult], arm: str, key: str) -> dict[int, float | None]:
    return {r.seed: r.values.get(key) for r in results if r.arm == arm and r.ok}


def summarize(results: list[RunResult], arms: list[str]) -> dict[str, dict[str, Stat]]:
    """arm → metric → mean ± std over the seeds that finished."""
    return {arm: {key: mean_std(by_seed(results, arm, key).values()) for key, _ in METRICS}
            for arm in arms}


def differences(results: list[RunResult], pairs: list[tuple[str, str]],
                key: str = "accuracy") -> dict[tuple[str, str], Stat]:
    """(arm, reference) → (arm − reference) of ``key``, paired by seed."""
    return {(a, b): paired_difference(by_seed(results, a, key), by_seed(results, b, key))
            for a, b in pairs}


def curve_band(curves: list[tuple[tuple[float, float], ...]]
               ) -> list[tuple[float, float, float]]:
    """(x, mean, std) over seeds at each budget point; std 0 where one seed has the point."""
    at: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for x, y in curve:
            at[x].append(y)
    band = []
    for x in sorted(at):
        stat = mean_std(at[x])
        band.append((x, stat.mean, stat.std or 0.0))
    return band
