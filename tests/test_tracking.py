"""MLflow tracking against a real sqlite store, and the plots of a metrics record."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from prism_ray.config import load_config
from prism_ray.driver.plots import write_plots
from prism_ray.driver.tracking import REDACTED, Tracker, flatten


def test_flatten_redacts_secrets_but_not_token_counts():
    flat = flatten({"cluster": {"env_vars": {"HF_TOKEN": "hf_abc", "WANDB_API_KEY": "k",
                                             "PLAIN": "ok"}},
                    "rollout": {"max_tokens": 8, "tokenizer": "x"}, "db_password": "p"})
    assert flat["cluster.env_vars.HF_TOKEN"] == REDACTED
    assert flat["cluster.env_vars.WANDB_API_KEY"] == REDACTED
    assert flat["db_password"] == REDACTED
    assert flat["cluster.env_vars.PLAIN"] == "ok"
    assert flat["rollout.max_tokens"] == "8" and flat["rollout.tokenizer"] == "x"


def test_one_run_with_params_metrics_artifacts_and_failed_status(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(None, ["cluster.env_vars.HF_TOKEN=hf_secret", "name=track-test"])
    tracker = Tracker(config, tmp_path)
    assert tracker.uri.startswith("sqlite:///") and (tmp_path / "mlflow.db").exists()
    tracker.log_metrics({"rlvr/rollout/reward": 0.5, "rlvr/policy/loss": 1.25}, step=3)
    tracker.log_metrics({"rlvr/rollout/reward": 0.75}, step=4)
    note = tmp_path / "evaluations.md"
    note.write_text("| after | accuracy |\n")
    tracker.log_artifact(note)
    tracker.end("FAILED")

    client = MlflowClient(tracking_uri=tracker.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FAILED" and run.info.run_name == "track-test"
    assert run.data.params["cluster.env_vars.HF_TOKEN"] == REDACTED
    assert "hf_secret" not in json.dumps(run.data.params)
    assert run.data.params["phases.4.algorithm.name"] == "grpo"
    history = client.get_metric_history(tracker.run_id, "rlvr/rollout/reward")
    assert [(m.step, m.value) for m in history] == [(3, 0.5), (4, 0.75)]
    artifacts = [a.path for a in client.list_artifacts(tracker.run_id)]
    assert "evaluations.md" in artifacts
    assert str(tmp_path / "mlartifacts") in run.info.artifact_uri


def test_resumed_job_continues_its_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config()
    first = Tracker(config, tmp_path)
    first.log_metrics({"sft/policy/loss": 2.0}, step=1)
    first.end("KILLED")
    again = Tracker(config, tmp_path, run_id=first.run_id)
    again.log_metrics({"sft/policy/loss": 1.0}, step=2)
    again.end()
    client = MlflowClient(tracking_uri=again.uri)
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(first.run_id, "sft/policy/loss")) == 2


def test_tracking_failure_warns_and_never_raises(tmp_path, capsys):
    config = load_config(None, ["tracking.tracking_uri=sqlite:////proc/no/such/dir/db.sqlite"])
    tracker = Tracker(config, tmp_path)
    tracker.log_metrics({"a/b/c": 1.0}, step=1)
    tracker.log_artifact(tmp_path)
    tracker.end()
    assert "training continues without tracking" in capsys.readouterr().out


def test_tracking_can_be_turned_off(tmp_path):
    tracker = Tracker(load_config(None, ["tracking.enabled=false"]), tmp_path)
    tracker.log_metrics({"a/b/c": 1.0}, step=1)
    assert tracker.run_id is None and not (tmp_path / "mlflow.db").exists()


def test_plots_from_a_metrics_record(tmp_path):
    records = [
        {"step": s, "phase_step": s, "rlvr/rollout/reward": 0.1 * s, "rlvr/rollout/accuracy": 0.05 * s,
         "rlvr/rollout/response_len": 80 - s, "rlvr/timing/rollout": 2.0,
         "rlvr/timing/policy": 1.0, "rlvr/timing/step": 3.0, "rlvr/sync/gb_per_s": 0.4,
         "align/discriminator/gap_cap": 0.2 * s}
        for s in range(1, 6)
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    written = write_plots(metrics, tmp_path / "plots")
    names = {p.name for p in written}
    assert {"reward_accuracy.png", "response_length.png", "timing.png", "sync.png",
            "discriminator_gaps.png"} <= names
    assert "losses.png" not in names  # no loss was logged: no empty figure
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
