"""Chaos: a short GRPO run on the embedded default while a thread kills a random rollout or
verifier worker every few seconds. The run finishes; no sample is lost or duplicated (by
prompt uid and sample index, every step); every fault injected is a fault survived.
``bench/chaos.py`` is the same for longer, with step times against an undisturbed run."""

from __future__ import annotations

import json

import pytest

from prism_ray.actors.chaos import WorkerKiller
from prism_ray.config import load_config
from prism_ray.driver.main import run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]
STEPS = 6


def chaos_overrides(run_dir) -> dict:
    return {
        "name": "chaos",
        "output_dir": str(run_dir),
        "tracking": {"enabled": False},
        "policy": {"num_ranks": 1, "resources": {"num_cpus": 0.5}},
        "rollout": {"num_workers": 2, "resources": {"num_cpus": 0.5}},
        "verifier": {"num_workers": 2, "resources": {"num_cpus": 0.25}, "batch_size": 2,
                     "math_verify": False},
        "phases": [
            {"kind": "rlvr", "name": "grpo", "algorithm": {"name": "grpo"}, "data": TINY,
             "steps": STEPS, "prompts_per_step": 2, "samples_per_prompt": 4,
             "max_response_tokens": 12, "optimizer": {"lr": 1e-4}},
            # The evaluation after the phase uses every role once more, so a worker killed
            # during the last step is found (and counted) before the run ends.
            {"kind": "eval", "data": TINY, "max_prompts": 4, "max_response_tokens": 12},
        ],
    }


def rows(run_dir) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_survives_workers_killed_every_few_seconds(ray_cluster, tmp_path):
    import yaml

    run_dir = tmp_path / "run"
    recipe = tmp_path / "chaos.yaml"
    recipe.write_text(yaml.safe_dump(chaos_overrides(run_dir)))
    config = load_config(str(recipe))
    # Kills start once the loop runs (step 1 logged; building the roles is not what is
    # tested) and stop once the last step has begun, so each is found by a later call. At
    # most one kill per logged step, however slow the machine: faults every few seconds
    # during a step that takes longer would kill each replacement before it is synced,
    # which no run survives (a push gives up after a bounded number of attempts).
    def active() -> bool:
        logged = len(rows(run_dir))
        return 1 <= logged < STEPS - 1 and killer.injected < logged

    killer = WorkerKiller(interval_s=3.0, seed=0, active=active).start()
    try:
        ctx = run(config)
    finally:
        killer.stop()
    steps = rows(run_dir)
    assert len(steps) == STEPS and ctx.version == STEPS
    assert sum(r["grpo/rollout/samples_lost"] for r in steps) == 0
    assert sum(r["grpo/rollout/samples_duplicated"] for r in steps) == 0
    survived = (ctx.roles.rollout.faults["workers_lost"]
                + ctx.roles.verifier.faults["workers_lost"])
    assert killer.injected >= 1, killer.kills
    assert survived == killer.injected, (killer.kills, ctx.roles.rollout.faults,
                                         ctx.roles.verifier.faults)
