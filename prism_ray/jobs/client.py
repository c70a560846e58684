"""A Jobs client that fails with readable messages, and the job-control verbs on top of it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO

from prism_ray.jobs.auth import auth_headers, explain_auth_failure, find_token

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobsError(RuntimeError):
    """A cluster-side problem worth one readable line (unreachable, auth, unknown job)."""


def connect(address: str):
    """A JobSubmissionClient for ``address`` (http://HEAD:8265), token attached."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    token = find_token()
    try:
        return JobSubmissionClient(address, headers=auth_headers(token))
    except AuthenticationError:
        raise JobsError(explain_auth_failure(address, token)) from None
    except ConnectionError:
        raise JobsError(
            f"cannot reach the Ray dashboard at {address}: is the cluster up, and is the "
            "dashboard port forwarded to this machine (`ray dashboard CLUSTER.yaml`, or "
            "`kubectl port-forward svc/<cluster>-head-svc 8265`)?"
        ) from None


def job_status(client, job_id: str) -> str:
    """The job's status name; JobsError when the cluster does not know the job."""
    try:
        return client.get_job_status(job_id).value
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise JobsError(f"no job {job_id!r} on this cluster") from None
        raise


def follow_logs(client, job_id: str, out: TextIO | None = None) -> str:
    """Stream the job's logs until it ends (to ``out``, default stdout); returns its status."""
    out = out or sys.stdout

    # Ray logs every closed log stream at INFO; the final status line says it better.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return wait_terminal(client, job_id)


def wait_terminal(client, job_id: str, timeout_s: float = 60.0) -> str:
    """The log stream closes when the driver exits; the status may lag it by a moment."""
    deadline = time.monotonic() + timeout_s
    status = job_status(client, job_id)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = job_status(client, job_id)
    return status


def describe(client, job_id: str) -> str:
    """One block of text: id, status, message, entrypoint, start/end times."""
    info = client.get_job_info(job_id)
    lines = [f"job:        {job_id}", f"status:     {info.status.value}"]
    if info.message:
        lines.append(f"message:    {info.message}")
    lines.append(f"entrypoint: {info.entrypoint}")
    for label, ms in (("started:", info.start_time), ("ended:", info.end_time)):
        if ms:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
            lines.append(f"{label:<11} {when}")
    return "\n".join(lines)


def list_table(client) -> str:
    rows = [("submission id", "status", "entrypoint")]
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    for job in jobs:
        entry = job.entrypoint if len(job.entrypoint) <= 70 else job.entrypoint[:67] + "..."
        rows.append((job.submission_id or job.job_id or "?", job.status.value, entry))
    widths = [max(len(r[c]) for r in rows) for c in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows)
