"""The SFT phase: masked cross-entropy on demonstrations, on the policy learner group."""

from __future__ import annotations

import math

from prism_ray.algo import SFTAggregation
from prism_ray.config.phases import SFTPhase
from prism_ray.driver.context import RunContext
from prism_ray.driver.datasets import load_records


def sft_steps(phase: SFTPhase, num_demos: int) -> int:
    total = phase.epochs * math.ceil(num_demos / phase.batch_size)
    return min(total, phase.max_steps) if phase.max_steps else total


def run_sft(phase: SFTPhase, ctx: RunContext) -> None:
    demos = load_records("sft", phase.data, ctx.assets.dataset_dir, sft_sources=phase.sources)
    total = sft_steps(phase, len(demos))
    print(f"[{phase.name}] {len(demos)} demonstrations, {total} steps of {phase.batch_size}")
    policy = ctx.roles.policy
    policy.configure_optimizer(phase.optimizer, total)
    first, cursor = ctx.start(phase, len(demos))
    progress = ctx.progress(phase, total, headline=("policy/loss",))
    aggregation = SFTAggregation(phase.loss_aggregation)
    for phase_step in range(first, total):
        batch = [demos[i] for i in cursor.take(phase.batch_size)]
        with progress.timer("policy_update"):
            metrics = policy.sft_step(batch, aggregation, phase.max_seq_tokens)
        ctx.step += 1
        progress.step(phase_step, ctx.step, {f"policy/{k}": v for k, v in metrics.items()},
                      tokens=int(metrics.get("tokens", 0)))
        ctx.after_step(phase, phase_step, cursor)
    ctx.publish_weights()
