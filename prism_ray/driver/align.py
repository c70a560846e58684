"""The PRISM phases around the discriminator: warm-up on offline pairs, then alignment.

Alignment, one step (PRISM_SPEC §4): rollout → discriminator scores (eval mode) →
multi-reward advantages → discriminator update → policy update → weight sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prism_ray.algo import prism_advantages
from prism_ray.config.phases import AlignPhase, DiscWarmupPhase
from prism_ray.data.fidelity import fidelity_rate, scene_from_extra_info
from prism_ray.driver.datasets import Cursor, load_records
from prism_ray.types import (
    DiscriminatorItem,
    DiscriminatorScores,
    PolicySample,
    RLPrompt,
    Rollout,
)

ALIGN_HEADLINE = ("rollout/format_rate", "rollout/response_len", "discriminator/accuracy_cap",
                  "discriminator/gap_cap", "discriminator/gap_cot", "policy/loss")


def run_disc_warmup(phase: DiscWarmupPhase, ctx) -> None:
    pairs = load_records("disc_warmup", phase.data, ctx.assets.dataset_dir)
    items = [DiscriminatorItem.from_warmup(p) for p in pairs]
    total = phase.epochs * math.ceil(len(items) / phase.batch_size)
    total = min(total, phase.max_steps) if phase.max_steps else total
    print(f"[{phase.name}] {len(items)} teacher/student pairs, {total} steps of "
          f"{phase.batch_size}")
    disc = ctx.roles.discriminator
    disc.configure_optimizer(phase.optimizer, total)
    first, cursor = ctx.start(phase, len(items))
    progress = ctx.progress(phase, total, headline=("discriminator/loss",
                                                    "discriminator/accuracy_cap",
                                                    "discriminator/accuracy_cot",
                                                    "discriminator/gap_cap",
                                                    "discriminator/gap_cot"))
    for phase_step in range(first, total):
        batch = [items[i] for i in cursor.take(phase.batch_size)]
        with progress.timer("disc_update"):
            # Warm-up loss: L_cap + L_cot + aux·load-balancing, no score regulariser (§3).
            metrics = disc.train_step(batch, reg_coef=0.0, aux_coef=phase.aux_loss_coef)
        ctx.step += 1
        progress.step(phase_step, ctx.step, {f"discriminator/{k}": v for k, v in metrics.items()})
        ctx.after_step(phase, phase_step, cursor)


def run_align(phase: AlignPhase, ctx) -> None:
    prompts = load_records("align", phase.data, ctx.assets.dataset_dir)
    missing = [p.uid for p in prompts if p.teacher_caption is None or p.teacher_cot is None]
    if missing:
        raise ValueError(f"[{phase.name}] alignment needs teacher_caption/teacher_cot; "
                         f"{len(missing)} prompt(s) lack them, e.g. {missing[:3]}")
    print(f"[{phase.name}] {len(prompts)} prompts, {phase.steps} steps × "
          f"{phase.prompts_per_step} prompts × {phase.samples_per_prompt}")
    ctx.roles.policy.configure_optimizer(phase.optimizer, phase.steps)
    ctx.roles.discriminator.configure_optimizer(phase.disc_optimizer, phase.steps)
    first, cursor = ctx.start(phase, len(prompts))
    progress = ctx.progress(phase, phase.steps, headline=ALIGN_HEADLINE)
    stepper = AlignStepper(phase, prompts, cursor, ctx, progress)
    for phase_step in range(first, phase.steps):
        ctx.before_step()
        metrics, tokens = stepper.step()
        metrics["rollout/num_workers"] = float(ctx.roles.rollout.num_workers)
        ctx.step += 1
        progress.step(phase_step, ctx.step, metrics, tokens=tokens)
        ctx.after_step(phase, phase_step, cursor)


@dataclass
class AlignStepper:
    phase: AlignPhase
    prompts: list[RLPrompt]
    cursor: Cursor
    ctx: object  # driver.context.RunContext
    progress: object  # driver.progress.PhaseProgress

    def step(self) -> tuple[dict[str, float], int]:
        from prism_ray.actors.policy import PolicyLoss

        ctx, phase, roles = self.ctx, self.phase, self.ctx.roles
        prompts = [self.prompts[i] for i in self.cursor.take(phase.prompts_per_step)]
        with self.progress.timer("rollout"):
            groups = roles.rollout.generate(prompts, ctx.rollout_params(phase))
        items = [DiscriminatorItem.from_prompt(p, tuple(r.text for r in g))
                 for p, g in zip(prompts, groups)]
        with self.progress.timer("disc_score"):
            scores = roles.discriminator.score(items)
        advantages, metrics = self._advantages(scores)
        with self.progress.timer("disc_update"):
            disc = roles.discriminator.train_step(items, reg_coef=phase.disc_reg_coef,
                                                  aux_coef=0.0)
        samples = self._samples(prompts, groups, advantages)
        with self.progress.timer("policy_update"):
            policy = roles.policy.policy_step(samples, PolicyLoss.for_align(phase))
        with self.progress.timer("weight_sync"):
            stats = roles.sync.push(ctx.version + 1)
            ctx.version = stats.version
        metrics.update({f"discriminator/{k}": v for k, v in disc.items()})
        metrics.update({f"policy/{k}": v for k, v in policy.items()})
        metrics.update(rollout_metrics(prompts, groups, scores))
        metrics.update({"sync/bytes": float(stats.bytes), "sync/gb_per_s": stats.gb_per_s})
        return metrics, sum(len(s.response_ids) for s in samples)

    def _advantages(self, scores: list[DiscriminatorScores]) -> tuple[torch.Tensor, dict]:
        cap = torch.tensor([s for sc in scores for s in sc.student_caption])
        cot = torch.tensor([s for sc in scores for s in sc.student_reasoning])
        invalid = torch.tensor([not v for sc in scores for v in sc.valid])
        group_ids = torch.tensor([g for g, sc in enumerate(scores) for _ in sc.valid])
        advantages, metrics = prism_advantages(cap, cot, invalid, group_ids,
                                               alpha=self.phase.alpha, beta=self.phase.beta)
        return advantages, {f"advantage/{k}": v for k, v in metrics.items()}

    @staticmethod
    def _samples(prompts: list[RLPrompt], groups: list[list[Rollout]],
                 advantages: torch.Tensor) -> list[PolicySample]:
        flat = [(p, r) for p, g in zip(prompts, groups) for r in g]
        return [PolicySample(p.question, p.images, r.token_ids, float(a), r.logprobs)
                for (p, r), a in zip(flat, advantages)]


def rollout_metrics(prompts: list[RLPrompt], groups: list[list[Rollout]],
                    scores: list[DiscriminatorScores]) -> dict:
    """Step metrics of the rollouts; caption fidelity only when some prompt carries its scene."""
    rollouts = [r for g in groups for r in g]
    valid = [v for sc in scores for v in sc.valid]
    n = max(len(rollouts), 1)
    metrics = {
        "rollout/format_rate": sum(valid) / n,
        "rollout/response_len": sum(len(r.token_ids) for r in rollouts) / n,
        "rollout/truncated_rate": sum(r.finish_reason == "length" for r in rollouts) / n,
    }
    fidelity = fidelity_rate((r.text, scene_from_extra_info(p.extra_info))
                             for p, g in zip(prompts, groups) for r in g)
    if fidelity is not None:
        metrics["rollout/caption_fidelity"] = fidelity
    return metrics
