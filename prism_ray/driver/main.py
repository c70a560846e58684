"""The driver storyboard: resolve → connect → prepare → build roles → run phases → report."""

from __future__ import annotations

import time
from pathlib import Path

from prism_ray.config import RunConfig, dump_config
from prism_ray.driver.assets import prepare_assets
from prism_ray.driver.cluster import start_ray, stop_ray
from prism_ray.driver.context import RunContext
from prism_ray.driver.evaluation import evaluation_table, run_eval
from prism_ray.driver.plots import write_plots
from prism_ray.driver.rlvr import run_rlvr
from prism_ray.driver.roles import Roles
from prism_ray.driver.sft import run_sft
from prism_ray.driver.tracking import Tracker

PHASE_RUNNERS = {
    "sft": run_sft,
    "rlvr": run_rlvr,
    "eval": run_eval,
}


def run(config: RunConfig) -> RunContext:
    started = time.time()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    print(f"[run] {config.name} → {run_dir} (resolved config: {run_dir / 'config.yaml'})")
    unsupported = [p.name for p in config.phases if p.enabled and p.kind not in PHASE_RUNNERS]
    if unsupported:
        raise NotImplementedError(f"phases not supported by this version: {unsupported}; "
                                  "disable them with phases.<name>.enabled=false")

    tracker = Tracker(config, run_dir)
    tracker.log_artifact(run_dir / "config.yaml")
    print(f"[run] tracking: {tracker.uri if tracker.enabled else 'off'}")
    resources = start_ray(config.cluster)
    print(f"[run] Ray cluster: {_describe(resources)}")
    roles = None
    status = "FAILED"  # anything that escapes below marks the MLflow run failed
    try:
        assets = prepare_assets(config, run_dir)
        print(plan_table(config))
        roles = Roles.build(config, assets)
        ctx = RunContext(config, run_dir, assets, roles, tracker)
        for phase in config.phases:
            if not phase.enabled:
                print(f"[run] skipping phase {phase.name}")
                continue
            phase_started = time.time()
            print(f"[run] ── phase {phase.name} ({phase.kind}) ──")
            PHASE_RUNNERS[phase.kind](phase, ctx)
            finish_phase(ctx, phase)
            print(f"[run] phase {phase.name} done in {time.time() - phase_started:.1f}s")
        status = "FINISHED"
    finally:
        if roles is not None:
            roles.shutdown()
        stop_ray()
        tracker.end(status)
    print(f"[run] done in {time.time() - started:.1f}s")
    return ctx


def finish_phase(ctx: RunContext, phase) -> None:
    """Phase-end outputs: plots and the evaluation table, also as tracking artifacts."""
    for path in write_plots(ctx.metrics_file, ctx.run_dir / "plots"):
        ctx.tracker.log_artifact(path, "plots")
    if ctx.evaluations:
        table = ctx.run_dir / "evaluations.md"
        table.write_text(evaluation_table(ctx.evaluations) + "\n")
        ctx.tracker.log_artifact(table)


def plan_table(config: RunConfig) -> str:
    rows = [("#", "phase", "kind", "length", "data")]
    for i, phase in enumerate(config.phases):
        rows.append((str(i), phase.name + ("" if phase.enabled else " (skipped)"), phase.kind,
                     _length(phase), ", ".join(s.kind for s in phase.data)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _length(phase) -> str:
    if phase.kind in ("align", "rlvr"):
        return f"{phase.steps} steps × {phase.prompts_per_step}×{phase.samples_per_prompt}"
    if phase.kind in ("sft", "disc_warmup"):
        cap = f" (≤{phase.max_steps} steps)" if phase.max_steps else ""
        return f"{phase.epochs} epoch(s){cap}"
    return f"{phase.max_prompts or 'all'} prompts"


def _describe(resources: dict) -> str:
    parts = []
    for key in ("CPU", "GPU", "memory"):
        if key in resources:
            value = resources[key]
            parts.append(f"{value / 2**30:.1f} GiB memory" if key == "memory" else f"{value:g} {key}")
    return ", ".join(parts)
