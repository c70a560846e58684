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

from prism_ray.cli import main
from prism_ray.driver.align import AlignStepper, caption_claim_rate


def true_claim_rates(self: AlignStepper, batch) -> torch.Tensor:
    """The caption's true claim rate of every rollout; 0 for one without a caption."""
    _, scores = batch.scores
    rates = (caption_claim_rate(p, r, v)
             for p, g, sc in zip(batch.prompts, batch.groups, scores)
             for r, v in zip(g, sc.valid))
    return torch.tensor([0.0 if rate is None else rate for rate in rates])


if __name__ == "__main__":
    AlignStepper.perception_scores = true_claim_rates  # the driver runs in this process
    sys.exit(main(sys.argv[1:]))
