"""Rollout correction: reweight or mask tokens whose behaviour policy differs from the learner's.

Samples come from the rollout engine (another numeric stack, and with asynchronous training an
older weight version): their behaviour log-probs ``rollout_log_probs`` are not the learner's
``old_log_probs``. The importance ratio per token is ``rho = exp(old - rollout)``; a correction
turns it into a per-token weight on the policy-gradient loss (detached) and a keep-mask.

Registered by name (``ROLLOUT_CORRECTIONS``) and chosen in the config (``rollout_correction``
on an RLVR algorithm or the align phase):

- ``none``: weight 1 everywhere (the behaviour of a synchronous run whose engines agree);
- ``tis``: truncated importance sampling, weight ``min(rho, cap)`` per token;
- ``mis_token``: masked importance sampling, drop tokens with rho outside ``[low, high]``;
- ``mis_seq``: drop whole sequences whose geometric-mean rho lies outside ``[low, high]``.

Shapes: log-prob tensors and ``mask`` are [B, T]; the returned weight and keep are [B, T].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from prism_ray.algo.diagnostics import MAX_LOG_RATIO
from prism_ray.algo.masking import masked_mean
from prism_ray.registry import Registry


@dataclass(frozen=True)
class CorrectionConfig:
    kind: str = "none"
    cap: float = 2.0  # tis
    low: float = 0.5  # mis_*
    high: float = 2.0  # mis_*

    def __post_init__(self) -> None:
        correction_fn(self.kind)
        if self.cap <= 0 or not 0 < self.low < 1 < self.high:
            raise ValueError(f"rollout correction needs cap > 0 and 0 < low < 1 < high, got "
                             f"cap={self.cap}, low={self.low}, high={self.high}")


CorrectionFn = Callable[[torch.Tensor, torch.Tensor, CorrectionConfig],
                        tuple[torch.Tensor, torch.Tensor]]

ROLLOUT_CORRECTIONS: Registry[CorrectionFn] = Registry("rollout correction")
register_correction = ROLLOUT_CORRECTIONS.register
correction_fn = ROLLOUT_CORRECTIONS.lookup


@register_correction("none")
def _none(log_rho: torch.Tensor, mask: torch.Tensor, config: CorrectionConfig):
    return torch.ones_like(log_rho), mask.bool()


@register_correction("tis")
def _tis(log_rho: torch.Tensor, mask: torch.Tensor, config: CorrectionConfig):
    return log_rho.exp().clamp(max=config.cap), mask.bool()


@register_correction("mis_token")
def _mis_token(log_rho: torch.Tensor, mask: torch.Tensor, config: CorrectionConfig):
    rho = log_rho.exp()
    inside = (rho >= config.low) & (rho <= config.high)
    return torch.ones_like(rho), mask.bool() & inside


@register_correction("mis_seq")
def _mis_seq(log_rho: torch.Tensor, mask: torch.Tensor, config: CorrectionConfig):
    seq_rho = masked_mean(log_rho, mask, dim=-1).exp()  # geometric mean over the sequence
    inside = ((seq_rho >= config.low) & (seq_rho <= config.high)).unsqueeze(-1)
    return torch.ones_like(log_rho), mask.bool() & inside


def rollout_correction(
    old_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor, mask: torch.Tensor,
    config: CorrectionConfig,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(weight [B, T], keep [B, T], metrics) for the learner's old vs the behaviour log-probs.

    Metrics over the valid tokens: ``is_ratio_mean``, ``is_ratio_max`` (rho before any cap),
    ``is_masked_frac`` (share of valid tokens the correction dropped), ``is_weight_mean``.
    """
    with torch.no_grad():
        log_rho = (old_log_probs.float() - rollout_log_probs.float()).clamp(
            -MAX_LOG_RATIO, MAX_LOG_RATIO)
        valid = mask.bool()
        weight, keep = correction_fn(config.kind)(log_rho, valid, config)
        rho = log_rho.exp()[valid]
        metrics = {
            "is_ratio_mean": rho.mean().item() if rho.numel() else 1.0,
            "is_ratio_max": rho.max().item() if rho.numel() else 1.0,
            "is_masked_frac": masked_mean((valid & ~keep).float(), valid).item(),
            "is_weight_mean": masked_mean(weight, keep).item() if keep.any() else 0.0,
        }
    return weight.to(old_log_probs.dtype), keep, metrics
