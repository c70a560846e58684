"""RolloutWorker: one rollout engine (HF or vLLM) in a Ray actor.

A plain class (the ``ActorGroup`` makes it remote with the role's resources). The engine is
chosen by the config enum; neither engine imports Ray.

Bucket format (``apply_bucket``, the weight-sync entry point): ``flat`` is a 1-D uint8
tensor holding the raw bytes of each tensor in ``names`` order, back to back, no alignment
padding, each tensor contiguous in native byte order; ``shapes``/``dtypes`` describe them.
``pack_bucket`` builds exactly that. Bytes rather than one dtype, so a bucket may mix dtypes
(fp32 norms beside bf16 matrices) and still round-trip bit-exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from prism_ray.actors.group import RayWorker
from prism_ray.config.schema import RolloutBackend, SamplingConfig, VllmOptions
from prism_ray.rollout.base import RolloutEngine
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
    dtype: str = "auto",
) -> RolloutEngine:
    """The engine for ``backend``; each backend's heavy imports happen only when chosen."""
    if backend == RolloutBackend.hf:
        from prism_ray.rollout.hf import HFEngine

        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
        return HFEngine(checkpoint, seed=seed, device=device, dtype=torch_dtype)
    if backend == RolloutBackend.vllm:
        from prism_ray.rollout.vllm import VllmEngine

        return VllmEngine(checkpoint, seed=seed, options=vllm, dtype=dtype)
    raise ValueError(f"unknown rollout backend {backend!r}")


# ── buckets ─────────────────────────────────────────────────────


def pack_bucket(
    named_tensors: Iterable[tuple[str, torch.Tensor]],
) -> tuple[list[str], list[tuple[int, ...]], list[torch.dtype], torch.Tensor]:
    """(names, shapes, dtypes, flat uint8 bytes): the format ``apply_bucket`` reads."""
    names, shapes, dtypes, parts = [], [], [], []
    for name, tensor in named_tensors:
        tensor = tensor.detach().contiguous()
        names.append(name)
        shapes.append(tuple(tensor.shape))
        dtypes.append(tensor.dtype)
        parts.append(tensor.reshape(-1).view(torch.uint8))
    flat = torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)
    return names, shapes, dtypes, flat


def unpack_bucket(
    names: Sequence[str], shapes: Sequence[Sequence[int]],
    dtypes: Sequence[torch.dtype | str], flat: torch.Tensor,
) -> list[tuple[str, torch.Tensor]]:
    """Inverse of ``pack_bucket``. Each slice is cloned before the dtype view: a byte offset
    need not be aligned for the wider dtype, and the sender may reuse ``flat``."""
    if flat.dtype != torch.uint8 or flat.dim() != 1:
        raise ValueError(f"bucket must be a 1-D uint8 tensor, got {flat.dtype} {tuple(flat.shape)}")
    out, offset = [], 0
    for name, shape, dtype in zip(names, shapes, dtypes, strict=True):
        dtype = _as_dtype(dtype)
        numel = 1
        for size in shape:
            numel *= int(size)
        nbytes = numel * dtype.itemsize
        if offset + nbytes > flat.numel():
            raise ValueError(f"bucket holds {flat.numel()} bytes, {name!r} ends at byte "
                             f"{offset + nbytes}")
        chunk = flat[offset:offset + nbytes].clone()
        out.append((name, chunk.view(dtype).reshape(tuple(shape))))
        offset += nbytes
    if offset != flat.numel():
        raise ValueError(f"bucket holds {flat.numel()} bytes, the tensors described need {offset}")
    return out


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return resolved


# ── the actor ───────────────────────────────────────────────────


class RolloutWorker(RayWorker):
    def __init__(
        self, checkpoint: str | Path, backend: RolloutBackend = RolloutBackend.hf,
        sampling: SamplingConfig | None = None, vllm: VllmOptions | None = None,
        seed: int = 0, dtype: str = "auto", rank: int = 0, world_size: int = 1,
    ) -> None:
        super().__init__(rank, world_size)
        self.sampling = sampling or SamplingConfig()
        # Offset by rank: workers of one pool must not draw identical random streams.
        self.engine = make_engine(checkpoint, RolloutBackend(backend), seed + rank,
                                  vllm or VllmOptions(), dtype)
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

    def apply_bucket(
        self, names: Sequence[str], shapes: Sequence[Sequence[int]],
        dtypes: Sequence[torch.dtype | str], flat: torch.Tensor, version: int, last: bool,
    ) -> int:
        """One bucket of a weight sync (format: module doc); returns the engine's version."""
        return self.load_weights(unpack_bucket(names, shapes, dtypes, flat), version, last)

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
