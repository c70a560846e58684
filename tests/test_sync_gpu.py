"""Weight sync on one GPU: a learner rank and a rollout worker share the device, and the
weights travel as CUDA IPC handles (NCCL refuses two ranks on one GPU). After the sync the
rollout worker's log-probs of fixed samples match the learner's."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.ray,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_ipc_sync_between_colocated_actors(ray_cluster, tiny_pair, tmp_path):
    ray = ray_cluster

    from prism_ray.actors.policy_group import PolicyLearnerGroup
    from prism_ray.actors.rollout_pool import RolloutPool
    from prism_ray.algo import PolicyLoss
    from prism_ray.config.phases import GRPO
    from prism_ray.config.schema import LearnerConfig, OptimizerConfig, Resources, RolloutConfig
    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.data.synthetic import synthesize
    from prism_ray.sync.coordinator import WeightSync
    from prism_ray.types import PolicySample, SamplingParams

    synthesize(tmp_path / "data", size="tiny")
    prompts = read_rl_parquet(tmp_path / "data" / "rlvr" / "train.parquet").records[:2]
    if True:
        half = Resources(num_cpus=1, num_gpus=0.5)
        policy = PolicyLearnerGroup(tiny_pair[0], LearnerConfig(resources=half, zero_stage=2), 0,
                                    system_prompt=None, placement_timeout_s=120)
        pool = RolloutPool(RolloutConfig(num_workers=1, resources=half), tiny_pair[0], seed=0,
                           system_prompt=None, placement_timeout_s=120)
        sync = WeightSync(policy.actors, "cuda_ipc", bucket_bytes=1 << 20)
        sync.connect(pool.group.actors)
        # New weights on the learner: one large policy-gradient step.
        policy.configure_optimizer(OptimizerConfig(lr=1e-2), total_steps=1)
        groups = pool.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=0))
        samples = [PolicySample(p.question, p.images, r.token_ids, 1.0, r.logprobs)
                   for p, g in zip(prompts, groups) for r in g]
        policy.policy_step(samples, PolicyLoss.from_settings(GRPO()))
        stats = sync.push(version=1)
        assert stats.bytes == sync.total_bytes and stats.gb_per_s > 0
        learner = policy.compute_logprobs(samples)
        worker = ray.get(pool.group.actors[0].logprobs_of.remote(
            [p for p in prompts for _ in range(2)], [s.response_ids for s in samples]))
        diff = max(abs(a - b) for x, y in zip(learner, worker) for a, b in zip(x, y))
        print(f"cuda_ipc sync: {stats.bytes / 2**20:.1f} MiB in {stats.seconds:.3f}s "
              f"({stats.gb_per_s:.1f} GB/s); max |Δ logprob| learner vs rollout = {diff:.2e}")
        assert diff < 1e-3
        pool.shutdown()
        policy.shutdown()
