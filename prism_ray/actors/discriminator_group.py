"""The discriminator learner group: a gang of ``DiscriminatorLearner`` ranks and their fan-out.

The same pattern as the policy group: each step's item list goes into the object store once,
every rank gets the same reference and takes its own shard, and ranks return global results,
so the group returns rank 0's answer. Calls are collectives: they always go to every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray

from prism_ray.actors.discriminator import DiscriminatorLearner
from prism_ray.actors.group import ActorGroup
from prism_ray.config.schema import DiscriminatorConfig, OptimizerConfig
from prism_ray.types import DiscriminatorItem, DiscriminatorScores


class DiscriminatorLearnerGroup:
    def __init__(self, model_path: str | Path, config: DiscriminatorConfig, seed: int = 0,
                 env_vars: dict[str, str] | None = None,
                 placement_timeout_s: float = 120.0,
                 call_timeout_s: float | None = None) -> None:
        """``model_path``: a dense Qwen3-VL checkpoint (upcycled on setup) or a directory
        written by ``save_hf``. ``call_timeout_s`` turns a hung collective (a rank that died
        mid-step) into GetTimeoutError instead of a hang."""
        self.config, self.call_timeout_s = config, call_timeout_s
        learner = config.learner
        self.group = ActorGroup(
            "discriminator", DiscriminatorLearner, learner.num_ranks, learner.resources,
            gang=True, placement_timeout_s=placement_timeout_s, env_vars=env_vars,
            init_kwargs={"model_path": str(model_path), "config": config, "seed": seed},
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

    def score(self, items: Sequence[DiscriminatorItem]) -> list[DiscriminatorScores]:
        return self._all(lambda a: a.score, list(items))[0]

    def train_step(self, items: Sequence[DiscriminatorItem], reg_coef: float,
                   aux_coef: float) -> dict[str, float]:
        return self._all(lambda a: a.train_step, list(items), reg_coef, aux_coef)[0]

    def save_hf(self, path: str | Path) -> Path:
        self._all(lambda a: a.save_hf, str(path))
        return Path(path)

    def shutdown(self) -> None:
        self.group.shutdown()
