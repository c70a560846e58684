"""Kill-and-resume: a run whose driver is killed mid-SFT (SIGKILL, no goodbye) and then
resumed ends with the same weights and the same metrics as a run that was never interrupted,
with one row per step in metrics.jsonl and one value per (metric, step) in MLflow; a torn
checkpoint is ignored; no Ray process of the killed run outlives it by more than 15 s.

Both runs are real `prism-ray run` processes, each with its own local Ray cluster in its own
temp dir; everything a run started is killed by process group and temp dir at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]
RECIPE = {
    "name": "resume",
    "policy": {"resources": {"num_cpus": 0.5}},
    "rollout": {"resources": {"num_cpus": 0.5}},
    "verifier": {"resources": {"num_cpus": 0.25}},
    # Even steps only: the kill after step 5 leaves a row (5) logged after the checkpoint.
    "checkpoint": {"every_steps": 2, "keep_last": 2},
    "cluster": {"num_cpus": 2},
    "phases": [
        {"kind": "sft", "data": TINY, "epochs": 3, "steps": 8, "batch_size": 16,
         "optimizer": {"lr": 1e-3}},
        {"kind": "rlvr", "data": TINY, "steps": 4, "prompts_per_step": 2,
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
    for pid in ray_processes(temp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def ray_processes(temp: Path) -> dict[int, str]:
    """The live processes of the Ray cluster whose temp dir is ``temp``: pid → command line."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (str(temp) in cmdline or f"RAY_TMPDIR={temp}" in environ):
            found[int(pid)] = cmdline
    return found


def by_step(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [row["step"] for row in rows]
    assert steps == sorted(set(steps)), f"a step logged twice or out of order: {steps}"
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

        # Kill inside SFT (global steps 1-8), after step 5: the last checkpoint is step 4's,
        # so the resumed run needs the restored Adam moments, the schedule position and the
        # data cursor to repeat the same arithmetic, and must drop the row of step 5 it
        # logged before the kill. (Killed mid-RLVR instead, the resumed run's final weights
        # differ slightly from the uninterrupted run's: not yet explained.)
        procs.append(start(recipe, interrupted, temp))
        deadline = time.time() + 900
        while steps_logged(interrupted) < 5 and procs[-1].poll() is None:
            assert time.time() < deadline, "the run to interrupt never reached step 5"
            time.sleep(0.1)
        os.kill(procs[-1].pid, signal.SIGKILL)  # the driver alone, as a crash would
        procs[-1].wait()
        assert steps_logged(interrupted) == 5, "killed too late: step 6 was logged"
        # Its local Ray cluster goes with it: GCS, raylet and workers by kernel fate-sharing,
        # the raylet's agents (which would wait out a 60 s timeout) by the run's reaper.
        deadline = time.time() + 15
        while ray_processes(temp) and time.time() < deadline:
            time.sleep(0.5)
        left = [cmdline[:120] for cmdline in ray_processes(temp).values()]
        assert not left, f"Ray processes of the killed run still alive after 15 s: {left}"
        # A checkpoint torn by a kill mid-write, newer than the last complete one: ignored.
        torn = interrupted / "checkpoints" / ".tmp-step00000006" / "policy"
        torn.mkdir(parents=True)
        (torn / "mp_rank_00_model_states.pt").write_bytes(b"half")

        procs.append(start(recipe, interrupted, temp, "--resume"))
        assert procs[-1].wait(timeout=900) == 0, \
            (tmp_path / "interrupted.log").read_text()[-3000:]
        log = (tmp_path / "interrupted.log").read_text()
        assert "ignoring torn checkpoint(s) ['.tmp-step00000006']" in log
        assert "[resume] from step00000004" in log and "sft: continuing at step 5" in log
        assert "dropped 1 row(s) logged after step 4" in log
    finally:
        for proc in procs:
            kill_everything(proc, temp)
        shutil.rmtree(temp, ignore_errors=True)

    a = load_file(str(whole / "phases" / "rlvr" / "policy" / "model.safetensors"))
    b = load_file(str(interrupted / "phases" / "rlvr" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys()
    # CPU, fixed seeds, one rank: the resumed run repeats the same arithmetic exactly.
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ma, mb = by_step(whole), by_step(interrupted)
    assert sorted(ma) == sorted(mb) == list(range(1, 13))
    for step, row in ma.items():
        for key, value in row.items():
            if any(key.endswith(c) for c in COMPARED):
                assert mb[step][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (step, key)
    # MLflow: the live run holds exactly the rows of metrics.jsonl, one value per step.
    client = MlflowClient(tracking_uri=f"sqlite:///{interrupted / 'mlflow.db'}")
    run_id = (interrupted / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("sft/policy/loss", "rlvr/policy/loss", "rlvr/rollout/reward",
                "rlvr/timing/step"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == sorted(s for s in mb if key in mb[s]), key
        assert all(m.value == pytest.approx(mb[m.step][key]) for m in history), key
