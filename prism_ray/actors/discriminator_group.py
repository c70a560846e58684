"""The discriminator learner group (see ``learner_group`` for the fan-out rules)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prism_ray.actors.discriminator import DiscriminatorLearner
from prism_ray.actors.learner_group import LearnerGroup
from prism_ray.config.schema import DiscriminatorConfig
from prism_ray.types import DiscriminatorItem, DiscriminatorScores


class DiscriminatorLearnerGroup(LearnerGroup):
    def __init__(self, model_path: str | Path, config: DiscriminatorConfig, seed: int, *,
                 system_prompt: str | None, placement_timeout_s: float,
                 env_vars: dict[str, str] | None = None,
                 call_timeout_s: float | None = None) -> None:
        """``model_path``: a dense Qwen3-VL checkpoint (upcycled on setup) or a directory
        written by ``save_hf``."""
        self.config = config
        super().__init__("discriminator", DiscriminatorLearner, config.learner,
                         {"model_path": str(model_path), "config": config, "seed": seed,
                          "system_prompt": system_prompt},
                         placement_timeout_s=placement_timeout_s, env_vars=env_vars,
                         call_timeout_s=call_timeout_s)

    def score(self, items: Sequence[DiscriminatorItem]) -> list[DiscriminatorScores]:
        return self._all(lambda a: a.score, list(items))[0]

    def train_step(self, items: Sequence[DiscriminatorItem], reg_coef: float,
                   aux_coef: float) -> dict[str, float]:
        return self._all(lambda a: a.train_step, list(items), reg_coef, aux_coef)[0]
