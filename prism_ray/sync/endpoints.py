"""The two ends of weight sync, as mixins for actor classes.

``WeightSender`` (learner ranks) needs ``gathered_buckets(plan)``: an iterator of
``list[(name, full tensor)]``, one per planned bucket, in plan order, that EVERY learner rank
iterates in lockstep (under ZeRO-3 each bucket is a collective gather). Rank 0 packs each
bucket and broadcasts it; the other ranks only take part in the gathers.

``WeightReceiver`` (rollout workers) needs ``load_weights(named_tensors, version, last)``: it
receives each bucket into one flat tensor, unpacks it into views and loads them; ``last``
marks the final bucket of a version (engines that fuse tensors apply complete blocks only).

A broken broadcast (a peer died mid-version) is never left half-open: the end that sees the
error drops its group, which closes its connections, so every peer still blocked in that
broadcast fails at once instead of waiting for the group's timeout. The sender keeps taking
part in the remaining gathers (ZeRO-3 ranks > 0 are in lockstep with it) and raises at the
end. The coordinator then re-forms the group and pushes the version again.
"""

from __future__ import annotations

import gc
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
    copy_gb_per_s: float | None = None  # the device-copy rate on this GPU, where measured

    @property
    def gb_per_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e9

    @property
    def limit_share(self) -> float | None:
        """The sync's rate as a share of a plain device-to-device copy's (cuda_ipc)."""
        return self.gb_per_s / self.copy_gb_per_s if self.copy_gb_per_s else None


def _device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


class WeightSender:
    _sync_group: BroadcastGroup | None = None

    def sync_connect(self, address: str, port: int, world_size: int, backend: str,
                     connect_timeout_s: float = 30.0) -> bool:
        """Rank 0 of the learners becomes rank 0 (the source) of the broadcast group."""
        if self.rank == 0:
            self._sync_group = None  # a previous group's connections close first
            self._sync_group = BroadcastGroup(address, port, 0, world_size, backend,
                                              connect_timeout_s=connect_timeout_s)
        return True

    def sync_send(self, version: int, plan: list[Bucket]) -> SyncStats | None:
        started, sent = time.perf_counter(), 0
        group, broken = self._sync_group, None
        sender = group is not None
        for bucket, named in zip(plan, self.gathered_buckets(plan), strict=True):
            if group is None:  # ranks > 0 (or a broken group) only take part in the gathers
                continue
            flat = pack([t for _, t in named], device=_device(group.backend))
            if flat.numel() != bucket.nbytes:
                raise RuntimeError(f"bucket of {flat.numel()} bytes, planned {bucket.nbytes}: "
                                   "the learner's parameters differ from the sync plan")
            try:
                group.broadcast(flat, src=0)
            except RuntimeError as error:  # a receiver died: release the others now
                broken, group = str(error), None
                self.sync_drop()
                continue
            sent += flat.numel()
        if broken is not None:
            raise SyncBroken(f"weight sync v{version} broke after {sent} bytes: {broken}")
        if not sender:
            return None
        if group.backend == "nccl":
            torch.cuda.synchronize()
        return SyncStats(version, sent, time.perf_counter() - started, len(plan))


    def sync_drop(self) -> bool:
        return _drop(self)


class SyncBroken(RuntimeError):
    """A broadcast failed part-way (a peer died); this end has dropped its group."""


def _drop(end) -> bool:
    """Forget the broadcast group and collect it now, so its connections close at once."""
    end._sync_group = None
    gc.collect()
    return True


class WeightReceiver:
    _sync_group: BroadcastGroup | None = None

    def sync_connect(self, address: str, port: int, rank: int, world_size: int,
                     backend: str, connect_timeout_s: float = 30.0) -> bool:
        self._sync_group = None
        self._sync_group = BroadcastGroup(address, port, rank, world_size, backend,
                                          connect_timeout_s=connect_timeout_s)
        return True

    def sync_receive(self, version: int, plan: list[Bucket]) -> int:
        group = self._sync_group
        if group is None:
            raise RuntimeError("sync_receive before sync_connect")
        received = 0
        for i, bucket in enumerate(plan):
            flat = torch.empty(bucket.nbytes, dtype=torch.uint8, device=_device(group.backend))
            try:
                group.broadcast(flat, src=0)
            except RuntimeError as error:  # the source or a relay died: release our peers
                group = None
                self.sync_drop()
                raise SyncBroken(f"weight sync v{version} broke after {received} bytes: "
                                 f"{error}") from None
            self.load_weights(unpack(flat, bucket), version, last=i == len(plan) - 1)
            received += flat.numel()
        return received

    def sync_drop(self) -> bool:
        return _drop(self)
