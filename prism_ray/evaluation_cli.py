"""``prism-ray eval``: a checkpoint on public benchmarks from local files.

    prism-ray eval runs/x/phases/rlvr/policy \\
        --bench mathvista=data/MathVista/testmini.parquet \\
        --bench hallusionbench=data/HallusionBench/HallusionBench.json --out runs/eval/x

Nothing heavy is imported until the command runs, so ``prism-ray --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_EXPERIMENT = "prism-ray-eval"


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint on benchmarks from local files",
        description="Greedy (or k-sample) rollouts on each benchmark, scored by the rule-based "
                    "verifier; writes results.md, results.json and generations.jsonl.")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="HF checkpoint directory (an exported phase or a Qwen3-VL); not with "
                        "--rescore")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=PATH",
                   help="a benchmark and its file, directory or glob (repeatable); "
                        "--list shows the names and layouts")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--limit", type=int, default=None, help="at most N prompts per benchmark")
    p.add_argument("--samples", type=int, default=1,
                   help="responses per prompt; above 1 the table shows mean@k and pass@k")
    p.add_argument("--temperature", type=float, default=None,
                   help="default: the eval phase's (greedy) for one sample, the rollout's "
                        "for several")
    p.add_argument("--top-p", type=float, default=None, help="default: the eval phase's")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="response token limit (default: the eval phase's)")
    p.add_argument("--system-prompt", default=None,
                   help="the system turn (default: the run's format prompt; '' for none)")
    p.add_argument("--out", default=None, help="output directory (default: runs/eval/<ckpt>)")
    p.add_argument("--workers", type=int, default=None, help="rollout workers (data-parallel)")
    p.add_argument("--backend", choices=("hf", "vllm"), default=None,
                   help="rollout engine (default: the schema's)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="default: 1 for vllm, none for hf")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per worker call")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--strict", action="store_true",
                   help="a bad row stops the read (default: skipped and counted)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster ('auto', ray://host:port) instead of a local one")
    p.add_argument("--rescore", default=None, metavar="DIR",
                   help="re-verify DIR/generations.jsonl without generating (results go to "
                        "--out, default DIR)")
    p.add_argument("--tracking-uri", default=None,
                   help="log to MLflow (default: $MLFLOW_TRACKING_URI; neither: no tracking)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment")


def run_eval_command(args: argparse.Namespace) -> int:
    from prism_ray.benchmarks import BENCHMARKS, UnknownBenchmark
    from prism_ray.data.errors import DataError

    if args.list:
        for name, bench in BENCHMARKS.items():
            print(f"{name:15} {bench.title:15} {bench.layout}")
        return 0
    try:
        if args.rescore:
            from prism_ray.benchmarks.run import rescore

            doc = rescore(args.rescore, args.out)
            out = Path(args.out or args.rescore)
        else:
            from prism_ray.benchmarks.run import evaluate

            request = _request(args)
            doc = evaluate(request)
            out = Path(request.out)
    except (DataError, UnknownBenchmark, UsageError) as error:
        print(f"prism-ray eval: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    from prism_ray.benchmarks.report import paper_table

    print(paper_table(doc))
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}")
    _track(args, doc, out)
    return 0


class UsageError(ValueError):
    pass


def _request(args: argparse.Namespace):
    from prism_ray.benchmarks import get_benchmark
    from prism_ray.benchmarks.run import EvalRequest

    if not args.checkpoint:
        raise UsageError("give a checkpoint directory (or --rescore DIR)")
    if not (Path(args.checkpoint) / "config.json").is_file():
        raise UsageError(f"{args.checkpoint}: not a checkpoint directory (no config.json)")
    if not args.bench:
        raise UsageError("give at least one --bench NAME=PATH (--list shows the names)")
    benches = []
    for spec in args.bench:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"--bench {spec!r}: expected NAME=PATH")
        benches.append((get_benchmark(name).name, path.strip()))
    names = [name for name, _ in benches]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--bench: {', '.join(repeated)} given more than once (one PATH may "
                         "be a directory or a glob)")
    for option in ("limit", "samples", "workers", "max_tokens", "batch_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UsageError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    defaults = EvalRequest("", (), "")
    temperature = args.temperature
    if temperature is None:
        from prism_ray.config.run import RunConfig

        temperature = (defaults.temperature if args.samples == 1
                       else RunConfig().rollout.sampling.temperature)
    if temperature < 0:
        raise UsageError(f"--temperature must be ≥ 0, got {temperature}")
    system_prompt = defaults.system_prompt if args.system_prompt is None else (
        args.system_prompt or None)
    given = {
        "limit": args.limit, "samples": args.samples, "temperature": temperature,
        "top_p": args.top_p, "max_tokens": args.max_tokens, "workers": args.workers,
        "backend": args.backend, "gpus_per_worker": args.gpus_per_worker,
        "batch_size": args.batch_size, "seed": args.seed, "address": args.address,
    }
    out = args.out or str(Path("runs") / "eval" / "-".join(
        Path(args.checkpoint).resolve().parts[-2:]))
    return EvalRequest(
        checkpoint=args.checkpoint, benches=tuple(benches), out=out,
        system_prompt=system_prompt, on_bad_row="error" if args.strict else "skip",
        **{key: value for key, value in given.items() if value is not None})


def _track(args: argparse.Namespace, doc: dict, out: Path) -> None:
    """Log the table to MLflow when a tracking URI is given or in the environment; a failure
    warns and never fails the evaluation (``driver.tracking.Tracker`` guards every call)."""
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return
    from prism_ray.config.run import RunConfig, TrackingConfig
    from prism_ray.driver.tracking import Tracker

    settings = doc["settings"]
    config = RunConfig(name="eval", tracking=TrackingConfig(
        tracking_uri=uri, experiment=args.experiment,
        run_name=f"eval {settings.get('checkpoint', out.name)}"))
    tracker = Tracker(config, out)
    metrics = {}
    for name, row in [*doc["benchmarks"].items(), ("average", doc["average"])]:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"eval/{name}/{key}"] = value
        for reason, count in (row.get("failures") or {}).items():
            metrics[f"eval/{name}/failures_{reason}"] = count
    tracker.log_metrics(metrics, step=0)
    for file in ("results.md", "results.json"):
        tracker.log_artifact(out / file, "eval")
    tracker.end()
    if tracker.run_id:
        print(f"[tracking] MLflow run {tracker.run_id} at {tracker.uri}")
