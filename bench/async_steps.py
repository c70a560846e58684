"""Synchronous vs bounded-staleness GRPO steps on the embedded default (CPU or GPU).

    python bench/async_steps.py --init runs/demo/phases/sft [--steps 12] [--staleness 0,1,2]

Runs the same GRPO phase (the demo's RLVR settings, starting from an SFT export) once per
``max_staleness`` value, with truncated importance sampling for k > 0, and prints the median
step time after the first two steps (warm-up), its ratio to k = 0, the samples per second,
the mean staleness and the final rollout accuracy. Equal samples: every run trains on
``steps × prompts × samples`` rollouts.
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


def one_run(init: str, out: Path, steps: int, staleness: int, threads: int) -> list[dict]:
    correction = {"kind": "tis"} if staleness else {"kind": "none"}
    phase = {"kind": "rlvr", "init_from": init, "steps": steps, "prompts_per_step": 8,
             "samples_per_prompt": 8, "max_response_tokens": 128, "max_staleness": staleness,
             "optimizer": {"lr": 2e-4},
             "algorithm": {"name": "grpo", "rollout_correction": correction}}
    recipe = out.parent / f"k{staleness}.yaml"
    recipe.write_text(yaml.safe_dump({"name": f"async-k{staleness}", "output_dir": str(out),
                                      "tracking": {"enabled": False}, "phases": [phase],
                                      "cluster": {"torch_threads": threads}}))
    ctx = run(load_config(str(recipe)))
    lines = (ctx.run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="an SFT export, e.g. runs/demo/phases/sft")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--staleness", default="0,1")
    parser.add_argument("--threads", default="2,2", help="torch threads per actor, per run: "
                        "on 2 cores, overlapping rollout and update needs 1 each")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = zip((int(x) for x in args.staleness.split(",")),
                   (int(x) for x in args.threads.split(",")), strict=True)
        for k, threads in runs:
            records = one_run(args.init, Path(tmp) / f"k{k}-t{threads}", args.steps, k, threads)
            kept = records[2:] or records
            step = statistics.median(r["rlvr/timing/step"] for r in kept)
            rows.append((f"{k} ({threads} thr)", step, 64 / step,
                         statistics.mean(r.get("rlvr/rollout/staleness_mean", 0.0) for r in kept),
                         statistics.mean(r["rlvr/rollout/accuracy"] for r in records[-3:])))
    base = rows[0][1]
    print(f"{'max_staleness':>13} {'step s (median)':>15} {'vs k=0':>7} {'samples/s':>9} "
          f"{'staleness':>9} {'accuracy (last 3)':>17}")
    for k, step, rate, stale, acc in rows:
        print(f"{k:>13} {step:>15.2f} {base / step:>6.2f}× {rate:>9.1f} {stale:>9.2f} {acc:>17.3f}")


if __name__ == "__main__":
    main()
