"""Token-level diagnostics that every policy update reports (KL estimates, entropy)."""

from __future__ import annotations

import torch

from prism_ray.algo.advantages import group_mean_std
from prism_ray.algo.masking import masked_mean

# exp() of a log-ratio beyond this overflows float32; a ratio of e^20 is already meaningless.
MAX_LOG_RATIO = 20.0


def kl_estimates(
    sample_log_probs: torch.Tensor, other_log_probs: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token k1 and k3 estimates of KL(p || q) for tokens sampled from p.

    sample_log_probs = log p(y_t) of the sampling policy, other_log_probs = log q(y_t); [B, T].
    With log r = log q - log p: k1 = -log r (unbiased, noisy, can be negative) and
    k3 = (r - 1) - log r (unbiased, always >= 0). Returns per-token tensors [B, T] (0 off-mask).
    """
    log_r = (other_log_probs - sample_log_probs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    k1 = -log_r
    k3 = torch.expm1(log_r) - log_r
    keep = mask.to(k1.dtype)
    return k1 * keep, k3 * keep


def kl_metrics(
    sample_log_probs: torch.Tensor, other_log_probs: torch.Tensor, mask: torch.Tensor, prefix: str
) -> dict[str, float]:
    """Masked means of k1 / k3 as floats, keyed `{prefix}_k1`, `{prefix}_k3`. Shapes [B, T]."""
    with torch.no_grad():
        k1, k3 = kl_estimates(sample_log_probs.float(), other_log_probs.float(), mask)
        return {
            f"{prefix}_k1": masked_mean(k1, mask).item(),
            f"{prefix}_k3": masked_mean(k3, mask).item(),
        }


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean next-token entropy over masked positions. logits [B, T, V] aligned with mask [B, T]."""
    with torch.no_grad():
        log_p = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(log_p.exp() * log_p).sum(dim=-1)
        return masked_mean(entropy, mask).item()


def within_group_correlation(x: torch.Tensor, y: torch.Tensor,
                             group_ids: torch.Tensor) -> float | None:
    """Pearson correlation of x and y after removing each group's mean from both.

    What a group-relative advantage can act on is the variation *inside* a group, so this is
    the number that says whether a reward (x) tracks a quality (y) the policy could improve.
    None when there is no within-group variation in x or in y (nothing to correlate).
    """
    dx = x.double() - group_mean_std(x, group_ids)[0]
    dy = y.double() - group_mean_std(y, group_ids)[0]
    norm = (dx.square().sum() * dy.square().sum()).sqrt()
    if norm.item() <= 1e-12:
        return None
    return float((dx * dy).sum() / norm)
