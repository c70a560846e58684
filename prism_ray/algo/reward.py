"""RLVR reward from verifier outcomes (PRISM_SPEC §5), batched as tensors.

The verifier computes the same rule per response on plain Python values (it must not import
torch); this batched form is for recomputing or re-weighting rewards on stored outcomes.
"""

from __future__ import annotations

import torch


def rlvr_reward(
    accuracy: torch.Tensor,
    format_ok: torch.Tensor,
    answer_chars: torch.Tensor,
    accuracy_weight: float = 0.8,
    format_weight: float = 0.2,
    max_answer_chars: int = 1024,
) -> torch.Tensor:
    """accuracy [N] in [0, 1], format_ok [N] bool, answer_chars [N] int -> reward [N] float32.

    Format fails -> 0. Empty answer (0 chars) or >= max_answer_chars -> format_weight only:
    such answers are never judged, so accuracy cannot count. Otherwise
    accuracy_weight * accuracy + format_weight.
    """
    judged = (answer_chars > 0) & (answer_chars < max_answer_chars)
    acc = torch.where(judged, accuracy.float(), torch.zeros_like(accuracy, dtype=torch.float32))
    reward = accuracy_weight * acc + format_weight
    return torch.where(format_ok.bool(), reward, torch.zeros_like(reward))
