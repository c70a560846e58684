"""Policy-gradient losses: PPO-clip (GRPO, DAPO, PRISM alignment) and GSPO.

All inputs are per response token and already shifted (position t holds log pi(y_t | y_<t)):
log_probs, old_log_probs [B, T]; response_mask [B, T] (1 on generated tokens);
advantages [B] (broadcast to every token) or [B, T].
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from prism_ray.algo.correction import CorrectionConfig, rollout_correction
from prism_ray.algo.diagnostics import MAX_LOG_RATIO, kl_estimates, kl_metrics, masked_entropy
from prism_ray.algo.masking import broadcast_to_tokens, masked_mean, masked_sum
from prism_ray.algo.registry import policy_loss_fn, register_policy_loss


class Aggregation(str, Enum):
    """How a [B, T] token-loss matrix becomes the scalar that is differentiated.

    TOKEN_MEAN: sum over all valid tokens / number of valid tokens (GRPO/DAPO/PRISM default).
    SEQ_MEAN_TOKEN_MEAN: per-sequence token mean, then mean over sequences (GSPO).
    SEQ_MEAN_TOKEN_SUM: per-sequence token sum, then mean over sequences.
    Sequences without a single valid token are left out of the sequence means.
    """

    TOKEN_MEAN = "token_mean"
    SEQ_MEAN_TOKEN_MEAN = "seq_mean_token_mean"
    SEQ_MEAN_TOKEN_SUM = "seq_mean_token_sum"


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: Aggregation) -> torch.Tensor:
    """token_loss [B, T], mask [B, T] -> scalar according to `mode`."""
    if mode is Aggregation.TOKEN_MEAN:
        return masked_mean(token_loss, mask)
    has_tokens = mask.bool().any(dim=-1)
    if mode is Aggregation.SEQ_MEAN_TOKEN_MEAN:
        per_seq = masked_mean(token_loss, mask, dim=-1)
    else:
        per_seq = masked_sum(token_loss, mask, dim=-1)
    return masked_mean(per_seq, has_tokens)


@dataclass(frozen=True)
class ClipConfig:
    """PPO-clip settings. The ratio is clipped to [1 - eps_low, 1 + eps_high]; with
    `dual_clip` = c (> 1 + eps_high), the loss of a negative-advantage token is capped at -c * A."""

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = 3.0
    aggregation: Aggregation = Aggregation.TOKEN_MEAN
    kl_coef: float = 0.0  # KL(pi_theta || pi_ref) loss weight (k3); off in every PRISM stage
    correction: CorrectionConfig = CorrectionConfig()  # vs the rollout engine's log-probs

    def __post_init__(self) -> None:
        if self.eps_low < 0 or self.eps_high < 0:
            raise ValueError("clip epsilons must be >= 0")
        if self.dual_clip is not None and self.dual_clip <= 1.0 + self.eps_high:
            raise ValueError(f"dual_clip must exceed 1 + eps_high, got {self.dual_clip}")




def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, config: ClipConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token PPO-clip loss and the boolean masks of where each clip was active. All [B, T].

    loss = max(-A r, -A clip(r, 1-eps_low, 1+eps_high)); for A < 0 additionally min(., -c A):
    a token that became far more likely despite a negative advantage would otherwise get an
    unbounded gradient (dual-clip, Ye et al. 2020).
    """
    clipped_ratio = ratio.clamp(1.0 - config.eps_low, 1.0 + config.eps_high)
    loss = torch.maximum(-advantages * ratio, -advantages * clipped_ratio)
    negative = advantages < 0
    dual = torch.zeros_like(negative)
    if config.dual_clip is not None:
        cap = -config.dual_clip * advantages
        dual = negative & (loss > cap)
        loss = torch.where(negative, torch.minimum(loss, cap), loss)
    active = {
        "clip_high": (advantages > 0) & (ratio > 1.0 + config.eps_high),
        "clip_low": negative & (ratio < 1.0 - config.eps_low),
        "clip_dual": dual,
    }
    return loss, active


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config: ClipConfig,
    *,
    rollout_log_probs: torch.Tensor | None = None,
    ref_log_probs: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-ratio PPO-clip loss (GRPO, DAPO, PRISM alignment). Shapes in the module docstring;
    logits [B, T, V] (optional, aligned with log_probs) only feed the entropy metric."""
    log_ratio = (log_probs - old_log_probs.detach()).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return _finish(
        log_ratio,
        log_probs,
        old_log_probs,
        advantages,
        response_mask,
        config,
        rollout_log_probs=rollout_log_probs,
        ref_log_probs=ref_log_probs,
        logits=logits,
    )


@register_policy_loss("gspo")
def gspo_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config: ClipConfig,
    *,
    rollout_log_probs: torch.Tensor | None = None,
    ref_log_probs: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO: one length-normalised ratio per sequence, s_i = exp(mean_t(log pi - log pi_old)).

    Token surrogate s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)]: its value is s_i, its gradient
    flows through each token's log-prob, so per-sequence token-mean reproduces grad s_i.
    """
    mask = response_mask.bool()
    seq_log_ratio = masked_mean(log_probs - old_log_probs.detach(), mask, dim=-1)  # [B]
    token_log_ratio = seq_log_ratio.detach().unsqueeze(-1) + log_probs - log_probs.detach()
    log_ratio = token_log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return _finish(
        log_ratio,
        log_probs,
        old_log_probs,
        advantages,
        response_mask,
        config,
        rollout_log_probs=rollout_log_probs,
        ref_log_probs=ref_log_probs,
        logits=logits,
    )


