"""Synchronous vs bounded-staleness GRPO steps on the embedded default (CPU or GPU).

    python bench/async_steps.py --init runs/demo/phases/sft [--steps 12] [--staleness 0,1]
        [--threads 2,2] [--seeds 0,1,2] [--eval-prompts 256]

Runs the same GRPO phase (the demo's RLVR settings, starting from an SFT export) once per
``max_staleness`` value and seed, with truncated importance sampling for k > 0, and prints
the median step time after the first two steps (warm-up), its ratio to the first setting,
the samples per second, the mean staleness and the rollout accuracy of the last three steps.
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
from prism_ray.driver.main import run


def one_run(init: str, out: Path, steps: int, staleness: int, threads: int, seed: int,
            eval_prompts: int) -> tuple[list[dict], float | None]:
    correction = {"kind": "tis"} if staleness else {"kind": "none"}
    phases = [{"kind": "rlvr", "init_from": init, "steps": steps, "prompts_per_step": 8,
               "samples_per_prompt": 8, "max_response_tokens": 128,
               "max_staleness": staleness, "optimizer": {"lr": 2e-4},
               "algorithm": {"name": "grpo", "rollout_correction": correction}}]
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
    args = parser.parse_args()
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
                                            args.steps, k, threads, seed, args.eval_prompts)
                kept = records[2:] or records
                times.append(statistics.median(r["rlvr/timing/step"] for r in kept))
                stale.append(statistics.mean(r.get("rlvr/rollout/staleness_mean", 0.0)
                                             for r in kept))
                acc.append(statistics.mean(r["rlvr/rollout/accuracy"] for r in records[-3:]))
                held_out.setdefault(label, []).append(accuracy)
            step = statistics.median(times)
            rows.append((label, step, 64 / step, statistics.mean(stale), statistics.mean(acc)))
    base = rows[0][1]
    print(f"{'max_staleness':>13} {'step s (median)':>15} {'vs first':>8} {'samples/s':>9} "
          f"{'staleness':>9} {'accuracy (last 3)':>17}")
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
