"""ZeRO-3 bf16 policy step with NCCL on the tiny checkpoint (run on a GPU host)."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.ray,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_zero3_bf16_step_with_nccl(ray_cluster, tiny_pair, tmp_path):
    from prism_ray.actors.policy_group import PolicyLearnerGroup
    from prism_ray.algo import PolicyLoss
    from prism_ray.config.phases import GRPO
    from prism_ray.config.schema import LearnerConfig, OptimizerConfig, Resources
    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.data.synthetic import synthesize
    from prism_ray.types import PolicySample

    synthesize(tmp_path / "data", size="tiny")
    prompts = read_rl_parquet(tmp_path / "data/rlvr/train.parquet").records[:4]
    samples = [PolicySample(p.question, p.images, tuple(range(100, 110 + i)), advantage=i - 1.5)
               for i, p in enumerate(prompts)]
    ranks = min(2, torch.cuda.device_count())
    config = LearnerConfig(num_ranks=ranks, zero_stage=3, dtype="bfloat16",
                           resources=Resources(num_cpus=1, num_gpus=1))
    group = PolicyLearnerGroup(tiny_pair[0], config, 0, call_timeout_s=300,
                               system_prompt=None, placement_timeout_s=120)
    try:
        assert group.backend == "nccl"
        group.configure_optimizer(OptimizerConfig(lr=1e-4), total_steps=2)
        before = group.full_state_dict()
        metrics = group.policy_step(samples, PolicyLoss.from_settings(GRPO()))
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        after = group.full_state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert next(iter(after.values())).dtype == torch.bfloat16
    finally:
        group.shutdown()
