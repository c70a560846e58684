"""Chaos bench: a GRPO run on the embedded default with rollout and verifier workers killed
every few seconds, against the same run undisturbed (CPU or GPU).

    python bench/chaos.py [--steps 16] [--interval 10] [--duration 300] [--seed 0]

Runs the same short GRPO phase twice on one local Ray cluster: once undisturbed, once while
``prism_ray.actors.chaos.WorkerKiller`` kills a random rollout or verifier worker every
``--interval`` seconds (from the first logged step, for at most ``--duration`` seconds, and
not once the last step has begun, so that every kill is met by a later call of its role).
Prints faults injected (by role) and survived (workers the pools found dead and replaced),
samples lost and duplicated (by prompt uid and sample index, summed over steps), and the
median step time with and without faults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from prism_ray.actors.chaos import WorkerKiller
from prism_ray.cluster import start_ray, stop_ray
from prism_ray.config import load_config
from prism_ray.driver.main import run

TINY = [{"kind": "synthetic", "size": "tiny"}]


def recipe(out: Path, steps: int) -> Path:
    body = {
        "name": out.name, "output_dir": str(out), "tracking": {"enabled": False},
        "policy": {"num_ranks": 1, "resources": {"num_cpus": 0.5}},
        "rollout": {"num_workers": 2, "resources": {"num_cpus": 0.5}},
        "verifier": {"num_workers": 2, "resources": {"num_cpus": 0.25}, "batch_size": 4},
        "phases": [
            {"kind": "rlvr", "name": "grpo", "algorithm": {"name": "grpo"}, "data": TINY,
             "steps": steps, "prompts_per_step": 4, "samples_per_prompt": 4,
             "max_response_tokens": 32, "optimizer": {"lr": 1e-4}},
            {"kind": "eval", "data": TINY, "max_prompts": 8, "max_response_tokens": 32},
        ],
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def one_run(out: Path, steps: int, killer_args: dict | None) -> dict:
    config = load_config(str(recipe(out, steps)))
    killer = None
    if killer_args is not None:
        deadline: list[float] = []

        def active() -> bool:
            logged = len(rows(out))
            if logged >= 1 and not deadline:
                deadline.append(time.monotonic() + killer_args["duration"])
            return 1 <= logged < steps - 1 and time.monotonic() < deadline[0]

        killer = WorkerKiller(interval_s=killer_args["interval"], seed=killer_args["seed"],
                              active=active).start()
    started = time.monotonic()
    try:
        ctx = run(config)
    finally:
        if killer is not None:
            killer.stop()
    records = rows(out)
    kept = records[1:] or records  # the first step pays start-up costs
    return {
        "wall_s": time.monotonic() - started,
        "step_s": statistics.median(r["grpo/timing/step"] for r in kept),
        "injected": killer.by_role() if killer else {"rollout": 0, "verifier": 0},
        "survived": {"rollout": ctx.roles.rollout.faults["workers_lost"],
                     "verifier": ctx.roles.verifier.faults["workers_lost"]},
        "lost": sum(r["grpo/rollout/samples_lost"] for r in records),
        "duplicated": sum(r["grpo/rollout/samples_duplicated"] for r in records),
        "sync_interrupted": ctx.roles.sync.faults["interrupted"],
        "requeued": (ctx.roles.rollout.faults["prompts_requeued"],
                     ctx.roles.verifier.faults["batches_requeued"]),
        "steps": len(records),
    }


def table(calm: dict, chaos: dict) -> str:
    def both(d: dict) -> str:
        return f"{sum(d.values())} (rollout {d['rollout']}, verifier {d['verifier']})"

    lines = [
        ("steps completed", f"{calm['steps']}", f"{chaos['steps']}"),
        ("faults injected", both(calm["injected"]), both(chaos["injected"])),
        ("faults survived", both(calm["survived"]), both(chaos["survived"])),
        ("samples lost", f"{calm['lost']:.0f}", f"{chaos['lost']:.0f}"),
        ("samples duplicated", f"{calm['duplicated']:.0f}", f"{chaos['duplicated']:.0f}"),
        ("syncs interrupted", f"{calm['sync_interrupted']}", f"{chaos['sync_interrupted']}"),
        ("prompts / verifier batches re-queued", "{} / {}".format(*calm["requeued"]),
         "{} / {}".format(*chaos["requeued"])),
        ("step time (median)", f"{calm['step_s']:.2f}s", f"{chaos['step_s']:.2f}s "
         f"({chaos['step_s'] / calm['step_s']:.2f}×)"),
        ("run wall time", f"{calm['wall_s']:.0f}s", f"{chaos['wall_s']:.0f}s "
         f"({chaos['wall_s'] / calm['wall_s']:.2f}×)"),
    ]
    width = max(len(a) for a, _, _ in lines)
    calm_width = max(len(b) for _, b, _ in lines + [("", "undisturbed", "")])
    out = [f"{'':<{width}}  {'undisturbed':<{calm_width}}  with faults"]
    out += [f"{a:<{width}}  {b:<{calm_width}}  {c}" for a, b, c in lines]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="GRPO steps of each run")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between kills")
    parser.add_argument("--duration", type=float, default=300.0,
                        help="seconds of killing at most (from the first logged step)")
    parser.add_argument("--seed", type=int, default=0, help="which worker each kill picks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        probe = load_config(str(recipe(Path(tmp) / "probe", args.steps)))
        start_ray(probe.cluster, log_to_driver=False)  # one cluster for both runs
        try:
            calm = one_run(Path(tmp) / "undisturbed", args.steps, None)
            chaos = one_run(Path(tmp) / "chaos", args.steps,
                            {"interval": args.interval, "duration": args.duration,
                             "seed": args.seed})
        finally:
            stop_ray()
    print()
    print(table(calm, chaos))


if __name__ == "__main__":
    main()
