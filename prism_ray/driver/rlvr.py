"""The RLVR phase: the policy-gradient step (``driver.loop``) with verifier rewards and
group-relative advantages. GRPO, DAPO and GSPO differ only in the loss settings the learner
receives and, for DAPO, in dynamic sampling and the overlong penalty here."""

from __future__ import annotations

from dataclasses import dataclass

from prism_ray.config.phases import DAPO, RLVRPhase
from prism_ray.driver.datasets import phase_records
from prism_ray.driver.loop import (
    Collected,
    Draw,
    PolicyGradientStepper,
    Timer,
    run_steps,
)
from prism_ray.driver.rewards import (
    ScoredGroups,
    concat,
    flatten_groups,
    informative_groups,
    outcome_metrics,
    policy_samples,
)
from prism_ray.types import PolicySample, VerifyRequest

HEADLINE = ("rollout/reward", "rollout/accuracy", "rollout/format_rate", "rollout/response_len",
            "policy/loss", "policy/rollout_mismatch_abs")


def run_rlvr(phase: RLVRPhase, ctx) -> None:
    prompts = phase_records(phase, ctx.assets)
    print(f"[{phase.name}] {phase.algorithm.name.upper()}: {len(prompts)} prompts, "
          f"{phase.steps} steps × {phase.prompts_per_step} prompts × {phase.samples_per_prompt}")
    run_steps(phase, ctx, prompts, RLVRStepper(phase, ctx, HEADLINE))


@dataclass
class RLVRStepper(PolicyGradientStepper):
    def loss_settings(self):
        return self.phase.algorithm

    def collect(self, draw: Draw, timer: Timer) -> Collected:
        algorithm = self.phase.algorithm
        dynamic = algorithm.dynamic_sampling if isinstance(algorithm, DAPO) else None
        if dynamic is None:
            scored, extra = self._round(draw, timer, self.phase.prompts_per_step, 0), {}
        else:
            scored, extra = self._dynamic(draw, timer, dynamic)
        metrics = {f"rollout/{k}": v for k, v in {**outcome_metrics(scored), **extra}.items()}
        metrics.update(self._staleness)
        groups: list[list] = [[] for _ in scored.prompts]
        for rollout, group in zip(scored.rollouts, scored.group_ids.tolist()):
            groups[group].append(rollout)
        return Collected(scored.prompts, groups, scored, metrics)

    def advantages(self, batch: Collected) -> tuple[list[PolicySample], dict[str, float]]:
        return policy_samples(batch.scores)

    def _dynamic(self, draw: Draw, timer: Timer, dynamic) -> tuple[ScoredGroups, dict]:
        """DAPO: oversample, keep groups whose accuracy varies, regenerate until full."""
        want = self.phase.prompts_per_step
        kept: list[ScoredGroups] = []
        have, rounds, seen = 0, 0, 0
        while have < want and rounds < dynamic.max_rounds:
            batch = self._round(draw, timer, int(round(want * dynamic.oversample)), rounds)
            useful, _ = informative_groups(batch)
            kept.append(useful)
            have += len(useful.prompts)
            seen += len(batch.prompts)
            rounds += 1
        metrics = {"dynamic_rounds": float(rounds), "kept_group_frac": have / max(seen, 1),
                   "batch_filled": float(have >= want)}
        return concat(kept, want), metrics

    def _round(self, draw: Draw, timer: Timer, num_prompts: int, index: int) -> ScoredGroups:
        prompts, groups, metrics = self.generate(draw, timer, num_prompts, index)
        if index > 0:  # DAPO's later rounds: the sample accounting covers the whole step
            for key in ("rollout/samples_lost", "rollout/samples_duplicated"):
                metrics[key] += self._staleness.get(key, 0.0)
            metrics = {**self._staleness, **metrics}
        self._staleness = metrics
        requests = [VerifyRequest(r.text, p.ground_truth, p.equivalent_answers)
                    for p, group in zip(prompts, groups) for r in group]
        with timer("score"):
            report = self.ctx.roles.verifier.score(requests, self.phase.reward)
        algorithm = self.phase.algorithm
        overlong = algorithm if isinstance(algorithm, DAPO) else None
        return flatten_groups(prompts, groups, report.results, overlong)
