"""Progress output and the metrics record of a run.

Every step appends all of its metrics as one JSON line to ``metrics.jsonl`` in the run
directory and hands them to the tracking sink. Keys are ``phase/role/name``; timers
``phase/timing/section``. On the console a step moves the phase's live bar (a terminal) or,
in a log file, prints one line (step/total, headline metrics, tokens/s, ETA) every few steps
or seconds, the first and last step of a phase always (``driver/console.py`` says how to
change that).

Every training step of every phase records the same timing sections (``SECTIONS``, zero where
a phase has no such work, plus ``step``, their sum) and the same throughput fields
(``throughput/tokens_per_s``, ``throughput/sequences_per_s``), so runs and phases compare
column for column.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from prism_ray.driver.console import LineThrottle, PhaseBar, ProgressSettings

MetricsSink = Callable[[dict[str, float], int], None]

SECTIONS = ("rollout", "score", "discriminator", "policy", "sync")


def text_table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, a rule under the first row (the header); plain text so it reads
    the same in a terminal and a log file."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_seconds(seconds: float) -> str:
    seconds = round(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PhaseProgress:
    """One phase's steps: the metrics record (every step) and the console (a live bar, or
    throttled lines). ``settings`` default to the environment (``ProgressSettings.from_env``);
    ``stream`` to stdout; ``clock`` paces the throttled lines."""

    def __init__(self, phase: str, total_steps: int, metrics_file: Path,
                 headline: tuple[str, ...] = (), sink: MetricsSink | None = None,
                 settings: ProgressSettings | None = None, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.phase, self.total = phase, total_steps
        self.metrics_file = metrics_file
        self.sink = sink
        self.headline = headline
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.stream = sys.stdout if stream is None else stream
        settings = ProgressSettings.from_env() if settings is None else settings
        self.mode = settings.resolved_mode(self.stream)
        every = 1 if self.mode == "all" else settings.every_steps
        self.throttle = LineThrottle(total_steps, every, settings.every_seconds, clock)
        self.bar = PhaseBar(phase, total_steps, self.stream) if self.mode == "bar" else None
        self.first: int | None = None  # first phase step this process ran (resume: mid-way)

    @contextmanager
    def timer(self, section: str):
        if section not in SECTIONS:
            raise ValueError(f"unknown timing section {section!r}; sections: {SECTIONS}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[section] = self.timings.get(section, 0.0) + time.perf_counter() - start

    def step(self, phase_step: int, step: int, metrics: dict[str, float],
             tokens: int = 0, sequences: int = 0) -> dict[str, float]:
        """Record one finished step; returns the full metrics dict that was written."""
        elapsed = sum(self.timings.values())
        record = {f"{self.phase}/{k}": v for k, v in metrics.items()}
        record.update({f"{self.phase}/timing/{k}": self.timings.get(k, 0.0) for k in SECTIONS})
        record[f"{self.phase}/timing/step"] = elapsed
        record[f"{self.phase}/throughput/tokens_per_s"] = tokens / max(elapsed, 1e-9)
        record[f"{self.phase}/throughput/sequences_per_s"] = sequences / max(elapsed, 1e-9)
        with self.metrics_file.open("a") as f:
            f.write(json.dumps({"step": step, "phase_step": phase_step, **record}) + "\n")
        self._show(phase_step, metrics, tokens, elapsed)
        if self.sink is not None:
            self.sink(record, step)
        self.timings = {}
        return record

    def close(self) -> None:
        """End the console display early (a phase that stops before its last step)."""
        if self.bar is not None:
            self.bar.close()

    def _show(self, phase_step: int, metrics: dict[str, float], tokens: int,
              elapsed: float) -> None:
        if self.first is None:
            self.first = phase_step
        if self.bar is not None:
            speed = f"{tokens / max(elapsed, 1e-9):.0f} tok/s" if tokens else ""
            self.bar.update(phase_step, ", ".join(x for x in (speed, self._headline(metrics))
                                                  if x))
        elif self.mode != "off" and self.throttle.due(phase_step + 1):
            print(self._line(phase_step, metrics, tokens, elapsed), file=self.stream,
                  flush=True)

    def _headline(self, metrics: dict[str, float]) -> str:
        return " ".join(f"{k.split('/')[-1]} {metrics[k]:.3g}" for k in self.headline
                        if k in metrics)

    def _line(self, phase_step: int, metrics: dict[str, float], tokens: int,
              elapsed: float) -> str:
        done = phase_step + 1
        # Time per step of the steps this process ran (a resumed phase did not run the others).
        rate = (time.perf_counter() - self.started) / (done - (self.first or 0))
        shown = self._headline(metrics)
        speed = f", {tokens / max(elapsed, 1e-9):.0f} tok/s" if tokens else ""
        eta = fmt_seconds(rate * (self.total - done))
        return (f"[{self.phase}] step {done}/{self.total} {shown} | {elapsed:.1f}s/step{speed}, "
                f"ETA {eta}")


def truncate_metrics(metrics_file: Path, step: int) -> tuple[list[dict], int]:
    """Keep only the rows of global steps up to ``step`` (the checkpoint a run resumes from):
    the steps after it run again and are logged again. A torn last line (a kill mid-write) is
    dropped too. Atomic: the kept rows go to a temporary file, fsynced, renamed over the old
    one. Returns (the kept rows, how many rows were dropped)."""
    if not metrics_file.exists():
        return [], 0
    kept_lines, kept, dropped = [], [], 0
    for line in metrics_file.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if row["step"] <= step:
            kept_lines.append(line)
            kept.append(row)
        else:
            dropped += 1
    if dropped:
        tmp = metrics_file.with_name(f".{metrics_file.name}.tmp")
        with tmp.open("w") as f:
            f.write("".join(line + "\n" for line in kept_lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, metrics_file)
    return kept, dropped
