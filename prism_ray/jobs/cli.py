"""The ``submit`` and ``jobs`` subcommands. Only argparse at import time: the Ray client is
imported inside the handlers, after the config has been validated."""

from __future__ import annotations

import argparse
import os
import sys

ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=os.environ.get(ADDRESS_ENV),
                   help=f"Ray dashboard, http://HEAD:8265 (default: ${ADDRESS_ENV})")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_submit_parser(sub) -> None:
    p = sub.add_parser("submit", help="run a recipe as a job on a Ray cluster")
    p.add_argument("recipe", help="recipe YAML (inside the working dir)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides")
    p.add_argument("--cluster", default=None, help="cluster YAML overlaid on the recipe")
    _add_address(p)
    p.add_argument("--no-follow", action="store_true", help="print the job id and return")
    p.add_argument("--working-dir", default=None,
                   help="directory uploaded with the job (default: the project root)")
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="K=V",
                   help="environment variable of the job (repeatable)")
    p.add_argument("--python", default=None,
                   help="interpreter on the cluster's nodes that has prism-ray's dependencies "
                        "(default: this interpreter for a cluster on this machine, else python)")
    p.add_argument("--pip", action="append", default=[], metavar="REQ",
                   help="install into the job's runtime env (repeatable; slow, prefer an image)")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the config and join the cluster on it, train nothing")
    p.add_argument("--submission-id", default=None, help="job id (default: NAME-TIMESTAMP)")


def add_jobs_parser(sub) -> None:
    p = sub.add_parser("jobs", help="inspect, follow or stop jobs on a Ray cluster")
    verbs = p.add_subparsers(dest="jobs_command", required=True)
    for verb, text in (("status", "status and message of a job"),
                       ("logs", "a job's logs so far (--follow: until it ends)"),
                       ("stop", "stop a running job")):
        v = verbs.add_parser(verb, help=text)
        v.add_argument("job_id")
        _add_address(v)
        if verb == "logs":
            v.add_argument("--follow", "-f", action="store_true")
        if verb == "stop":
            v.add_argument("--wait", action="store_true", help="until the job has stopped")
    _add_address(verbs.add_parser("list", help="all jobs of the cluster"))


def run_submit(args: argparse.Namespace) -> int:
    return _guarded(_submit, args)


def _submit(args: argparse.Namespace) -> int:
    from prism_ray.jobs.client import connect
    from prism_ray.jobs.submit import SubmitRequest, local_python, prepare, submit

    # Config errors surface here, before any network call (ConfigError → exit 2 in main,
    # with the message of `prism-ray config validate`).
    submission = prepare(SubmitRequest(
        recipe=args.recipe, overrides=args.overrides, cluster=args.cluster,
        working_dir=args.working_dir, python=args.python or local_python(args.address),
        env=dict(args.env), pip=args.pip,
        dry_run=args.dry_run, submission_id=args.submission_id,
    ))
    client = connect(_address(args))
    job_id = submit(client, submission)
    print(f"submitted job {job_id} to {args.address}", flush=True)
    if args.no_follow:
        print(f"follow it: prism-ray jobs logs {job_id} --follow --address {args.address}")
        return 0
    return _follow(client, job_id, args.address)


def _follow(client, job_id: str, address: str) -> int:
    from prism_ray.jobs.client import follow_logs

    try:
        status = follow_logs(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running. Stop it with: "
              f"prism-ray jobs stop {job_id} --address {address}", file=sys.stderr)
        return 130
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def run_jobs(args: argparse.Namespace) -> int:
    return _guarded(_jobs, args)


def _jobs(args: argparse.Namespace) -> int:
    from prism_ray.jobs import client as jobs

    client = jobs.connect(_address(args))
    if args.jobs_command == "list":
        print(jobs.list_table(client))
        return 0
    jobs.job_status(client, args.job_id)  # an unknown id fails readably here
    if args.jobs_command == "status":
        print(jobs.describe(client, args.job_id))
    elif args.jobs_command == "logs":
        if args.follow:
            return _follow(client, args.job_id, args.address)
        print(client.get_job_logs(args.job_id), end="")
    else:
        return _stop(client, args)
    return 0


def _stop(client, args: argparse.Namespace) -> int:
    from prism_ray.jobs.client import wait_terminal

    stopped = client.stop_job(args.job_id)
    print(f"job {args.job_id}: " + ("stop requested" if stopped else "was not running"))
    if args.wait:
        print(f"job {args.job_id}: {wait_terminal(client, args.job_id)}")
    return 0


def _address(args: argparse.Namespace) -> str:
    from prism_ray.jobs.client import JobsError

    if not args.address:
        raise JobsError(f"no cluster given: pass --address http://HEAD:8265 or set {ADDRESS_ENV}")
    return args.address


def _guarded(fn, *args) -> int:
    """Cluster-side failures print one line, not a stack trace."""
    from prism_ray.jobs.client import JobsError

    try:
        return fn(*args)
    except JobsError as e:
        print(f"prism-ray: {e}", file=sys.stderr)
        return 1
