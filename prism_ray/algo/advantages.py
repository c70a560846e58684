"""Group-relative advantages (GRPO family).

Convention: a flat batch of N rollouts, `rewards [N]`, and `group_ids [N]` (int64) naming the
prompt each rollout answers. Ids need not be contiguous or sorted and groups may differ in size
(dynamic sampling drops rollouts), which a [G, n] layout could not express.
"""

from __future__ import annotations

import torch


def group_mean_std(
    values: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-rollout group mean and UNBIASED group std, both [N], computed in float64.

    values [N] float, group_ids [N] int. A group of one has std 0 (not NaN): Bessel's n-1 would
    divide by zero, and a lone sample carries no relative signal anyway.
    """
    _, index = torch.unique(group_ids, return_inverse=True)
    num_groups = int(index.max().item()) + 1 if index.numel() else 0
    x = values.detach().double()
    # Sum deviations from one member of each group (any member will do): an all-equal group
    # then has a mean exactly equal to its rewards, so its advantages are exactly zero.
    reference = torch.zeros(num_groups, dtype=torch.float64).scatter_(0, index, x)[index]
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, torch.ones_like(x))
    offset = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, x - reference)
    mean = reference + (offset / count)[index]
    sq_dev = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, (x - mean) ** 2)
    var = sq_dev / (count - 1.0).clamp(min=1.0)
    return mean, var.sqrt()[index]


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    normalize_std: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO advantage (r - mean_g) / (std_g + eps), or r - mean_g with `normalize_std=False`.

    rewards [N] float, group_ids [N] int -> advantages [N] (dtype of rewards), metrics.
    Advantages are constants for the policy loss, so no gradient flows back into the rewards.
    """
    mean, std = group_mean_std(rewards, group_ids)
    centred = rewards.detach().double() - mean
    advantages = centred / (std + eps) if normalize_std else centred
    advantages = advantages.to(rewards.dtype)
    metrics = {
        "reward_mean": rewards.float().mean().item() if rewards.numel() else 0.0,
        "advantage_abs_mean": advantages.float().abs().mean().item() if rewards.numel() else 0.0,
        "zero_std_group_frac": _zero_std_group_fraction(std, group_ids),
    }
    return advantages, metrics


def _zero_std_group_fraction(std: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Share of groups whose rewards are all equal: they contribute no gradient at all."""
    if group_ids.numel() == 0:
        return 0.0
    ids, index = torch.unique(group_ids, return_inverse=True)
    per_group_std = torch.zeros(ids.numel(), dtype=std.dtype).scatter_(0, index, std)
    return (per_group_std == 0).double().mean().item()
