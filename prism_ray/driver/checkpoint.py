"""Checkpoints of a whole run: learner states + the driver's own state, written atomically.

A checkpoint is written into a hidden temporary directory, every file in it fsynced, then
sealed with a completion marker and renamed into place (and the rename fsynced). A process
killed while writing leaves a ``.tmp-*`` directory that is never mistaken for a checkpoint;
resume takes the newest complete one and says which torn ones it ignored. Older checkpoints
are pruned only after the new one is in place, so a kill at any moment leaves at least the
previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

MARKER = "COMPLETE"
STATE = "driver_state.json"


@dataclass
class DriverState:
    """Everything the driver needs to continue exactly where it stopped."""

    phase_index: int = 0  # index into config.phases of the phase in progress
    phase_step: int = 0  # steps of that phase already done
    phase_done: bool = False  # True at a phase boundary: resume starts the next phase
    step: int = 0  # global optimizer steps
    version: int = 0  # weight version of the rollout workers
    cursor: dict | None = None  # data cursor of the phase in progress
    tracking_run_id: str | None = None
    evaluations: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> DriverState:
        return cls(**json.loads(text))


class CheckpointManager:
    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.root = run_dir / "checkpoints"
        self.keep_last = keep_last

    def begin(self, step: int) -> Path:
        """A fresh temporary directory for the learners to write into."""
        tmp = self.root / f".tmp-step{step:08d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, state: DriverState) -> Path:
        """Seal ``tmp`` with the driver state and move it into place atomically."""
        _fsync_write(tmp / STATE, state.to_json())
        _fsync_tree(tmp)  # the learners' files: on disk before the marker says "complete"
        _fsync_write(tmp / MARKER, f"step {state.step}\n")
        _fsync_dir(tmp)
        final = self.root / f"step{state.step:08d}"
        stale = None
        if final.exists():  # the same step again (e.g. a phase that ended without a step)
            stale = self.root / f".old-{final.name}"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)  # a hidden name: never read, removed below
        os.replace(tmp, final)
        _fsync_dir(self.root)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
        self._prune()
        return final

    def latest(self, log=print) -> tuple[Path, DriverState] | None:
        if not self.root.exists():
            return None
        torn = sorted(p.name for p in self.root.iterdir() if p.name.startswith(".tmp-"))
        if torn:
            log(f"[resume] ignoring torn checkpoint(s) {torn} (killed while writing)")
        for path in sorted(self._complete(), reverse=True):
            try:
                return path, DriverState.from_json((path / STATE).read_text())
            except (OSError, ValueError, TypeError) as e:
                log(f"[resume] ignoring unreadable checkpoint {path.name}: {e}")
        return None

    def _complete(self) -> list[Path]:
        return [p for p in self.root.glob("step*") if (p / MARKER).exists()]

    def _prune(self) -> None:
        for old in sorted(self._complete())[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (a few files per learner rank)."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
