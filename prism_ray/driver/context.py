"""What the phases of one run share: config, paths, roles, counters, the evaluation table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prism_ray.config import RunConfig
from prism_ray.driver.assets import RunAssets
from prism_ray.driver.progress import PhaseProgress
from prism_ray.driver.roles import Roles
from prism_ray.driver.tracking import Tracker


@dataclass
class RunContext:
    config: RunConfig
    run_dir: Path
    assets: RunAssets
    roles: Roles
    tracker: Tracker
    step: int = 0  # global optimizer-step counter across phases
    version: int = 0  # weight version served by the rollout workers
    evaluations: list[dict] = field(default_factory=list)

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def progress(self, phase, total_steps: int, headline: tuple[str, ...] = ()) -> PhaseProgress:
        return PhaseProgress(phase.name, total_steps, self.metrics_file, headline,
                             sink=self.tracker.log_metrics)

    def phase_seed(self, phase) -> int:
        return self.config.seed if phase.seed is None else phase.seed

    def publish_weights(self) -> None:
        """Bring the rollout workers to the learner's current weights (new version)."""
        if self.roles.sync is not None:
            stats = self.roles.sync.push(self.version + 1)
            self.version = stats.version
            print(f"[sync] v{stats.version}: {stats.bytes / 2**20:.1f} MiB in "
                  f"{stats.seconds:.2f}s ({stats.gb_per_s:.2f} GB/s, {stats.buckets} buckets)")
