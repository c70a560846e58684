"""Public multimodal benchmarks read from local files into ``RLPrompt`` records.

``BENCHMARKS`` maps a name to its adapter (``adapters.py``); ``read_benchmark`` reads the
files a path names with the bad-row policy of ``prism_ray.data``. ``run.py`` evaluates a
checkpoint on them with the rollout and verifier pools (``prism-ray eval``).

Below the driver: this package imports config, data, verify and types; only ``run`` starts
Ray actors.
"""

from __future__ import annotations

from prism_ray.benchmarks import adapters
from prism_ray.benchmarks.base import Benchmark, BenchmarkData, Item, read_benchmark

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("mathvista", "MathVista", adapters.mathvista,
              "testmini parquet: pid, question, decoded_image/image, choices, answer, "
              "question_type"),
    Benchmark("mathverse", "MathVerse", adapters.mathverse,
              "testmini parquet: question_for_eval, image, answer, question_type"),
    Benchmark("mathvision", "MathVision", adapters.mathvision,
              "parquet: question, options, decoded_image/image, answer"),
    Benchmark("wemath", "WeMath", adapters.wemath,
              "testmini JSON or parquet: question, option, image_path, answer"),
    Benchmark("mmmu", "MMMU", adapters.mmmu,
              "parquet (one per subject; a directory or glob): question, options, "
              "image_1..image_7, answer, question_type"),
    Benchmark("mmmu_pro", "MMMU-Pro", adapters.mmmu_pro,
              "parquet: question, options, image_1..image_7, answer (vision: image, options, "
              "answer)"),
    Benchmark("hallusionbench", "HallusionBench", adapters.hallusionbench,
              "HallusionBench.json: question, gt_answer (0/1), filename; or parquet with image"),
)}


class UnknownBenchmark(ValueError):
    pass


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (case and -/_ ignored: "MMMU-Pro" is mmmu_pro)."""
    key = name.strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise UnknownBenchmark(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkData", "Item", "UnknownBenchmark",
           "get_benchmark", "read_benchmark"]
