"""Weight sync learner → rollout worker on one GPU, the roles colocated (CUDA IPC).

    python bench/weight_sync.py                       # the published 2B shape, vLLM worker
    python bench/weight_sync.py --shape tiny --backend hf --pushes 4

A DeepSpeed policy learner (bf16, ZeRO-2, one rank) and one rollout worker share the GPU as
in ``recipes/bench/gpu-2b-rlvr.yaml``; the learner's weights are pushed ``--pushes`` times per
setting and the median push (the first excluded: it allocates and maps the staging buffer)
is compared with the goal (0.2 s) and with a plain device-to-device copy of the same bytes on
this GPU (the transport's limit). After the last push the worker's log-probs of a few sampled
responses are compared with the learner's, so a fast but wrong load cannot pass unnoticed.
Settings: the staging buffer as large as the weights (one round) and 256 MiB rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_S = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen3vl-2b-shape", choices=("tiny", "qwen3vl-2b-shape"))
    parser.add_argument("--backend", default="vllm", choices=("vllm", "hf"))
    parser.add_argument("--pushes", type=int, default=6)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    args = parser.parse_args()

    import ray
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/weight_sync.py: needs a CUDA GPU (the CUDA IPC path)")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from prism_ray.actors.policy_group import PolicyLearnerGroup
    from prism_ray.actors.rollout_pool import RolloutPool
    from prism_ray.config.run import RunConfig
    from prism_ray.config.schema import LearnerConfig, Resources, RolloutConfig, VllmOptions
    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.data.synthetic import synthesize
    from prism_ray.models.tiny import create_tiny_checkpoint
    from prism_ray.sync.coordinator import WeightSync
    from prism_ray.sync.plan import rounds_of
    from prism_ray.types import PolicySample, SamplingParams

    system_prompt = RunConfig().system_prompt
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        preset = "policy" if args.shape == "tiny" else args.shape
        path = create_tiny_checkpoint(Path(tmp) / args.shape, preset, seed=0)
        synthesize(Path(tmp) / "data", size="tiny", image_size=224)
        prompts = read_rl_parquet(Path(tmp) / "data" / "rlvr" / "train.parquet").records[:4]
        half = Resources(num_cpus=2, num_gpus=0.5)
        policy = PolicyLearnerGroup(str(path), LearnerConfig(resources=half, zero_stage=2,
                                                             dtype="bfloat16"),
                                    0, system_prompt=system_prompt, placement_timeout_s=300)
        vllm = VllmOptions(gpu_memory_utilization=args.gpu_memory_utilization,
                           enforce_eager=True, max_model_len=2048)
        pool = RolloutPool(RolloutConfig(backend=args.backend, num_workers=1, resources=half,
                                         vllm=vllm),
                           str(path), seed=0, system_prompt=system_prompt,
                           placement_timeout_s=600)
        rows, version = [], 0
        for label, buffer_mb in (("one round (buffer = weights)", 0), ("256 MiB rounds", 256)):
            sync = WeightSync(policy.actors, "cuda_ipc", 256 * 2**20,
                              ipc_buffer_bytes=buffer_mb * 2**20)
            sync.connect(pool.group.actors)
            pushes = []
            for _ in range(args.pushes):
                version += 1
                pushes.append(sync.push(version))
            steady = pushes[1:] or pushes
            seconds = statistics.median(s.seconds for s in steady)
            rows.append((label, len(rounds_of(sync.plan, sync.ipc_buffer_bytes)),
                         pushes[0].seconds, seconds, steady[0].bytes / seconds / 1e9,
                         steady[0].copy_gb_per_s))
        # Correctness: the worker now samples with exactly the learner's weights.
        groups = pool.generate(prompts, SamplingParams(n=2, max_tokens=16, seed=0))
        samples = [PolicySample(p.question, p.images, r.token_ids, 0.0, r.logprobs)
                   for p, g in zip(prompts, groups) for r in g]
        learner = policy.compute_logprobs(samples)
        worker = [s.rollout_logprobs for s in samples]
        diff = statistics.mean(abs(a - b) for x, y in zip(learner, worker) for a, b in zip(x, y))
        nbytes = pushes[0].bytes
        pool.shutdown()
        policy.shutdown()
    ray.shutdown()

    print(f"\nweight sync, {args.shape}, {args.backend} worker, {nbytes / 1e9:.2f} GB bf16, "
          f"{torch.cuda.get_device_name()}, median of pushes 2–{args.pushes}")
    print(f"{'setting':30s} {'rounds':>6s} {'first s':>8s} {'push s':>7s} {'goal s':>7s} "
          f"{'goal/push':>9s} {'GB/s':>7s} {'copy GB/s':>9s} {'share':>6s}")
    for label, rounds, first, seconds, rate, limit in rows:
        print(f"{label:30s} {rounds:6d} {first:8.3f} {seconds:7.3f} {GOAL_S:7.2f} "
              f"{GOAL_S / seconds:8.2f}× {rate:7.1f} {limit:9.0f} {rate / limit:6.1%}")
    print(f"mean |Δ log p| learner vs worker after the last push: {diff:.4f} "
          "(bf16 on both sides; a stale or partial load shows as ≫ 0.05)")


if __name__ == "__main__":
    main()
