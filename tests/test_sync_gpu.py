"""Weight sync on one GPU: a learner rank and a rollout worker share the device, and the
weights travel through the learner's staging buffer, mapped by CUDA IPC (NCCL refuses two
ranks on one GPU). After every sync — the first, which maps the buffer, a second through the
same mapping, and one in several rounds — the worker's log-probs match the learner's."""

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
        def pushed_and_matching(version: int) -> None:
            policy.policy_step(samples, PolicyLoss.from_settings(GRPO()))
            stats = sync.push(version=version)
            assert stats.bytes == sync.total_bytes and stats.gb_per_s > 0
            assert 0 < stats.limit_share
            learner = policy.compute_logprobs(samples)
            worker = ray.get(pool.group.actors[0].logprobs_of.remote(
                [p for p in prompts for _ in range(2)], [s.response_ids for s in samples]))
            diff = max(abs(a - b) for x, y in zip(learner, worker) for a, b in zip(x, y))
            print(f"cuda_ipc sync v{version}: {stats.bytes / 2**20:.1f} MiB in "
                  f"{stats.seconds:.3f}s ({stats.gb_per_s:.1f} GB/s, {stats.limit_share:.1%} "
                  f"of a device copy); max |Δ logprob| learner vs rollout = {diff:.2e}")
            assert diff < 1e-3

        pushed_and_matching(1)  # maps the staging buffer
        pushed_and_matching(2)  # reuses the mapping: fresh bytes, same buffer
        sync.ipc_buffer_bytes = 1 << 20  # rounds of ≤ 1 MiB through the same buffer
        pushed_and_matching(3)
        assert ray.get(pool.group.actors[0].weight_version.remote()) == 3
        pool.shutdown()
        policy.shutdown()
