"""Evaluation on the held-out split: greedy rollouts scored by the verifier.

Used by the ``eval`` phase; every evaluation adds a row to the run's table (accuracy, caption
fidelity, format rate, mean response length, wall time of the phase it follows), printed after each and kept for tracking.
Caption fidelity (``prism_ray.data.fidelity``) is the share of true caption claims over the
prompts that carry their scene; None (shown "–") when none does.
"""

from __future__ import annotations

from prism_ray.actors.rollout import sampling_params
from prism_ray.config.kinds import phase_kind
from prism_ray.config.phases import EvalPhase, RewardConfig
from prism_ray.data.fidelity import fidelity_rate, scene_from_extra_info
from prism_ray.driver.context import RunContext
from prism_ray.driver.datasets import phase_records
from prism_ray.driver.summary import evaluation_table
from prism_ray.types import VerifyRequest


def evaluate(ctx: RunContext, phase: EvalPhase, label: str) -> dict[str, float]:
    prompts = phase_records(phase, ctx.assets)
    if phase.max_prompts:
        prompts = prompts[: phase.max_prompts]
    params = sampling_params(phase.sampling, n=1, max_tokens=phase.max_response_tokens,
                             seed=ctx.phase_seed(phase))
    groups = ctx.roles.rollout.generate(prompts, params)
    rollouts = [group[0] for group in groups]
    requests = [VerifyRequest(r.text, p.ground_truth, p.equivalent_answers)
                for p, r in zip(prompts, rollouts)]
    results = ctx.roles.verifier.score(requests, RewardConfig()).results
    n = len(results)
    row = {
        "after": label,
        "weights": f"v{ctx.version}",
        "prompts": n,
        "accuracy": sum(r.accuracy for r in results) / n,
        "caption_fidelity": fidelity_rate(
            (r.text, scene_from_extra_info(p.extra_info)) for p, r in zip(prompts, rollouts)),
        "format_rate": sum(r.format_ok for r in results) / n,
        "response_len": sum(len(r.token_ids) for r in rollouts) / n,
        "phase_s": ctx.phase_wall_s.get(label),  # the training phase this row follows
    }
    ctx.evaluations.append(row)
    print(evaluation_table(ctx.evaluations), flush=True)
    return row


def eval_settings(config) -> EvalPhase | None:
    """The run's evaluation settings: its first enabled eval phase (also used at phase ends)."""
    return next((p for p in config.phases if phase_kind(p.kind).evaluation and p.enabled), None)


def run_eval(phase: EvalPhase, ctx: RunContext) -> None:
    if ctx.already_evaluated():
        print(f"[{phase.name}] weights v{ctx.version} already evaluated (see the table above)")
        return
    evaluate(ctx, phase, label=phase.name)
