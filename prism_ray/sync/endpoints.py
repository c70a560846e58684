"""The two ends of weight sync, as mixins for actor classes.

``WeightSender`` (learner ranks) needs ``gathered_buckets(plan)``: an iterator of
``list[(name, full tensor)]``, one per planned bucket, in plan order, that EVERY learner rank
iterates in lockstep (under ZeRO-3 each bucket is a collective gather). Rank 0 packs each
bucket and broadcasts it; the other ranks only take part in the gathers.

``WeightReceiver`` (rollout workers) needs ``load_weights(named_tensors, version, last)``: it
receives each bucket into one flat tensor, unpacks it into views and loads them; ``last``
marks the final bucket of a version (engines that fuse tensors apply complete blocks only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from prism_ray.sync.group import BroadcastGroup
from prism_ray.sync.plan import Bucket, pack, unpack


@dataclass(frozen=True)
class SyncStats:
    version: int
    bytes: int
    seconds: float
    buckets: int

    @property
    def gb_per_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e9


def _device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


class WeightSender:
    _sync_group: BroadcastGroup | None = None

    def sync_connect(self, address: str, port: int, world_size: int, backend: str) -> bool:
        """Rank 0 of the learners becomes rank 0 (the source) of the broadcast group."""
        if self.rank == 0:
            self._sync_group = BroadcastGroup(address, port, 0, world_size, backend)
        return True

    def sync_send(self, version: int, plan: list[Bucket]) -> SyncStats | None:
        started, sent = time.perf_counter(), 0
        group = self._sync_group
        for bucket, named in zip(plan, self.gathered_buckets(plan), strict=True):
            if group is None:  # ranks > 0 only take part in the gathers
                continue
            flat = pack([t for _, t in named], device=_device(group.backend))
            if flat.numel() != bucket.nbytes:
                raise RuntimeError(f"bucket of {flat.numel()} bytes, planned {bucket.nbytes}: "
                                   "the learner's parameters differ from the sync plan")
            group.broadcast(flat, src=0)
            sent += flat.numel()
        if group is None:
            return None
        if group.backend == "nccl":
            torch.cuda.synchronize()
        return SyncStats(version, sent, time.perf_counter() - started, len(plan))


class WeightReceiver:
    _sync_group: BroadcastGroup | None = None

    def sync_connect(self, address: str, port: int, rank: int, world_size: int,
                     backend: str) -> bool:
        self._sync_group = BroadcastGroup(address, port, rank, world_size, backend)
        return True

    def sync_receive(self, version: int, plan: list[Bucket]) -> int:
        group = self._sync_group
        if group is None:
            raise RuntimeError("sync_receive before sync_connect")
        received = 0
        for i, bucket in enumerate(plan):
            flat = torch.empty(bucket.nbytes, dtype=torch.uint8, device=_device(group.backend))
            group.broadcast(flat, src=0)
            self.load_weights(unpack(flat, bucket), version, last=i == len(plan) - 1)
            received += flat.numel()
        return received
