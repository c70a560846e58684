"""The vLLM engine on a CUDA GPU with the tiny checkpoint: generation, bucketed weight update,
log-prob agreement with the HF engine, sleep/wake. Runs where CUDA and vllm are installed
(the GPU host); skipped elsewhere. The engine runs in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the update's tensor iterator needs no pickling."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_rollout_vllm_cpu import (
    MAX_TOKENS,
    N,
    _buckets,
    _check_format,
    _hf_logprobs,
    _load_prompts,
    _max_diff,
    _samples,
    _write_inputs,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.vllm,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed"),
]

# float32 on both sides, but GPU kernels (attention backend, GEMM split) differ from HF's:
# a looser bound than on CPU (≈1e-6 there). Measure on the host and tighten.
GPU_LOGPROB_TOL = 2e-3


def test_vllm_engine_on_gpu(tiny_pair, tmp_path, monkeypatch):
    from prism_ray.config.run import RunConfig
    from prism_ray.config.schema import VllmOptions
    from prism_ray.rollout.vllm import VllmEngine
    from prism_ray.types import SamplingParams

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    _write_inputs(tmp_path, tiny_pair[0])
    prompts = _load_prompts(tmp_path / "prompts.json")
    options = VllmOptions(gpu_memory_utilization=0.2, enforce_eager=True, enable_sleep_mode=True)
    engine = VllmEngine(tmp_path / "policy", seed=0, options=options, dtype="float32",
                        system_prompt=RunConfig().system_prompt)
    try:
        params = SamplingParams(n=N, max_tokens=MAX_TOKENS, seed=11)
        before = _samples(engine.generate(prompts, params))
        _check_format(before, tmp_path, version=0)
        hf_before = _hf_logprobs(tmp_path / "policy", tmp_path, before)
        assert _max_diff(before, hf_before) < GPU_LOGPROB_TOL

        buckets = _buckets(str(tmp_path / "update"), size=7)
        for i, bucket in enumerate(buckets):
            engine.load_weights([(n, t.cuda()) for n, t in bucket], version=1,
                                last=i == len(buckets) - 1)
        after = _samples(engine.generate(prompts, params))
        _check_format(after, tmp_path, version=1)
        assert _max_diff(after, _hf_logprobs(tmp_path / "update", tmp_path, after)) < GPU_LOGPROB_TOL
        assert _max_diff(after, _hf_logprobs(tmp_path / "policy", tmp_path, after)) > 0.05

        engine.sleep()  # level 1: weights offloaded, KV dropped; wake_up restores
        engine.wake_up()
        assert _samples(engine.generate(prompts, params)) == after
    finally:
        engine.close()
