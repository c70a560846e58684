"""Several optimizer steps on one rollout batch (``updates_per_step``), PPO-style.

The batch is cut into ``updates`` mini-batches, in order; the old log-probs are computed once,
before the first step, and held fixed, so from the second step on the ratio departs from 1 and
the clip bounds how far the policy moves. One update is the on-policy step (ratio 1, no extra
forward). Works with anything that has ``compute_logprobs`` and ``policy_step`` with the
policy learner's batch semantics: one rank or a Ray learner group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prism_ray.algo import PolicyLoss
from prism_ray.types import PolicySample


class PolicyUpdater(Protocol):
    def compute_logprobs(self, samples: Sequence[PolicySample]) -> list[list[float]]: ...

    def policy_step(self, samples: Sequence[PolicySample], loss_settings: PolicyLoss,
                    old_logprobs: Sequence[Sequence[float]] | None = None
                    ) -> dict[str, float]: ...


def mini_batch_bounds(size: int, updates: int) -> list[tuple[int, int]]:
    """``updates`` contiguous, non-empty slices covering ``range(size)`` (sizes differ ≤ 1)."""
    updates = max(1, min(updates, size))
    edges = [size * i // updates for i in range(updates + 1)]
    return list(zip(edges, edges[1:]))


def ppo_updates(learner: PolicyUpdater, samples: Sequence[PolicySample], loss: PolicyLoss,
                updates: int) -> dict[str, float]:
    """Returns the steps' metrics averaged (``ratio_max``: the maximum), plus ``updates`` and
    ``ratio_mean_last`` (the last step's mean ratio: how far the policy had moved)."""
    bounds = mini_batch_bounds(len(samples), updates)
    if len(bounds) == 1:
        return {**learner.policy_step(samples, loss), "updates": 1.0, "ratio_mean_last": 1.0}
    old = learner.compute_logprobs(samples)
    steps = [learner.policy_step(samples[a:b], loss, old_logprobs=old[a:b]) for a, b in bounds]
    merged = {k: sum(m[k] for m in steps) / len(steps) for k in steps[0]}
    if "ratio_max" in merged:
        merged["ratio_max"] = max(m["ratio_max"] for m in steps)
    merged["ratio_mean_last"] = steps[-1].get("ratio_mean", 1.0)
    return {**merged, "updates": float(len(bounds))}
