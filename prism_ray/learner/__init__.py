"""The policy/discriminator learner machinery: DeepSpeed engine, micro-batching, weights."""

import os

import torch

if not torch.cuda.is_available():
    # Name the accelerator, or DeepSpeed probes for one and logs a warning in every learner.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
