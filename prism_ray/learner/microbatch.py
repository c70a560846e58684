"""Token-budget micro-batches and the normalisation that makes gradient accumulation exact.

A step's samples are split into micro-batches whose padded size (rows × longest row) stays
within a token budget, so long and short responses both fit memory without a fixed count.
The count then varies per step and per rank; two rules keep the result independent of it:

1. Loss weights are GLOBAL: each micro-batch's loss (a local mean from ``algo``) is rescaled to
   its share of the global normaliser (``micro_weight``: valid tokens for token-mean, valid
   sequences for the sequence-mean modes, counted over every rank), so summing micro-batch
   gradients over all micro-batches and ranks gives exactly the gradient of the loss over the
   whole batch.
2. Every rank runs the same number of forward/backward passes (``aligned_count``): ZeRO-2
   reduces gradients and ZeRO-3 gathers parameters inside every pass, so a rank that runs one
   extra pass waits forever for its peers. Ranks that run out of work run a padding pass whose
   loss is multiplied by zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.distributed as dist


class Normaliser(str, Enum):
    """What the global loss divides by: valid tokens (token-mean) or valid sequences."""

    TOKENS = "tokens"
    SEQUENCES = "sequences"


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group sample indices so each group's padded size (count × longest) fits the budget.

    Longest first, so similar lengths share a micro-batch and padding stays small; a sequence
    longer than the budget gets a micro-batch of its own. Deterministic for given lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    longest = 0
    for index in order:
        if groups and (len(groups[-1]) + 1) * longest <= token_budget:
            groups[-1].append(index)
            continue
        groups.append([index])
        longest = lengths[index]  # sorted descending: the first of a group is its longest
    return groups


def global_normaliser(
    response_lengths: Sequence[int], mode: Normaliser, device: torch.device
) -> float:
    """The denominator of the whole step's loss, summed over this rank's samples and all ranks.

    ``response_lengths`` are the learned-on token counts of this rank's sequences (after any
    truncation). Sequences without a single such token are left out of sequence means, as
    ``algo.aggregate`` does. One all-reduce of a single number.
    """
    if mode is Normaliser.TOKENS:
        local = sum(response_lengths)
    else:
        local = sum(1 for n in response_lengths if n > 0)
    total = torch.tensor([float(local)], dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return max(float(total.item()), 1.0)


def micro_weight(
    response_mask: torch.Tensor, mode: Normaliser, normaliser: float, world_size: int
) -> float:
    """Factor turning a micro-batch's local-mean loss into its share of the global loss.

    local mean × (local count / global count) = local sum / global count. The extra
    ``world_size`` undoes the data-parallel gradient averaging that DeepSpeed applies when it
    reduces gradients across ranks (it divides by the world size; we want a plain sum).
    """
    if mode is Normaliser.TOKENS:
        local = float(response_mask.sum())
    else:
        local = float(response_mask.bool().any(dim=-1).sum())
    return local / normaliser * world_size


def aligned_count(local_count: int, device: torch.device) -> int:
    """The largest micro-batch count over all ranks (every rank must run that many passes)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local_count
    count = torch.tensor([local_count], dtype=torch.long, device=device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    return int(count.item())
