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
