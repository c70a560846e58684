"""What the experiment leaves behind: results.md, results.json, PNG plots, an MLflow parent run.

Rendering is pure (results in, text out); the plots use matplotlib's Agg backend; MLflow is
guarded like the run tracker: a failure prints one warning and the report is still written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prism_ray.experiment.aggregate import (
    METRICS,
    RunResult,
    Stat,
    curve_band,
    differences,
    summarize,
)
from prism_ray.experiment.plan import Arm

STAGES = (("sft_accuracy", "after SFT"), ("align_accuracy", "after align"),
          ("accuracy", "final (after RLVR)"))


def comparison_pairs(arms: list[Arm]) -> list[tuple[str, str]]:
    return [(arm.name, ref) for arm in arms for ref in arm.references]


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if key in ("response_len", "wall_s") else f"{value:.3f}"


def _fmt_stat(key: str, stat: Stat, signed: bool = False) -> str:
    if stat.mean is None:
        return "–"
    mean = f"{stat.mean:+.3f}" if signed else _fmt(key, stat.mean)
    return mean if stat.std is None else f"{mean} ± {_fmt(key, stat.std)}"


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(title: str, notes: list[str], results: list[RunResult], arms: list[Arm],
                    wall_s: float) -> str:
    names = [a.name for a in arms]
    summary = summarize(results, names)
    lines = [f"# {title}", "", *notes, "",
             f"Experiment wall time: {_fmt_seconds(wall_s)} (this invocation); "
             f"{_fmt_seconds(sum(r.values.get('wall_s') or 0 for r in results))} summed over "
             f"runs, {sum(r.status == 'reused' for r in results)} reused from an earlier "
             "invocation.", "",
             "## Mean ± std over seeds (final evaluation unless noted)", ""]
    lines += _table(["arm", "seeds", *(title for _, title in METRICS)], [
        [arm, str(summary[arm]["accuracy"].n), *(_fmt_stat(k, summary[arm][k]) for k, _ in METRICS)]
        for arm in names])
    lines += ["", "## Paired differences of held-out accuracy (same seed, same π_sft)", ""]
    diffs = differences(results, comparison_pairs(arms))
    lines += _table(["comparison", "seeds", "Δ accuracy (mean ± std over seeds)"], [
        [f"{a} − {b}", str(d.n), _fmt_stat("accuracy", d, signed=True)]
        for (a, b), d in diffs.items()])
    lines += ["", "## Per seed", ""]
    ordered = sorted(results, key=lambda r: (names.index(r.arm), r.seed))
    lines += _table(["arm", "seed", "status", *(title for _, title in METRICS), "run"], [
        [r.arm, str(r.seed), r.status, *(_fmt(k, r.values.get(k)) for k, _ in METRICS),
         f"`{r.run_dir}`"] for r in ordered])
    problems = [r for r in ordered if not r.ok]
    if problems:
        lines += ["", "## Failed or skipped runs", ""]
    for r in problems:
        first, *tail = r.message.splitlines() or [""]
        lines.append(f"- {r.arm} seed{r.seed}: {r.status}: {first}")
        lines += ["  ```", *(f"  {line}" for line in tail), "  ```"] if tail else []
    return "\n".join(lines) + "\n"


def results_json(title: str, experiment: dict, results: list[RunResult], arms: list[Arm],
                 wall_s: float) -> dict:
    names = [a.name for a in arms]
    summary = summarize(results, names)
    curves = {arm: curve_band([r.curve for r in results if r.arm == arm and r.ok])
              for arm in names}
    return {
        "title": title,
        "experiment": experiment,
        "wall_s": wall_s,
        "summary": {arm: {k: s.as_dict() for k, s in m.items()} for arm, m in summary.items()},
        "differences": [{"arm": a, "reference": b, "accuracy": d.as_dict()}
                        for (a, b), d in differences(results, comparison_pairs(arms)).items()],
        "curves": {arm: [{"rollouts": x, "mean": m, "std": s} for x, m, s in band]
                   for arm, band in curves.items()},
        "runs": [{"arm": r.arm, "seed": r.seed, "status": r.status, "run_dir": str(r.run_dir),
                  "message": r.message, **r.values, "evaluations": list(r.rows),
                  "curve": [list(point) for point in r.curve], "overrides": list(r.overrides)}
                 for r in results],
    }


# ───────────────────────────── plots ─────────────────────────────


def write_plots(results: list[RunResult], arms: list[Arm], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = [a.name for a in arms]
    paths = [out / "rlvr_accuracy_vs_rollouts.png", out / "accuracy_per_phase.png"]

    fig, ax = plt.subplots(figsize=(8, 5))
    for arm in arms:
        band = curve_band([r.curve for r in results if r.arm == arm.name and r.ok])
        if band:
            x, mean, std = zip(*band)
            ax.plot(x, mean, label=arm.name, linestyle="-" if arm.prism else "--")
            ax.fill_between(x, [m - s for m, s in zip(mean, std)],
                            [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set(xlabel="policy rollouts (PRISM arms start after alignment's)",
           ylabel="RLVR rollout accuracy", title="RLVR accuracy at equal rollout budget")
    _finish(plt, fig, ax, paths[0])

    summary = summarize(results, names)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, arm in enumerate(names):
        shift = (i - (len(names) - 1) / 2) * 0.06  # keep error bars of the arms apart
        points = [(j + shift, summary[arm][k]) for j, (k, _) in enumerate(STAGES)
                  if summary[arm][k].mean is not None]
        if points:
            ax.errorbar([x for x, _ in points], [s.mean for _, s in points],
                        yerr=[s.std or 0.0 for _, s in points], marker="o", capsize=3, label=arm)
    ax.set_xticks(range(len(STAGES)), [label for _, label in STAGES])
    ax.set(ylabel="held-out accuracy (mean ± std over seeds)", title="Held-out accuracy per phase")
    _finish(plt, fig, ax, paths[1])
    return paths


# ───────────────────────────── MLflow ─────────────────────────────


def log_to_mlflow(out: Path, title: str, report: dict, artifacts: list[Path]) -> str | None:
    """One parent run (summary metrics, the experiment as params, the report and plots as
    artifacts) with a child run per arm × seed. Returns the parent run id, None on failure."""
    try:
        return _log_to_mlflow(out, title, report, artifacts)
    except Exception as e:  # tracking must never lose the report written above
        print(f"[experiment] warning: MLflow logging failed ({type(e).__name__}: {e})",
              flush=True)
        return None


def _log_to_mlflow(out: Path, title: str, report: dict, artifacts: list[Path]) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    name = report["experiment"]["name"]
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(
        name, artifact_location=(out / "mlartifacts").resolve().as_uri())
    now = int(time.time() * 1000)
    parent = client.create_run(experiment_id, run_name=title).info.run_id
    params = [Param(k, json.dumps(v)[:6000]) for k, v in report["experiment"].items()]
    metrics = [Metric("experiment/wall_s", report["wall_s"], now, 0)]
    for arm, stats in report["summary"].items():
        for key, stat in stats.items():
            metrics += [Metric(f"{arm}/{key}_{part}", stat[part], now, 0)
                        for part in ("mean", "std") if stat[part] is not None]
    for d in report["differences"]:
        if d["accuracy"]["mean"] is not None:
            metrics.append(Metric(f"diff/{d['arm']}_minus_{d['reference']}/accuracy_mean",
                                  d["accuracy"]["mean"], now, 0))
    client.log_batch(parent, metrics=metrics, params=params)
    for run in report["runs"]:
        child = client.create_run(experiment_id, run_name=f"{run['arm']}-seed{run['seed']}",
                                  tags={"mlflow.parentRunId": parent, "arm": run["arm"],
                                        "seed": str(run["seed"]), "status": run["status"]})
        values = [Metric(k, v, now, 0) for k, v in run.items()
                  if k in dict(METRICS) and isinstance(v, (int, float))]
        values += [Metric("rlvr/rollout_accuracy", y, now, int(x)) for x, y in run["curve"]]
        client.log_batch(child.info.run_id, metrics=values)
        client.set_terminated(child.info.run_id,
                              "FINISHED" if run["status"] in ("done", "reused") else "FAILED")
    for path in artifacts:
        client.log_artifact(parent, str(path), "plots" if path.suffix == ".png" else None)
    failed = any(r["status"] not in ("done", "reused") for r in report["runs"])
    client.set_terminated(parent, "FAILED" if failed else "FINISHED")
    return parent


def _finish(plt, fig, ax, path) -> None:
    """Grid, legend when there is something to label, save, release the figure."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
