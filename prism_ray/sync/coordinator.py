"""Driver side of weight sync: forms the broadcast group, plans buckets, pushes versions.

Group membership is learner rank 0 (source) + every rollout worker. When workers join or
leave, the group is formed again on a fresh port; the bucket plan does not change.

Transport ``cuda_ipc`` is for rollout workers that share the learner's GPU: buckets are
handed over as CUDA IPC handles, one at a time, instead of a broadcast.
"""

from __future__ import annotations

from typing import Any

import ray

from prism_ray.sync.endpoints import SyncStats
from prism_ray.sync.plan import Bucket, TensorSpec, plan_buckets


class WeightSync:
    def __init__(self, learners: list[Any], backend: str, bucket_bytes: int) -> None:
        """``learners``: all learner rank actors (rank 0 first); ``backend``: gloo | nccl |
        cuda_ipc."""
        self.learners, self.backend = learners, backend
        manifest: list[TensorSpec] = ray.get(learners[0].weight_manifest.remote())
        self.plan: list[Bucket] = plan_buckets(manifest, bucket_bytes)
        self.receivers: list[Any] = []
        self.version = 0

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.plan)

    def connect(self, receivers: list[Any]) -> None:
        """(Re)form the group with exactly these receivers."""
        self.receivers = list(receivers)
        if self.backend == "cuda_ipc":
            return  # no group: handles travel through Ray
        world = 1 + len(self.receivers)
        head = self.learners[0]
        address = ray.get(head.node_address.remote())
        port = ray.get(head.free_port.remote())
        refs = [learner.sync_connect.remote(address, port, world, self.backend)
                for learner in self.learners]
        refs += [worker.sync_connect.remote(address, port, i + 1, world, self.backend)
                 for i, worker in enumerate(self.receivers)]
        ray.get(refs)

    def push(self, version: int) -> SyncStats:
        """Send the learners' current weights to every receiver as ``version``."""
        if self.backend == "cuda_ipc":
            return self._push_ipc(version)
        sends = [learner.sync_send.remote(version, self.plan) for learner in self.learners]
        receives = [w.sync_receive.remote(version, self.plan) for w in self.receivers]
        stats = ray.get(sends)[0]
        got = ray.get(receives)
        if any(n != stats.bytes for n in got):
            raise RuntimeError(f"weight sync v{version}: sent {stats.bytes} bytes, got {got}")
        self.version = version
        return stats

    def _push_ipc(self, version: int) -> SyncStats:
        ray.get([learner.ipc_begin.remote(self.plan) for learner in self.learners])
        for i, bucket in enumerate(self.plan):
            handle = ray.get([learner.ipc_next.remote() for learner in self.learners])[0]
            last = i == len(self.plan) - 1
            ray.get([w.ipc_receive.remote(handle, bucket, version, last)
                     for w in self.receivers])
        stats = ray.get([learner.ipc_end.remote(version, self.total_bytes, len(self.plan))
                         for learner in self.learners])[0]
        self.version = version
        return stats
