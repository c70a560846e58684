"""Model FLOPs of a training step, the device peak table and MFU (pure; numbers by hand)."""

from __future__ import annotations

import pytest

from prism_ray.learner.flops import PEAK_ENV, mfu, peak_tflops, training_flops


def test_training_flops_by_hand():
    # 6 · 1000 params · (3 + 5) tokens = 48,000; 12 · 2 layers · 8 hidden · (9 + 25) = 6,528
    assert training_flops(1000, 2, 8, [3, 5]) == 54_528
    assert training_flops(1000, 2, 8, []) == 0
    # one 4k sequence of the 2B shape: attention adds ≈ 22 % to the 6·P·T term
    dense, full = 6 * 2.13e9 * 4096, training_flops(int(2.13e9), 28, 2048, [4096])
    assert full - dense == 12 * 28 * 2048 * 4096**2
    assert full / dense == pytest.approx(1.2205, abs=1e-3)


def test_peak_table_config_and_environment(monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert peak_tflops(device_name="NVIDIA H200") == 989.0
    assert peak_tflops(device_name="NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops(device_name="NVIDIA H100 PCIe") == 756.0
    assert peak_tflops(device_name="NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops(device_name="NVIDIA GeForce RTX 3090") is None
    monkeypatch.setenv(PEAK_ENV, "790")
    assert peak_tflops(device_name="NVIDIA H200") == 790.0
    assert peak_tflops(500.0, device_name="NVIDIA H200") == 500.0  # the config wins


def test_mfu():
    # 4.9e14 FLOP in 1 s on one 989-TFLOP/s device; two devices halve it; no peak, no MFU.
    assert mfu(4.9e14, 1.0, 989.0, 1) == pytest.approx(0.4954, abs=1e-4)
    assert mfu(4.9e14, 1.0, 989.0, 2) == pytest.approx(0.2477, abs=1e-4)
    assert mfu(1.0, 1.0, None, 1) is None
