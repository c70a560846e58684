"""Bucketed weight transfer, the pure part: plan buckets, pack tensors, unpack them.

One RPC or one collective per tensor dominates step time at scale (hundreds of tensors per
model); tensors are therefore grouped into buckets of roughly ``bucket_bytes`` and each
bucket travels as one flat byte tensor. Sizes come from the real shapes (under ZeRO-3 a
parameter's local ``numel()`` is 0), so sender and receiver plan identical buckets from the
same manifest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

# Every tensor starts at a multiple of ALIGN bytes inside a bucket, so its bytes can be viewed
# as any dtype in place (a view needs an offset divisible by the element size).
ALIGN = 16

DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # str(torch.dtype), e.g. "torch.bfloat16"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype].itemsize

    @property
    def padded_nbytes(self) -> int:
        return _aligned(self.nbytes)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class Bucket:
    specs: tuple[TensorSpec, ...]

    @property
    def nbytes(self) -> int:
        """Bytes on the wire, alignment padding included."""
        return sum(s.padded_nbytes for s in self.specs)


def spec_of(name: str, tensor: torch.Tensor, shape: Sequence[int] | None = None) -> TensorSpec:
    return TensorSpec(name, tuple(shape if shape is not None else tensor.shape), str(tensor.dtype))


def plan_buckets(specs: Iterable[TensorSpec], bucket_bytes: int) -> list[Bucket]:
    """Greedy, order-preserving grouping; a tensor larger than the budget gets its own bucket."""
    buckets: list[Bucket] = []
    current: list[TensorSpec] = []
    size = 0
    for spec in specs:
        if current and size + spec.padded_nbytes > bucket_bytes:
            buckets.append(Bucket(tuple(current)))
            current, size = [], 0
        current.append(spec)
        size += spec.padded_nbytes
    if current:
        buckets.append(Bucket(tuple(current)))
    return buckets


def rounds_of(plan: Sequence[Bucket], buffer_bytes: int) -> list[list[Bucket]]:
    """Consecutive buckets grouped so each group fits ``buffer_bytes`` (a bucket larger than
    that is a group of its own); ``buffer_bytes`` 0: one group, the whole plan."""
    if buffer_bytes <= 0:
        return [list(plan)] if plan else []
    groups: list[list[Bucket]] = []
    size = 0
    for bucket in plan:
        if groups and groups[-1] and size + bucket.nbytes <= buffer_bytes:
            groups[-1].append(bucket)
            size += bucket.nbytes
        else:
            groups.append([bucket])
            size = bucket.nbytes
    return groups


def pack(tensors: Sequence[torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor:
    """Concatenate the raw bytes of ``tensors`` (each padded to ALIGN) into one uint8 tensor."""
    sizes = [_aligned(t.numel() * t.element_size()) for t in tensors]
    target = tensors[0].device if device is None and tensors else device
    flat = torch.zeros(sum(sizes), dtype=torch.uint8, device=target)
    return pack_into(flat, tensors)


def pack_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Write the raw bytes of ``tensors`` (each at an ALIGN-ed offset) into the uint8 tensor
    ``flat``, which must hold exactly their padded sizes; returns ``flat``. Padding bytes are
    left as they are (no reader looks at them)."""
    sizes = [_aligned(t.numel() * t.element_size()) for t in tensors]
    if flat.numel() != sum(sizes):
        raise ValueError(f"pack_into: {flat.numel()} bytes for tensors of {sum(sizes)}")
    offset = 0
    for t, size in zip(tensors, sizes):
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
        flat[offset: offset + raw.numel()].copy_(raw, non_blocking=True)
        offset += size
    return flat


def unpack_all(flat: torch.Tensor, buckets: Sequence[Bucket]) -> list[tuple[str, torch.Tensor]]:
    """Views of every tensor of ``buckets`` laid out one after another from ``flat``'s start
    (``flat`` may be longer: a staging buffer sized for a larger round)."""
    out, offset = [], 0
    for bucket in buckets:
        out += unpack(flat[offset: offset + bucket.nbytes], bucket)
        offset += bucket.nbytes
    return out


def unpack(flat: torch.Tensor, bucket: Bucket) -> list[tuple[str, torch.Tensor]]:
    """Views into ``flat`` with each spec's dtype and shape (no copy)."""
    if flat.numel() != bucket.nbytes:
        raise ValueError(f"bucket holds {flat.numel()} bytes, its plan says {bucket.nbytes}")
    out, offset = [], 0
    for spec in bucket.specs:
        chunk = flat[offset: offset + spec.nbytes]
        out.append((spec.name, chunk.view(DTYPES[spec.dtype]).view(spec.shape)))
        offset += spec.padded_nbytes
    return out


def manifest_of(named: Iterable[tuple[str, torch.Tensor]]) -> list[TensorSpec]:
    return [spec_of(name, t) for name, t in named]


def buckets_of(named: dict[str, torch.Tensor], plan: Sequence[Bucket]):
    """Plan-ordered buckets of tensors that are fully present in this process."""
    for bucket in plan:
        yield [(spec.name, named[spec.name]) for spec in bucket.specs]
