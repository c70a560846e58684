"""The PRISM phases around the discriminator: warm-up on offline pairs, then alignment.

Both run on the shared step loop (``driver.loop``); alignment is its policy-gradient step with
the discriminator as scorer and as the critic trained beside the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from prism_ray.algo import prism_advantages, within_group_correlation
from prism_ray.config.phases import AlignPhase, DiscWarmupPhase
from prism_ray.data.fidelity import caption_fidelity, fidelity_rate, scene_from_extra_info
from prism_ray.driver.datasets import phase_records
from prism_ray.driver.loop import (
    Collected,
    Draw,
    PolicyGradientStepper,
    StepResult,
    Timer,
    run_steps,
)
from prism_ray.driver.rewards import samples_for
from prism_ray.types import (
    DiscriminatorItem,
    DiscriminatorScores,
    PolicySample,
    RLPrompt,
    Rollout,
)

ALIGN_HEADLINE = ("rollout/format_rate", "rollout/caption_fidelity",
                  "discriminator/accuracy_cap", "discriminator/gap_cap", "discriminator/gap_cot",
                  "discriminator/cap_score_fidelity_corr", "policy/loss")

if TYPE_CHECKING:
    from prism_ray.driver.context import RunContext


def run_disc_warmup(phase: DiscWarmupPhase, ctx) -> None:
    pairs = phase_records(phase, ctx.assets)
    items = [DiscriminatorItem.from_warmup(p) for p in pairs]
    print(f"[{phase.name}] {len(items)} teacher/student pairs, "
          f"{phase.total_steps(len(items))} steps of {phase.batch_size}")
    run_steps(phase, ctx, items, WarmupStepper(phase, ctx))


@dataclass
class WarmupStepper:
    """Discriminator warm-up on offline pairs: L_cap + L_cot + aux·load-balancing, no score
    regulariser (PRISM_SPEC §3)."""

    phase: DiscWarmupPhase
    ctx: RunContext
    headline: tuple[str, ...] = ("discriminator/loss", "discriminator/accuracy_cap",
                                 "discriminator/accuracy_cot", "discriminator/gap_cap",
                                 "discriminator/gap_cot")

    def configure(self, total_steps: int) -> None:
        self.ctx.roles.discriminator.configure_optimizer(self.phase.optimizer, total_steps)

    def step(self, draw: Draw, timer: Timer, steps_left: int) -> StepResult:
        batch = draw(self.phase.batch_size)
        with timer("discriminator"):
            metrics = self.ctx.roles.discriminator.train_step(
                batch, reg_coef=0.0, aux_coef=self.phase.aux_loss_coef)
        return StepResult({f"discriminator/{k}": v for k, v in metrics.items()},
                          sequences=len(batch))

    def finish(self) -> None:
        pass


def run_align(phase: AlignPhase, ctx) -> None:
    prompts = phase_records(phase, ctx.assets)
    print(f"[{phase.name}] {len(prompts)} prompts, {phase.steps} steps × "
          f"{phase.prompts_per_step} prompts × {phase.samples_per_prompt}")
    run_steps(phase, ctx, prompts, AlignStepper(phase, ctx, ALIGN_HEADLINE))


@dataclass
class AlignStepper(PolicyGradientStepper):
    """PRISM alignment (PRISM_SPEC §4): discriminator scores (eval mode) → multi-reward
    advantages → discriminator update (the critic seam) → policy update → sync."""

    def configure_critic(self, total_steps: int) -> None:
        self.ctx.roles.discriminator.configure_optimizer(self.phase.disc_optimizer, total_steps)

    def collect(self, draw: Draw, timer: Timer) -> Collected:
        roles = self.ctx.roles
        prompts, groups, staleness = self.generate(draw, timer, self.phase.prompts_per_step)
        items = [DiscriminatorItem.from_prompt(p, tuple(r.text for r in g))
                 for p, g in zip(prompts, groups)]
        with timer("score"):
            scores = roles.discriminator.score(items)
        return Collected(prompts, groups, (items, scores),
                         {**rollout_metrics(prompts, groups, scores), **staleness})

    def perception_scores(self, batch: Collected) -> torch.Tensor:
        """The perception reward of every rollout, in batch order: the discriminator's
        caption score (``bench/align_oracle.py`` puts the caption's true claim rate here)."""
        _, scores = batch.scores
        return torch.tensor([s for sc in scores for s in sc.student_caption])

    def advantages(self, batch: Collected) -> tuple[list[PolicySample], dict[str, float]]:
        _, scores = batch.scores
        cap = self.perception_scores(batch)
        cot = torch.tensor([s for sc in scores for s in sc.student_reasoning])
        invalid = torch.tensor([not v for sc in scores for v in sc.valid])
        group_ids = torch.tensor([g for g, sc in enumerate(scores) for _ in sc.valid])
        advantages, metrics = prism_advantages(cap, cot, invalid, group_ids,
                                               alpha=self.phase.alpha, beta=self.phase.beta)
        flat = [(p, r) for p, g in zip(batch.prompts, batch.groups) for r in g]
        samples = samples_for([p for p, _ in flat], [r for _, r in flat], advantages)
        return samples, metrics

    def critic(self, batch: Collected) -> dict[str, float]:
        items, _ = batch.scores
        metrics = self.ctx.roles.discriminator.train_step(
            items, reg_coef=self.phase.disc_reg_coef, aux_coef=0.0)
        return {f"discriminator/{k}": v for k, v in metrics.items()}


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
        corr = score_fidelity_correlation(prompts, groups, scores)
        if corr is not None:
            metrics["discriminator/cap_score_fidelity_corr"] = corr
    return metrics


def score_fidelity_correlation(prompts: list[RLPrompt], groups: list[list[Rollout]],
                               scores: list[DiscriminatorScores]) -> float | None:
    """Within-group correlation of the perception score with the caption's true fidelity:
    whether the discriminator's reward could raise fidelity at all (> 0) or only style."""
    xs, ys, ids = [], [], []
    for g, (prompt, group, sc) in enumerate(zip(prompts, groups, scores)):
        for rollout, score, valid in zip(group, sc.student_caption, sc.valid):
            rate = caption_claim_rate(prompt, rollout, valid)
            if rate is not None:
                xs.append(score), ys.append(rate), ids.append(g)
    if len(xs) < 3:
        return None
    return within_group_correlation(torch.tensor(xs), torch.tensor(ys), torch.tensor(ids))


def caption_claim_rate(prompt: RLPrompt, rollout: Rollout, valid: bool) -> float | None:
    """The share of the rollout's caption claims that are true of the prompt's scene; None
    when the prompt carries no scene, the response is format-invalid or claims nothing."""
    scene = scene_from_extra_info(prompt.extra_info)
    claims = caption_fidelity(rollout.text, scene) if scene and valid else None
    return claims.true / claims.total if claims is not None and claims.total else None
