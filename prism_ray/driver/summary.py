"""Summaries of a run from its metrics record: the end of a phase, the end of a run,
``prism-ray report RUN_DIR`` and ``bench/run_report.py`` all print from here.

A phase's summary: its steps, time, the median step time split by timing section
(``progress.SECTIONS``; sections that took no time are left out), throughput over the whole
phase (tokens and sequences per second of step time) and its headline metrics, first step →
last step. The run summary adds one table for all phases, the evaluation table and the
warnings, and fits one screen.

Reads ``metrics.jsonl`` only (no Ray, no torch): a running run can be summarised too.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prism_ray.driver.progress import SECTIONS, fmt_seconds, text_table

# Metrics shown first → last when a phase logged them, in this order (suffixes after "phase/").
HEADLINE = ("policy/loss", "rollout/reward", "rollout/accuracy", "rollout/format_rate",
            "rollout/response_len", "discriminator/loss", "discriminator/accuracy_cap",
            "discriminator/accuracy_cot", "discriminator/gap_cap", "discriminator/gap_cot")


# ───────────────────────────── reading ─────────────────────────────


def read_records(metrics_file: Path) -> list[dict]:
    """The steps of ``metrics.jsonl`` in step order. A step written twice (a resumed run redid
    the steps after its last checkpoint) counts once, as last written; a torn last line (the
    run is writing) is left out."""
    if not metrics_file.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in metrics_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def phase_of(record: dict) -> str | None:
    return next((k.split("/", 1)[0] for k in record if "/" in k), None)


def by_phase(records: list[dict]) -> dict[str, list[dict]]:
    """{phase: its records}, phases in the order they first ran."""
    phases: dict[str, list[dict]] = {}
    for record in records:
        phase = phase_of(record)
        if phase is not None:
            phases.setdefault(phase, []).append(record)
    return phases


# ───────────────────────────── one phase ─────────────────────────────


@dataclass
class PhaseStats:
    phase: str
    steps: int  # steps summarised (after ``skip``)
    first_step: int  # global step numbers
    last_step: int
    seconds: float  # sum of step times
    median_s: dict[str, float]  # SECTIONS and "step": median seconds per step
    tokens_per_s: float  # over the whole phase: tokens / step time
    sequences_per_s: float
    headline: list[tuple[str, float, float]] = field(default_factory=list)  # (label, first, last)
    wall_s: float | None = None  # the phase's wall time, when known

    @property
    def time_s(self) -> float:
        return self.seconds if self.wall_s is None else self.wall_s


def phase_stats(phase: str, records: list[dict], skip: int = 0,
                wall_s: float | None = None) -> PhaseStats:
    """Statistics of one phase's records; ``skip`` drops its first steps from the step times
    and throughput (warm-up), never from the headline's first value."""
    kept = records[skip:] or records

    def values(rows: list[dict], suffix: str) -> list[float]:
        return [r[f"{phase}/{suffix}"] for r in rows if f"{phase}/{suffix}" in r]

    step_times = values(kept, "timing/step")
    median_s = {s: statistics.median(v) for s in (*SECTIONS, "step")
                if (v := values(kept, f"timing/{s}"))}
    seconds = sum(step_times)
    tokens = sum(r.get(f"{phase}/throughput/tokens_per_s", 0.0)
                 * r.get(f"{phase}/timing/step", 0.0) for r in kept)
    sequences = sum(r.get(f"{phase}/throughput/sequences_per_s", 0.0)
                    * r.get(f"{phase}/timing/step", 0.0) for r in kept)
    headline = []
    for suffix in HEADLINE:
        series = values(records, suffix)
        if series:
            label = suffix if suffix.endswith("/loss") else suffix.split("/")[-1]
            headline.append((label, series[0], series[-1]))
    return PhaseStats(phase, len(kept), kept[0]["step"], kept[-1]["step"], seconds, median_s,
                      tokens / max(seconds, 1e-9), sequences / max(seconds, 1e-9), headline,
                      wall_s)


def _seconds(value: float | None) -> str:
    if not value or value < 0.005:  # a section with no work still times its empty block
        return "–"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _rate(value: float) -> str:
    return "–" if not value else (f"{value:,.0f}" if value >= 100 else f"{value:.3g}")


def wrap_items(items: list[str], prefix: str, sep: str = ", ", width: int = 100) -> list[str]:
    """``items`` joined by ``sep``, wrapped between items (never inside one); the first line
    starts with ``prefix``, the others are indented as far."""
    lines, line = [], prefix
    for i, item in enumerate(items):
        text = item + (sep.rstrip() if i < len(items) - 1 else "")
        gap = "" if line == prefix or line.isspace() else " "
        if line.strip() and line != prefix and len(line) + len(gap) + len(text) > width:
            lines.append(line)
            line, gap = " " * len(prefix), ""
        line += gap + text
    return [*lines, line]


def headline_lines(stats: PhaseStats, prefix: str) -> list[str]:
    """``label first → last`` for each headline metric."""
    return wrap_items([f"{label} {first:.3g} → {last:.3g}"
                       for label, first, last in stats.headline], prefix)


