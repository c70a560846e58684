"""Losing a learner: a run whose discriminator learner is killed mid-alignment stops with one
line naming the role and the resume command; that command, given ``--max-restarts 1``, then
survives its policy learner being killed mid-RLVR by restarting from the last checkpoint by
itself. In the end every (metric, step) has exactly one value, in metrics.jsonl and MLflow.

Checkpoints come as the default configures them, by wall time alone (``every_steps: 0``), with
the interval scaled from the default's minutes to under a second to fit the test: so a run
with the default trigger, killed mid-RLVR, resumes past the phase's first step.

Real `prism-ray run` processes on their own local Ray cluster (own temp dir); the learners are
killed as a crash would kill them: SIGKILL to the actor's process, found by its process title.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from test_resume import kill_everything, start

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = [{"kind": "synthetic", "size": "tiny"}]
SHORT = {"data": TINY, "prompts_per_step": 2, "samples_per_prompt": 2,
         "max_response_tokens": 8}
RECIPE = {
    "name": "restart",
    "policy": {"resources": {"num_cpus": 0.5}},
    "rollout": {"resources": {"num_cpus": 0.5}},
    "discriminator": {"learner": {"resources": {"num_cpus": 0.5}}},
    "verifier": {"resources": {"num_cpus": 0.25}},
    # The default's trigger (wall time; every_steps stays 0) at ~0.6 s instead of 5 minutes.
    "checkpoint": {"every_minutes": 0.01},
    "cluster": {"num_cpus": 3},
    "phases": [
        {"kind": "align", **SHORT, "steps": 3},  # global steps 1-3
        # Global steps 4-15: a step of the untrained model (reward 0, so no backward pass)
        # takes ~0.2 s, and the kill must land while steps remain.
        {"kind": "rlvr", **SHORT, "steps": 12, "optimizer": {"lr": 1e-4}},
    ],
}


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def kill_actor(title: str, temp: Path) -> int:
    """SIGKILL the Ray worker process of this run whose title is ``ray::<title>``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith(f"ray::{title}") and f"RAY_TMPDIR={temp}" in environ:
            os.kill(int(pid), signal.SIGKILL)
            return int(pid)
    raise AssertionError(f"no ray::{title} process")


def wait_for(condition, proc, what: str, timeout: float = 600, poll_s: float = 0.1) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def checkpointed(run_dir: Path) -> set[int]:
    """The global steps of the complete checkpoints on disk."""
    folder = run_dir / "checkpoints"
    return {int(d.name[4:]) for d in folder.glob("step*")} if folder.is_dir() else set()


def test_lost_learners_stop_with_the_resume_command_or_restart_by_themselves(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    temp = Path(tempfile.mkdtemp(prefix="prt-", dir="/tmp"))
    procs = []
    try:
        # 1. The discriminator dies mid-alignment, once a periodic checkpoint (step 1 or 2;
        # step 3's would be the phase end) is on disk.
        procs.append(start(recipe, run_dir, temp))
        wait_for(lambda: checkpointed(run_dir) & {1, 2}, procs[-1], "a checkpoint in align")
        kill_actor("DiscriminatorLearner", temp)
        assert procs[-1].wait(timeout=300) == 3, log.read_text()[-3000:]
        first = log.read_text()
        assert "Traceback" not in first
        message = [x for x in first.splitlines() if x.startswith("prism-ray: ")]
        assert len(message) == 1 and "the discriminator learner was lost" in message[0]
        command = shlex.split(message[0].split("resume with: ")[1])
        assert command == ["prism-ray", "run", str(recipe), f"output_dir={run_dir}", "--resume"]

        # 2. The printed command, allowed one restart; the policy learner dies mid-RLVR once a
        # checkpoint past the phase's first step (global step 5 or later) is on disk: the run
        # restarts from it and finishes by itself.
        procs.append(start(recipe, run_dir, temp, *command[4:], "--max-restarts", "1"))
        wait_for(lambda: any(5 <= s < 15 for s in checkpointed(run_dir)), procs[-1],
                 "a checkpoint in RLVR past its first step", poll_s=0.02)
        kill_actor("PolicyLearner", temp)
        assert procs[-1].wait(timeout=600) == 0, log.read_text()[-3000:]
        second = log.read_text()[len(first):]
    finally:
        for proc in procs:
            kill_everything(proc, temp)
        shutil.rmtree(temp, ignore_errors=True)

    assert re.search(r"\[resume\] align: continuing at step [23]\b", second), second[:3000]
    assert "[restart] 1/1: the policy learner was lost" in second
    restarted = re.search(r"restarting from step (\d+)", second)
    assert restarted and int(restarted.group(1)) >= 5, second[-3000:]
    continuing = re.findall(r"\[resume\] rlvr: continuing at step (\d+)", second)
    assert continuing and int(continuing[-1]) == int(restarted.group(1)) - 3 + 1 >= 2
    assert "Traceback" not in second

    logged = rows(run_dir)
    assert [r["step"] for r in logged] == list(range(1, 16))
    assert [r["phase_step"] for r in logged] == [0, 1, 2, *range(12)]
    # MLflow: the run the directory names, one value per (metric, step) for every metric.
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
    experiment = run.info.experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run_id]
    keys = {k for r in logged for k in r if "/" in k}
    assert keys and keys <= run.data.metrics.keys()
    for key in keys:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == sorted(r["step"] for r in logged if key in r), key
