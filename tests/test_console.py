"""The console of a run: throttled progress lines in a log, a live bar on a terminal, and
every step still in metrics.jsonl and the tracking sink."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from prism_ray.driver.console import LineThrottle, ProgressSettings, Quiet, close_bars
from prism_ray.driver.progress import PhaseProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shown(throttle: LineThrottle, steps, clock: Clock | None = None, dt: float = 1.0):
    out = []
    for done in steps:
        if clock is not None:
            clock.now += dt
        if throttle.due(done):
            out.append(done)
    return out


def test_a_log_gets_the_first_the_last_and_every_tenth_step():
    throttle = LineThrottle(25, every_steps=10, every_seconds=0)
    assert shown(throttle, range(1, 26)) == [1, 10, 20, 25]


def test_slow_steps_print_every_so_many_seconds():
    clock = Clock()
    throttle = LineThrottle(100, every_steps=10, every_seconds=30, clock=clock)
    # 12 s per step: a line at the first step, then whenever 30 s have passed (or a 10th step).
    assert shown(throttle, range(1, 12), clock, dt=12.0) == [1, 4, 7, 10]


def test_a_resumed_phase_prints_its_first_step_run():
    throttle = LineThrottle(30, every_steps=10, every_seconds=0)
    assert shown(throttle, range(13, 31)) == [13, 20, 30]


def test_every_step_when_asked():
    assert shown(LineThrottle(4, every_steps=1, every_seconds=0), range(1, 5)) == [1, 2, 3, 4]


def test_settings_from_the_environment():
    assert ProgressSettings.from_env({}) == ProgressSettings("auto", 10, 30.0)
    env = {"PRISM_RAY_PROGRESS": "lines", "PRISM_RAY_PROGRESS_STEPS": "5",
           "PRISM_RAY_PROGRESS_SECONDS": "0"}
    assert ProgressSettings.from_env(env) == ProgressSettings("lines", 5, 0.0)
    with pytest.raises(ValueError, match="PRISM_RAY_PROGRESS='loud'"):
        ProgressSettings.from_env({"PRISM_RAY_PROGRESS": "loud"})
    with pytest.raises(ValueError, match="PRISM_RAY_PROGRESS_STEPS='x'"):
        ProgressSettings.from_env({"PRISM_RAY_PROGRESS_STEPS": "x"})
    assert ProgressSettings().resolved_mode(io.StringIO()) == "lines"  # not a terminal


def run_phase(tmp_path, mode: str, total: int = 12, **settings):
    stream, sunk = io.StringIO(), []
    progress = PhaseProgress("rlvr", total, tmp_path / "metrics.jsonl",
                             headline=("rollout/reward",), sink=lambda r, s: sunk.append(s),
                             settings=ProgressSettings(mode, **settings), stream=stream)
    for i in range(total):
        with progress.timer("policy"):
            pass
        progress.step(i, 100 + i, {"rollout/reward": i / 10, "policy/loss": 1.0}, tokens=50)
    return stream.getvalue(), sunk


def test_throttled_lines_but_every_step_recorded(tmp_path):
    out, sunk = run_phase(tmp_path, "lines", every_steps=5, every_seconds=0)
    lines = out.splitlines()
    assert [line.split()[2] for line in lines] == ["1/12", "5/12", "10/12", "12/12"]
    assert lines[0].startswith("[rlvr] step 1/12 reward 0 |") and "tok/s" in lines[0]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == sunk == list(range(100, 112))
    assert all("rlvr/timing/step" in r and "rlvr/rollout/reward" in r for r in rows)


def test_all_and_off(tmp_path):
    (tmp_path / "all").mkdir()
    (tmp_path / "off").mkdir()
    assert len(run_phase(tmp_path / "all", "all")[0].splitlines()) == 12
    out, sunk = run_phase(tmp_path / "off", "off")
    assert out == "" and len(sunk) == 12


def test_bar_keeps_other_output_on_whole_lines(tmp_path, capsys):
    stream, saved = io.StringIO(), sys.stdout
    progress = PhaseProgress("sft", 3, tmp_path / "metrics.jsonl", headline=("policy/loss",),
                             settings=ProgressSettings("bar"), stream=stream)
    try:
        for i in range(3):
            if i == 1:
                assert sys.stdout is not saved  # while the bar is open, prints go above it
                print("[sync] v1:", "a line from elsewhere")
            with progress.timer("policy"):
                pass
            progress.step(i, i + 1, {"policy/loss": 2.0 - i}, tokens=10)
    finally:
        close_bars()
    assert sys.stdout is saved  # the last step closed the bar and gave stdout back
    assert capsys.readouterr().out == "[sync] v1: a line from elsewhere\n"
    text = stream.getvalue()
    assert "[sft] 3/3" in text and "loss 0" in text and "tok/s" in text
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_quiet_raises_library_loggers_and_restores_them():
    logger = logging.getLogger("mlflow")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        quiet = Quiet(verbose=False)
        assert logger.level == logging.WARNING
        quiet.restore()
        assert logger.level == logging.INFO
        Quiet(verbose=True)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)