def phase_summary(stats: PhaseStats) -> str:
    """A few lines printed when a phase ends: steps, time, throughput; the median step split
    by section; the headline metrics first → last."""
    parts = [f"{stats.steps} steps in {fmt_seconds(stats.time_s)}",
             f"{_seconds(stats.median_s.get('step'))}/step (median)"]
    if stats.tokens_per_s:
        parts.append(f"{_rate(stats.tokens_per_s)} tok/s")
    if stats.sequences_per_s:
        parts.append(f"{_rate(stats.sequences_per_s)} seq/s")
    prefix = f"[{stats.phase}] "
    lines = wrap_items(parts, prefix + "done: ", sep=" ·")
    split = [f"{s} {_seconds(stats.median_s[s])}" for s in SECTIONS
             if stats.median_s.get(s, 0.0) >= 0.005]
    if split:
        lines += wrap_items(split, prefix + "step time: ")
    if stats.headline:
        lines += headline_lines(stats, prefix)
    return "\n".join(lines)


# ───────────────────────────── the run ─────────────────────────────


def all_phase_stats(records: list[dict], skip: int = 0,
                    wall_s: dict[str, float] | None = None) -> list[PhaseStats]:
    wall_s = wall_s or {}
    return [phase_stats(phase, rows, skip, wall_s.get(phase))
            for phase, rows in by_phase(records).items()]


def steps_table(stats: list[PhaseStats]) -> str:
    """One row per phase: steps, time, median seconds per step and per section, throughput."""
    rows = [("phase", "steps", "time", "s/step", *SECTIONS, "tok/s", "seq/s")]
    for s in stats:
        rows.append((s.phase, str(s.steps), fmt_seconds(s.time_s),
                     _seconds(s.median_s.get("step")),
                     *(_seconds(s.median_s.get(x)) for x in SECTIONS),
                     _rate(s.tokens_per_s), _rate(s.sequences_per_s)))
    return text_table(rows)


def evaluation_table(rows: list[dict]) -> str:
    """The held-out evaluations (rows of ``evaluations.json``)."""
    def opt(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    cells = [("after", "weights", "prompts", "accuracy", "caption_fidelity", "format_rate",
              "response_len", "phase_time")]
    cells += [(str(r.get("after", "?")), str(r.get("weights", "?")), str(r.get("prompts", "?")),
               opt(r.get("accuracy"), ".3f"), opt(r.get("caption_fidelity"), ".3f"),
               opt(r.get("format_rate"), ".3f"), opt(r.get("response_len"), ".1f"),
               "–" if r.get("phase_s") is None else f"{r['phase_s']:.0f}s") for r in rows]
    return text_table(cells)


def run_summary(records: list[dict], evaluations: list[dict] | None = None,
                warnings: list[str] | tuple[str, ...] = (), skip: int = 0,
                wall_s: dict[str, float] | None = None, title: str = "run summary") -> str:
    """The phases (steps, time split by section, throughput), their headline metrics first →
    last, the evaluations and the warnings."""
    # Phase wall times: given (this process ran the phase) or kept in the evaluation rows.
    wall_s = {**{r["after"]: r["phase_s"] for r in evaluations or ()
                 if r.get("phase_s") is not None}, **(wall_s or {})}
    stats = all_phase_stats(records, skip, wall_s)
    out = [f"── {title} ──"]
    if stats:
        out.append(steps_table(stats))
        out.append("(time: wall time where known, else summed step times; s/step and "
                   "sections: medians" + (f" after {skip} warm-up step(s)" if skip else "")
                   + ")")
        width = max(len(s.phase) for s in stats)
        headline = [s for s in stats if s.headline]
        if headline:
            out.append("")
            out.append("first → last step")
            for s in headline:
                out += headline_lines(s, s.phase.ljust(width + 2))
    else:
        out.append("no steps recorded yet")
    if evaluations:
        out += ["", "evaluations", evaluation_table(evaluations)]
    if warnings:
        out += ["", "warnings"] + [f"  ! {w}" for w in warnings]
    return "\n".join(out)


# ───────────────────────────── prism-ray report ─────────────────────────────


def report(run_dir: Path, skip: int = 0, plots: bool = True) -> str:
    """The summary of a finished or running run directory; writes its plots (``plots/``)."""
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.exists():
        raise FileNotFoundError(f"{metrics_file}: no such file (not a run directory?)")
    records = read_records(metrics_file)
    evaluations_file = run_dir / "evaluations.json"
    evaluations = json.loads(evaluations_file.read_text()) if evaluations_file.exists() else []
    age = time.time() - metrics_file.stat().st_mtime
    last = f"step {records[-1]['step']}" if records else "no step"
    lines = [f"{run_dir}: {len(records)} steps recorded, last {last}, written "
             f"{fmt_seconds(age)} ago",
             run_summary(records, evaluations, skip=skip, title="summary")]
    if plots and records:
        from prism_ray.driver.plots import write_plots

        written = write_plots(metrics_file, run_dir / "plots")
        lines.append(f"\nplots: {', '.join(p.name for p in written)} in {run_dir / 'plots'}")
    return "\n".join(lines)


def report_command(run_dir: str, skip: int = 0, plots: bool = True) -> int:
    try:
        print(report(Path(run_dir), skip, plots))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print(f"prism-ray report: {e}", file=sys.stderr)
        return 2
    return 0
