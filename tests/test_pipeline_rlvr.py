"""RLVR end to end on a local Ray cluster: every role a real actor (2 rollout workers, 2
DeepSpeed learner ranks, 2 verifier workers), GRPO → DAPO → GSPO, elastic rollout."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from prism_ray.config import load_config
from prism_ray.driver.main import run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]


def rlvr(name: str, algorithm: dict) -> dict:
    return {"kind": "rlvr", "name": name, "algorithm": algorithm, "data": TINY, "steps": 2,
            "prompts_per_step": 2, "samples_per_prompt": 4, "max_response_tokens": 12,
            "optimizer": {"lr": 1e-4}}


def recipe(tmp_path, zero_stage: int, phases: list[dict], **extra) -> str:
    body = {
        "name": f"rlvr-zero{zero_stage}",
        "output_dir": str(tmp_path / "run"),
        "policy": {"num_ranks": 2, "zero_stage": zero_stage, "resources": {"num_cpus": 0.5}},
        "rollout": {"num_workers": 2, "resources": {"num_cpus": 0.5}},
        "verifier": {"num_workers": 2, "resources": {"num_cpus": 0.25}, "timeout_s": 3},
        "phases": phases,
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_grpo_dapo_gspo_with_zero2_and_elastic_rollout(ray_cluster, tmp_path):
    phases = [
        rlvr("grpo", {"name": "grpo"}),
        rlvr("dapo", {"name": "dapo", "dynamic_sampling": {"oversample": 1.0, "max_rounds": 2},
                      "overlong": {"max_tokens": 12, "buffer_tokens": 4}}),
        rlvr("gspo", {"name": "gspo"}),
        {"kind": "eval", "data": TINY, "max_prompts": 4, "max_response_tokens": 12},
    ]
    # Elastic rollout: a third worker joins before step 2 and leaves before step 4.
    config = load_config(recipe(tmp_path, 2, phases, rollout={
        "num_workers": 2, "resources": {"num_cpus": 0.5}, "resize_at": {2: 3, 4: 2}}))
    ctx = run(config)

    rows = records(ctx.run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    by_phase = {p: [r for r in rows if any(k.startswith(p + "/") for k in r)]
                for p in ("grpo", "dapo", "gspo")}
    assert all(len(v) == 2 for v in by_phase.values())
    workers = [r[f"{p}/rollout/num_workers"] for p in by_phase for r in by_phase[p]]
    assert workers == [2, 2, 3, 3, 2, 2]
    for phase, steps in by_phase.items():
        for r in steps:
            if f"{phase}/policy/skipped_update" in r:  # DAPO found no informative group
                continue
            # The rollout workers sample with exactly the learner's weights: sync is exact
            # under ZeRO-2 across two ranks (HF engine, fp32: float noise only).
            assert r[f"{phase}/policy/rollout_mismatch_abs"] < 1e-4
            assert r[f"{phase}/sync/bytes"] > 0
            assert r[f"{phase}/rollout/format_rate"] >= 0.0
    assert all("dapo/rollout/dynamic_rounds" in r for r in by_phase["dapo"])
    # Every update produced a new weight version, and the eval row names the last one.
    updates = sum(1 for r in rows if not any(k.endswith("skipped_update") for k in r))
    assert ctx.version == updates
    assert ctx.evaluations[-1]["weights"] == f"v{ctx.version}"
    for phase in ("grpo", "dapo", "gspo"):
        assert (ctx.run_dir / "phases" / phase / "policy" / "model.safetensors").exists()
    assert (ctx.run_dir / "plots" / "reward_accuracy.png").exists()
    client = MlflowClient(tracking_uri=ctx.tracker.uri)
    assert client.get_run(ctx.tracker.run_id).info.status == "FINISHED"


def test_grpo_with_zero3_learners_and_two_updates_per_step(ray_cluster, tmp_path):
    phase = {**rlvr("grpo", {"name": "grpo"}), "updates_per_step": 2}
    config = load_config(recipe(tmp_path, 3, [phase], tracking={"enabled": False}))
    ctx = run(config)
    rows = records(ctx.run_dir)
    assert len(rows) == 2
    assert all(r["grpo/policy/rollout_mismatch_abs"] < 1e-4 for r in rows)
    # Two optimizer steps per rollout batch and one sync (the untrained policy earns equal
    # rewards, so the ratio's departure from 1 is asserted in test_policy_learner).
    assert all(r["grpo/policy/updates"] == 2 for r in rows)
    assert ctx.version == 2
    # ... which earns no gradient at all: the run says so.
    assert ctx.warnings == ["grpo: 2 of 2 step(s) had no gradient — its weights did not learn"]


def test_grpo_one_step_ahead_with_truncated_importance_sampling(ray_cluster, tmp_path,
                                                                 monkeypatch, capsys):
    """max_staleness 1: the next step's rollouts are generated while the learner updates;
    every trained group is at most one version old, the first step's is fresh, and nothing
    is generated past the phase's last step (the workers are idle when the phase ends)."""
    from prism_ray.actors.rollout_pool import RolloutPool

    submitted: list[int] = []
    original = RolloutPool.submit

    def counting(self, prompts, params):
        submitted.append(len(prompts))
        return original(self, prompts, params)

    monkeypatch.setattr(RolloutPool, "submit", counting)
    phase = {**rlvr("grpo", {"name": "grpo", "rollout_correction": {"kind": "tis"}}),
             "steps": 3, "max_staleness": 1}
    ctx = run(load_config(recipe(tmp_path, 2, [phase], tracking={"enabled": False})))
    rows = records(ctx.run_dir)
    assert submitted == [2, 2, 2]  # one batch of prompts_per_step per step, none beyond
    assert "were not trained on" not in capsys.readouterr().out
    assert [r["grpo/rollout/staleness_max"] for r in rows] == [0.0, 1.0, 1.0]
    assert all(r["grpo/rollout/stale_groups_dropped"] == 0 for r in rows)
    assert all("grpo/policy/is_ratio_max" in r for r in rows)
    # Steps without gradient (the untrained policy earns equal rewards) still report the
    # rollout-vs-learner mismatch under every key docs/async.md names.
    assert all(f"grpo/policy/rollout_mismatch_{key}" in r for r in rows
               for key in ("k1", "k3", "abs"))
    assert ctx.version == 3  # one sync per step, as in the synchronous loop
