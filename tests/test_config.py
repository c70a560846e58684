"""The config schema, layered loading and the error messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from prism_ray.cli import main
from prism_ray.config import ConfigError, RunConfig, dump_config, load_config

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_pipeline():
    config = load_config()
    assert [p.kind for p in config.phases] == ["sft", "sft", "disc_warmup", "align", "rlvr",
                                               "eval"]
    # the SFT curriculum: the teacher's demonstrations alone, then the public mix
    assert config.phase("sft_teacher").sources == ("teacher",)
    assert config.phase("sft").sources == ("teacher", "public")
    assert config.models.policy.kind == "tiny"
    rlvr = config.phase("rlvr")
    assert rlvr.algorithm.name == "grpo" and rlvr.algorithm.clip_high == 0.2
    assert config.phase("align").alpha == 0.5 and config.phase("align").beta == 1.5
    assert config.discriminator.num_experts == 4 and config.discriminator.top_k == 2


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_validates(recipe):
    config = load_config(recipe)
    assert config.name == recipe.stem or recipe.stem == "tiny"


def test_recipes_exist_for_published_settings():
    names = {r.stem for r in RECIPES}
    for size in ("4b", "8b"):
        for pipeline in ("prism", "sft"):
            for algo in ("grpo", "dapo", "gspo"):
                assert f"qwen3vl-{size}-{pipeline}-{algo}" in names


def test_unknown_key_names_key_and_file(tmp_path):
    recipe = write(tmp_path, "r.yaml", "rollout:\n  num_worker: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert f"{recipe}: rollout.num_worker: unknown key" in str(e.value)


def test_wrong_type_inside_a_phase_names_phase_and_file(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - kind: sft\n  - kind: rlvr\n    steps: ten\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert f"{recipe}: phases[1:rlvr].steps" in str(e.value)
    assert "'ten'" in str(e.value)


def test_error_is_attributed_to_the_cluster_file_that_set_it(tmp_path):
    recipe = write(tmp_path, "r.yaml", "cluster:\n  num_cpus: 4\n")
    cluster = write(tmp_path, "c.yaml", "cluster:\n  num_cpus: 0\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe, cluster=cluster)
    assert f"{cluster}: cluster.num_cpus" in str(e.value)
    assert str(recipe) not in str(e.value)


def test_bad_enum_override_names_the_command_line():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.backend=sglang"])
    assert "command line 'rollout.backend=sglang'" in str(e.value)
    assert "'hf' or 'vllm'" in str(e.value)


def test_overrides_by_phase_name_and_index_and_layer_order(tmp_path):
    recipe = write(tmp_path, "r.yaml", "seed: 3\nrollout: {num_workers: 2}\n")
    cluster = write(tmp_path, "c.yaml", "rollout: {num_workers: 4}\n")
    config = load_config(recipe, ["phases.rlvr.steps=7", "phases.0.batch_size=4", "seed=5"],
                         cluster=cluster)
    assert config.phase("rlvr").steps == 7
    assert config.phases[0].batch_size == 4
    assert config.rollout.num_workers == 4  # cluster file over recipe
    assert config.seed == 5  # command line over everything


def test_unknown_phase_name_in_override():
    with pytest.raises(ConfigError, match="no phase named 'nope'"):
        load_config(None, ["phases.nope.steps=1"])


def test_algorithm_choice_brings_its_published_optimizer():
    dapo = load_config(None, ["phases.rlvr.algorithm.name=dapo"]).phase("rlvr")
    assert dapo.algorithm.clip_high == 0.28 and dapo.algorithm.dual_clip == 10.0
    assert dapo.optimizer.weight_decay == 0.1 and dapo.optimizer.warmup_steps == 10
    assert dapo.optimizer.lr == 2e-4  # the tiny pipeline's lr survives the switch
    gspo = load_config(None, ["phases.rlvr.algorithm.name=gspo"]).phase("rlvr")
    assert gspo.algorithm.clip_low == 3e-4 and gspo.algorithm.clip_high == 4e-4
    assert gspo.optimizer.warmup_ratio == 0.05


def test_partial_optimizer_override_keeps_phase_defaults(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - kind: sft\n    optimizer: {lr: 3.0e-5}\n")
    sft = load_config(recipe).phases[0]
    assert sft.optimizer.lr == 3e-5
    assert sft.optimizer.schedule.value == "cosine" and sft.optimizer.warmup_ratio == 0.1


def test_phase_must_say_its_kind(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - steps: 3\n")
    with pytest.raises(ConfigError, match=str(recipe)):
        load_config(recipe)


def test_duplicate_phase_names_and_wrong_data_kind_are_rejected(tmp_path):
    dup = write(tmp_path, "d.yaml", "phases:\n  - {kind: sft}\n  - {kind: sft}\n")
    with pytest.raises(ConfigError, match="repeated"):
        load_config(dup)
    wrong = write(tmp_path, "w.yaml",
                  "phases:\n  - kind: sft\n    data: [{kind: rl_parquet, paths: [x.parquet]}]\n")
    with pytest.raises(ConfigError, match="cannot read data kind 'rl_parquet'"):
        load_config(wrong)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="top_k"):
        load_config(None, ["discriminator.top_k=5"])
    with pytest.raises(ConfigError, match="warmup_ratio or warmup_steps"):
        load_config(None, ["phases.sft.optimizer.warmup_steps=5"])


def test_config_is_frozen():
    config = load_config()
    with pytest.raises(ValidationError):
        config.seed = 1


def test_invalid_yaml_and_missing_file_name_the_file(tmp_path):
    broken = write(tmp_path, "b.yaml", "rollout: [1, 2\n")
    with pytest.raises(ConfigError, match=f"{broken}: not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    scalar = write(tmp_path, "s.yaml", "42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_dump_round_trips(tmp_path):
    config = load_config(None, ["phases.rlvr.algorithm.name=dapo", "rollout.num_workers=3"])
    again = load_config(write(tmp_path, "dump.yaml", dump_config(config)))
    assert again == config
    assert isinstance(again, RunConfig)


def test_cli_validate_and_show(tmp_path, capsys):
    good = write(tmp_path, "good.yaml", "name: good\n")
    bad = write(tmp_path, "bad.yaml", "policy: {zero_stage: 4}\n")
    assert main(["config", "validate", str(good)]) == 0
    assert main(["config", "validate", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: policy.zero_stage" in err
    assert main(["config", "show", str(good), "phases.eval.max_prompts=9"]) == 0
    out = capsys.readouterr().out
    assert "name: good" in out and "max_prompts: 9" in out
    assert main(["config", "show", str(good), "nonsense"]) == 2
    assert "key.path=value" in capsys.readouterr().err


def test_remote_code_is_refused_and_overrides_may_follow_options(tmp_path, capsys):
    with pytest.raises(ConfigError, match="trust_remote_code is not supported"):
        load_config(None, ["models.policy={kind: pretrained, path: org/model, "
                           "trust_remote_code: true}"])
    cluster = write(tmp_path, "c.yaml", "cluster: {num_cpus: 3}\n")
    assert main(["config", "show", "--cluster", str(cluster), "seed=7"]) == 0
    out = capsys.readouterr().out
    assert "seed: 7" in out and "num_cpus: 3" in out


def test_bench_recipes_validate():
    for recipe in sorted((RECIPES[0].parent / "bench").glob("*.yaml")):
        assert load_config(recipe).policy.dtype.value == "bfloat16"


# ───────────────────────── every bad input is a ConfigError of one line per problem ─────────


def error_line(excinfo) -> str:
    """The single problem line of a ConfigError (after the 'invalid configuration' header)."""
    lines = str(excinfo.value).splitlines()
    if lines[0].startswith("invalid configuration"):
        assert lines[0] == "invalid configuration (1 error(s)):", lines
        lines = lines[1:]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_recipe_that_is_not_utf8_is_named(tmp_path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e) == (f"{recipe}: not UTF-8 text (byte 0xe9 on line 1); "
                             "save the recipe as UTF-8")


def test_phases_written_as_a_mapping(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  sft: {kind: sft}\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e).startswith(f"{recipe}: phases: must be a list of phases")


@pytest.mark.parametrize(
    "override", ["seed=[1,2", "seed={a: 1", "seed=0x_", "phases.sft.epochs=!!int x"])
def test_malformed_override_value(override):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    line = error_line(e)
    assert line.startswith(f"command line {override!r}: the value ") and "not valid YAML" in line


@pytest.mark.parametrize("override", ["a..b=1", ".seed=1", "phases.[0].steps=1", "seed.=3"])
def test_malformed_override_key(override):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert error_line(e).startswith(f"command line {override!r}: ")


def test_duplicate_yaml_keys_are_refused_naming_key_and_file(tmp_path):
    recipe = write(tmp_path, "r.yaml", "seed: 1\nrollout:\n  num_workers: 2\n  num_workers: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e) == (f"{recipe}: rollout.num_workers: duplicate key (lines 3 and 4); "
                             "write each key once")
    in_a_phase = write(tmp_path, "p.yaml", "phases:\n  - kind: rlvr\n    steps: 3\n    steps: 4\n")
    with pytest.raises(ConfigError, match=r"phases\.0\.steps: duplicate key"):
        load_config(in_a_phase)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    recipe = write(tmp_path, "r.yaml", "base: &b {num_workers: 2}\n"
                   "rollout:\n  <<: *b\n  num_workers: 3\n")
    with pytest.raises(ConfigError, match="base: unknown key"):  # merged fine, then validated
        load_config(recipe)


def test_yaml_12_floats_and_dates_stay_text(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - kind: sft\n    optimizer: {lr: 1e-5}\n"
                   "tracking: {run_name: 2024-01-01}\n")
    config = load_config(recipe)
    assert config.phases[0].optimizer.lr == 1e-5 and config.tracking.run_name == "2024-01-01"


@pytest.mark.parametrize("text, key", [
    ("phases:\n  - kind: rlvr\n    steps: true\n", "phases[0:rlvr].steps"),
    ("seed: false\n", "seed"),
    ("policy: {zero_stage: true}\n", "policy.zero_stage"),
    ("phases:\n  - kind: sft\n    optimizer: {lr: true}\n", "phases[0:sft].optimizer.lr"),
    ("rollout: {num_workers: 2.0}\n", "rollout.num_workers"),
    ("rollout: {num_workers: '2'}\n", "rollout.num_workers"),
])
def test_numbers_are_strict(tmp_path, text, key):
    recipe = write(tmp_path, "r.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e).startswith(f"{recipe}: {key}: Input should be a valid")


def test_yaml_ints_are_taken_for_floats(tmp_path):
    recipe = write(tmp_path, "r.yaml", "verifier: {timeout_s: 3}\n"
                   "phases:\n  - kind: align\n    beta: 2\n")
    config = load_config(recipe)
    assert config.verifier.timeout_s == 3.0 and config.phases[0].beta == 2.0


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    recipe = write(tmp_path, "r.yaml", f"phases:\n  - kind: align\n    beta: {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e).startswith(f"{recipe}: phases[0:align].beta: Input should be a finite")


@pytest.mark.parametrize("override", [
    "phases.rlvr.algorithm.clip_low=1.0", "phases.align.clip_eps=1.5",
    "phases.rlvr.algorithm={name: gspo, clip_low: 2}",
])
def test_clip_bounds_below_one(override):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert "Input should be less than 1" in error_line(e)


@pytest.mark.parametrize("override, key, rule", [
    ("phases.rlvr.algorithm.dual_clip=1.1", "phases[4:rlvr].algorithm", "1 + clip_high (1.2)"),
    ("phases.rlvr.algorithm={name: dapo, dual_clip: 1.28}", "phases[4:rlvr].algorithm",
     "1 + clip_high (1.28)"),
    ("phases.align.dual_clip=1.2", "phases[3:align]", "1 + clip_eps (1.2)"),
])
def test_dual_clip_must_exceed_one_plus_the_clip(override, key, rule):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    line = error_line(e)
    assert line.startswith(f"command line {override!r}: {key}: dual_clip (")
    assert f"must exceed {rule}" in line


def test_every_dual_clip_the_schema_accepts_builds_a_clip_config():
    from prism_ray.algo import PolicyLoss

    for override in ("phases.rlvr.algorithm.dual_clip=1.21", "phases.rlvr.algorithm.dual_clip=null",
                     "phases.align.dual_clip=1.21"):
        config = load_config(None, [override])
        PolicyLoss.from_settings(config.phase("rlvr").algorithm)
        PolicyLoss.from_settings(config.phase("align"))


def test_kl_coef_needs_a_reference_model_that_does_not_exist():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["phases.rlvr.algorithm.kl_coef=0.05"])
    line = error_line(e)
    assert "phases[4:rlvr].algorithm: kl_coef (0.05) must be 0" in line
    assert "reference model" in line
    off = load_config(None, ["phases.rlvr.algorithm.kl_coef=0"])
    assert off.phase("rlvr").algorithm.kl_coef == 0


@pytest.mark.parametrize("text, key", [
    ("phases:\n  - kind: rlvr\n    algorithm: {clip_low: .nan}\n",
     "phases[0:rlvr].algorithm.clip_low"),
    ("phases:\n  - kind: rlvr\n    data: [{kind: rl_parquet, paths: []}]\n",
     "phases[0:rlvr].data.0.paths"),
    ("phases:\n  - kind: sft\n  - kind: eval\n    max_prompts: 0\n", "phases[1:eval].max_prompts"),
])
def test_phase_errors_name_the_phase_and_field_only(tmp_path, text, key):
    recipe = write(tmp_path, "r.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    line = error_line(e)
    assert line.startswith(f"{recipe}: {key}: ")
    assert "Tuple should" not in line


def test_a_phase_without_a_kind_is_told_the_kinds(tmp_path):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - steps: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert "a phase must say its kind: one of sft, disc_warmup, align, rlvr, eval" in error_line(e)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["phases.0.kind=ppo"])
    assert "unknown kind 'ppo'; allowed: 'sft', 'disc_warmup'" in error_line(e)


def test_whole_phase_checks_are_attributed_to_the_override():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["phases.rlvr.updates_per_step=1000"])
    line = error_line(e)
    assert line.startswith("command line 'phases.rlvr.updates_per_step=1000': phases[4:rlvr]: "
                           "updates_per_step (1000) exceeds")
    assert "{" not in line  # not the whole phase echoed back
    with pytest.raises(ConfigError) as e:
        load_config(None, ["models.policy.kind=pretrained"])
    assert error_line(e) == ("command line 'models.policy.kind=pretrained': "
                             "models.policy.path: required")


def test_env_vars_take_numbers_as_text(tmp_path):
    config = load_config(None, ["cluster.env_vars.OMP_NUM_THREADS=2"])
    assert config.cluster.env_vars == {"OMP_NUM_THREADS": "2"}
    recipe = write(tmp_path, "r.yaml", "cluster:\n  env_vars: {OMP_NUM_THREADS: 4, RATE: 0.5, "
                   "DEBUG: true, NAME: x}\n")
    assert load_config(recipe).cluster.env_vars == {
        "OMP_NUM_THREADS": "4", "RATE": "0.5", "DEBUG": "true", "NAME": "x"}
    with pytest.raises(ConfigError, match="cluster.env_vars.X: Input should be a valid string"):
        load_config(None, ["cluster.env_vars.X=[1]"])


@pytest.mark.parametrize("text, message", [
    ("a: &x [*x]\n", "an alias refers to the node that contains it"),
    ("a: !!set {x}\n", "a set is not a config value"),
    ("a: !!binary aGk=\n", "a bytes is not a config value"),
    ("1.5: x\n", "key 1.5 must be text"),
    ("a: 0x_\n", "not valid YAML: a value cannot be read"),
    ("a: [" * 2000 + "\n", "not valid YAML"),
])
def test_yaml_that_is_not_a_config(tmp_path, text, message):
    recipe = write(tmp_path, "r.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert message in error_line(e) and str(recipe) in error_line(e)


def test_unresolvable_interpolation_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["name=${nowhere}"])
    assert error_line(e) == ("name: cannot resolve interpolation: "
                             "Interpolation key 'nowhere' not found")


# ───────────────────────── steps: the one name for a phase's length ─────────────────────────


def test_every_training_phase_is_sized_by_steps(tmp_path):
    config = load_config(None, ["phases.sft_teacher.steps=6", "phases.sft.steps=5",
                                "phases.disc_warmup.steps=3", "phases.align.steps=2",
                                "phases.rlvr.steps=4"])
    assert [p.steps for p in config.phases[:5]] == [6, 5, 3, 2, 4]
    sft = config.phase("sft")
    assert sft.total_steps(num_records=1000) == 5 and sft.plan_length() == "1 epoch(s) (≤5 steps)"
    whole = write(tmp_path, "r.yaml", "phases:\n  - {kind: sft, epochs: 2, batch_size: 10}\n")
    sft = load_config(whole).phases[0]
    assert sft.steps is None and sft.total_steps(num_records=95) == 20  # 2 epochs of 10 batches
    assert sft.plan_length() == "2 epoch(s)"


@pytest.mark.parametrize("kind", ["sft", "disc_warmup"])
def test_max_steps_is_told_it_was_renamed(tmp_path, kind):
    recipe = write(tmp_path, "r.yaml", f"phases:\n  - kind: {kind}\n    max_steps: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert error_line(e) == f"{recipe}: phases[0:{kind}].max_steps: unknown key: renamed to steps"
    with pytest.raises(ConfigError, match="'phases.sft.max_steps=3'.*renamed to steps"):
        load_config(None, ["phases.sft.max_steps=3"])


# ───────────────────────── the learning rates in force ─────────────────────────


def test_lr_summary_marks_rates_the_recipe_left_to_the_schema(tmp_path):
    from prism_ray.config.run import lr_summary

    recipe = write(tmp_path, "r.yaml", """\
