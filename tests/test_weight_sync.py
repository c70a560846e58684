"""Bucketed weight sync: the pure plan/pack/unpack, and a real broadcast between Ray actors."""

from __future__ import annotations

import pytest
import torch

from prism_ray.actors.group import RayWorker
from prism_ray.sync.coordinator import WeightSync
from prism_ray.sync.endpoints import WeightReceiver, WeightSender
from prism_ray.sync.plan import (
    Bucket,
    TensorSpec,
    buckets_of,
    manifest_of,
    pack,
    pack_into,
    plan_buckets,
    rounds_of,
    unpack,
    unpack_all,
)


def test_plan_is_greedy_order_preserving_and_sized_from_shapes():
    specs = [TensorSpec("a", (10, 10), "torch.float32"),  # 400 B
             TensorSpec("b", (50,), "torch.bfloat16"),  # 100 B
             TensorSpec("c", (1000,), "torch.float32"),  # 4000 B: alone
             TensorSpec("d", (3,), "torch.int64")]  # 24 B
    plan = plan_buckets(specs, bucket_bytes=512)
    assert [[s.name for s in b.specs] for b in plan] == [["a", "b"], ["c"], ["d"]]
    assert [b.nbytes for b in plan] == [400 + 112, 4000, 32]  # 16-byte aligned offsets
    assert sum(b.nbytes for b in plan) == sum(s.padded_nbytes for s in specs)


def test_pack_unpack_round_trips_mixed_dtypes_bit_exactly():
    tensors = {"w": torch.randn(3, 4), "h": torch.randn(5).to(torch.bfloat16),
               "i": torch.arange(7), "m": torch.tensor([True, False])}
    bucket = Bucket(tuple(manifest_of(tensors.items())))
    flat = pack(list(tensors.values()))
    assert flat.dtype == torch.uint8 and flat.numel() == bucket.nbytes
    assert bucket.nbytes == 48 + 16 + 64 + 16
    for name, view in unpack(flat, bucket):
        assert view.dtype == tensors[name].dtype
        assert torch.equal(view, tensors[name])
    with pytest.raises(ValueError, match="plan says"):
        unpack(flat[:-1], bucket)


def test_rounds_fill_a_staging_buffer_in_plan_order():
    plan = plan_buckets([TensorSpec(n, (size,), "torch.uint8") for n, size in
                         (("a", 100), ("b", 100), ("c", 300), ("d", 50), ("e", 60))], 100)
    assert [b.nbytes for b in plan] == [112, 112, 304, 64, 64]
    names = [[[s.name for s in b.specs] for b in r] for r in rounds_of(plan, 240)]
    assert names == [[["a"], ["b"]], [["c"]], [["d"], ["e"]]]  # c alone: larger than 240
    assert rounds_of(plan, 0) == [plan] and rounds_of([], 0) == []
    assert [b for r in rounds_of(plan, 1) for b in r] == plan  # nothing lost or reordered


def test_staging_buffer_round_trips_every_bucket_of_a_round():
    tensors = {"w": torch.randn(3, 4), "h": torch.randn(5).to(torch.bfloat16),
               "i": torch.arange(7), "m": torch.tensor([True, False])}
    plan = plan_buckets(manifest_of(tensors.items()), 64)
    buffer = torch.full((sum(b.nbytes for b in plan) + 100,), 7, dtype=torch.uint8)  # larger
    offset = 0
    for bucket in plan:
        pack_into(buffer[offset: offset + bucket.nbytes], [tensors[s.name] for s in bucket.specs])
        offset += bucket.nbytes
    views = unpack_all(buffer, plan)
    assert [n for n, _ in views] == list(tensors)
    for name, view in views:
        assert view.dtype == tensors[name].dtype and torch.equal(view, tensors[name])
    with pytest.raises(ValueError, match="bytes for tensors of"):
        pack_into(buffer[:10], [tensors["w"]])


class _Sender(RayWorker, WeightSender):
    """A learner stand-in holding a plain model (ZeRO 0/1/2 hold full weights like this)."""

    def __init__(self, rank: int = 0, world_size: int = 1, path: str = "") -> None:
        super().__init__(rank, world_size)
        from transformers import Qwen3VLForConditionalGeneration

        self.model = Qwen3VLForConditionalGeneration.from_pretrained(path)

    def weight_manifest(self):
        return manifest_of(self.model.named_parameters())

    def gathered_buckets(self, plan):
        return buckets_of(dict(self.model.named_parameters()), plan)

    def perturb(self, seed: int) -> None:
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(torch.randn_like(p) * 0.01)

    def checksum(self) -> dict[str, float]:
        return {n: float(p.double().sum()) for n, p in self.model.named_parameters()}


class _Receiver(RayWorker, WeightReceiver):
    def __init__(self, rank: int = 0, world_size: int = 1, path: str = "") -> None:
        super().__init__(rank, world_size)
        from transformers import Qwen3VLForConditionalGeneration

        self.model = Qwen3VLForConditionalGeneration.from_pretrained(path)
        self.version = 0

    def load_weights(self, named, version: int, last: bool = True) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named:
                params[name].copy_(tensor)
        self.version = version

    def checksum(self) -> dict[str, float]:
        return {n: float(p.double().sum()) for n, p in self.model.named_parameters()}


@pytest.mark.ray
def test_broadcast_sync_makes_receivers_identical_and_regroups(ray_cluster, tiny_pair):
    ray = ray_cluster
    path = str(tiny_pair[0])
    remote_sender = ray.remote(num_cpus=0.5)(_Sender)
    remote_receiver = ray.remote(num_cpus=0.5)(_Receiver)
    sender = remote_sender.remote(path=path)
    receivers = [remote_receiver.remote(rank=i, path=path) for i in range(2)]
    try:
        sync = WeightSync([sender], backend="gloo", bucket_bytes=256 * 1024)
        assert len(sync.plan) > 1  # really bucketed, not one call per tensor nor one blob
        assert len(sync.plan) < len(ray.get(sender.weight_manifest.remote()))
        sync.connect(receivers)
        ray.get(sender.perturb.remote(1))
        stats = sync.push(version=1)
        assert stats.bytes == sync.total_bytes and stats.buckets == len(sync.plan)
        assert stats.gb_per_s > 0
        expected = ray.get(sender.checksum.remote())
        for receiver in receivers:
            assert ray.get(receiver.checksum.remote()) == expected

        # A worker leaves: the group is formed again and the next version still lands.
        ray.kill(receivers.pop())
        sync.connect(receivers)
        ray.get(sender.perturb.remote(2))
        sync.push(version=2)
        assert ray.get(receivers[0].checksum.remote()) == ray.get(sender.checksum.remote())
        assert sync.version == 2
    finally:
        for actor in [sender, *receivers]:
            ray.kill(actor)
