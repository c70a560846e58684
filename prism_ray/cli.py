"""``prism-ray`` command line. The config is parsed and validated before any heavy import
(torch, ray, transformers), so a bad recipe fails in a fraction of a second."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from prism_ray.config import ConfigError, dump_config, load_config
from prism_ray.config.run import lr_summary
from prism_ray.evaluation_cli import add_eval_parser, run_eval_command
from prism_ray.jobs.cli import add_jobs_parser, add_submit_parser


def _add_recipe_args(p: argparse.ArgumentParser, recipe_optional: bool = False) -> None:
    if recipe_optional:
        p.add_argument("recipe", nargs="?", default=None, help="recipe YAML (default: built-in)")
    else:
        p.add_argument("recipe", help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides (phases by index or name)")
    p.add_argument("--cluster", default=None, help="cluster YAML overlaid on the recipe")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="show or validate configurations")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    _add_recipe_args(config_sub.add_parser("show", help="print the resolved config"), True)
    validate = config_sub.add_parser(
        "validate", help="validate recipes and print each phase's learning rates; non-zero on "
                         "error")
    validate.add_argument("recipes", nargs="+")
    validate.add_argument("--cluster", default=None)

    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write the synthetic PRISM datasets")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", choices=["tiny", "small", "full"], default="small")
    synth.add_argument("--image-size", type=int, default=None,
                       help="pixels per side (default: the schema's)")
    synth.add_argument("--overwrite", action="store_true")
    synth.add_argument("--public-perception-error", type=float, default=None,
                       help="public captions: chance an object is left out; the other "
                            "perception errors scale with it (default: the schema's)")
    synth.add_argument("--public-reasoning-error", type=float, default=None,
                       help="public demonstrations: chance of a wrong answer "
                            "(default: the schema's)")

    model = sub.add_parser("model", help="models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser("tiny", help="build the tiny policy + discriminator checkpoints")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--seed", type=int, default=0)

    run = sub.add_parser("run", help="run a recipe on a local or existing Ray cluster")
    _add_recipe_args(run)
    demo = sub.add_parser("demo", help="run the embedded default (tiny model, synthetic task)")
    demo.add_argument("--out", default="runs/demo", help="run directory")
    demo.add_argument("overrides", nargs="*")
    for p in (run, demo):
        p.add_argument("--resume", action="store_true",
                       help="continue from the run directory's latest complete checkpoint")
        p.add_argument("--max-restarts", type=int, default=0, metavar="N",
                       help="if a learner actor dies, restart from the last checkpoint by "
                            "itself, at most N times (default 0: stop and print the resume "
                            "command)")
        p.add_argument("--verbose", action="store_true",
                       help="show the actors' output and the libraries' INFO lines")
    report = sub.add_parser("report", help="summarise a run directory (finished or running) "
                                           "and write its plots")
    report.add_argument("run_dir")
    report.add_argument("--skip", type=int, default=0, help="drop each phase's first steps")
    experiment = sub.add_parser(
        "experiment", help="PRISM → RLVR against SFT → RLVR over seeds, one run per arm × seed")
    experiment.add_argument("recipe", nargs="?", default=None, metavar="EXPERIMENT",
                            help="experiment YAML (default: the built-in one)")
    experiment.add_argument("overrides", nargs="*", help="a.b=c overrides applied to every run")
    experiment.add_argument("--seeds", default=None, help="comma-separated, e.g. 0,1,2")
    experiment.add_argument("--algorithms", default=None, help="comma-separated: grpo,dapo,gspo")
    experiment.add_argument("--ablations", default=None,
                            help="comma-separated: dense,text_only,no_sft,hard_routing")
    experiment.add_argument("--out", default=None, help="output directory")
    add_eval_parser(sub)
    add_submit_parser(sub)
    add_jobs_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Overrides may follow options (`RECIPE --cluster F a.b=c`), as in Makefile ARGS.
        takes_overrides = hasattr(args, "overrides")
        if not takes_overrides or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    recipe = getattr(args, "recipe", None)
    if recipe and "=" in recipe and not os.path.exists(recipe):
        # `config show a.b=c`: an override where the optional recipe would go.
        args.recipe, args.overrides = None, [recipe, *args.overrides]
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"prism-ray: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        return _config(args)
    if args.command == "data":
        return _synth(args)
    if args.command == "model":
        return _tiny_models(args)
    if args.command == "run":
        return _run(load_config(args.recipe, args.overrides, args.cluster), args)
    if args.command == "demo":
        overrides = [f"output_dir={args.out}", *args.overrides]
        # The schema defaults ARE the embedded default run.
        return _run(load_config(None, overrides), args)
    if args.command == "report":
        from prism_ray.driver.summary import report_command

        return report_command(args.run_dir, skip=args.skip)
    if args.command == "experiment":
        return _experiment(args)
    if args.command == "eval":
        return run_eval_command(args)
    if args.command in ("submit", "jobs"):
        from prism_ray.jobs import cli as jobs_cli

        return jobs_cli.run_submit(args) if args.command == "submit" else jobs_cli.run_jobs(args)
    raise AssertionError(args.command)


def _config(args: argparse.Namespace) -> int:
    if args.config_command == "show":
        print(dump_config(load_config(args.recipe, args.overrides, args.cluster)), end="")
        return 0
    failed = 0
    for recipe in args.recipes:
        try:
            config = load_config(recipe, cluster=args.cluster)
            print(f"ok      {recipe}")
            for line in lr_summary(config):
                print(f"        {line}")
        except ConfigError as e:
            failed += 1
            print(f"invalid {recipe}\n{e}", file=sys.stderr)
    return 1 if failed else 0


def _synth(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from prism_ray.config.schema import SyntheticData
    from prism_ray.data.errors import DataError
    from prism_ray.data.synthetic import synthesize

    # Through the schema: its defaults and bounds (image size, [0, 1] rates), as in a recipe,
    # before anything is written.
    given = {"seed": args.seed, "image_size": args.image_size,
             "public_perception_error": args.public_perception_error,
             "public_reasoning_error": args.public_reasoning_error}
    try:
        task = SyntheticData(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(item['loc'][0]).replace('_', '-')} {item['input']!r}: "
            f"{item['msg'].removeprefix('Value error, ')}" for item in error.errors())
        print(f"prism-ray: data synth: {problems}", file=sys.stderr)
        return 2
    try:
        manifest = synthesize(args.out, seed=task.seed, size=args.size,
                              image_size=task.image_size, overwrite=args.overwrite,
                              progress=print,
                              public_perception_error=task.public_perception_error,
                              public_reasoning_error=task.public_reasoning_error)
    except DataError as error:
        print(f"prism-ray: data synth: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in manifest["counts"].items()))
    return 0


def _tiny_models(args: argparse.Namespace) -> int:
    from prism_ray.models.tiny import create_tiny_pair

    policy, disc = create_tiny_pair(args.out, seed=args.seed)
    print(f"policy: {policy}\ndiscriminator: {disc}")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from prism_ray.experiment import load_experiment
    from prism_ray.experiment.runner import run_experiment

    return run_experiment(load_experiment(
        args.recipe, seeds=args.seeds, algorithms=args.algorithms, ablations=args.ablations,
        overrides=tuple(args.overrides), out=args.out))


def _run(config, args: argparse.Namespace) -> int:
    from prism_ray.data.errors import DataError
    from prism_ray.driver.faults import RoleLost
    from prism_ray.driver.main import run

    try:
        run(config, resume=args.resume, verbose=args.verbose, max_restarts=args.max_restarts)
    except DataError as e:  # the pre-flight names the phase, file and row
        print(f"prism-ray: {e}", file=sys.stderr)
        return 2
    except RoleLost as e:  # not a bug to debug: say what died and how to go on
        tried = f" after {args.max_restarts} restart(s)" if args.max_restarts else ""
        print(f"prism-ray: {e}{tried}; resume with: {resume_command(args)}", file=sys.stderr)
        return 3
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run: the same recipe, overrides and cluster file,
    plus ``--resume``."""
    if args.command == "demo":
        words = ["prism-ray", "demo", "--out", args.out, *args.overrides]
    else:
        words = ["prism-ray", "run", args.recipe, *args.overrides]
        if args.cluster:
            words += ["--cluster", args.cluster]
    if args.max_restarts:
        words += ["--max-restarts", str(args.max_restarts)]
    return shlex.join([*words, "--resume"])


if __name__ == "__main__":
    sys.exit(main())
