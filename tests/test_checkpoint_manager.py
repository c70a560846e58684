"""Atomic run checkpoints: completion marker, torn directories, pruning."""

from __future__ import annotations

from prism_ray.driver.checkpoint import MARKER, CheckpointManager, DriverState


def save(manager: CheckpointManager, step: int, **fields) -> None:
    tmp = manager.begin(step)
    (tmp / "policy").mkdir()
    (tmp / "policy" / "shard.bin").write_bytes(b"x" * step)
    manager.commit(tmp, DriverState(step=step, **fields))


def test_latest_complete_checkpoint_wins_and_torn_ones_are_ignored(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    save(manager, 3, phase_index=1, phase_step=2, cursor={"size": 4, "seed": 0, "epoch": 0,
                                                           "position": 2})
    save(manager, 7, phase_index=2, phase_done=True, evaluations=[{"after": "sft"}])
    torn = manager.begin(9)  # killed before commit: learners wrote, the driver never sealed
    (torn / "policy").mkdir()
    messages = []
    path, state = manager.latest(log=messages.append)
    assert path.name == "step00000007" and state.phase_done and state.phase_index == 2
    assert state.evaluations == [{"after": "sft"}]
    assert any(".tmp-step00000009" in m for m in messages)


def test_a_checkpoint_without_marker_or_with_bad_state_is_skipped(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    save(manager, 2)
    save(manager, 4)
    (tmp_path / "checkpoints" / "step00000004" / MARKER).unlink()
    assert manager.latest(log=lambda m: None)[1].step == 2
    save(manager, 6)
    (tmp_path / "checkpoints" / "step00000006" / "driver_state.json").write_text("{trunc")
    messages = []
    assert manager.latest(log=messages.append)[1].step == 2
    assert any("unreadable" in m for m in messages)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        save(manager, step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step00000003", "step00000004"]


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert CheckpointManager(tmp_path, keep_last=1).latest() is None


def test_a_rewrite_of_the_same_step_replaces_it_and_leaves_nothing_hidden(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    save(manager, 5, phase_step=3)
    save(manager, 5, phase_done=True)
    assert manager.latest(log=lambda m: None)[1].phase_done
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step00000005"]


# A writer killed in the middle of a checkpoint: it seals step 2, then starts step 4 and writes
# a large learner file in small pieces until it is killed.
WRITER = """
import sys
from pathlib import Path
from prism_ray.driver.checkpoint import CheckpointManager, DriverState
manager = CheckpointManager(Path(sys.argv[1]), keep_last=2)
tmp = manager.begin(2)
(tmp / "policy").mkdir()
(tmp / "policy" / "shard.bin").write_bytes(b"a" * 1000)
manager.commit(tmp, DriverState(step=2, phase_step=2))
tmp = manager.begin(4)
(tmp / "policy").mkdir()
with open(tmp / "policy" / "shard.bin", "wb") as f:
    print("writing", flush=True)
    while True:
        f.write(b"b" * 4096)
        f.flush()
"""


def test_a_writer_killed_mid_checkpoint_leaves_the_previous_one_usable(tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        torn = tmp_path / "checkpoints" / ".tmp-step00000004" / "policy" / "shard.bin"
        while torn.stat().st_size < 64 * 1024:  # well inside the write
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    messages = []
    path, state = CheckpointManager(tmp_path, keep_last=2).latest(log=messages.append)
    assert path.name == "step00000002" and state.step == 2 and state.phase_step == 2
    assert (path / "policy" / "shard.bin").read_bytes() == b"a" * 1000
    assert any(".tmp-step00000004" in m for m in messages)
