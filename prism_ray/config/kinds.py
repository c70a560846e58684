"""The phase-kind registry: everything the system knows about a kind of phase, in one record.

A kind is registered next to its config class (``config.phases``) and names its runner by
import path, so the config layer never imports the driver. Every table that used to be keyed
by kind strings (runners, roles, accepted data, synthetic files, evaluation) reads from here.

Adding a phase kind: write its config class and ``register_phase_kind(PhaseKind(...))`` in
``config/phases.py``, and its runner (a ``driver.loop.Stepper`` factory) in ``driver/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prism_ray.registry import Registry

ROLE_NAMES = frozenset({"policy", "rollout", "discriminator", "verifier"})


@dataclass(frozen=True)
class PhaseKind:
    config: type  # the phase's pydantic config class; its ``kind`` literal names the kind
    runner: str  # "module:function" taking (phase, RunContext)
    roles: frozenset[str]  # the actor roles the phase needs (``driver.roles``)
    data: tuple[type, ...]  # data-source config classes the phase can read
    synthetic_files: tuple[str, ...] = ()  # files of the synthetic task that feed it
    evaluation: bool = False  # an evaluation kind: its settings also evaluate every phase end

    @property
    def name(self) -> str:
        return self.config.model_fields["kind"].default

    def __post_init__(self) -> None:
        unknown = self.roles - ROLE_NAMES
        if unknown:
            raise ValueError(f"phase kind {self.config.__name__}: unknown roles {unknown}")
        if ":" not in self.runner:
            raise ValueError(f"runner must be 'module:function', got {self.runner!r}")

    def load_runner(self) -> Callable[[Any, Any], None]:
        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)


# Listed in registration order in errors: the order of the pipeline.
PHASE_KINDS: Registry[PhaseKind] = Registry("phase kind", sort_names=False)
phase_kind = PHASE_KINDS.lookup


def register_phase_kind(kind: PhaseKind) -> PhaseKind:
    return PHASE_KINDS.add(kind.name, kind)
