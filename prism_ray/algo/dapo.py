"""DAPO extras: dynamic-sampling group filter and the soft overlong penalty (PRISM_SPEC §5)."""

from __future__ import annotations

import torch


def dynamic_sampling_mask(
    accuracy: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Keep only groups whose accuracy varies (std > 0): all-right or all-wrong groups have zero
    advantage everywhere and would only dilute the batch.

    accuracy [N] float, group_ids [N] int -> keep [N] bool (per rollout), metrics.
    "std > 0" is tested as max > min, which is exact for floats (a variance may round to a
    tiny non-zero); a group of one rollout has no spread and is dropped.
    """
    ids, index = torch.unique(group_ids, return_inverse=True)
    acc = accuracy.detach().double()
    high = torch.full((ids.numel(),), -torch.inf, dtype=torch.float64).scatter_reduce(
        0, index, acc, reduce="amax"
    )
    low = torch.full((ids.numel(),), torch.inf, dtype=torch.float64).scatter_reduce(
        0, index, acc, reduce="amin"
    )
    keep_group = high > low
    num_groups = max(ids.numel(), 1)
    metrics = {
        "num_groups": float(ids.numel()),
        "kept_group_frac": keep_group.double().sum().item() / num_groups,
        "all_correct_group_frac": ((low == high) & (high > 0)).double().sum().item() / num_groups,
        "all_wrong_group_frac": ((low == high) & (high <= 0)).double().sum().item() / num_groups,
    }
    return keep_group[index], metrics


def kept_group_ids(keep: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Distinct group ids that survive the filter, in ascending order. keep, group_ids: [N]."""
    return torch.unique(group_ids[keep])


def overlong_penalty(
    lengths: torch.Tensor, max_length: int = 8192, buffer: int = 4096
) -> torch.Tensor:
    """Soft overlong penalty min(-(L - (L_max - buffer)) / buffer, 0), added to the reward.

    lengths [N] (response tokens) -> penalty [N] float32: 0 for L <= L_max - buffer, falling
    linearly to -1 at L = L_max (and below -1 past it, which a generation cap normally prevents).
    """
    if not 0 < buffer <= max_length:
        raise ValueError(f"need 0 < buffer <= max_length, got {buffer=} {max_length=}")
    excess = lengths.double() - (max_length - buffer)
    return torch.clamp(-excess / buffer, max=0.0).float()
