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
    assert [p.kind for p in config.phases] == ["sft", "disc_warmup", "align", "rlvr", "eval"]
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
