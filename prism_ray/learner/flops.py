"""Model FLOPs of a training step and the device's peak, for ``policy/mfu``.

Model FLOPs count what the model needs, not what the implementation runs (recomputation under
gradient checkpointing is not counted): 6 FLOPs per parameter per token (2 forward, 4
backward) plus the attention score and value products, 12 × layers × hidden × s² per
sequence of length s (forward 4 × L × H × s², backward twice that; no causal discount).
Tokens are text positions, image placeholders included; the vision tower's own patches are not
counted separately, so MFU is slightly understated for image-heavy batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

# Dense bf16 peak (no sparsity), datasheet values, TFLOP/s. The first key found in the
# device name wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
)
PEAK_ENV = "PRISM_PEAK_TFLOPS"


def training_flops(trainable_params: int, layers: int, hidden: int,
                   sequence_lengths: Sequence[int]) -> float:
    """6 · P · Σs + 12 · L · H · Σs² over the step's (unpadded) sequences."""
    tokens = sum(sequence_lengths)
    return 6.0 * trainable_params * tokens + 12.0 * layers * hidden * sum(
        s * s for s in sequence_lengths)


def peak_tflops(configured: float | None = None, device_name: str | None = None) -> float | None:
    """The peak to divide by: the config's value, else ``$PRISM_PEAK_TFLOPS``, else the table
    entry for ``device_name`` (default: the current CUDA device); None on CPU or unknown GPUs."""
    if configured is not None:
        return configured
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in device_name), None)


def mfu(flops: float, seconds: float, peak: float | None, devices: int) -> float | None:
    """Achieved model FLOP/s over the devices' summed peak; None without a peak."""
    if peak is None or seconds <= 0:
        return None
    return flops / seconds / (peak * 1e12 * devices)


def model_dims(module: torch.nn.Module) -> tuple[int, int, int]:
    """(trainable parameters, text layers, text hidden size) of an HF model; under ZeRO-3
    a partitioned parameter counts its full size (``ds_numel``)."""
    params = sum(getattr(p, "ds_numel", p.numel()) for p in module.parameters()
                 if p.requires_grad)
    config = getattr(module.config, "text_config", module.config)
    return params, int(config.num_hidden_layers), int(config.hidden_size)
