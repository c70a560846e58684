"""CUDA IPC weight hand-off between processes sharing one GPU (colocated learner and
rollout worker): NCCL refuses two ranks on one device, and a copy through host memory would
waste the GPU's bandwidth.

Learner rank 0 keeps one *staging buffer* on its GPU, allocated once, as large as a round of
buckets (by default all of them: the weights in one round). Its IPC handle is exported once;
each receiver maps it once and keeps the mapping (keyed by the buffer's id) for every later
sync. A round is two calls: ``ipc_stage`` — every learner rank gathers the round's buckets in
lockstep and rank 0 packs them into the buffer (device copies) — then ``ipc_load`` on every
receiver, which loads all of the round's tensors in one go straight from the mapping. A new
buffer (a larger round) gets a new id, and receivers map it afresh.

Memory: the buffer is a second copy of the weights in their training dtype while it lives;
``sync.ipc_buffer_mb`` bounds it (the weights then travel in several rounds).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import torch
from torch.multiprocessing.reductions import reduce_tensor

from prism_ray.sync.plan import Bucket, pack_into, unpack_all

# Size of the device-to-device copy timed once per staging buffer: the sync's hardware limit.
_PROBE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class IpcBuffer:
    """A staging buffer as receivers see it: an id that names it for caching, its CUDA IPC
    handle (``reduce_tensor``'s output), and the device-copy rate measured on it."""

    buffer_id: str
    handle: Any
    copy_gb_per_s: float


def device_copy_gb_per_s(nbytes: int = _PROBE_BYTES) -> float:
    """Bytes moved per second by one device-to-device copy on the current GPU (read + write
    counted once, like a sync's bytes); median of three after a warm-up."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(4):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return nbytes / sorted(times[1:])[1] / 1e9


class IpcSender:
    """Mixin for learner ranks (beside ``WeightSender``); needs ``gathered_buckets(plan)``."""

    _ipc_flat: torch.Tensor | None = None
    _ipc_buffer: IpcBuffer | None = None

    def ipc_stage(self, buckets: list[Bucket]) -> tuple[IpcBuffer, float] | None:
        """Gather ``buckets`` (all ranks, in lockstep) and, on rank 0, pack them into the
        staging buffer; rank 0 returns the buffer and the seconds this took."""
        started = time.perf_counter()
        gathered = self.gathered_buckets(buckets)
        if self.rank != 0:
            for _ in gathered:  # take part in the gathers only
                pass
            return None
        need = sum(b.nbytes for b in buckets)
        if self._ipc_flat is None or self._ipc_flat.numel() < need:
            self._ipc_flat = None  # the old buffer goes before the new one is allocated
            self._ipc_flat = torch.empty(need, dtype=torch.uint8, device="cuda")
            self._ipc_buffer = IpcBuffer(uuid.uuid4().hex, reduce_tensor(self._ipc_flat),
                                         device_copy_gb_per_s())
        offset = 0
        for bucket, named in zip(buckets, gathered, strict=True):
            pack_into(self._ipc_flat[offset: offset + bucket.nbytes], [t for _, t in named])
            offset += bucket.nbytes
        torch.cuda.synchronize()  # the bytes must be in place before another process reads
        return self._ipc_buffer, time.perf_counter() - started

    def ipc_release(self) -> None:
        """Free the staging buffer (receivers must have dropped their mappings first)."""
        self._ipc_flat, self._ipc_buffer = None, None


class IpcReceiver:
    """Mixin for rollout workers (beside ``WeightReceiver``); needs ``load_weights``."""

    _ipc_mapped: tuple[str, torch.Tensor] | None = None

    def ipc_load(self, buffer: IpcBuffer, buckets: list[Bucket], version: int,
                 last: bool) -> int:
        """Load every tensor of ``buckets`` from the learner's staging buffer, mapped on the
        first call and kept; returns the bytes loaded."""
        if self._ipc_mapped is None or self._ipc_mapped[0] != buffer.buffer_id:
            self._ipc_mapped = None
            rebuild, args = buffer.handle
            self._ipc_mapped = (buffer.buffer_id, rebuild(*args))  # same device memory
        self.load_weights(unpack_all(self._ipc_mapped[1], buckets), version, last=last)
        torch.cuda.synchronize()  # finished reading before the learner writes the next round
        return sum(b.nbytes for b in buckets)

    def ipc_unmap(self) -> bool:
        self._ipc_mapped = None
        return True
