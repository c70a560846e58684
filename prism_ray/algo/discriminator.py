"""Discriminator objective: Bradley-Terry, teacher segment over student segment (PRISM_SPEC §3).

Score clipping. The spec clips scores to [-10, 10]. We clip only where a score *leaves* the
discriminator (`clip_scores`, applied to the rewards handed to the policy and to reported
values), never inside this loss: a hard clamp has zero gradient once saturated, so a
discriminator that over-shoots to |s| > 10 could never be pulled back by the BT term, and the
L_reg term already keeps the raw scores near zero. The published code likewise clips the
reported scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prism_ray.algo.masking import masked_mean

SCORE_LIMIT = 10.0


def clip_scores(scores: torch.Tensor, limit: float = SCORE_LIMIT) -> torch.Tensor:
    """Scores as rewards: clamp to [-limit, limit]. Any shape."""
    return scores.clamp(-limit, limit)


def bradley_terry_loss(
    teacher_caption: torch.Tensor,
    teacher_reasoning: torch.Tensor,
    student_caption: torch.Tensor,
    student_reasoning: torch.Tensor,
    prompt_index: torch.Tensor,
    valid: torch.Tensor,
    reg_coef: float = 1e-3,
    aux_loss: torch.Tensor | None = None,
    aux_coef: float = 0.01,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_D = L_cap + L_cot + reg_coef * L_reg (+ aux_coef * aux_loss when given).

    teacher_caption, teacher_reasoning [P]: raw scores of each prompt's teacher segments
    (scored once per prompt). student_caption, student_reasoning [N]: raw scores of the
    rollouts. prompt_index [N] int in [0, P): the prompt of each rollout. valid [N] bool:
    format-valid rollouts; the others are excluded from every term.
    Alignment uses reg_coef=1e-3 and no aux_loss; warm-up reg_coef=0 with the MoE
    load-balancing aux_loss at 0.01.
    """
    keep = valid.bool()
    teacher_cap = teacher_caption[prompt_index]  # broadcast each prompt's score to its rollouts
    teacher_cot = teacher_reasoning[prompt_index]
    gap_cap = teacher_cap - student_caption
    gap_cot = teacher_cot - student_reasoning
    loss_cap = masked_mean(-F.logsigmoid(gap_cap), keep)
    loss_cot = masked_mean(-F.logsigmoid(gap_cot), keep)
    squares = (student_caption**2 + student_reasoning**2 + teacher_cap**2 + teacher_cot**2) / 4
    loss_reg = masked_mean(squares, keep)
    loss = loss_cap + loss_cot + reg_coef * loss_reg
    metrics = {
        "loss_cap": loss_cap.item(),
        "loss_cot": loss_cot.item(),
        "loss_reg": loss_reg.item(),
    }
    if aux_loss is not None:
        loss = loss + aux_coef * aux_loss
        metrics["aux_loss"] = aux_loss.item()
    metrics["loss"] = loss.item()
    metrics.update(
        _score_metrics(teacher_cap, teacher_cot, student_caption, student_reasoning, keep)
    )
    return loss, metrics


def _score_metrics(
    teacher_cap: torch.Tensor,
    teacher_cot: torch.Tensor,
    student_cap: torch.Tensor,
    student_cot: torch.Tensor,
    keep: torch.Tensor,
) -> dict[str, float]:
    """Per-segment accuracy (s+ > s-), mean scores and gap over valid rollouts; valid ratio."""
    out = {"valid_ratio": keep.float().mean().item() if keep.numel() else 0.0}
    with torch.no_grad():
        for name, pos, neg in (
            ("cap", teacher_cap, student_cap),
            ("cot", teacher_cot, student_cot),
        ):
            pos, neg = pos.detach().float(), neg.detach().float()
            out[f"accuracy_{name}"] = masked_mean((pos > neg).float(), keep).item()
            out[f"teacher_score_{name}"] = masked_mean(pos, keep).item()
            out[f"student_score_{name}"] = masked_mean(neg, keep).item()
            out[f"gap_{name}"] = masked_mean(pos - neg, keep).item()
    return out
