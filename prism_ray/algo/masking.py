"""Masked reductions shared by every loss: the one place where padding is kept out of the math."""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is set. values, mask: same shape; mask bool or {0,1}."""
    masked = values * mask.to(values.dtype)
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is set; 0 (not NaN) where nothing is set.

    Clamping the count at 1 keeps an all-padding micro-batch from poisoning the step with NaN;
    its numerator is 0 there anyway, and the gradient stays connected to `values`.
    """
    count = mask.to(values.dtype).sum() if dim is None else mask.to(values.dtype).sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1.0)


def broadcast_to_tokens(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sequence values [B] (or already per-token [B, T]) -> per-token [B, T] like `like`."""
    if values.dim() == 1:
        return values.unsqueeze(-1).expand_as(like)
    if values.shape != like.shape:
        raise ValueError(f"expected shape [B] or {tuple(like.shape)}, got {tuple(values.shape)}")
    return values
