"""Alignment with an oracle perception reward: the caption's true claim rate (the scene is
known) instead of the discriminator's perception score. An upper bound on what a perfect
perception expert could do to caption fidelity at a given alignment budget.

    python bench/align_oracle.py run recipes/tiny.yaml phases.sft_teacher.enabled=false \\
        phases.sft.enabled=false phases.rlvr.enabled=false \\
        phases.align.init_from=runs/<run>/phases/sft name=align-oracle [more overrides]

Takes the arguments of ``prism-ray``. The reasoning reward stays the discriminator's; the
advantages are PRISM's (``algo.prism_advantages``) with the run's alpha and beta. Compare the
run's "align" evaluation row with one of the same command through ``prism-ray`` itself.
"""

from __future__ import annotations

import sys

import torch

import prism_ray.driver.align as align
from prism_ray.algo import prism_advantages
from prism_ray.cli import main
from prism_ray.data.fidelity import caption_fidelity, scene_from_extra_info
from prism_ray.driver.rewards import samples_for


def true_claim_rate(prompt, rollout, valid: bool) -> float:
    """The share of the caption's claims that are true of the prompt's scene; 0 if invalid."""
    claims = caption_fidelity(rollout.text, scene_from_extra_info(prompt.extra_info)) \
        if valid else None
    return claims.true / claims.total if claims is not None and claims.total else 0.0


def oracle_advantages(self, batch):
    _, scores = batch.scores
    cap = torch.tensor([true_claim_rate(p, r, v)
                        for p, g, sc in zip(batch.prompts, batch.groups, scores)
                        for r, v in zip(g, sc.valid)])
    cot = torch.tensor([s for sc in scores for s in sc.student_reasoning])
    invalid = torch.tensor([not v for sc in scores for v in sc.valid])
    group_ids = torch.tensor([g for g, sc in enumerate(scores) for _ in sc.valid])
    advantages, metrics = prism_advantages(cap, cot, invalid, group_ids,
                                           alpha=self.phase.alpha, beta=self.phase.beta)
    flat = [(p, r) for p, g in zip(batch.prompts, batch.groups) for r in g]
    return samples_for([p for p, _ in flat], [r for _, r in flat], advantages), metrics


if __name__ == "__main__":
    align.AlignStepper.advantages = oracle_advantages  # the driver runs in this process
    sys.exit(main(sys.argv[1:]))
