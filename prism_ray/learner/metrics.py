"""Step metrics over micro-batches and ranks: token-weighted means, maxima and sums.

Every rank reports the same keys (padding passes contribute with weight 0), so one all-reduce
of a packed tensor yields identical metrics on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

MAX_KEYS = ("ratio_max",)


class StepMetrics:
    def __init__(self) -> None:
        self._weighted: dict[str, list[float]] = {}  # key -> [sum(value * weight), sum(weight)]
        self._max: dict[str, float] = {}
        self._sum: dict[str, float] = {}

    def add_mean(self, metrics: dict[str, float], weight: float) -> None:
        """Local means of one micro-batch, weighted by its learned-on tokens (0 for padding)."""
        for key, value in metrics.items():
            if key in MAX_KEYS:
                current = self._max.get(key, float("-inf"))
                self._max[key] = max(current, value) if weight > 0 else current
                continue
            slot = self._weighted.setdefault(key, [0.0, 0.0])
            slot[0] += value * weight
            slot[1] += weight

    def add_sum(self, key: str, value: float) -> None:
        self._sum[key] = self._sum.get(key, 0.0) + value

    def reduce(self, device: torch.device) -> dict[str, float]:
        """Combine over ranks (a collective when distributed); the same dict on every rank."""
        wkeys, mkeys, skeys = sorted(self._weighted), sorted(self._max), sorted(self._sum)
        flat = [v for k in wkeys for v in self._weighted[k]] + [self._sum[k] for k in skeys]
        sums = torch.tensor(flat, dtype=torch.float64, device=device)
        maxes = torch.tensor([self._max[k] for k in mkeys], dtype=torch.float64, device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
            dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
        sums, maxes = sums.tolist(), maxes.tolist()
        out = {k: sums[2 * i] / max(sums[2 * i + 1], 1e-12) for i, k in enumerate(wkeys)}
        out.update({k: sums[2 * len(wkeys) + i] for i, k in enumerate(skeys)})
        out.update(dict(zip(mkeys, maxes, strict=True)))
        return out
