"""Synchronous vs bounded-staleness GRPO or PRISM-alignment steps on the embedded default.

    python bench/async_steps.py --init runs/demo/phases/sft [--steps 12] [--staleness 0,1]
        [--threads 2,2] [--seeds 0,1,2] [--eval-prompts 256] [--phase rlvr|align]

Runs the same GRPO phase (the demo's RLVR settings, starting from an SFT export) once per
``max_staleness`` value and seed, with truncated importance sampling for k > 0, and prints
the median step time after the first two steps (warm-up), its ratio to the first setting,
the samples per second, the mean staleness and the rollout accuracy of the last three steps.
``--phase align``: the demo's discriminator warm-up, then its alignment phase (4 prompts × 8
samples a step) in place of GRPO; the last column is then the rollouts' caption fidelity.
Equal samples: every run trains on ``steps × prompts × samples`` rollouts. With
``--eval-prompts N`` each run ends with the held-out evaluation on N prompts (greedy), and a
second table gives its accuracy per seed and the mean ± standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import yaml

from prism_ray.config import load_config
from prism_ray.config.run import DEFAULT_PHASES
from prism_ray.driver.main import run

# What each phase kind trains on per step, and the rollout metric shown for it.
PHASES = {"rlvr": (8 * 8, "rollout/accuracy"), "align": (4 * 8, "rollout/caption_fidelity")}


def phase_settings(kind: str, init: str, steps: int, staleness: int) -> list[dict]:
    """The demo's phase of that kind (the warm-up before alignment), from ``init``."""
    correction = {"kind": "tis"} if staleness else {"kind": "none"}
    demo = {p["kind"]: dict(p) for p in DEFAULT_PHASES if p["kind"] in ("disc_warmup", kind)}
    phase = {**demo[kind], "init_from": init, "steps": steps, "max_staleness": staleness}
    if kind == "rlvr":
        return [{**phase, "algorithm": {"name": "grpo", "rollout_correction": correction}}]
    return [demo["disc_warmup"], {**phase, "rollout_correction": correction}]


def one_run(init: str, out: Path, steps: int, staleness: int, threads: int, seed: int,
            eval_prompts: int, kind: str = "rlvr") -> tuple[list[dict], float | None]:
    phases = phase_settings(kind, init, steps, staleness)
    if eval_prompts:
        phases.append({"kind": "eval", "max_prompts": eval_prompts, "max_response_tokens": 128})
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(yaml.safe_dump({"name": out.name, "output_dir": str(out), "seed": seed,
                                      "tracking": {"enabled": False}, "phases": phases,
                                      "cluster": {"torch_threads": threads}}))
    ctx = run(load_config(str(recipe)))
    lines = (ctx.run_dir / "metrics.jsonl").read_text().splitlines()
    held_out = ctx.evaluations[-1]["accuracy"] if eval_prompts else None
    return [json.loads(line) for line in lines], held_out


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="an SFT export, e.g. runs/demo/phases/sft")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--staleness", default="0,1")
    parser.add_argument("--threads", default="2,2", help="torch threads per actor, per run: "
                        "on 2 cores, overlapping rollout and update needs 1 each")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--eval-prompts", type=int, default=0,
                        help="held-out prompts evaluated after each run; 0: none")
    parser.add_argument("--phase", choices=sorted(PHASES), default="rlvr")
    args = parser.parse_args()
    samples, shown = PHASES[args.phase]
    settings = list(zip((int(x) for x in args.staleness.split(",")),
                        (int(x) for x in args.threads.split(",")), strict=True))
    seeds = [int(x) for x in args.seeds.split(",")]
    rows, held_out = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, threads in settings:
            label = f"{k} ({threads} thr)"
            times, stale, acc = [], [], []
            for seed in seeds:
                records, accuracy = one_run(args.init, Path(tmp) / f"k{k}-t{threads}-s{seed}",
                                            args.steps, k, threads, seed, args.eval_prompts,
                                            args.phase)
                records = [r for r in records if f"{args.phase}/timing/step" in r]
                kept = records[2:] or records
                times.append(statistics.median(r[f"{args.phase}/timing/step"] for r in kept))
                stale.append(statistics.mean(r.get(f"{args.phase}/rollout/staleness_mean", 0.0)
                                             for r in kept))
                acc.append(statistics.mean(r[f"{args.phase}/{shown}"] for r in records[-3:]))
                held_out.setdefault(label, []).append(accuracy)
            step = statistics.median(times)
            rows.append((label, step, samples / step, statistics.mean(stale),
                         statistics.mean(acc)))
    base = rows[0][1]
    column = f"{shown.split('/')[-1]} (last 3)"
    print(f"{args.phase}: {args.steps} steps of {samples} samples")
    print(f"{'max_staleness':>13} {'step s (median)':>15} {'vs first':>8} {'samples/s':>9} "
          f"{'staleness':>9} {column:>17}")
    for k, step, rate, stale, acc in rows:
        print(f"{k:>13} {step:>15.2f} {base / step:>7.2f}× {rate:>9.1f} {stale:>9.2f} "
              f"{acc:>17.3f}")
    if args.eval_prompts:
        print(f"\nheld-out accuracy ({args.eval_prompts} prompts, greedy) after "
              f"{args.steps} steps, seeds {args.seeds}")
        print(f"{'max_staleness':>13} {'per seed':>24} {'mean ± sd':>15}")
        for label, values in held_out.items():
            per_seed = " ".join(f"{v:.3f}" for v in values)
            print(f"{label:>13} {per_seed:>24} {spread(values):>15}")


if __name__ == "__main__":
    main()
