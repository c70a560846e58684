"""``prism-ray submit``: validate a recipe here, then run it as a Ray job on the cluster.

The job's entrypoint is ``python -m prism_ray.cli run ... cluster.address=auto``: the driver
joins the cluster it runs on instead of starting a private one. The project directory is
uploaded as the job's working directory, so the cluster runs exactly the code and recipes
checked out here (minus virtualenvs, runs, data and wheels, which stay small-upload safe).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from prism_ray.config import load_config
from prism_ray.jobs.client import JobsError

# gitignore-style patterns relative to the working dir. Data and checkpoints live on the
# cluster's storage; uploading them would hit Ray's package size limit (and be slow).
# Secrets (token files) and Ray's session folders never leave this machine.
UPLOAD_EXCLUDES = (
    ".git", ".venv*", "runs", "outputs", "mlruns", "data", "wheels", ".whl-*", "build", "dist",
    "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.db",
    "auth_token", "*.token", ".ray", "ray_tmp*", "session_*",
)
# Environment variables naming files or folders that must not be uploaded where they lie
# inside the working dir: Ray's token file and temp root.
PRIVATE_PATH_VARS = ("RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR")
JOIN_CLUSTER = "cluster.address=auto"


@dataclass(frozen=True)
class SubmitRequest:
    recipe: str
    overrides: Sequence[str] = ()
    cluster: str | None = None
    working_dir: str | None = None  # None: the project root (see default_working_dir)
    python: str = "python"
    env: dict[str, str] = field(default_factory=dict)
    pip: Sequence[str] = ()
    dry_run: bool = False
    submission_id: str | None = None


@dataclass(frozen=True)
class Submission:
    """Everything handed to ``JobSubmissionClient.submit_job``."""

    submission_id: str
    entrypoint: str
    runtime_env: dict
    metadata: dict[str, str]


def prepare(request: SubmitRequest) -> Submission:
    """Validate the config exactly as the job will load it, then build the job spec.

    Raises ConfigError (the same message as ``prism-ray config validate``) before any
    network call, so a bad recipe never reaches the cluster.
    """
    overrides = [*request.overrides, JOIN_CLUSTER]
    config = load_config(request.recipe, overrides, request.cluster)
    root = Path(request.working_dir or default_working_dir()).resolve()
    recipe = _inside(root, request.recipe, "recipe")
    args = ["--cluster", _inside(root, request.cluster, "cluster file")] if request.cluster else []
    # A dry run resolves the config and joins the cluster, but trains nothing: it checks
    # the image, the upload, the token and the resources in seconds.
    command = ["prism_ray.jobs.probe"] if request.dry_run else ["prism_ray.cli", "run"]
    entrypoint = shlex.join([request.python, "-m", *command, *args, recipe, *overrides])
    return Submission(
        submission_id=request.submission_id or _new_id(config.name),
        entrypoint=entrypoint,
        runtime_env=_runtime_env(root, config.cluster.env_vars, request),
        metadata={"prism_ray.name": config.name, "prism_ray.recipe": recipe},
    )


def default_working_dir() -> Path:
    """The checkout prism-ray is installed from (editable installs), else the current dir."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def _runtime_env(root: Path, config_env: dict[str, str], request: SubmitRequest) -> dict:
    # Command-line --env wins over the config's cluster.env_vars.
    env = {**config_env, **request.env}
    runtime_env: dict = {"working_dir": str(root),
                         "excludes": [*UPLOAD_EXCLUDES, *_private_paths(root)]}
    if env:
        runtime_env["env_vars"] = env
    if request.pip:
        runtime_env["pip"] = list(request.pip)
    return runtime_env


def _private_paths(root: Path) -> list[str]:
    """Token file and Ray temp folder, as upload excludes, where they lie inside ``root``."""
    out = []
    for var in PRIVATE_PATH_VARS:
        value = os.environ.get(var)
        if value:
            try:
                out.append("/" + Path(value).resolve().relative_to(root).as_posix())
            except ValueError:
                continue
    return out


def local_python(address: str | None) -> str:
    """The interpreter a job should run: this one (which has prism-ray's dependencies) when
    the cluster is on this machine, else ``python`` from the nodes' PATH."""
    host = urlparse(address if address and "//" in address else f"//{address or ''}").hostname
    return sys.executable if host in ("127.0.0.1", "localhost", "::1") else "python"


def _inside(root: Path, path: str, what: str) -> str:
    """``path`` relative to the uploaded root: the job resolves it inside the upload."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        raise JobsError(
            f"the {what} {path} is outside the working directory {root} that is uploaded "
            "with the job; move it inside, or pass --working-dir"
        ) from None


def _new_id(name: str) -> str:
    # Readable and unique enough: Ray refuses a reused submission id.
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10_000:04d}"


def submit(client, submission: Submission, agent_wait_s: float = 60.0) -> str:
    """Submit; waits while a just-started head has no job agent registered yet."""
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            return client.submit_job(
                entrypoint=submission.entrypoint,
                submission_id=submission.submission_id,
                runtime_env=submission.runtime_env,
                metadata=submission.metadata,
            )
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)
