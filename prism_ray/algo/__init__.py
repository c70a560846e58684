"""Pure training math for PRISM (torch, numpy and stdlib only; no Ray, vLLM, DeepSpeed, HF).

Every loss takes tensors with documented shapes and returns (loss, metrics: dict[str, float]).
"""

from prism_ray.algo.advantages import group_advantages, group_mean_std
from prism_ray.algo.correction import (
    ROLLOUT_CORRECTIONS,
    CorrectionConfig,
    register_correction,
    rollout_correction,
)
from prism_ray.algo.dapo import dynamic_sampling_mask, kept_group_ids, overlong_penalty
from prism_ray.algo.diagnostics import (
    kl_estimates,
    kl_metrics,
    masked_entropy,
    within_group_correlation,
)
from prism_ray.algo.discriminator import SCORE_LIMIT, bradley_terry_loss, clip_scores
from prism_ray.algo.masking import broadcast_to_tokens, masked_mean, masked_sum
from prism_ray.algo.policy_loss import (
    Aggregation,
    ClipConfig,
    PolicyLoss,
    aggregate,
    clipped_surrogate,
    gspo_loss,
    ppo_clip_loss,
)
from prism_ray.algo.prism import prism_advantages, substitute_invalid_scores
from prism_ray.algo.registry import POLICY_LOSSES, policy_loss_fn, register_policy_loss
from prism_ray.algo.reward import rlvr_reward
from prism_ray.algo.sft import SFTAggregation, sft_loss, shift_for_next_token

__all__ = [
    "SCORE_LIMIT",
    "POLICY_LOSSES",
    "ROLLOUT_CORRECTIONS",
    "Aggregation",
    "ClipConfig",
    "CorrectionConfig",
    "PolicyLoss",
    "SFTAggregation",
    "aggregate",
    "bradley_terry_loss",
    "broadcast_to_tokens",
    "clip_scores",
    "clipped_surrogate",
    "dynamic_sampling_mask",
    "group_advantages",
    "group_mean_std",
    "gspo_loss",
    "kept_group_ids",
    "kl_estimates",
    "kl_metrics",
    "masked_entropy",
    "within_group_correlation",
    "masked_mean",
    "masked_sum",
    "overlong_penalty",
    "ppo_clip_loss",
    "policy_loss_fn",
    "prism_advantages",
    "register_correction",
    "register_policy_loss",
    "rollout_correction",
    "rlvr_reward",
    "sft_loss",
    "shift_for_next_token",
    "substitute_invalid_scores",
]
