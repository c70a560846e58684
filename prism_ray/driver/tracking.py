"""MLflow tracking, written from the driver only.

One MLflow run per job. Default store: a sqlite database in the run directory (a real
database, no server); a team server comes from ``tracking.tracking_uri`` or
``MLFLOW_TRACKING_URI``. Params are the resolved config, flattened, with secret-looking
values redacted; artifacts are the resolved config, evaluation tables and plots.

Tracking never stops training: every MLflow call is guarded, a failure logs one warning and
the tracker goes quiet. A job that raises ends its run as FAILED.

Resume without duplicates: a resumed (or restarted) job repeats the steps after its
checkpoint, and MLflow has no API to delete metric values, so a second value would join the
first at each repeated step. When ``metrics.jsonl`` held rows after the checkpoint, the job
therefore continues in a fresh MLflow run rebuilt from the rows it kept (params copied,
tagged ``prism_ray.replaces`` = the old run id) and the interrupted run is marked KILLED and
deleted (MLflow's soft delete; ``mlflow gc`` purges it). A resume with nothing to drop
continues the same run. The current run id is kept in ``<run_dir>/mlflow_run_id``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from prism_ray.config import RunConfig

log = logging.getLogger("prism_ray.tracking")

# "HF_TOKEN", "api_key", "db_password" — but not "max_tokens" or "tokenizer".
_SECRET_KEY = re.compile(r"secret|passw(or)?d|(token|api[_-]?key|access[_-]?key|credentials?|auth)$",
                         re.IGNORECASE)
REDACTED = "***"
RUN_ID_FILE = "mlflow_run_id"  # the run a resume continues (checkpoints may name an older one)
_METRIC_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-. :/]")
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists → {"a.b.0.c": "value"}; values of secret-looking keys redacted."""
    out: dict[str, str] = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)) and value:
            out.update(flatten(value, name))
        else:
            text = REDACTED if _SECRET_KEY.search(str(key)) else str(value)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


def tracking_uri(config: RunConfig, run_dir: Path) -> str:
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"


def current_run_id(run_dir: Path) -> str | None:
    """The MLflow run this run directory last wrote to, if any."""
    path = run_dir / RUN_ID_FILE
    return path.read_text().strip() or None if path.exists() else None


class Tracker:
    """A guarded MLflow run. ``enabled=False`` (or a failure) turns every call into a no-op."""

    def __init__(self, config: RunConfig, run_dir: Path, run_id: str | None = None) -> None:
        self.enabled = config.tracking.enabled
        self.run_id = run_id
        self.uri = tracking_uri(config, run_dir)
        self.run_dir = run_dir
        self._client = None
        if self.enabled:
            self._guard("start", self._start, config, run_dir)

    def _start(self, config: RunConfig, run_dir: Path) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(config.tracking.experiment)
        if experiment is None:
            artifacts = (run_dir / "mlartifacts").resolve().as_uri()
            experiment_id = self._client.create_experiment(config.tracking.experiment,
                                                           artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        if self.run_id is None:  # a resumed job continues its run
            run = self._client.create_run(experiment_id,
                                          run_name=config.tracking.run_name or config.name)
            self.run_id = run.info.run_id
            self._log_params(flatten(config.model_dump(mode="json")))
        else:
            self._client.update_run(self.run_id, status="RUNNING")
        self._remember_run_id()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self._client is not None:
            self._guard("log_metrics", self._log_metrics, [(metrics, step)])

    def rebuild(self, records: list[dict]) -> None:
        """Continue in a fresh MLflow run holding exactly ``records`` (the ``metrics.jsonl``
        rows a resume kept: ``{"step": s, key: value, ...}``); the current run is marked
        KILLED and deleted. See the module docstring for why."""
        if self._client is not None:
            self._guard("rebuild", self._rebuild, records)

    def _rebuild(self, records: list[dict]) -> None:
        old = self._client.get_run(self.run_id)
        new = self._client.create_run(old.info.experiment_id, run_name=old.info.run_name,
                                      tags={"prism_ray.replaces": old.info.run_id})
        self.run_id = new.info.run_id
        self._log_params(old.data.params)
        self._log_metrics([(row, row["step"]) for row in records])
        self._remember_run_id()  # before the delete: a kill in between leaves the new run named
        self._client.set_terminated(old.info.run_id, "KILLED")
        self._client.delete_run(old.info.run_id)
        print(f"[tracking] MLflow run {self.run_id} continues {old.info.run_id} (rebuilt from "
              f"{len(records)} step(s) of metrics.jsonl; the old run is deleted)", flush=True)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow caps params per batch call
            self._client.log_batch(self.run_id, params=batch[i:i + 100])

    def _log_metrics(self, rows: list[tuple[dict, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_METRIC_NAME_BAD.sub("_", k), float(v), now, step)
                 for metrics, step in rows for k, v in metrics.items()
                 if k not in ("step", "phase_step") and isinstance(v, (int, float))]
        for i in range(0, len(batch), 1000):
            self._client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def _remember_run_id(self) -> None:
        path = self.run_dir / RUN_ID_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{RUN_ID_FILE}.tmp")
        tmp.write_text(self.run_id + "\n")
        os.replace(tmp, path)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        if self._client is not None:
            self._guard("log_artifact", self._client.log_artifact, self.run_id, str(path), subdir)

    def end(self, status: str = "FINISHED") -> None:
        if self._client is not None:
            self._guard("end", self._client.set_terminated, self.run_id, status)
            self._client = None

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # tracking must never stop training
            log.warning("MLflow %s failed (%s: %s); tracking is off for the rest of this run",
                        what, type(e).__name__, e)
            print(f"[tracking] warning: MLflow {what} failed ({type(e).__name__}: {e}); "
                  "training continues without tracking", flush=True)
            self._client = None
