"""Evaluation on the held-out split: greedy rollouts scored by the verifier.

Used by the ``eval`` phase; every evaluation adds a row to the run's table (accuracy, format
rate, mean response length), printed after each and kept for tracking.
"""

from __future__ import annotations

from prism_ray.actors.rollout import sampling_params
from prism_ray.config.phases import EvalPhase, RewardConfig
from prism_ray.driver.context import RunContext
from prism_ray.driver.datasets import load_records
from prism_ray.driver.progress import text_table
from prism_ray.types import VerifyRequest


def evaluate(ctx: RunContext, phase: EvalPhase, label: str) -> dict[str, float]:
    prompts = load_records("eval", phase.data, ctx.assets.dataset_dir)
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
        "format_rate": sum(r.format_ok for r in results) / n,
        "response_len": sum(len(r.token_ids) for r in rollouts) / n,
    }
    ctx.evaluations.append(row)
    print(evaluation_table(ctx.evaluations), flush=True)
    return row


def evaluation_table(rows: list[dict]) -> str:
    header = ("after", "weights", "prompts", "accuracy", "format_rate", "response_len")
    cells = [header] + [
        (r["after"], r["weights"], str(r["prompts"]), f"{r['accuracy']:.3f}",
         f"{r['format_rate']:.3f}", f"{r['response_len']:.1f}") for r in rows
    ]
    return text_table(cells)


def eval_settings(config) -> EvalPhase | None:
    """The run's evaluation settings: its first enabled eval phase (also used at phase ends)."""
    return next((p for p in config.phases if p.kind == "eval" and p.enabled), None)


def run_eval(phase: EvalPhase, ctx: RunContext) -> None:
    if ctx.already_evaluated():
        print(f"[{phase.name}] weights v{ctx.version} already evaluated (see the table above)")
        return
    evaluate(ctx, phase, label=phase.name)
