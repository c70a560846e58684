"""Turning verified rollouts into policy samples (RLVR): rewards, DAPO extras, advantages.

Pure functions over the typed records; the RLVR phase loop calls them between the verifier
pool and the policy learner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prism_ray.algo import dynamic_sampling_mask, group_advantages, overlong_penalty
from prism_ray.config.phases import DAPO
from prism_ray.data.fidelity import fidelity_rate, scene_from_extra_info
from prism_ray.types import PolicySample, RLPrompt, Rollout
from prism_ray.verify import Reason, VerifyResult


@dataclass(frozen=True)
class ScoredGroups:
    """Flat view of a batch of groups: one row per rollout, ``group_ids`` naming its prompt."""

    prompts: list[RLPrompt]
    rollouts: list[Rollout]
    results: list[VerifyResult]
    group_ids: torch.Tensor  # [N] long
    rewards: torch.Tensor  # [N] float32 (after any overlong penalty)
    accuracy: torch.Tensor  # [N] float32

    def subset(self, keep: torch.Tensor) -> ScoredGroups:
        idx = keep.nonzero().flatten().tolist()
        groups = sorted({int(self.group_ids[i]) for i in idx})
        return ScoredGroups(
            prompts=[self.prompts[g] for g in groups],
            rollouts=[self.rollouts[i] for i in idx],
            results=[self.results[i] for i in idx],
            group_ids=self.group_ids[keep],
            rewards=self.rewards[keep],
            accuracy=self.accuracy[keep],
        )


def flatten_groups(prompts: Sequence[RLPrompt], groups: Sequence[Sequence[Rollout]],
                   results: Sequence[VerifyResult], overlong: DAPO | None = None) -> ScoredGroups:
    rollouts = [r for group in groups for r in group]
    if len(rollouts) != len(results):
        raise ValueError(f"{len(results)} verifier results for {len(rollouts)} rollouts")
    group_ids = torch.tensor([g for g, group in enumerate(groups) for _ in group])
    rewards = torch.tensor([r.score for r in results], dtype=torch.float32)
    if overlong is not None and overlong.overlong is not None:
        lengths = torch.tensor([len(r.token_ids) for r in rollouts])
        rewards = rewards + overlong_penalty(lengths, overlong.overlong.max_tokens,
                                             overlong.overlong.buffer_tokens)
    accuracy = torch.tensor([r.accuracy for r in results], dtype=torch.float32)
    return ScoredGroups(list(prompts), rollouts, list(results), group_ids, rewards, accuracy)


def informative_groups(scored: ScoredGroups) -> tuple[ScoredGroups, dict[str, float]]:
    """DAPO dynamic sampling: keep the groups whose accuracy varies."""
    keep, metrics = dynamic_sampling_mask(scored.accuracy, scored.group_ids)
    return scored.subset(keep), metrics


def concat(parts: Sequence[ScoredGroups], max_groups: int) -> ScoredGroups:
    """Join batches of groups (renumbering group ids) and truncate to ``max_groups`` groups."""
    prompts, rollouts, results, ids, rewards, accuracy = [], [], [], [], [], []
    for part in parts:
        _, local = torch.unique(part.group_ids, return_inverse=True)
        for i in range(len(part.rollouts)):
            group = len(prompts) + int(local[i])
            if group >= max_groups:
                continue
            rollouts.append(part.rollouts[i])
            results.append(part.results[i])
            ids.append(group)
            rewards.append(float(part.rewards[i]))
            accuracy.append(float(part.accuracy[i]))
        prompts += part.prompts[: max(0, max_groups - len(prompts))]
    return ScoredGroups(prompts, rollouts, results, torch.tensor(ids, dtype=torch.long),
                        torch.tensor(rewards, dtype=torch.float32),
                        torch.tensor(accuracy, dtype=torch.float32))


def rollout_prompts(scored: ScoredGroups) -> list[RLPrompt]:
    """The prompt of each rollout (``subset`` keeps group ids but compacts ``prompts``)."""
    prompt_of = {int(g): scored.prompts[i]
                 for i, g in enumerate(torch.unique(scored.group_ids, sorted=True))}
    return [prompt_of[int(g)] for g in scored.group_ids]


def samples_for(prompts: Sequence[RLPrompt], rollouts: Sequence[Rollout],
                advantages: torch.Tensor) -> list[PolicySample]:
    """One PolicySample per rollout: ``prompts[i]`` is the prompt of ``rollouts[i]``."""
    if not len(prompts) == len(rollouts) == len(advantages):
        raise ValueError(f"{len(prompts)} prompts, {len(rollouts)} rollouts and "
                         f"{len(advantages)} advantages must match")
    return [PolicySample(question=p.question, images=p.images, response_ids=r.token_ids,
                         advantage=float(a), rollout_logprobs=r.logprobs)
            for p, r, a in zip(prompts, rollouts, advantages)]


def policy_samples(scored: ScoredGroups) -> tuple[list[PolicySample], dict[str, float]]:
    """GRPO-family group-relative advantages, one PolicySample per rollout."""
    advantages, metrics = group_advantages(scored.rewards, scored.group_ids)
    return samples_for(rollout_prompts(scored), scored.rollouts, advantages), metrics


def outcome_metrics(scored: ScoredGroups) -> dict[str, float]:
    """Step metrics of the verified rollouts; ``caption_fidelity`` only when some prompt
    carries its scene (``prism_ray.data.fidelity``)."""
    n = max(len(scored.results), 1)
    lengths = [len(r.token_ids) for r in scored.rollouts]
    metrics = {
        "reward": float(scored.rewards.mean()) if scored.rollouts else 0.0,
        "accuracy": float(scored.accuracy.mean()) if scored.rollouts else 0.0,
        "format_rate": sum(r.format_ok for r in scored.results) / n,
        "response_len": sum(lengths) / n,
        "truncated_rate": sum(r.finish_reason == "length" for r in scored.rollouts) / n,
        "verifier_timeouts": float(sum(r.reason is Reason.TIMEOUT for r in scored.results)),
        "verifier_errors": float(sum(r.reason is Reason.ERROR for r in scored.results)),
    }
    fidelity = fidelity_rate((r.text, scene_from_extra_info(p.extra_info))
                             for r, p in zip(scored.rollouts, rollout_prompts(scored)))
    if fidelity is not None:
        metrics["caption_fidelity"] = fidelity
    return metrics
