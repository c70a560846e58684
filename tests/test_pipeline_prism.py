"""The whole PRISM pipeline in one job on a local Ray cluster (reduced steps): SFT →
discriminator warm-up → alignment → GRPO → eval, every role a real actor; asserts on the
evaluation table, the per-phase exports and the tracking run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from prism_ray.config import load_config
from prism_ray.driver.main import run
from prism_ray.driver.progress import SECTIONS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]
SHORT = {"data": TINY, "max_response_tokens": 24}


def test_sft_warmup_align_rlvr_eval_in_one_job(ray_cluster, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "prism-e2e",
        "output_dir": str(tmp_path / "run"),
        "policy": {"resources": {"num_cpus": 0.5}},
        "rollout": {"resources": {"num_cpus": 0.5}},
        "discriminator": {"learner": {"resources": {"num_cpus": 0.5}}},
        "verifier": {"resources": {"num_cpus": 0.25}},
        "phases": [
            {"kind": "sft", "data": TINY, "steps": 6, "batch_size": 8,
             "optimizer": {"lr": 2e-3}},
            {"kind": "disc_warmup", "data": TINY, "steps": 3, "batch_size": 4,
             "optimizer": {"lr": 5e-4}},
            {"kind": "align", **SHORT, "steps": 2, "prompts_per_step": 2,
             "samples_per_prompt": 4, "max_staleness": 1},
            {"kind": "rlvr", **SHORT, "steps": 2, "prompts_per_step": 2,
             "samples_per_prompt": 4},
            {"kind": "eval", **SHORT, "max_prompts": 8},
        ],
    }))
    ctx = run(load_config(recipe))
    run_dir = ctx.run_dir

    # One evaluation of the untrained weights and one after every training phase that
    # changed the policy (the final eval phase finds v-latest already evaluated).
    table = ctx.evaluations
    assert [row["after"] for row in table] == ["start", "sft", "align", "rlvr"]
    assert [row["weights"] for row in table] == ["v0", "v1", "v3", "v5"]
    assert all(row["prompts"] == 8 and 0 <= row["accuracy"] <= 1 for row in table)
    assert table[0]["response_len"] == 24  # the untrained model never closes its answer
    assert "rlvr" in (run_dir / "evaluations.md").read_text()

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 14))
    warmup = [r for r in rows if "disc_warmup/discriminator/gap_cap" in r]
    align = [r for r in rows if "align/discriminator/gap_cap" in r]
    assert len(warmup) == 3 and len(align) == 2
    assert all("align/advantage/valid_ratio" in r and "align/policy/loss" in r for r in align)
    # One step loop: every phase records the same timing sections and throughput fields.
    for r in rows:
        phase = next(k.split("/")[0] for k in r if k.count("/") >= 2)
        fields = {f"timing/{s}" for s in (*SECTIONS, "step")} | {
            "throughput/tokens_per_s", "throughput/sequences_per_s"}
        assert {f"{phase}/{f}" for f in fields} <= r.keys(), phase
    assert all(r["align/timing/discriminator"] > 0 and r["align/timing/sync"] > 0 for r in align)
    # Alignment one step ahead: the second step trains on rollouts one version old.
    assert [r["align/rollout/staleness_max"] for r in align] == [0.0, 1.0]

    # Every phase exported HF checkpoints; a phase boundary checkpoint was sealed each time.
    from transformers import AutoModelForImageTextToText

    from prism_ray.models.discriminator import load_discriminator

    for phase in ("sft", "disc_warmup", "align", "rlvr"):
        assert (run_dir / "phases" / phase / "policy" / "model.safetensors").exists()
        assert (run_dir / "phases" / phase / "discriminator" / "value_head.safetensors").exists()
    policy = AutoModelForImageTextToText.from_pretrained(run_dir / "phases/rlvr/policy",
                                                         use_safetensors=True)
    assert sum(p.numel() for p in policy.parameters()) > 1_000_000
    disc = load_discriminator(str(run_dir / "phases/align/discriminator"), torch.float32, "cpu")
    assert disc.head is not None
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints[-1] == "step00000013" and not any(c.startswith(".tmp") for c in checkpoints)
    assert (run_dir / "plots" / "discriminator_gaps.png").exists()
    client = MlflowClient(tracking_uri=ctx.tracker.uri)
    run_info = client.get_run(ctx.tracker.run_id)
    assert run_info.info.status == "FINISHED"
    assert client.get_metric_history(ctx.tracker.run_id, "align/discriminator/gap_cap")
