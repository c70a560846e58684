"""The learner bench at the published 2B shape on one GPU: MFU is reported and the chunked
log-prob path peaks below the full-logits one (run on a GPU host; numbers in the bench)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def load_bench():
    path = Path(__file__).parents[1] / "bench" / "learner_step.py"
    spec = importlib.util.spec_from_file_location("learner_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_2b_shape_chunked_logprobs_peak_lower_with_mfu():
    bench = load_bench()
    args = argparse.Namespace(
        shape="qwen3vl-2b-shape", vocab=None, steps=1, samples=16, group=8, response_tokens=256,
        prompt_words=4, image_side=224, zero_adv=0.0, micro_batch_tokens=4096,
        chunk_tokens=1024, zero_stage=2, dtype="bfloat16", gradient_checkpointing=True)
    (name, c_tps, c_mfu, c_mem, *_), (_, f_tps, f_mfu, f_mem, *_) = bench.run(args)
    assert name == "chunked"
    assert c_mfu is not None and 0.0 < c_mfu < 1.0, c_mfu
    assert c_mem < f_mem, (c_mem, f_mem)
