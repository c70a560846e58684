"""``prism-ray experiment``: arms and overrides from the real tiny recipe, the budget
arithmetic, aggregation and rendering over fabricated run directories, reuse of finished
runs, and the report of a run that fails (a bad override fails ``prism-ray run`` at
validation, in a real subprocess). No training run is started here."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from prism_ray.cli import main
from prism_ray.config import ConfigError, load_config
from prism_ray.experiment import load_experiment, runner
from prism_ray.experiment import plan as plan_module
from prism_ray.experiment.aggregate import (
    RunResult,
    curve_band,
    mean_std,
    paired_difference,
    read_curve,
    run_values,
)
from prism_ray.experiment.plan import ABLATIONS, Budget, budget, plan, resolve
from prism_ray.experiment.report import render_markdown

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "recipes/experiments/prism-vs-rlvr.yaml"
NAMES = {"sft": "sft", "disc_warmup": "disc_warmup", "align": "align", "rlvr": "rlvr"}


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes/tiny.yaml is relative to the repository


def _experiment(tmp_path, tracking=False, **flags):
    """The shipped experiment file, writing under tmp_path; MLflow only where a test checks it
    (creating its sqlite store takes seconds)."""
    experiment = load_experiment(EXPERIMENT, out=str(tmp_path / "exp"), **flags)
    return experiment.model_copy(update={"tracking": tracking})


# ───────────────────────────── the experiment file ─────────────────────────────


def test_experiment_file_defaults_and_flags(tmp_path):
    e = load_experiment(EXPERIMENT)
    assert (e.name, e.recipe, e.seeds, e.algorithms, e.ablations) == (
        "prism-vs-rlvr", "recipes/tiny.yaml", (0, 1, 2), ("grpo",), ())
    assert e.out_dir == Path("runs/experiments/prism-vs-rlvr")
    e = load_experiment(EXPERIMENT, seeds="3,4", algorithms="dapo,gspo", ablations="dense",
                        overrides=("phases.rlvr.steps=5",), out=str(tmp_path))
    assert (e.seeds, e.algorithms, e.ablations, e.overrides) == (
        (3, 4), ("dapo", "gspo"), ("dense",), ("phases.rlvr.steps=5",))
    assert e.out_dir == tmp_path
    assert load_experiment(None).seeds == (0, 1, 2)  # the schema holds every default


@pytest.mark.parametrize("text, flags, expected", [
    ("sedes: [0]\n", {}, "bad.yaml: sedes: unknown key"),
    ("seeds: [0, zero]\n", {}, "bad.yaml: seeds.1: Input should be a valid integer"),
    ("algorithms: [ppo]\n", {}, "bad.yaml: algorithms.0: Input should be 'grpo'"),
    ("{}\n", {"ablations": "dense,sparse"}, "command line --ablations: ablations: "),
    ("{}\n", {"seeds": "1,1"}, "command line --seeds: seeds: Value error, repeated: ['1']"),
])
def test_experiment_file_errors_are_one_line_naming_the_key(tmp_path, text, flags, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_experiment(path, **flags)
    message = str(error.value)
    assert "\n" not in message and expected in message, message


def test_cli_reports_a_bad_experiment_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("seeds: []\n")
    assert main(["experiment", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prism-ray: ") and "seeds" in err and "\n" not in err


# ───────────────────────────── arms, overrides, budget ─────────────────────────────


def test_budget_from_tiny_recipe():
    config = load_config("recipes/tiny.yaml")
    cost = budget(config)
    # alignment 8 steps × 4 prompts × 8 samples; RLVR 30 steps × 8 prompts × 8 samples
    assert cost == Budget(align_rollouts=256, rlvr_steps=30, rlvr_rollouts_per_step=64)
    assert cost.extra_rlvr_steps == 4
    assert budget(load_config("recipes/tiny.yaml", ["phases.align.enabled=false"])) \
        .extra_rlvr_steps == 0


@pytest.mark.parametrize("align, rlvr, extra", [
    ((8, 4, 8), (8, 8), 4), ((3, 4, 8), (8, 8), 2), ((1, 1, 2), (32, 16), 1), ((10, 4, 16), (4, 16), 10),
])
def test_extra_rlvr_steps_round_up(align, rlvr, extra):
    steps, prompts, samples = align
    cost = Budget(steps * prompts * samples, 5, rlvr[0] * rlvr[1])
    assert cost.extra_rlvr_steps == extra == math.ceil(steps * prompts * samples / (rlvr[0] * rlvr[1]))
    assert (cost.rlvr_steps + extra) * cost.rlvr_rollouts_per_step >= \
        cost.align_rollouts + cost.rlvr_steps * cost.rlvr_rollouts_per_step


def test_arms_and_overrides_from_tiny_recipe(tmp_path):
    e = _experiment(tmp_path, seeds="0,1", algorithms="grpo,dapo", ablations="dense,no_sft")
    runs = plan(e)
    arms = ["prism-grpo", "sft-grpo", "prism-dapo", "sft-dapo", "prism-grpo-dense",
            "prism-grpo-no_sft", "prism-dapo-dense", "prism-dapo-no_sft"]
    assert [(r.arm.name, r.seed) for r in runs] == [(a, s) for s in (0, 1) for a in arms]
    by = {(r.arm.name, r.seed): r for r in runs}
    source = by["prism-grpo", 1]
    assert source.sft_source is None and source.run_dir == tmp_path / "exp/prism-grpo/seed1"
    assert list(source.overrides) == ["phases.rlvr.algorithm.name=grpo", "seed=1",
                                      "name=prism-vs-rlvr-prism-grpo-seed1",
                                      f"output_dir={source.run_dir}"]
    sft_policy = (source.run_dir / "phases/sft/policy").resolve()

    baseline = by["sft-dapo", 1]
    assert baseline.sft_source == source.run_dir
    assert {"phases.rlvr.algorithm.name=dapo", "phases.sft_teacher.enabled=false",
            "phases.sft.enabled=false", "phases.disc_warmup.enabled=false", "phases.align.enabled=false",
            "phases.rlvr.steps=34", f"phases.rlvr.init_from={sft_policy}"} <= set(baseline.overrides)
    assert (baseline.budget_offset, baseline.rollouts_per_step) == (0, 64)

    other_alg = by["prism-dapo", 1]  # SFT does not depend on the algorithm: shared too
    assert {"phases.sft_teacher.enabled=false", "phases.sft.enabled=false",
            f"phases.disc_warmup.init_from={sft_policy}"} <= set(other_alg.overrides)
    assert other_alg.budget_offset == 256

    dense = by["prism-grpo-dense", 1]
    assert set(ABLATIONS["dense"]) <= set(dense.overrides) and dense.sft_source == source.run_dir
    no_sft = by["prism-grpo-no_sft", 1]
    assert no_sft.sft_source is None
    assert not any("init_from" in o for o in no_sft.overrides)
    assert {"phases.sft_teacher.enabled=false", "phases.sft.enabled=false"} \
        <= set(no_sft.overrides)  # every phase of the SFT curriculum

    # Every run's command line resolves to the run it claims to be.
    configs = {key: load_config(e.recipe, spec.overrides) for key, spec in by.items()}
    c = configs["sft-dapo", 1]
    assert [p.enabled for p in c.phases] == [False, False, False, False, True, True]
    assert (c.phase("rlvr").steps, c.phase("rlvr").algorithm.name) == (34, "dapo")
    assert c.phase("rlvr").init_from == str(sft_policy) and c.seed == 1
    assert c.run_dir == str(baseline.run_dir)
    assert configs["prism-grpo-dense", 0].discriminator.num_experts == 1
    assert [p.enabled for p in configs["prism-grpo", 0].phases] == [True] * 6
    assert configs["prism-dapo", 0].phase("disc_warmup").init_from is not None


def test_ablation_mapping_covers_the_documented_ablations():
    assert set(ABLATIONS) == {"dense", "text_only", "no_sft", "hard_routing"}
    assert ABLATIONS["text_only"] == ("discriminator.use_images=false",)
    assert ABLATIONS["hard_routing"] == ("discriminator.routing=hard",)


def test_every_ablation_arm_resolves_to_a_valid_run(tmp_path):
    from prism_ray.config.schema import DiscriminatorConfig

    missing = {"use_images", "routing"} - set(DiscriminatorConfig.model_fields)
    if missing:
        pytest.skip(f"the discriminator schema has no {sorted(missing)} yet")
    e = _experiment(tmp_path, seeds="0", ablations=",".join(ABLATIONS))
    configs = {r.arm.ablation: load_config(e.recipe, r.overrides) for r in plan(e)
               if r.arm.ablation}
    assert configs["text_only"].discriminator.use_images is False
    assert configs["hard_routing"].discriminator.routing == "hard"
    assert configs["dense"].discriminator.num_experts == 1
    assert not configs["no_sft"].phase("sft").enabled


def test_plan_without_sft_in_the_base_shares_nothing(tmp_path):
    e = _experiment(tmp_path, seeds="0", overrides=("phases.sft.enabled=false",))
    runs = plan(e)
    assert all(r.sft_source is None for r in runs)
    assert not any("init_from" in o for r in runs for o in r.overrides)


def test_a_bad_base_override_fails_before_any_run(tmp_path):
    e = _experiment(tmp_path, overrides=("phases.rlvr.steps=abc",))
    with pytest.raises(ConfigError, match=r"phases\[4:rlvr\]\.steps"):
        plan(e)
    assert not (tmp_path / "exp").exists()


# ───────────────────────────── aggregation ─────────────────────────────


def test_mean_std_and_paired_difference():
    assert mean_std([]).mean is None
    one = mean_std([0.5])
    assert (one.mean, one.std, one.n) == (0.5, None, 1)
    s = mean_std([0.1, None, 0.3])
    assert s.n == 2 and s.mean == pytest.approx(0.2) and s.std == pytest.approx(math.sqrt(0.02))
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.9}, {0: 0.4, 1: 0.45, 2: None})
    assert d.n == 2 and d.mean == pytest.approx(0.125) and d.std == pytest.approx(0.0353553, 1e-5)


def test_read_curve_offsets_by_budget_and_keeps_the_last_record_of_a_step(tmp_path):
    lines = [{"step": 150, "phase_step": 0, "sft/policy/loss": 1.0},
             {"step": 160, "phase_step": 0, "rlvr/rollout/accuracy": 0.1},
             {"step": 161, "phase_step": 1, "rlvr/rollout/accuracy": 0.2},
             {"step": 161, "phase_step": 1, "rlvr/rollout/accuracy": 0.25},  # resumed: again
             {"step": 162, "phase_step": 2, "rlvr/rollout/accuracy": 0.3}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert read_curve(path, "rlvr", 256, 64) == [(320, 0.1), (384, 0.25), (448, 0.3)]
    assert read_curve(tmp_path / "absent.jsonl", "rlvr", 0, 64) == []
    band = curve_band([((64, 0.1), (128, 0.3)), ((64, 0.3),)])
    assert band[0] == (64, pytest.approx(0.2), pytest.approx(math.sqrt(0.02)))
    assert band[1] == (128, 0.3, 0.0)


def test_run_values_reads_older_rows_without_caption_fidelity():
    rows = [_row("start", 0.0), _row("rlvr", 0.4, fidelity=None)]
    source_rows = [_row("start", 0.0), _row("sft", 0.3)]
    values = run_values(rows, NAMES, source_rows, wall_s=12.0)
    assert values["accuracy"] == 0.4 and values["caption_fidelity"] is None
    assert values["sft_accuracy"] == 0.3 and values["align_accuracy"] is None
    assert values["wall_s"] == 12.0


# ───────────────────────────── fabricated runs: report, reuse, resume ──────────────────


def _row(after, accuracy, fidelity=0.5):
    row = {"after": after, "weights": "v1", "prompts": 64, "accuracy": accuracy,
           "format_rate": 1.0, "response_len": 80.0}
    if fidelity is not None:
        row["caption_fidelity"] = fidelity
    return row


def _fabricate(spec, recipe="recipes/tiny.yaml", status="done"):
    """The files a finished ``prism-ray run`` leaves, with accuracies known in advance."""
    prism, seed = spec.arm.prism, spec.seed
    final = (0.5 if prism else 0.4) + (0.1 if prism else 0.05) * seed
    rows = [_row("start", 0.0, fidelity=None)]  # an older row: no caption fidelity
    if spec.sft_source is None and not spec.arm.ablation:
        rows.append(_row("sft", 0.3))
    if prism:
        rows.append(_row("align", 0.31, fidelity=0.6))
    rows.append(_row("rlvr", final, fidelity=0.7 if prism else 0.55))
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / "evaluations.json").write_text(json.dumps(rows))
    steps = 34 if not prism else 30  # the tiny recipe's RLVR steps (+ alignment's budget)
    (spec.run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 200 + i, "phase_step": i, "rlvr/rollout/accuracy": final * i / steps})
        + "\n" for i in range(steps)))
    runner.write_marker(spec.run_dir, ["run", recipe, *spec.overrides], status, 0, 60.0 + seed)


def _no_subprocess(*args, **kwargs):
    raise AssertionError(f"a run was started: {args}")


def test_report_over_fabricated_runs_reuses_them_all(tmp_path, monkeypatch, capsys):
    e = _experiment(tmp_path, seeds="0,1", tracking=True)
    for spec in plan(e):
        _fabricate(spec)
    monkeypatch.setattr(runner, "run_subprocess", _no_subprocess)
    assert runner.run_experiment(e) == 0
    console = capsys.readouterr().out
    assert "1/4 prism-grpo seed0 reused (ran in 1.0 min): held-out accuracy 0.500" in console

    out = tmp_path / "exp"
    report = json.loads((out / "results.json").read_text())
    prism = report["summary"]["prism-grpo"]
    assert prism["accuracy"]["mean"] == pytest.approx(0.55)
    assert prism["accuracy"]["std"] == pytest.approx(math.sqrt(0.005))
    assert prism["caption_fidelity"]["mean"] == pytest.approx(0.7)
    assert prism["sft_accuracy"]["mean"] == pytest.approx(0.3)
    assert prism["align_accuracy"]["mean"] == pytest.approx(0.31)
    baseline = report["summary"]["sft-grpo"]
    assert baseline["sft_accuracy"]["mean"] == pytest.approx(0.3)  # from the shared SFT run
    assert baseline["align_accuracy"]["n"] == 0
    (diff,) = report["differences"]
    assert (diff["arm"], diff["reference"]) == ("prism-grpo", "sft-grpo")
    assert diff["accuracy"]["mean"] == pytest.approx(0.125)  # seeds: 0.1 and 0.15
    assert diff["accuracy"]["std"] == pytest.approx(0.0353553, 1e-5)
    # Equal budget on the x axis: PRISM starts after alignment's 256 rollouts.
    assert report["curves"]["prism-grpo"][0]["rollouts"] == 256 + 64
    assert report["curves"]["sft-grpo"][-1]["rollouts"] == 34 * 64
    assert report["curves"]["prism-grpo"][-1]["rollouts"] == 256 + 30 * 64

    markdown = (out / "results.md").read_text()
    assert "| prism-grpo | 2 | 0.550 ± 0.071 | 0.700 ± 0.000 |" in markdown
    assert "| prism-grpo − sft-grpo | 2 | +0.125 ± 0.035 |" in markdown
    assert "sft-grpo runs 30 + 4 RLVR steps of 64 (2176 rollouts)" in markdown
    assert "Experiment wall time:" in markdown
    for png in ("rlvr_accuracy_vs_rollouts.png", "accuracy_per_phase.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"

    with sqlite3.connect(out / "mlflow.db") as db:
        runs = db.execute("select name, status from runs").fetchall()
        parent = db.execute("select run_uuid from runs where name like 'PRISM vs%'").fetchone()[0]
        children = db.execute("select count(*) from tags where key='mlflow.parentRunId' "
                              "and value=?", (parent,)).fetchone()[0]
        summary = db.execute("select value from latest_metrics where run_uuid=? and "
                             "key='prism-grpo/accuracy_mean'", (parent,)).fetchone()[0]
    assert len(runs) == 5 and children == 4 and all(s == "FINISHED" for _, s in runs)
    assert summary == pytest.approx(0.55)
    assert (out / "mlartifacts").is_dir()


def test_interrupted_runs_resume_and_finished_ones_are_reused(tmp_path, monkeypatch):
    e = _experiment(tmp_path, seeds="0")
    prism, baseline = plan(e)
    _fabricate(prism)
    _fabricate(baseline, status="running")  # killed mid-run: marker written, never finished
    calls = []

    def fake_run(command, run_dir, resume):
        calls.append((command, run_dir, resume))
        _fabricate(baseline)
        return 0, 30.0

    monkeypatch.setattr(runner, "run_subprocess", fake_run)
    assert runner.run_experiment(e) == 0
    assert calls == [(["run", e.recipe, *baseline.overrides], baseline.run_dir, True)]
    marker = runner.read_marker(baseline.run_dir)
    assert marker["status"] == "done" and marker["wall_s"] == pytest.approx(90.0)  # 60 + 30


def test_a_run_made_with_other_settings_is_refused_not_mixed_in(tmp_path, monkeypatch):
    e = _experiment(tmp_path, seeds="0")
    prism, baseline = plan(e)
    _fabricate(prism)
    _fabricate(baseline, recipe="recipes/other.yaml")
    monkeypatch.setattr(runner, "run_subprocess", _no_subprocess)
    assert runner.run_experiment(e) == 1
    report = json.loads((tmp_path / "exp/results.json").read_text())
    failed = [r for r in report["runs"] if r["status"] == "failed"]
    assert [r["arm"] for r in failed] == ["sft-grpo"]
    assert "other settings" in failed[0]["message"]


# ───────────────────────────── a failing run (real subprocess) ─────────────────────────


def test_failed_run_is_reported_and_the_experiment_goes_on(tmp_path, monkeypatch, capsys):
    # An ablation whose override `prism-ray run` rejects at validation: fails in about a second.
    monkeypatch.setitem(ABLATIONS, "broken", ("phases.rlvr.steps=abc",))
    e = _experiment(tmp_path, seeds="0,1", ablations="broken")
    runs = plan(e)
    for spec in runs:
        if spec.arm.ablation is None:
            _fabricate(spec)
    assert plan_module.ABLATIONS is ABLATIONS
    assert runner.run_experiment(e) == 1
    console = capsys.readouterr().out
    broken = [s for s in runs if s.arm.ablation == "broken"]
    for spec in broken:
        log = spec.run_dir / "run.log"
        assert "phases[4:rlvr].steps: Input should be a valid integer" in log.read_text()
        assert f"prism-grpo-broken seed{spec.seed} FAILED in " in console
        assert f" min: exit 2; log {log}:" in console
        marker = runner.read_marker(spec.run_dir)
        assert marker["status"] == "failed" and marker["returncode"] == 2
    assert "    | prism-ray: invalid configuration (1 error(s)):" in console
    markdown = (tmp_path / "exp/results.md").read_text()
    assert "## Failed or skipped runs" in markdown
    assert "- prism-grpo-broken seed1: failed: exit 2; log " in markdown
    assert "| prism-grpo | 2 | 0.550 ± 0.071 |" in markdown  # the others still count


def test_runs_that_need_a_failed_sft_source_are_skipped(tmp_path, monkeypatch):
    e = _experiment(tmp_path, seeds="0")
    prism, baseline = plan(e)
    monkeypatch.setattr(runner, "run_subprocess", lambda *a, **k: (1, 0.5))
    assert runner.run_experiment(e) == 1
    report = json.loads((tmp_path / "exp/results.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["failed", "skipped"]
    assert "its SFT source" in report["runs"][1]["message"]


def test_render_markdown_without_results_still_reads():
    spec_arms = plan_module.arms(load_experiment(EXPERIMENT))
    text = render_markdown("t", ["note"], [RunResult("prism-grpo", 0, "skipped", Path("x"),
                                                     message="why")], spec_arms, 3.0)
    assert "| prism-grpo | 0 | – |" in text and "- prism-grpo seed0: skipped: why" in text


def test_cli_experiment_reuses_fabricated_runs(tmp_path, monkeypatch):
    e = _experiment(tmp_path, seeds="0")
    for spec in plan(e):
        _fabricate(spec)
    monkeypatch.setattr(runner, "run_subprocess", _no_subprocess)
    path = tmp_path / "prism-vs-rlvr.yaml"  # the run names derive from the file's stem
    path.write_text(EXPERIMENT.read_text() + "tracking: false\n")
    assert main(["experiment", str(path), "--seeds", "0", "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp/results.md").is_file()
    assert not (tmp_path / "exp/mlflow.db").exists()
    assert resolve(e, "grpo").phase("rlvr").algorithm.name == "grpo"
