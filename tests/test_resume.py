"""Kill-and-resume: a run whose driver is killed (SIGKILL, no goodbye) and then resumed ends
with the same weights and the same metrics as a run that was never interrupted.

Both runs are real `prism-ray run` processes, each with its own local Ray cluster in its own
temp dir; everything a run started is killed by process group and temp dir at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]
RECIPE = {
    "name": "resume",
    "policy": {"resources": {"num_cpus": 0.5}},
    "rollout": {"resources": {"num_cpus": 0.5}},
    "verifier": {"resources": {"num_cpus": 0.25}},
    "checkpoint": {"every_steps": 1, "keep_last": 2},
    "cluster": {"num_cpus": 2},
    "phases": [
        {"kind": "sft", "data": TINY, "epochs": 3, "steps": 8, "batch_size": 16,
         "optimizer": {"lr": 1e-3}},
        {"kind": "rlvr", "data": TINY, "steps": 3, "prompts_per_step": 2,
         "samples_per_prompt": 2, "max_response_tokens": 8, "optimizer": {"lr": 1e-4}},
    ],
}
# Compared between the runs: everything deterministic (timings and throughput are not).
COMPARED = ("policy/loss", "policy/grad_norm", "rollout/reward", "rollout/response_len",
            "policy/rollout_mismatch_abs", "policy/lr")


def start(recipe: Path, run_dir: Path, temp: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    log = open(run_dir.parent / f"{run_dir.name}.log", "a")
    return subprocess.Popen(
        [sys.executable, "-m", "prism_ray.cli", "run", str(recipe), f"output_dir={run_dir}",
         *extra], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def kill_everything(proc: subprocess.Popen, temp: Path) -> None:
    """The driver's process group, then any Ray process of this run's temp dir."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(temp) in cmdline or f"RAY_TMPDIR={temp}" in environ:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def last_by_step(run_dir: Path) -> dict[int, dict]:
    """The metrics of each global step, the last record winning (a resumed run may log a
    step twice: once before the kill, once after)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows}


def test_killed_run_resumes_to_identical_weights_and_metrics(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    temp = Path(tempfile.mkdtemp(prefix="prt-", dir="/tmp"))
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    procs = []
    try:
        procs.append(start(recipe, whole, temp))
        assert procs[-1].wait(timeout=900) == 0, (tmp_path / "whole.log").read_text()[-3000:]

        # Kill inside SFT, mid-phase: the resumed run needs the restored Adam moments, the
        # schedule position and the data cursor to repeat the same arithmetic.
        procs.append(start(recipe, interrupted, temp))
        deadline = time.time() + 900
        while steps_logged(interrupted) < 4 and procs[-1].poll() is None:
            assert time.time() < deadline, "the run to interrupt never reached step 4"
            time.sleep(0.1)
        kill_everything(procs[-1], temp)
        assert steps_logged(interrupted) < 8, "killed too late: SFT had finished"

        procs.append(start(recipe, interrupted, temp, "--resume"))
        assert procs[-1].wait(timeout=900) == 0, \
            (tmp_path / "interrupted.log").read_text()[-3000:]
        log = (tmp_path / "interrupted.log").read_text()
        assert "[resume] from step" in log
    finally:
        for proc in procs:
            kill_everything(proc, temp)

    a = load_file(str(whole / "phases" / "rlvr" / "policy" / "model.safetensors"))
    b = load_file(str(interrupted / "phases" / "rlvr" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys()
    # CPU, fixed seeds, one rank: the resumed run repeats the same arithmetic exactly.
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ma, mb = last_by_step(whole), last_by_step(interrupted)
    assert sorted(ma) == sorted(mb) == list(range(1, 12))
    for step, row in ma.items():
        for key, value in row.items():
            if any(key.endswith(c) for c in COMPARED):
                assert mb[step][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (step, key)
