"""The pre-flight: every phase's data is read and checked before the first step, so a bad
file in a late phase fails in seconds, naming the phase, file and row, and nothing trains."""

from __future__ import annotations

import pytest
import yaml

from prism_ray.config import load_config
from prism_ray.data.errors import DataError
from prism_ray.driver.main import run

pytestmark = pytest.mark.ray

TINY = [{"kind": "synthetic", "size": "tiny"}]


def recipe(tmp_path, late_phase: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "preflight", "output_dir": str(tmp_path / "run"),
        "tracking": {"enabled": False},
        "policy": {"resources": {"num_cpus": 0.5}},
        "phases": [{"kind": "sft", "data": TINY, "steps": 1, "batch_size": 2}, late_phase],
    }))
    return str(path)


def test_align_data_without_teacher_columns_fails_before_any_step(ray_cluster, tiny_dataset,
                                                                   tmp_path):
    # The RLVR parquet has no teacher columns: alignment cannot use it.
    late = {"kind": "align", "data": [{"kind": "rl_parquet",
                                       "paths": [str(tiny_dataset / "rlvr/train.parquet")]}]}
    with pytest.raises(DataError, match=r"phase 'align': alignment needs teacher_caption"):
        run(load_config(recipe(tmp_path, late)))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # SFT never took a step


def test_a_missing_file_of_a_late_phase_is_named_before_any_step(ray_cluster, tmp_path):
    missing = tmp_path / "nowhere.parquet"
    late = {"kind": "rlvr", "data": [{"kind": "rl_parquet", "paths": [str(missing)]}]}
    with pytest.raises(DataError, match=rf"phase 'rlvr': .*{missing.name}"):
        run(load_config(recipe(tmp_path, late)))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
