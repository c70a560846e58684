"""Print the step-time breakdown and throughput of a finished run from its metrics record.

    python bench/run_report.py runs/<name> [--skip 1]

--skip drops each phase's first steps (warm-up: engine start, compilation, allocator growth).
The summary is ``prism-ray report``'s (``prism_ray/driver/summary.py``), followed by the
median, min and max of the benchmark's metrics.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from prism_ray.driver.summary import by_phase, read_records, run_summary

SHOWN = ("timing/rollout", "timing/score", "timing/discriminator", "timing/policy",
         "timing/sync", "timing/step", "throughput/tokens_per_s",
         "throughput/sequences_per_s", "sync/bytes", "sync/gb_per_s", "policy/tokens",
         "rollout/response_len", "policy/rollout_mismatch_abs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--skip", type=int, default=1)
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    records = read_records(run_dir / "metrics.jsonl")
    evaluations_file = run_dir / "evaluations.json"
    evaluations = json.loads(evaluations_file.read_text()) if evaluations_file.exists() else []
    print(run_summary(records, evaluations, skip=args.skip, title=str(run_dir)))
    print()
    print(f"{'phase':<12} {'metric':<32} {'median':>12} {'min':>12} {'max':>12}  steps")
    for phase, steps in by_phase(records).items():
        kept = steps[args.skip:] or steps
        for name in SHOWN:
            values = [r[f"{phase}/{name}"] for r in kept if f"{phase}/{name}" in r]
            if values:
                print(f"{phase:<12} {name:<32} {statistics.median(values):>12.4g} "
                      f"{min(values):>12.4g} {max(values):>12.4g}  {len(values)}")
        sync = [r[f"{phase}/sync/gb_per_s"] for r in kept if f"{phase}/sync/gb_per_s" in r]
        if sync:
            print(f"{phase:<12} {'sync GB/s (mean)':<32} {statistics.mean(sync):>12.4g}")


if __name__ == "__main__":
    main()
