"""A broadcast group between processes that are not in the same torch.distributed world.

Learner ranks already own the default process group (DeepSpeed's); rollout workers live in
other processes. A process group built directly on its own TCPStore joins the learner's
rank 0 with the rollout workers without touching either default world. gloo on CPU, NCCL on
GPU.

Two timeouts: ``connect_timeout_s`` bounds the rendezvous (a member that died before joining
must not stall the others for long), ``timeout_s`` each broadcast (a large bucket on a slow
link may take a while).
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist


class BroadcastGroup:
    def __init__(self, address: str, port: int, rank: int, world_size: int, backend: str,
                 timeout_s: float = 300.0, connect_timeout_s: float = 30.0) -> None:
        timeout = timedelta(seconds=connect_timeout_s)
        self._op_timeout = timedelta(seconds=timeout_s)
        store = dist.TCPStore(address, port, world_size, is_master=rank == 0, timeout=timeout)
        # Prefix the store so a re-formed group (after workers join or leave) never reads
        # keys of the previous one.
        store = dist.PrefixStore(f"prism-sync-{port}", store)
        self.rank, self.world_size, self.backend = rank, world_size, backend
        if backend == "gloo":
            self._pg = dist.ProcessGroupGloo(store, rank, world_size, timeout)
        elif backend == "nccl":
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self._pg = dist.ProcessGroupNCCL(store, rank, world_size, options)
        else:
            raise ValueError(f"unknown sync backend {backend!r} (gloo | nccl)")
        self._store = store  # keep the store alive as long as the group

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        options = dist.BroadcastOptions()
        options.rootRank, options.rootTensor = src, 0
        options.timeout = self._op_timeout
        self._pg.broadcast([tensor], options).wait()

    def barrier(self) -> None:
        flag = torch.zeros(1, device="cuda" if self.backend == "nccl" else "cpu")
        self.broadcast(flag)
