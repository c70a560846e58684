"""The policy learner group: a gang of ``PolicyLearner`` ranks, their rendezvous and fan-out.

Each step's list goes into the object store once and every rank receives the same reference;
ranks shard it themselves (rank r takes r::world) and return global results, so the group
returns rank 0's answer. Calls are collectives: they always go to every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray

from prism_ray.actors.group import ActorGroup
from prism_ray.actors.policy import PolicyLearner, PolicyLoss
from prism_ray.algo import SFTAggregation
from prism_ray.config.schema import LearnerConfig, OptimizerConfig
from prism_ray.learner.weights import WeightManifest
from prism_ray.types import Demonstration, PolicySample


class PolicyLearnerGroup:
    def __init__(self, model_path: str | Path, config: LearnerConfig, seed: int = 0,
                 env_vars: dict[str, str] | None = None,
                 placement_timeout_s: float = 120.0,
                 call_timeout_s: float | None = None) -> None:
        # A hung collective (a rank that died mid-step) surfaces as GetTimeoutError, not a hang.
        self.config, self.call_timeout_s = config, call_timeout_s
        self.group = ActorGroup(
            "policy", PolicyLearner, config.num_ranks, config.resources, gang=True,
            placement_timeout_s=placement_timeout_s, env_vars=env_vars,
            init_kwargs={"model_path": str(model_path), "learner_config": config, "seed": seed},
        )
        addr, port = self.group.master_address()
        self.backend = self.group.get(lambda a: a.setup.remote(addr, port))[0]

    @property
    def actors(self) -> list:
        return self.group.actors

    def _all(self, method: Callable[[Any], Any], *args, **kwargs) -> list:
        """Call ``method(actor)`` on every rank; lists travel once through the object store."""
        refs = [ray.put(a) if isinstance(a, list | tuple) else a for a in args]
        return self.group.get(lambda actor: method(actor).remote(*refs, **kwargs),
                              timeout=self.call_timeout_s)

    def configure_optimizer(self, optimizer: OptimizerConfig, total_steps: int) -> None:
        self._all(lambda a: a.configure_optimizer, optimizer, total_steps)

    def compute_logprobs(self, samples: Sequence[PolicySample]) -> list[list[float]]:
        return self._all(lambda a: a.compute_logprobs, list(samples))[0]

    def policy_step(self, samples: Sequence[PolicySample], loss: PolicyLoss,
                    old_logprobs: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
        old = None if old_logprobs is None else ray.put([list(r) for r in old_logprobs])
        return self._all(lambda a: a.policy_step, list(samples), loss, old_logprobs=old)[0]

    def sft_step(self, demos: Sequence[Demonstration],
                 aggregation: SFTAggregation = SFTAggregation.TOKEN_MEAN,
                 max_seq_tokens: int = 1024) -> dict[str, float]:
        return self._all(lambda a: a.sft_step, list(demos), aggregation, max_seq_tokens)[0]

    def reset_model(self, path: str | Path) -> None:
        self._all(lambda a: a.reset_model, str(path))

    def save_state(self, path: str | Path) -> None:
        self._all(lambda a: a.save_state, str(path))

    def load_state(self, path: str | Path) -> None:
        self._all(lambda a: a.load_state, str(path))

    def save_hf(self, path: str | Path) -> Path:
        self._all(lambda a: a.save_hf, str(path))
        return Path(path)

    def weight_manifest(self) -> WeightManifest:
        return ray.get(self.actors[0].weight_manifest.remote())

    def full_state_dict(self, bucket_bytes: int = 64 * 2**20) -> dict:
        """Rank 0's gathered weights (every rank must take part; only rank 0's are fetched)."""
        refs = self.group.each(lambda actor: actor.full_state_dict.remote(bucket_bytes))
        ray.wait(refs, num_returns=len(refs))
        return ray.get(refs[0])

    def shutdown(self) -> None:
        self.group.shutdown()
