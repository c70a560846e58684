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


def trains(sample: PolicySample, loss: PolicyLoss) -> bool:
    """False when the sample's gradient is exactly zero, so the update may leave it out.

    With a zero advantage every token's surrogate is -0 · ratio (clip, dual-clip and rollout
    correction all multiply by the advantage), for PPO-clip and GSPO alike, in token- and
    sequence-mean aggregation. A KL term has a gradient of its own, so then every sample
    trains (the losses have no entropy bonus; one would have to be added here).
    """
    return sample.advantage != 0.0 or loss.clip.kl_coef != 0.0


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
    old = _old_logprobs(learner, samples, loss)
    steps = [learner.policy_step(samples[a:b], loss, old_logprobs=old[a:b]) for a, b in bounds]
    # A step with nothing to train reports fewer keys: each key is averaged where present.
    keys = dict.fromkeys(k for m in steps for k in m)
    merged = {k: sum(m[k] for m in steps if k in m) / sum(k in m for m in steps) for k in keys}
    for key in ("skipped_zero_adv_samples", "optimizer_step_skipped"):
        if key in merged:
            merged[key] = sum(m[key] for m in steps)  # counts over the whole rollout batch
    if "ratio_max" in merged:
        merged["ratio_max"] = max(m["ratio_max"] for m in steps if "ratio_max" in m)
    merged["ratio_mean_last"] = steps[-1].get("ratio_mean", 1.0)
    return {**merged, "updates": float(len(bounds))}


def _old_logprobs(learner: PolicyUpdater, samples: Sequence[PolicySample], loss: PolicyLoss
                  ) -> list[list[float]]:
    """Log-probs before the first step, for the samples that train; the others get zeros
    (``policy_step`` never reads them)."""
    kept = [i for i, s in enumerate(samples) if trains(s, loss)]
    out = [[0.0] * len(s.response_ids) for s in samples]
    for i, row in zip(kept, learner.compute_logprobs([samples[i] for i in kept]) if kept else []):
        out[i] = row
    return out
