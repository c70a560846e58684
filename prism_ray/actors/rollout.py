"""RolloutWorker: one rollout engine (HF or vLLM) in a Ray actor.

A plain class (the ``ActorGroup`` makes it remote with the role's resources). The engine is
chosen by the config enum; neither engine imports Ray.

Weights arrive through ``WeightReceiver`` (``sync``): each broadcast bucket is unpacked into
named views and handed to ``load_weights``; the version changes with the last bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from prism_ray.actors.group import RayWorker
from prism_ray.config.schema import RolloutBackend, SamplingConfig, VllmOptions
from prism_ray.rollout.base import RolloutEngine
from prism_ray.sync.cuda_ipc import IpcReceiver
from prism_ray.sync.endpoints import WeightReceiver
from prism_ray.types import RLPrompt, Rollout, SamplingParams

DEFAULT_MAX_TOKENS = SamplingParams().max_tokens


def sampling_params(
    config: SamplingConfig, n: int = 1, max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int | None = None,
) -> SamplingParams:
    """The engine's per-call parameters from the role's sampling config."""
    return SamplingParams(n=n, temperature=config.temperature, top_p=config.top_p,
                          top_k=config.top_k, max_tokens=max_tokens, seed=seed)


def make_engine(
    checkpoint: str | Path, backend: RolloutBackend, seed: int, vllm: VllmOptions,
    system_prompt: str | None,
) -> RolloutEngine:
    """The engine for ``backend``; each backend's heavy imports happen only when chosen.

    HF generates in float32; vLLM takes the checkpoint's dtype ("auto")."""
    if backend == RolloutBackend.hf:
        from prism_ray.rollout.hf import HFEngine

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return HFEngine(checkpoint, seed=seed, device=device, dtype=torch.float32,
                        system_prompt=system_prompt)
    if backend == RolloutBackend.vllm:
        from prism_ray.rollout.vllm import VllmEngine

        return VllmEngine(checkpoint, seed=seed, options=vllm, dtype="auto",
                          system_prompt=system_prompt)
    raise ValueError(f"unknown rollout backend {backend!r}")


# ── the actor ───────────────────────────────────────────────────


class RolloutWorker(RayWorker, WeightReceiver, IpcReceiver):
    def __init__(
        self, checkpoint: str | Path, backend: RolloutBackend, sampling: SamplingConfig,
        vllm: VllmOptions, seed: int, system_prompt: str | None, rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Every setting comes from the pool's ``RolloutConfig`` and the run (its defaults are
        the schema's), so a worker built by hand states them too."""
        super().__init__(rank, world_size)
        self.sampling = sampling
        # Offset by rank: workers of one pool must not draw identical random streams.
        self.engine = make_engine(checkpoint, RolloutBackend(backend), seed + rank, vllm,
                                  system_prompt)
        self._sync_in_flight = False

    def generate(
        self, prompts: Sequence[RLPrompt], params: SamplingParams | None = None
    ) -> list[list[Rollout]]:
        if self._sync_in_flight:
            raise RuntimeError(f"rollout worker {self.rank}: generate() during a weight sync "
                               "(the last bucket has not arrived)")
        return self.engine.generate(list(prompts), params or sampling_params(self.sampling))

    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, last: bool = True
    ) -> int:
        self.engine.load_weights(named_tensors, version, last=last)
        self._sync_in_flight = not last
        return self.engine.weight_version

    def weight_version(self) -> int:
        return self.engine.weight_version

    def logprobs_of(
        self, prompts: Sequence[RLPrompt], token_ids_per_prompt: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        return self.engine.logprobs_of(list(prompts), token_ids_per_prompt)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()
