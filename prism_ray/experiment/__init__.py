"""PRISM → RLVR against SFT → RLVR as one command (``prism-ray experiment``).

    spec.py       the experiment file: a small frozen schema (seeds, algorithms, ablations)
    plan.py       pure: arms, their overrides and the equal-rollout-budget arithmetic
    aggregate.py  pure: run directories → per-run results → mean ± std, paired differences
    report.py     results.md, results.json, PNG plots and the MLflow parent run
    runner.py     runs each arm × seed as a ``prism-ray run`` subprocess, reusing finished ones
"""

from prism_ray.experiment.spec import ExperimentConfig, load_experiment

__all__ = ["ExperimentConfig", "load_experiment"]
