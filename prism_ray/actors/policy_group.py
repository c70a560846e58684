"""The policy learner group (see ``learner_group`` for the fan-out rules)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ray

from prism_ray.actors.learner_group import LearnerGroup
from prism_ray.actors.policy import PolicyLearner
from prism_ray.algo import PolicyLoss, SFTAggregation
from prism_ray.config.schema import LearnerConfig
from prism_ray.learner.updates import ppo_updates
from prism_ray.learner.weights import WeightManifest
from prism_ray.types import Demonstration, PolicySample


class PolicyLearnerGroup(LearnerGroup):
    def __init__(self, model_path: str | Path, config: LearnerConfig, seed: int, *,
                 system_prompt: str | None, placement_timeout_s: float,
                 env_vars: dict[str, str] | None = None,
                 call_timeout_s: float | None = None) -> None:
        """``system_prompt``: the run's; the rollout pool gets the same one, so rollout and
        training log-probs are of the same token ids."""
        self.config = config
        super().__init__("policy", PolicyLearner, config,
                         {"model_path": str(model_path), "learner_config": config, "seed": seed,
                          "system_prompt": system_prompt},
                         placement_timeout_s=placement_timeout_s, env_vars=env_vars,
                         call_timeout_s=call_timeout_s)

    def compute_logprobs(self, samples: Sequence[PolicySample]) -> list[list[float]]:
        return self._all(lambda a: a.compute_logprobs, list(samples))[0]

    def policy_step(self, samples: Sequence[PolicySample], loss: PolicyLoss,
                    old_logprobs: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
        old = None if old_logprobs is None else ray.put([list(r) for r in old_logprobs])
        return self._all(lambda a: a.policy_step, list(samples), loss, old_logprobs=old)[0]

    def policy_updates(self, samples: Sequence[PolicySample], loss: PolicyLoss,
                       updates: int = 1) -> dict[str, float]:
        """``updates`` optimizer steps on one rollout batch (``learner.updates``)."""
        return ppo_updates(self, list(samples), loss, updates)

    def sft_step(self, demos: Sequence[Demonstration], aggregation: SFTAggregation,
                 max_seq_tokens: int) -> dict[str, float]:
        return self._all(lambda a: a.sft_step, list(demos), aggregation, max_seq_tokens)[0]

    def weight_manifest(self) -> WeightManifest:
        return ray.get(self.actors[0].weight_manifest.remote())

    def full_state_dict(self, bucket_bytes: int = 64 * 2**20) -> dict:
        """Rank 0's gathered weights (every rank must take part; only rank 0's are fetched)."""
        refs = self.group.each(lambda actor: actor.full_state_dict.remote(bucket_bytes))
        ray.wait(refs, num_returns=len(refs))
        return ray.get(refs[0])
