"""Print the step-time breakdown and throughput of a finished run from its metrics record.

    python bench/run_report.py runs/<name> [--skip 1]

--skip drops each phase's first steps (warm-up: engine start, compilation, allocator growth).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

SHOWN = ("timing/rollout", "timing/score", "timing/discriminator", "timing/policy",
         "timing/sync", "timing/step", "throughput/tokens_per_s",
         "throughput/sequences_per_s", "sync/bytes", "sync/gb_per_s", "policy/tokens",
         "rollout/response_len", "policy/rollout_mismatch_abs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--skip", type=int, default=1)
    args = parser.parse_args()
    rows = [json.loads(x) for x in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
    phases: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        phase = next(k.split("/")[0] for k in row if "/" in k)
        phases[phase].append(row)
    print(f"{'phase':<12} {'metric':<32} {'median':>12} {'min':>12} {'max':>12}  steps")
    for phase, steps in phases.items():
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
