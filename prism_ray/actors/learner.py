"""What the policy and discriminator learners share: a DeepSpeed engine rebuilt per phase,
sample sharding across ranks, and resume state.

Subclasses say how to rebuild their module from gathered weights (``_rebuild``), how to load
it from a checkpoint directory (``_load``), and may prepare it before the engine wraps it
(``_before_engine``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from prism_ray.actors.group import RayWorker
from prism_ray.config.schema import LearnerConfig, OptimizerConfig
from prism_ray.learner.engine import build_engine, load_engine_state, save_engine_state
from prism_ray.learner.weights import gather_full_state


def gather_ordered(local: list, total: int, rank: int, world_size: int) -> list:
    """Rank r holds results for indices r::world; returns all of them in global order."""
    parts = [local]
    if dist.is_initialized() and world_size > 1:
        parts = [None] * world_size
        dist.all_gather_object(parts, local)
    out = [None] * total
    for r, part in enumerate(parts):
        out[r::world_size] = part
    return out


class EngineLearner(RayWorker):
    engine = None
    model: torch.nn.Module | None = None

    # ── hooks ───────────────────────────────────────────────────

    @property
    def learner_config(self) -> LearnerConfig:
        raise NotImplementedError

    def _rebuild(self, state: dict[str, torch.Tensor], config) -> torch.nn.Module:
        raise NotImplementedError

    def _load(self, path: str) -> torch.nn.Module:
        raise NotImplementedError

    def _before_engine(self, model: torch.nn.Module) -> None:
        """Called on the plain module just before a new engine wraps it."""

    # ── engine lifecycle ────────────────────────────────────────

    def configure_optimizer(self, optimizer_config: OptimizerConfig, total_steps: int) -> None:
        """A fresh AdamW and schedule for a phase. An existing engine is rebuilt from its current
        (gathered) weights: swapping the optimizer inside a ZeRO engine is not supported."""
        if self.engine is not None:
            state = gather_full_state(self.engine.module)
            config = self.engine.module.config
            self._drop_engine()
            self.model = self._rebuild(state, config)
        self._before_engine(self.model)
        self.engine = build_engine(self.model, self.learner_config, optimizer_config,
                                   total_steps, self.world_size)
        self.model = None  # the engine owns (and may partition) the module now

    def reset_model(self, path: str) -> None:
        """Drop the engine and load weights from a checkpoint directory (a phase's
        ``init_from``, or a resume at a phase boundary); the next ``configure_optimizer``
        builds the engine."""
        self._drop_engine()
        self.model = self._load(str(path))

    def _drop_engine(self) -> None:
        if self.engine is not None:
            self.engine.destroy()
            self.engine = None

    def _unwrapped(self) -> torch.nn.Module:
        return self.engine.module if self.engine is not None else self.model

    def _module(self):
        return self.engine if self.engine is not None else self.model

    # ── sharding ────────────────────────────────────────────────

    def _shard(self, total: int) -> list[int]:
        """Global indices this rank works on: r, r + world, r + 2·world, ..."""
        return list(range(self.rank, total, self.world_size))

    def _gather_ordered(self, local: list, total: int) -> list:
        return gather_ordered(local, total, self.rank, self.world_size)

    # ── resume state ────────────────────────────────────────────

    def save_state(self, path: str) -> None:
        """DeepSpeed shards of weights/optimizer/schedule + RNG streams (a collective)."""
        save_engine_state(self.engine, path, self.rank)

    def load_state(self, path: str) -> None:
        load_engine_state(self.engine, path, self.rank)
