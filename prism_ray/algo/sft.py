"""Stage 1 (SFT): next-token cross-entropy on the assistant turn only."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from prism_ray.algo.masking import masked_mean, masked_sum


class SFTAggregation(str, Enum):
    """How token losses become one number.

    TOKEN_MEAN: every target token weighs the same (long answers dominate).
    SEQ_MEAN: every sequence weighs the same (per-sequence token mean, then mean over sequences).
    """

    TOKEN_MEAN = "token_mean"
    SEQ_MEAN = "seq_mean"


def shift_for_next_token(
    logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The single place where the causal shift happens.

    Inputs are aligned with input_ids: logits [B, T, V], labels [B, T] (= input_ids),
    loss_mask [B, T] marks tokens that are *targets* (assistant tokens). The logits at position t
    predict token t+1, so we pair logits[:, :-1] with labels[:, 1:] and loss_mask[:, 1:].
    Returns logits [B, T-1, V], targets [B, T-1], mask [B, T-1].
    """
    return logits[:, :-1, :], labels[:, 1:], loss_mask[:, 1:]


def sft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor,
    aggregation: SFTAggregation = SFTAggregation.TOKEN_MEAN,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked cross-entropy over assistant tokens.

    logits [B, T, V], labels [B, T] (unshifted, aligned with input_ids), loss_mask [B, T]
    (1 on assistant tokens). Returns a scalar loss and metrics {loss, num_tokens, accuracy}.
    """
    shifted_logits, targets, mask = shift_for_next_token(logits, labels, loss_mask)
    mask = mask.bool()
    # Cross-entropy in float32: bf16 log-softmax over a large vocabulary loses the small terms.
    token_loss = F.cross_entropy(
        shifted_logits.float().reshape(-1, shifted_logits.shape[-1]),
        targets.reshape(-1).clamp(min=0),  # -100 style ignore labels sit under mask=0 anyway
        reduction="none",
    ).view_as(targets)
    if aggregation is SFTAggregation.TOKEN_MEAN:
        loss = masked_mean(token_loss, mask)
    else:
        per_seq = masked_mean(token_loss, mask, dim=-1)
        has_tokens = mask.any(dim=-1)
        loss = masked_mean(per_seq, has_tokens)
    with torch.no_grad():
        correct = (shifted_logits.argmax(dim=-1) == targets) & mask
        num_tokens = mask.sum()
        metrics = {
            "loss": loss.item(),
            "num_tokens": float(num_tokens.item()),
            "accuracy": (masked_sum(correct.float(), mask) / num_tokens.clamp(min=1)).item(),
        }
    return loss, metrics
