"""Run the plan: each arm × seed is one ``prism-ray run`` subprocess, one after another.

A run's output goes to ``<run dir>/run.log``; the console gets one line per run. A marker
file in the run directory records the command and how it ended, so a second invocation
reuses finished runs, resumes interrupted or failed ones from their latest checkpoint, and
refuses to mix in a run made with other settings. A failed run is reported and the others
go on; runs that need its SFT export are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prism_ray.experiment.aggregate import RunResult, read_curve, read_rows, run_values
from prism_ray.experiment.plan import Budget, RunSpec, arms, budget, phase_names, plan, resolve
from prism_ray.experiment.report import (
    log_to_mlflow,
    render_markdown,
    results_json,
    write_plots,
)
from prism_ray.experiment.spec import ExperimentConfig

MARKER = "experiment_run.json"
TAIL_LINES = 8


def run_experiment(experiment: ExperimentConfig) -> int:
    """Run (or reuse) every run of the plan, then write the report. Non-zero if any failed."""
    started = time.time()
    specs = plan(experiment)
    names = phase_names(resolve(experiment, experiment.algorithms[0]))
    out = experiment.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(f"[experiment] {experiment.name}: {len(specs)} runs ({len(arms(experiment))} arms × "
          f"{len(experiment.seeds)} seeds) → {out}", flush=True)
    results: dict[Path, RunResult] = {}
    for i, spec in enumerate(specs, start=1):
        print(f"[experiment] {i}/{len(specs)} {spec.label} ", end="", flush=True)
        result = execute(experiment.recipe, spec, names, results)
        results[spec.run_dir] = result
        print(progress_line(result), flush=True)
    done = list(results.values())
    write_report(experiment, done, time.time() - started)
    failed = [r for r in done if not r.ok]
    print(f"[experiment] results: {out / 'results.md'}"
          + (f" ({len(failed)} of {len(done)} runs failed or skipped)" if failed else ""))
    return 1 if failed else 0


def execute(recipe: str, spec: RunSpec, names: dict[str, str],
            earlier: dict[Path, RunResult]) -> RunResult:
    """One run: reuse it, skip it (its SFT source failed), or run it."""
    source = earlier.get(spec.sft_source) if spec.sft_source else None
    if spec.sft_source is not None and (source is None or not source.ok):
        return _unfinished(spec, "skipped", f"its SFT source ({spec.sft_source}) did not finish")
    command = ["run", recipe, *spec.overrides]
    marker = read_marker(spec.run_dir)
    if marker and marker["command"] != command:
        return _unfinished(spec, "failed", f"{spec.run_dir} holds a run made with other "
                           "settings; remove it or choose another --out")
    sft_rows = list(source.rows) if source else []
    if marker and marker["status"] == "done":
        return _finished(spec, names, "reused", marker["wall_s"], sft_rows)
    previous_s = marker["wall_s"] if marker else 0.0
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_marker(spec.run_dir, command, "running", None, previous_s)
    rc, seconds = run_subprocess(command, spec.run_dir, resume=marker is not None)
    wall_s = previous_s + seconds
    write_marker(spec.run_dir, command, "done" if rc == 0 else "failed", rc, wall_s)
    if rc != 0:
        tail = log_tail(spec.run_dir)
        return _unfinished(spec, "failed", f"exit {rc}; log {spec.run_dir / 'run.log'}"
                           + (f":\n{tail}" if tail else ""), wall_s)
    return _finished(spec, names, "done", wall_s, sft_rows)


def run_subprocess(command: list[str], run_dir: Path, resume: bool) -> tuple[int, float]:
    """``prism-ray <command>`` with its output appended to ``run.log``; (exit code, seconds)."""
    argv = [sys.executable, "-m", "prism_ray.cli", *command, *(["--resume"] if resume else [])]
    started = time.time()
    with (run_dir / "run.log").open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # the run got the same Ctrl-C: let it stop Ray, then go
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return rc, time.time() - started


def _finished(spec: RunSpec, names: dict[str, str], status: str, wall_s: float,
              sft_rows: list[dict]) -> RunResult:
    rows = read_rows(spec.run_dir)
    curve = read_curve(spec.run_dir / "metrics.jsonl", names["rlvr"], spec.budget_offset,
                       spec.rollouts_per_step)
    return RunResult(spec.arm.name, spec.seed, status, spec.run_dir,
                     run_values(rows, names, sft_rows, wall_s), tuple(rows), tuple(curve),
                     overrides=spec.overrides)


def _unfinished(spec: RunSpec, status: str, message: str,
                wall_s: float | None = None) -> RunResult:
    return RunResult(spec.arm.name, spec.seed, status, spec.run_dir, {"wall_s": wall_s},
                     message=message, overrides=spec.overrides)


def progress_line(result: RunResult) -> str:
    wall = result.values.get("wall_s")
    took = f" in {wall / 60:.1f} min" if wall is not None else ""
    if result.status == "reused":
        took = f" (ran{took})" if took else ""
    if result.ok:
        accuracy = result.values.get("accuracy")
        shown = f"{accuracy:.3f}" if accuracy is not None else "– (no evaluation)"
        return f"{result.status}{took}: held-out accuracy {shown}"
    lines = result.message.splitlines()
    return "\n".join([f"{result.status.upper()}{took}: {lines[0] if lines else ''}",
                      *(f"    | {line}" for line in lines[1:])])


def log_tail(run_dir: Path, n: int = TAIL_LINES) -> str:
    path = run_dir / "run.log"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] \
        if path.is_file() else []
    return "\n".join(lines[-n:])


def read_marker(run_dir: Path) -> dict | None:
    path = run_dir / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def write_marker(run_dir: Path, command: list[str], status: str, rc: int | None,
                 wall_s: float) -> None:
    path = run_dir / MARKER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command, "status": status, "returncode": rc,
                               "wall_s": wall_s, "time": time.time()}, indent=1) + "\n")
    tmp.replace(path)  # a kill mid-write never leaves a half-written marker


# ───────────────────────────── the report ─────────────────────────────


def budget_notes(experiment: ExperimentConfig) -> list[str]:
    notes = [f"Base recipe `{experiment.recipe}`"
             + (f" with `{' '.join(experiment.overrides)}`" if experiment.overrides else "")
             + f"; seeds {', '.join(map(str, experiment.seeds))}. Every arm of a seed starts "
             "from the same π_sft (`no_sft` from the untrained model)."]
    for alg in experiment.algorithms:
        cost: Budget = budget(resolve(experiment, alg))
        total = cost.rlvr_steps * cost.rlvr_rollouts_per_step
        notes.append(
            f"Equal policy-rollout budget ({alg}): alignment samples {cost.align_rollouts} "
            f"rollouts, so sft-{alg} runs {cost.rlvr_steps} + {cost.extra_rlvr_steps} RLVR "
            f"steps of {cost.rlvr_rollouts_per_step} "
            f"({(cost.rlvr_steps + cost.extra_rlvr_steps) * cost.rlvr_rollouts_per_step} "
            f"rollouts) against prism-{alg}'s {cost.align_rollouts} + {total}.")
    return notes


def write_report(experiment: ExperimentConfig, results: list[RunResult], wall_s: float) -> None:
    out = experiment.out_dir
    title = f"PRISM vs SFT → RLVR: {experiment.name}"
    arm_list = arms(experiment)
    markdown = render_markdown(title, budget_notes(experiment), results, arm_list, wall_s)
    (out / "results.md").write_text(markdown)
    print(markdown.split("## Per seed")[0].rstrip(), flush=True)  # the summary, on the console
    report = results_json(title, experiment.model_dump(mode="json"), results, arm_list, wall_s)
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    plots = write_plots(results, arm_list, out / "plots")
    if experiment.tracking:
        log_to_mlflow(out, title, report, [out / "results.md", out / "results.json", *plots])
