"""Driver side of weight sync: forms the broadcast group, plans buckets, pushes versions.

Group membership is learner rank 0 (source) + every rollout worker. When workers join or
leave, the group is formed again on a fresh port; the bucket plan does not change.
"""

from __future__ import annotations

from typing import Any

import ray

from prism_ray.sync.endpoints import SyncStats
from prism_ray.sync.plan import Bucket, TensorSpec, plan_buckets


class WeightSync:
    def __init__(self, learners: list[Any], backend: str, bucket_bytes: int) -> None:
        """``learners``: all learner rank actors (rank 0 first)."""
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
        """Broadcast the learners' current weights to every receiver as ``version``."""
        sends = [learner.sync_send.remote(version, self.plan) for learner in self.learners]
        receives = [w.sync_receive.remote(version, self.plan) for w in self.receivers]
        stats = ray.get(sends)[0]
        got = ray.get(receives)
        if any(n != stats.bytes for n in got):
            raise RuntimeError(f"weight sync v{version}: sent {stats.bytes} bytes, got {got}")
        self.version = version
        return stats