phases:
  - {kind: sft, optimizer: {weight_decay: 0.0}}
  - {kind: disc_warmup, optimizer: {lr: 2.0e-5}}
  - {kind: align, disc_optimizer: {lr: 3.0e-6}}
  - {kind: rlvr, enabled: false}
  - {kind: eval}
""")
    config = load_config(recipe, ["phases.rlvr.algorithm.name=dapo"])
    assert lr_summary(config) == [
        "sft (sft): lr 1e-05 (schema default)",
        "disc_warmup (disc_warmup): lr 2e-05",
        "align (align): lr 1e-06 (schema default), disc lr 3e-06",
        "rlvr (rlvr) [disabled]: lr 1e-06 (schema default)",
    ]
    assert config.phase("sft").optimizer.weight_decay == 0.0  # merged over the phase default
    assert config.phase("sft").optimizer.schedule.value == "cosine"
    assert config.phase("rlvr").optimizer.warmup_steps == 10  # DAPO's published optimizer
    set_by_override = load_config(recipe, ["phases.sft.optimizer.lr=5e-5"])
    assert lr_summary(set_by_override)[0] == "sft (sft): lr 5e-05"


def test_the_embedded_pipeline_sets_every_lr():
    from prism_ray.config.run import lr_summary

    assert not any("schema default" in line for line in lr_summary(load_config()))


def test_cli_validate_prints_the_learning_rates(tmp_path, capsys):
    recipe = write(tmp_path, "r.yaml", "phases:\n  - {kind: rlvr, optimizer: {lr: 1.0e-5}}\n"
                   "  - {kind: sft}\n")
    assert main(["config", "validate", str(recipe)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"ok      {recipe}",
        "        rlvr (rlvr): lr 1e-05",
        "        sft (sft): lr 1e-05 (schema default)",
    ]


def test_a_phase_index_past_the_end_is_named():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["phases.9.steps=1"])
    assert error_line(e) == ("command line 'phases.9.steps=1': no phase 9; the run has 6 "
                             "phase(s), indices 0 to 5; phases are addressed by index or name")
