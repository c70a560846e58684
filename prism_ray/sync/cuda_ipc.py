"""CUDA IPC weight hand-off between processes sharing one GPU (colocated learner and
rollout worker): NCCL refuses two ranks on one device, and a copy through host memory would
waste the GPU's bandwidth. The learner packs a bucket on the GPU and exports a handle; the
worker maps the same memory and loads from it. One bucket is exported at a time, so the
extra memory is one bucket, not a second copy of the model.
"""

from __future__ import annotations

import time

import torch
from torch.multiprocessing.reductions import reduce_tensor

from prism_ray.sync.endpoints import SyncStats
from prism_ray.sync.plan import Bucket, pack, unpack


class IpcSender:
    """Mixin for learner ranks (beside ``WeightSender``); needs ``gathered_buckets(plan)``."""

    _ipc_buckets = None
    _ipc_flat: torch.Tensor | None = None

    def ipc_begin(self, plan: list[Bucket]) -> None:
        self._ipc_buckets = iter(self.gathered_buckets(plan))
        self._ipc_started = time.perf_counter()

    def ipc_next(self):
        """Gather the next bucket (all ranks, in lockstep); rank 0 returns its CUDA handle."""
        named = next(self._ipc_buckets)
        if self.rank != 0:
            return None
        self._ipc_flat = pack([t for _, t in named], device=torch.device("cuda"))
        torch.cuda.synchronize()  # the bytes must be in place before another process reads
        return reduce_tensor(self._ipc_flat)

    def ipc_end(self, version: int, nbytes: int, buckets: int) -> SyncStats | None:
        self._ipc_flat, self._ipc_buckets = None, None
        if self.rank != 0:
            return None
        return SyncStats(version, nbytes, time.perf_counter() - self._ipc_started, buckets)


class IpcReceiver:
    """Mixin for rollout workers (beside ``WeightReceiver``); needs ``load_weights``."""

    def ipc_receive(self, handle, bucket: Bucket, version: int, last: bool) -> int:
        rebuild, args = handle
        shared = rebuild(*args)  # a view of the learner's bucket, same device memory
        self.load_weights(unpack(shared, bucket), version, last=last)
        torch.cuda.synchronize()  # finished reading before the learner frees or reuses it
        del shared
        return bucket.nbytes
