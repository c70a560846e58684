"""What a resume forgets: metrics rows after the checkpoint (metrics.jsonl and MLflow, a real
sqlite store), and when periodic checkpoints fall due; the resume command a lost learner
prints."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from prism_ray.cli import build_parser, resume_command
from prism_ray.config import load_config
from prism_ray.driver.checkpoint import CheckpointManager, DriverState
from prism_ray.driver.context import RunContext
from prism_ray.driver.faults import rewind
from prism_ray.driver.progress import truncate_metrics
from prism_ray.driver.tracking import RUN_ID_FILE, Tracker, current_run_id


def write_rows(path, steps, loss=lambda s: 1.0 / s):
    with path.open("a") as f:
        for s in steps:
            f.write(json.dumps({"step": s, "phase_step": s - 1, "rlvr/policy/loss": loss(s),
                                "rlvr/timing/step": 0.5}) + "\n")


def test_truncate_drops_rows_after_the_step_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_rows(path, range(1, 7))
    with path.open("a") as f:
        f.write('{"step": 7, "rlvr/pol')  # killed mid-write
    kept, dropped = truncate_metrics(path, 4)
    assert [r["step"] for r in kept] == [1, 2, 3, 4] and dropped == 3
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert not list(tmp_path.glob(".*tmp"))
    assert truncate_metrics(path, 4) == (kept, 0)
    assert truncate_metrics(tmp_path / "none.jsonl", 3) == ([], 0)


def test_rewind_leaves_one_value_per_metric_and_step_in_mlflow(tmp_path, monkeypatch):
    """A run logs steps 1-6, is killed, resumes from a checkpoint at step 4 and logs 5-8 again:
    MLflow holds exactly one value per (metric, step), the ones of the resumed run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(None, ["name=rewind"])
    metrics = tmp_path / "metrics.jsonl"
    first = Tracker(config, tmp_path)
    write_rows(metrics, range(1, 7))
    for row in map(json.loads, metrics.read_text().splitlines()):
        first.log_metrics({k: v for k, v in row.items() if "/" in k}, row["step"])
    killed = first.run_id  # no end(): the process died
    assert current_run_id(tmp_path) == killed

    again = Tracker(config, tmp_path, run_id=current_run_id(tmp_path))
    rewind(tmp_path, again, DriverState(step=4))
    assert again.run_id != killed and current_run_id(tmp_path) == again.run_id
    write_rows(metrics, range(5, 9), loss=lambda s: 10.0 * s)
    for s in range(5, 9):
        again.log_metrics({"rlvr/policy/loss": 10.0 * s, "rlvr/timing/step": 0.5}, s)
    again.end()

    client = MlflowClient(tracking_uri=again.uri)
    history = client.get_metric_history(again.run_id, "rlvr/policy/loss")
    assert sorted((m.step, m.value) for m in history) == \
        [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.25), (5, 50.0), (6, 60.0), (7, 70.0), (8, 80.0)]
    assert len(client.get_metric_history(again.run_id, "rlvr/timing/step")) == 8
    run = client.get_run(again.run_id)
    assert run.data.params["name"] == "rewind" and run.info.run_name == "rewind"
    assert run.data.tags["prism_ray.replaces"] == killed
    old = client.get_run(killed)
    assert old.info.lifecycle_stage == "deleted" and old.info.status == "KILLED"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))


def test_rewind_with_nothing_after_the_checkpoint_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config()
    first = Tracker(config, tmp_path)
    write_rows(tmp_path / "metrics.jsonl", range(1, 4))
    again = Tracker(config, tmp_path, run_id=current_run_id(tmp_path))
    rewind(tmp_path, again, DriverState(step=3))
    assert again.run_id == first.run_id
    assert (tmp_path / RUN_ID_FILE).read_text().strip() == first.run_id


def test_periodic_checkpoints_fall_due_by_steps_or_by_wall_time(tmp_path):
    def ctx(*overrides):
        config = load_config(None, list(overrides))
        return RunContext(config, tmp_path, None, None, None,
                          CheckpointManager(tmp_path, config.checkpoint.keep_last))

    default = ctx()
    assert default.config.checkpoint.every_minutes == 5 and \
        default.config.checkpoint.every_steps == 0
    assert not default.checkpoint_due()
    default.last_checkpoint -= 5 * 60
    assert default.checkpoint_due()
    steps = ctx("checkpoint.every_steps=3", "checkpoint.every_minutes=0")
    steps.last_checkpoint -= 3600
    assert [s for s in range(1, 10) if (setattr(steps, "step", s) or steps.checkpoint_due())] \
        == [3, 6, 9]


def test_the_resume_command_repeats_the_run_with_resume():
    parser = build_parser()
    args = parser.parse_args(["run", "my recipe.yaml", "phases.rlvr.steps=4", "--cluster",
                              "c.yaml", "--max-restarts", "2"])
    assert resume_command(args) == ("prism-ray run 'my recipe.yaml' phases.rlvr.steps=4 "
                                    "--cluster c.yaml --max-restarts 2 --resume")
    args = parser.parse_args(["demo", "--out", "runs/d", "seed=1"])
    assert resume_command(args) == "prism-ray demo --out runs/d seed=1 --resume"
