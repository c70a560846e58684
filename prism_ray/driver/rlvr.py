"""The RLVR phase: sample prompts → rollouts → verifier rewards → advantages → policy update
→ weight sync, once per step. GRPO, DAPO and GSPO differ only in the loss settings the
learner receives and, for DAPO, in dynamic sampling and the overlong penalty here."""

from __future__ import annotations

from dataclasses import dataclass

from prism_ray.config.phases import DAPO, RLVRPhase
from prism_ray.driver.datasets import Cursor, load_records
from prism_ray.driver.rewards import (
    ScoredGroups,
    concat,
    flatten_groups,
    informative_groups,
    outcome_metrics,
    policy_samples,
)
from prism_ray.types import RLPrompt, SamplingParams, VerifyRequest


@dataclass
class RLVRStepper:
    """One RLVR step at a time; the phase loop (and resume) own the step counter."""

    phase: RLVRPhase
    prompts: list[RLPrompt]
    cursor: Cursor
    ctx: object  # driver.context.RunContext: roles, seeds, weight version
    progress: object  # driver.progress.PhaseProgress

    def step(self) -> tuple[dict[str, float], int]:
        """Run one step; returns (metrics, response tokens trained on)."""
        from prism_ray.actors.policy import PolicyLoss

        ctx = self.ctx
        params = ctx.rollout_params(self.phase)
        with self.progress.timer("rollout_verify"):
            scored, sampling_metrics = self._collect(params)
        metrics = {f"rollout/{k}": v for k, v in outcome_metrics(scored).items()}
        metrics.update({f"rollout/{k}": v for k, v in sampling_metrics.items()})
        if not scored.rollouts:
            metrics["policy/skipped_update"] = 1.0
            return metrics, 0
        samples, adv_metrics = policy_samples(scored)
        metrics.update({f"advantage/{k}": v for k, v in adv_metrics.items()})
        with self.progress.timer("policy_update"):
            learner = self.ctx.roles.policy.policy_step(samples, PolicyLoss.for_rlvr(
                self.phase.algorithm))
        metrics.update({f"policy/{k}": v for k, v in learner.items()})
        with self.progress.timer("weight_sync"):
            stats = self.ctx.roles.sync.push(ctx.version + 1)
            ctx.version = stats.version
        metrics.update({"sync/bytes": float(stats.bytes), "sync/seconds": stats.seconds,
                        "sync/gb_per_s": stats.gb_per_s})
        return metrics, sum(len(s.response_ids) for s in samples)

    def _collect(self, params: SamplingParams) -> tuple[ScoredGroups, dict]:
        algorithm = self.phase.algorithm
        dynamic = algorithm.dynamic_sampling if isinstance(algorithm, DAPO) else None
        if dynamic is None:
            return self._round(self.phase.prompts_per_step, algorithm, params), {}
        # DAPO: oversample, keep groups whose accuracy varies, regenerate until full.
        want = self.phase.prompts_per_step
        kept: list[ScoredGroups] = []
        have, rounds, seen = 0, 0, 0
        while have < want and rounds < dynamic.max_rounds:
            batch = self._round(int(round(want * dynamic.oversample)), algorithm,
                                self.ctx.rollout_params(self.phase, rounds))
            useful, _ = informative_groups(batch)
            kept.append(useful)
            have += len(useful.prompts)
            seen += len(batch.prompts)
            rounds += 1
        metrics = {"dynamic_rounds": float(rounds), "kept_group_frac": have / max(seen, 1),
                   "batch_filled": float(have >= want)}
        return concat(kept, want), metrics

    def _round(self, num_prompts: int, algorithm, params: SamplingParams) -> ScoredGroups:
        prompts = [self.prompts[i] for i in self.cursor.take(num_prompts)]
        groups = self.ctx.roles.rollout.generate(prompts, params)
        requests = [VerifyRequest(r.text, p.ground_truth, p.equivalent_answers)
                    for p, group in zip(prompts, groups) for r in group]
        report = self.ctx.roles.verifier.score(requests, self.phase.reward)
        overlong = algorithm if isinstance(algorithm, DAPO) else None
        return flatten_groups(prompts, groups, report.results, overlong)


def run_rlvr(phase: RLVRPhase, ctx) -> None:
    prompts = load_records("rlvr", phase.data, ctx.assets.dataset_dir)
    print(f"[{phase.name}] {phase.algorithm.name.upper()}: {len(prompts)} prompts, "
          f"{phase.steps} steps × {phase.prompts_per_step} prompts × {phase.samples_per_prompt}")
    ctx.roles.policy.configure_optimizer(phase.optimizer, phase.steps * phase.updates_per_step)
    first, cursor = ctx.start(phase, len(prompts))
    progress = ctx.progress(phase, phase.steps, headline=HEADLINE)
    stepper = RLVRStepper(phase, prompts, cursor, ctx, progress)
    for phase_step in range(first, phase.steps):
        ctx.before_step()
        metrics, tokens = stepper.step()
        metrics["rollout/num_workers"] = float(ctx.roles.rollout.num_workers)
        ctx.step += 1
        progress.step(phase_step, ctx.step, metrics, tokens=tokens)
        ctx.after_step(phase, phase_step, cursor)


HEADLINE = ("rollout/reward", "rollout/accuracy", "rollout/format_rate", "rollout/response_len",
            "policy/loss", "policy/rollout_mismatch_abs")
