"""Surviving a lost learner: find which learner died, rewind the run to its last checkpoint.

A learner actor that dies (its process killed, its node gone) takes its weights and optimizer
state with it, so the step in progress cannot finish. The run stops with ``RoleLost``, which
the command line turns into one line naming the role and the resume command; with
``--max-restarts N`` the driver instead rebuilds every role, restores the last checkpoint and
carries on, at most N times (``driver/main.py``).

Either way the steps after the checkpoint run again. ``rewind`` makes that invisible in the
records: the rows ``metrics.jsonl`` holds after the checkpoint are dropped and the MLflow run
is rebuilt without them (``driver/tracking.py`` says why a rebuild), so every (metric, step)
has exactly one value.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prism_ray.driver.checkpoint import DriverState
from prism_ray.driver.progress import truncate_metrics
from prism_ray.driver.tracking import Tracker

if TYPE_CHECKING:
    from prism_ray.driver.roles import Roles

LEARNERS = ("policy", "discriminator")


class RoleLost(RuntimeError):
    """A learner actor died; the run cannot go on with this set of roles."""

    def __init__(self, role: str, cause: BaseException) -> None:
        self.role, self.cause = role, cause
        super().__init__(f"the {role} learner was lost ({type(cause).__name__})")


def dead_learner(roles: Roles, timeout_s: float = 10.0) -> str | None:
    """The first learner role with a dead actor, found by a no-op call to each rank (a dead
    actor answers at once with an error; a live one busy past ``timeout_s`` counts as live)."""
    import ray
    from ray.exceptions import RayActorError

    for name in LEARNERS:
        group = getattr(roles, name)
        if group is None:
            continue
        refs = [actor.ready.remote() for actor in group.actors]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        for ref in done:
            try:
                ray.get(ref)
            except RayActorError:
                return name
    return None


def rewind(run_dir: Path, tracker: Tracker, state: DriverState | None) -> None:
    """Forget what was logged after the checkpoint a run continues from (``state``; None:
    from the beginning)."""
    step = 0 if state is None else state.step
    kept, dropped = truncate_metrics(run_dir / "metrics.jsonl", step)
    if dropped:
        print(f"[resume] metrics.jsonl: dropped {dropped} row(s) logged after step {step} "
              "(those steps run again)", flush=True)
        tracker.rebuild(kept)
