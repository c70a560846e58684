"""The driver storyboard: resolve → connect → prepare → build roles → run phases → report
(and, when a learner is lost with restarts left, rewind to the last checkpoint and again)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prism_ray.cluster import start_ray, stop_ray
from prism_ray.config import RunConfig, dump_config
from prism_ray.config.kinds import phase_kind
from prism_ray.config.run import lr_summary
from prism_ray.driver.assets import prepare_assets
from prism_ray.driver.checkpoint import CheckpointManager, DriverState
from prism_ray.driver.console import Quiet, actor_log_dir, close_bars
from prism_ray.driver.context import RunContext
from prism_ray.driver.datasets import check_phase_data
from prism_ray.driver.evaluation import eval_settings, evaluate
from prism_ray.driver.faults import RoleLost, dead_learner, rewind
from prism_ray.driver.plots import write_plots
from prism_ray.driver.progress import text_table
from prism_ray.driver.roles import Roles
from prism_ray.driver.summary import (
    evaluation_table,
    phase_stats,
    phase_summary,
    read_records,
    run_summary,
)
from prism_ray.driver.tracking import Tracker, current_run_id


def run(config: RunConfig, resume: bool = False, verbose: bool = False,
        max_restarts: int = 0) -> RunContext:
    """Run a recipe. ``verbose``: show the actors' output and the libraries' INFO lines
    (otherwise they stay in Ray's log folder). ``max_restarts``: how many times a lost
    learner is survived by restarting from the last checkpoint (else ``RoleLost`` ends it)."""
    started = time.time()
    quiet = Quiet(verbose)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    print(f"[run] {config.name} → {run_dir} (resolved config: {run_dir / 'config.yaml'})")
    checkpoints = CheckpointManager(run_dir, config.checkpoint.keep_last)
    found = checkpoints.latest() if resume else None
    if resume and found is None:
        print("[resume] no complete checkpoint yet: starting from the beginning")
    run_id = (current_run_id(run_dir) or (found[1].tracking_run_id if found else None)) \
        if resume else None
    tracker = Tracker(config, run_dir, run_id=run_id)
    if resume:
        rewind(run_dir, tracker, found[1] if found else None)
    tracker.log_artifact(run_dir / "config.yaml")
    print(f"[run] tracking: {tracker.uri if tracker.enabled else 'off'}")
    resources, connected = start_ray(config.cluster, log_to_driver=verbose)
    print(f"[run] Ray cluster: {_describe(resources)}")
    if not verbose:
        print(f"[run] actor logs: {actor_log_dir() or 'Ray session folder'} "
              "(--verbose shows them here)")
    status = "FAILED"  # anything that escapes below marks the MLflow run failed
    try:
        assets = prepare_assets(config, run_dir)
        check_phase_data(config.phases, assets)
        print(plan_table(config))
        print("[run] learning rates: " + "; ".join(lr_summary(config)))
        for attempt in range(max_restarts + 1):
            try:
                ctx = run_phases(config, run_dir, assets, tracker, checkpoints, found)
                break
            except RoleLost as lost:
                if attempt == max_restarts:
                    raise
                found = checkpoints.latest()
                where = f"step {found[1].step}" if found else "the beginning"
                print(f"[restart] {attempt + 1}/{max_restarts}: {lost}; restarting from "
                      f"{where}", flush=True)
                rewind(run_dir, tracker, found[1] if found else None)
        status = "FINISHED"
        print(run_summary(read_records(ctx.metrics_file), ctx.evaluations, ctx.warnings,
                          wall_s=ctx.phase_wall_s, title=f"{config.name}: summary"))
    finally:
        close_bars()
        if connected:
            stop_ray()
        tracker.end(status)
        quiet.restore()
    print(f"[run] done in {time.time() - started:.1f}s")
    return ctx


def run_phases(config: RunConfig, run_dir: Path, assets, tracker: Tracker,
               checkpoints: CheckpointManager, found: tuple[Path, DriverState] | None
               ) -> RunContext:
    """Build the roles, restore ``found`` (if any), run the remaining phases. A learner that
    dies on the way surfaces as ``RoleLost``; the roles are shut down either way."""
    roles = Roles.build(config, assets)
    try:
        ctx = RunContext(config, run_dir, assets, roles, tracker, checkpoints)
        first = restore(ctx, *found) if found else 0
        if first == 0 and not _starts_from_checkpoint(config):
            evaluate_if_new(ctx, "start")
        for index, phase in enumerate(config.phases[first:], start=first):
            ctx.phase_index = index
            if not phase.enabled:
                print(f"[run] skipping phase {phase.name}")
                continue
            run_phase(ctx, phase)
        return ctx
    except Exception as error:
        close_bars()
        role = dead_learner(roles)
        if role is not None:
            raise RoleLost(role, error) from error
        raise
    finally:
        roles.shutdown()


def run_phase(ctx: RunContext, phase) -> None:
    phase_started = time.time()
    print(f"[run] ── phase {phase.name} ({phase.kind}) ──")
    if phase.init_from and ctx.resume is None:
        start_from(ctx, Path(phase.init_from))
        # The rollout workers must sample from the weights this phase trains, from step 1.
        ctx.publish_weights()
        evaluate_if_new(ctx, f"{phase.name} init")
    kind = phase_kind(phase.kind)
    kind.load_runner()(phase, ctx)
    ctx.phase_wall_s[phase.name] = time.time() - phase_started
    print_phase_summary(ctx, phase.name)
    if not kind.evaluation:
        evaluate_if_new(ctx, phase.name)
        ctx.end_phase(phase)
    write_outputs(ctx)
    print(f"[run] phase {phase.name} done in {time.time() - phase_started:.1f}s")


def print_phase_summary(ctx: RunContext, name: str) -> None:
    """What a training phase did (nothing for a phase that records no steps)."""
    records = [r for r in read_records(ctx.metrics_file) if f"{name}/timing/step" in r]
    if records:
        print(phase_summary(phase_stats(name, records, wall_s=ctx.phase_wall_s.get(name))))


def _starts_from_checkpoint(config: RunConfig) -> bool:
    """Whether the first enabled phase loads its own weights (then the untrained model is
    never trained on, and evaluating it would only cost time)."""
    first = next((p for p in config.phases if p.enabled), None)
    return first is not None and first.init_from is not None


def restore(ctx: RunContext, path: Path, state: DriverState) -> int:
    """Bring a fresh set of roles to a checkpoint; returns the index of the phase to run."""
    ctx.step, ctx.version, ctx.evaluations = state.step, state.version, list(state.evaluations)
    where = "finished" if state.phase_done else f"phase step {state.phase_step}"
    print(f"[resume] from {path.name}: step {state.step}, phase #{state.phase_index} ({where})")
    if not state.phase_done:
        ctx.resume, ctx.resume_dir = state, path
        return state.phase_index
    start_from(ctx, Path((path / "exports").read_text().strip()))
    ctx.publish_weights(state.version)
    return state.phase_index + 1


def start_from(ctx: RunContext, directory: Path) -> None:
    """Load HF checkpoints (``<directory>/policy``, ``<directory>/discriminator``, or a plain
    policy checkpoint directory) into the learners."""
    for name in ("policy", "discriminator"):
        learner = getattr(ctx.roles, name)
        source = directory / name
        if learner is not None and source.is_dir():
            learner.reset_model(source)
        elif name == "policy" and learner is not None and (directory / "config.json").exists():
            learner.reset_model(directory)


def evaluate_if_new(ctx: RunContext, label: str) -> None:
    """Held-out evaluation of the current weights, once per weight version."""
    phase = eval_settings(ctx.config)
    if phase is None or ctx.roles.rollout is None or ctx.roles.verifier is None:
        return
    if ctx.already_evaluated():
        return
    evaluate(ctx, phase, label)


def write_outputs(ctx: RunContext) -> None:
    """Plots and the evaluation table, also as tracking artifacts."""
    for path in write_plots(ctx.metrics_file, ctx.run_dir / "plots"):
        ctx.tracker.log_artifact(path, "plots")
    if ctx.evaluations:
        table = ctx.run_dir / "evaluations.md"
        table.write_text(evaluation_table(ctx.evaluations) + "\n")
        ctx.tracker.log_artifact(table)
        rows = ctx.run_dir / "evaluations.json"
        rows.write_text(json.dumps(ctx.evaluations, indent=1) + "\n")
        ctx.tracker.log_artifact(rows)


def plan_table(config: RunConfig) -> str:
    rows = [("#", "phase", "kind", "length", "data")]
    for i, phase in enumerate(config.phases):
        rows.append((str(i), phase.name + ("" if phase.enabled else " (skipped)"), phase.kind,
                     phase.plan_length(), ", ".join(s.kind for s in phase.data)))
    return text_table(rows)


def _describe(resources: dict) -> str:
    parts = []
    for key in ("CPU", "GPU", "memory"):
        if key in resources:
            value = resources[key]
            parts.append(f"{value / 2**30:.1f} GiB memory" if key == "memory" else f"{value:g} {key}")
    return ", ".join(parts)