def _finish(
    log_ratio: torch.Tensor,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config: ClipConfig,
    *,
    rollout_log_probs: torch.Tensor | None,
    ref_log_probs: torch.Tensor | None,
    logits: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Shared tail of both losses: surrogate, optional KL loss, aggregation, diagnostics."""
    mask = response_mask.bool()
    ratio = log_ratio.exp()
    token_adv = broadcast_to_tokens(advantages.detach().to(ratio.dtype), ratio)
    token_loss, active = clipped_surrogate(ratio, token_adv, config)
    metrics: dict[str, float] = {}
    if rollout_log_probs is not None:
        # Rollout correction: a dropped token weighs 0 but still counts in the normaliser, so
        # the micro-batch weighting of the learner stays exact.
        weight, keep, is_metrics = rollout_correction(old_log_probs, rollout_log_probs, mask,
                                                      config.correction)
        token_loss = token_loss * weight * keep.to(token_loss.dtype)
        metrics.update(is_metrics)
    pg_loss = aggregate(token_loss, mask, config.aggregation)
    loss = pg_loss
    metrics["pg_loss"] = pg_loss.item()
    if config.kl_coef > 0.0:
        if ref_log_probs is None:
            raise ValueError("kl_coef > 0 needs ref_log_probs")
        # Tokens come from pi_theta: k3 of KL(pi_theta || pi_ref), differentiable in log_probs.
        _, k3 = kl_estimates(log_probs, ref_log_probs.detach(), mask)
        kl_loss = aggregate(k3, mask, config.aggregation)
        loss = loss + config.kl_coef * kl_loss
        metrics["kl_loss"] = kl_loss.item()
    metrics.update(_ratio_metrics(ratio, active, mask))
    metrics.update(kl_metrics(old_log_probs, log_probs, mask, prefix="kl_old"))
    if ref_log_probs is not None:
        metrics.update(kl_metrics(log_probs, ref_log_probs, mask, prefix="kl_ref"))
    if rollout_log_probs is not None:
        # Same weights, two engines: any gap here is train/rollout numerical mismatch.
        metrics.update(
            kl_metrics(rollout_log_probs, old_log_probs, mask, prefix="rollout_mismatch")
        )
    if logits is not None:
        metrics["entropy"] = masked_entropy(logits, mask)
    metrics["loss"] = loss.item()
    return loss, metrics


def _ratio_metrics(
    ratio: torch.Tensor, active: dict[str, torch.Tensor], mask: torch.Tensor
) -> dict[str, float]:
    """Clip fractions over valid tokens, ratio mean and max."""
    with torch.no_grad():
        out = {
            f"{name}_frac": masked_mean(hit.float(), mask).item() for name, hit in active.items()
        }
        valid_ratio = ratio.detach()[mask]
        out["ratio_mean"] = valid_ratio.mean().item() if valid_ratio.numel() else 1.0
        out["ratio_max"] = valid_ratio.max().item() if valid_ratio.numel() else 1.0
    return out


@dataclass(frozen=True)
class PolicyLoss:
    """What a policy-gradient step optimises: a registered loss (``algo.registry``) and its
    clip settings. Built from a phase's settings with ``from_settings``."""

    name: str
    clip: ClipConfig

    def __post_init__(self) -> None:
        policy_loss_fn(self.name)  # fails early, naming the registered losses

    @classmethod
    def from_settings(cls, settings) -> PolicyLoss:
        """From any settings object with ``loss``, ``clip_low``, ``clip_high`` and
        ``loss_aggregation`` (and optionally ``dual_clip``, ``kl_coef``): an RLVR algorithm
        or the alignment phase."""
        correction = getattr(settings, "rollout_correction", None)
        return cls(settings.loss, ClipConfig(
            eps_low=settings.clip_low, eps_high=settings.clip_high,
            dual_clip=getattr(settings, "dual_clip", None),
            kl_coef=getattr(settings, "kl_coef", 0.0),
            aggregation=Aggregation(settings.loss_aggregation.value),
            correction=CorrectionConfig() if correction is None else CorrectionConfig(
                kind=correction.kind, cap=correction.cap, low=correction.low,
                high=correction.high)))

    @property
    def per_token(self) -> bool:
        """Whether the loss is normalised by tokens (else by sequences)."""
        return self.clip.aggregation is Aggregation.TOKEN_MEAN

    def __call__(self, log_probs: torch.Tensor, old_log_probs: torch.Tensor,
                 advantages: torch.Tensor, response_mask: torch.Tensor, **extra
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        return policy_loss_fn(self.name)(log_probs, old_log_probs, advantages, response_mask,
                                         self.clip, **extra)
