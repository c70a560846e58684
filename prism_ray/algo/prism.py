"""PRISM alignment advantage: two discriminator views, one scalar per rollout (PRISM_SPEC §4)."""

from __future__ import annotations

import torch

from prism_ray.algo.advantages import group_advantages

# A format-invalid rollout in a group with no valid rollout at all still needs a score.
NO_VALID_SCORE = -1.0


def substitute_invalid_scores(
    scores: torch.Tensor, format_invalid: torch.Tensor, group_ids: torch.Tensor
) -> torch.Tensor:
    """s~_i = s_i if valid, else (min over the group's valid scores) - 1, or -1 if none is valid.

    scores [N], format_invalid [N] bool, group_ids [N] int -> [N] (dtype of scores).
    Ranking invalid rollouts just below the worst valid one keeps them last without letting a
    raw score of 0 (what D gives them) stretch the group's spread.
    """
    _, index = torch.unique(group_ids, return_inverse=True)
    num_groups = int(index.max().item()) + 1 if index.numel() else 0
    valid = ~format_invalid.bool()
    group_min = torch.full((num_groups,), torch.inf, dtype=torch.float64).scatter_reduce(
        0, index[valid], scores.detach().double()[valid], reduce="amin"
    )
    fallback = torch.where(torch.isinf(group_min), NO_VALID_SCORE, group_min - 1.0)
    substituted = torch.where(valid, scores.detach().double(), fallback[index])
    return substituted.to(scores.dtype)


def prism_advantages(
    caption_scores: torch.Tensor,
    reasoning_scores: torch.Tensor,
    format_invalid: torch.Tensor,
    group_ids: torch.Tensor,
    alpha: float = 0.5,
    beta: float = 1.5,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """A_i = alpha * A_cap,i + (1 - alpha) * A_cot,i - beta * F_i.

    caption_scores, reasoning_scores [N] (discriminator scores, already clipped to [-10, 10]),
    format_invalid [N] bool (F_i), group_ids [N] int -> A [N] float32, metrics.
    Each expert is normalised within its group (unbiased std + eps) before mixing, so neither
    view dominates because of its scale.
    """
    invalid = format_invalid.bool()
    normalised = []
    for scores in (caption_scores, reasoning_scores):
        substituted = substitute_invalid_scores(scores.float(), invalid, group_ids)
        adv, _ = group_advantages(substituted, group_ids, normalize_std=True, eps=eps)
        normalised.append(adv)
    adv_cap, adv_cot = normalised
    advantages = alpha * adv_cap + (1.0 - alpha) * adv_cot - beta * invalid.float()
    valid = ~invalid
    metrics = {
        "valid_ratio": valid.float().mean().item() if valid.numel() else 0.0,
        "caption_score_mean": _mean_where(caption_scores, valid),
        "reasoning_score_mean": _mean_where(reasoning_scores, valid),
        "advantage_mean": advantages.mean().item() if advantages.numel() else 0.0,
        "advantage_std": advantages.std().item() if advantages.numel() > 1 else 0.0,
    }
    return advantages, metrics


def _mean_where(values: torch.Tensor, keep: torch.Tensor) -> float:
    """Mean of the kept entries of a 1-D tensor as a float; 0 when nothing is kept."""
    kept = values.detach().float()[keep]
    return kept.mean().item() if kept.numel() else 0.0
