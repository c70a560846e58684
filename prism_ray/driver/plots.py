"""PNG plots of a run from its metrics record (``metrics.jsonl``), for humans and MLflow.

One figure per topic; each panel shows every phase that logged the metric, against the
global step. Written at phase ends and at the end of the run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

# (file name, title, metric suffixes after "phase/") — a suffix absent from a run is skipped.
FIGURES = (
    ("reward_accuracy.png", "Reward and accuracy",
     ("rollout/reward", "rollout/accuracy", "rollout/format_rate")),
    ("discriminator_gaps.png", "Discriminator gaps (teacher − student)",
     ("discriminator/gap_cap", "discriminator/gap_cot", "discriminator/accuracy_cap",
      "discriminator/accuracy_cot")),
    ("response_length.png", "Response length (tokens)", ("rollout/response_len",)),
    ("losses.png", "Losses", ("policy/loss", "discriminator/loss")),
    ("sync.png", "Weight sync throughput (GB/s)", ("sync/gb_per_s",)),
)


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(records: list[dict], suffix: str) -> dict[str, tuple[list[int], list[float]]]:
    """{phase: (steps, values)} for every key ``<phase>/<suffix>``."""
    out: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for record in records:
        for key, value in record.items():
            if key.endswith("/" + suffix) and key.count("/") == suffix.count("/") + 1:
                phase = key.split("/", 1)[0]
                out[phase][0].append(record["step"])
                out[phase][1].append(value)
    return dict(out)


def timing_breakdown(records: list[dict]) -> dict[str, dict[str, float]]:
    """{phase: {section: mean seconds per step}}."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for key, value in record.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[1] == "timing" and parts[2] != "step":
                sums[parts[0]][parts[2]].append(value)
    return {p: {s: sum(v) / len(v) for s, v in secs.items()} for p, secs in sums.items()}


def write_plots(metrics_file: Path, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title, suffixes in FIGURES:
        panels = [(s, series(records, s)) for s in suffixes]
        panels = [(s, d) for s, d in panels if d]
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
        for ax, (suffix, data) in zip(axes[0], panels):
            for phase, (steps, values) in data.items():
                ax.plot(steps, values, marker=".", label=phase)
            ax.set_title(suffix)
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    breakdown = timing_breakdown(records)
    if breakdown:
        written.append(_timing_figure(plt, breakdown, out_dir / "timing.png"))
    return written


def _timing_figure(plt, breakdown: dict[str, dict[str, float]], path: Path) -> Path:
    phases = list(breakdown)
    sections = sorted({s for secs in breakdown.values() for s in secs})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0.0] * len(phases)
    for section in sections:
        values = [breakdown[p].get(section, 0.0) for p in phases]
        ax.bar(phases, values, bottom=bottom, label=section)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("seconds per step")
    ax.set_title("Step time breakdown")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
