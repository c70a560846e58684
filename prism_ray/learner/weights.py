"""Weights of a (possibly ZeRO-3 partitioned) model, as full tensors in size-bounded buckets.

The contract for weight sync (the transport is built on top of ``iter_weight_buckets``):

- Names are exactly ``model.named_parameters()`` of the HF model class (tied weights appear
  once, under their first name), in module order: stable across ranks, steps and restarts.
- Shapes come from the REAL parameter shape: under ZeRO-3 a parameter that is not gathered
  reports ``numel() == 0``; its true shape is ``ds_shape``.
- Buckets come from ``sync.plan.plan_buckets``, a pure function of the manifest, so a receiver
  that holds the manifest computes the same buckets (and allocates receive buffers) itself.
- Under ZeRO-3 each bucket is gathered once, with one ``GatheredParameters`` (never nested),
  which is a collective: EVERY rank must iterate the generator in lockstep and to the end.
  Yielded tensors are views valid until the generator advances; copy to keep them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from prism_ray.sync.plan import Bucket, TensorSpec, plan_buckets


@dataclass(frozen=True)
class WeightManifest:
    """Every parameter's name, full shape and dtype, in module order. Iterating it yields the
    ``TensorSpec``s that ``sync.plan.plan_buckets`` takes."""

    entries: tuple[TensorSpec, ...]

    def __iter__(self) -> Iterator[TensorSpec]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)


def full_shape(param: torch.nn.Parameter) -> tuple[int, ...]:
    """The shape of the whole parameter, also when ZeRO-3 holds only a partition of it."""
    shape = getattr(param, "ds_shape", None)
    return tuple(shape) if shape is not None else tuple(param.shape)


def manifest_of(model: torch.nn.Module) -> WeightManifest:
    return WeightManifest(tuple(TensorSpec(name, full_shape(p), str(p.dtype))
                                for name, p in model.named_parameters()))


def is_partitioned(param: torch.nn.Parameter) -> bool:
    return hasattr(param, "ds_id")


def iter_planned_buckets(
    model: torch.nn.Module, plan: Sequence[Bucket]
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Yield (name, full tensor) lists, one per planned bucket, in plan order."""
    import deepspeed

    named = dict(model.named_parameters())
    for bucket in plan:
        names = [spec.name for spec in bucket.specs]
        params = [named[n] for n in names]
        if any(is_partitioned(p) for p in params):
            # One gather per bucket; modifier_rank=None: read-only on every rank.
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                yield [(n, p.data.detach()) for n, p in zip(names, params, strict=True)]
        else:
            yield [(n, p.data.detach()) for n, p in zip(names, params, strict=True)]


def iter_weight_buckets(
    model: torch.nn.Module, bucket_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Buckets of at most ``bucket_bytes`` (the sync planner's rule); see the module docstring."""
    return iter_planned_buckets(model, plan_buckets(manifest_of(model), bucket_bytes))


def gather_full_state(model: torch.nn.Module, bucket_bytes: int = 256 * 2**20) -> dict:
    """Every parameter as a full CPU tensor, on every rank (a collective under ZeRO-3)."""
    state = {}
    for bucket in iter_weight_buckets(model, bucket_bytes):
        state.update({name: tensor.to("cpu", copy=True) for name, tensor in bucket})
    return state
