"""Phase and run summaries from a metrics record, and ``prism-ray report RUN_DIR`` on a
synthetic run directory (no Ray)."""

from __future__ import annotations

import json

from prism_ray.cli import main
from prism_ray.driver.progress import SECTIONS
from prism_ray.driver.summary import (
    phase_stats,
    phase_summary,
    read_records,
    run_summary,
)


def record(phase: str, step: int, phase_step: int, tokens: float, **sections_and_metrics):
    sections = {s: sections_and_metrics.pop(s, 0.0) for s in SECTIONS}
    total = sum(sections.values())
    row = {"step": step, "phase_step": phase_step}
    row.update({f"{phase}/{k}": v for k, v in sections_and_metrics.items()})
    row.update({f"{phase}/timing/{s}": v for s, v in sections.items()})
    row[f"{phase}/timing/step"] = total
    row[f"{phase}/throughput/tokens_per_s"] = tokens / total
    row[f"{phase}/throughput/sequences_per_s"] = 4 / total
    return row


def synthetic_run() -> list[dict]:
    sft = [record("sft", i + 1, i, 1000, policy=p, **{"policy/loss": loss})
           for i, (p, loss) in enumerate([(2.0, 7.5), (0.5, 5.0), (0.5, 3.25)])]
    rlvr = [record("rlvr", 4 + i, i, 200, rollout=1.0, score=0.25, policy=0.5, sync=0.25,
                   **{"rollout/reward": r, "rollout/accuracy": r, "policy/loss": 0.0})
            for i, r in enumerate([0.125, 0.5])]
    return sft + rlvr


def test_phase_summary_from_a_synthetic_record():
    rows = [r for r in synthetic_run() if "sft/timing/step" in r]
    text = phase_summary(phase_stats("sft", rows))
    # 3 steps, 3 s of step time, median step 0.5 s (all policy), 3000 tokens / 3 s.
    assert text.splitlines() == [
        "[sft] done: 3 steps in 3s · 0.50s/step (median) · 1,000 tok/s · 4 seq/s",
        "[sft] step time: policy 0.50s",
        "[sft] policy/loss 7.5 → 3.25"]


def test_the_phase_wall_time_wins_and_sections_that_took_time_are_named():
    rows = [r for r in synthetic_run() if "rlvr/timing/step" in r]
    stats = phase_stats("rlvr", rows, wall_s=75.0)
    text = phase_summary(stats)
    assert text.splitlines() == [
        "[rlvr] done: 2 steps in 1m15s · 2.00s/step (median) · 100 tok/s · 2 seq/s",
        "[rlvr] step time: rollout 1.00s, score 0.25s, policy 0.50s, sync 0.25s",
        "[rlvr] policy/loss 0 → 0, reward 0.125 → 0.5, accuracy 0.125 → 0.5"]
    assert "reward 0.125 → 0.5, accuracy 0.125 → 0.5" in text


def test_run_summary_has_phases_evaluations_and_warnings():
    evaluations = [{"after": "start", "weights": "v0", "prompts": 8, "accuracy": 0.0,
                    "caption_fidelity": None, "format_rate": 0.0, "response_len": 24.0,
                    "phase_s": None},
                   {"after": "sft", "weights": "v1", "prompts": 8, "accuracy": 0.25,
                    "caption_fidelity": 0.5, "format_rate": 1.0, "response_len": 12.0,
                    "phase_s": 42.0}]
    text = run_summary(synthetic_run(), evaluations, ["rlvr: 2 of 2 step(s) had no gradient"])
    lines = text.splitlines()
    assert lines[0] == "── run summary ──"
    assert lines[1].split() == ["phase", "steps", "time", "s/step", *SECTIONS, "tok/s", "seq/s"]
    assert lines[3].split() == ["sft", "3", "42s", "0.50s", "–", "–", "–", "0.50s", "–",
                                "1,000", "4"]  # sft's time: its wall time from the evaluation
    assert lines[4].split()[:3] == ["rlvr", "2", "4s"]  # else the summed step times
    assert "sft   policy/loss 7.5 → 3.25" in text
    assert "sft    v1       8        0.250     0.500" in text
    assert text.endswith("warnings\n  ! rlvr: 2 of 2 step(s) had no gradient")
    assert len(lines) < 40


def test_read_records_counts_a_redone_step_once_and_skips_a_torn_line(tmp_path):
    rows = synthetic_run()
    redone = dict(rows[1], **{"sft/policy/loss": 4.0})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows[:3], redone, *rows[3:]])
                    + '{"step": 6, "rlvr/timi')
    got = read_records(path)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    assert got[1]["sft/policy/loss"] == 4.0


def test_report_command_on_a_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in synthetic_run()))
    (run_dir / "evaluations.json").write_text(json.dumps([
        {"after": "rlvr", "weights": "v3", "prompts": 8, "accuracy": 0.375,
         "caption_fidelity": None, "format_rate": 1.0, "response_len": 10.0, "phase_s": 9.0}]))
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run_dir}: 5 steps recorded, last step 5")
    rows = [line.split() for line in out.splitlines()]
    assert ["rlvr", "2", "9s", "2.00s"] in [r[:4] for r in rows]  # wall time from the eval
    assert ["rlvr", "v3", "8", "0.375"] in [r[:4] for r in rows]
    assert (run_dir / "plots" / "reward_accuracy.png").exists()
    assert (run_dir / "plots" / "timing.png").exists()
    assert "plots: " in out

    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err
