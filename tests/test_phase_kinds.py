"""The phase-kind registry: every table about phase kinds derives from one record per kind."""

from __future__ import annotations

import typing

import pytest

from prism_ray.config import ConfigError, RunConfig, load_config
from prism_ray.config.kinds import PHASE_KINDS, ROLE_NAMES, phase_kind
from prism_ray.config.phases import Phase
from prism_ray.driver.roles import needed_roles


def union_members(annotated) -> set[type]:
    union = typing.get_args(annotated)[0]
    return {typing.get_args(member)[0] for member in typing.get_args(union)}


def test_the_phase_union_is_exactly_the_registered_kinds():
    assert union_members(Phase) == {kind.config for kind in PHASE_KINDS.values()}
    assert set(PHASE_KINDS) == {"sft", "disc_warmup", "align", "rlvr", "eval"}


@pytest.mark.parametrize("name", sorted(PHASE_KINDS))
def test_every_kind_is_complete(name):
    kind = phase_kind(name)
    assert kind.name == name
    assert callable(kind.load_runner())
    assert kind.roles and kind.roles <= ROLE_NAMES
    assert kind.data and kind.synthetic_files
    phase = kind.config()
    assert phase.plan_length() and phase.total_steps(1000) >= 1


def test_roles_and_evaluation_come_from_the_records():
    config = RunConfig()
    assert needed_roles(config) == {"policy", "rollout", "discriminator", "verifier"}
    only_sft = RunConfig(phases=({"kind": "sft"},))
    assert needed_roles(only_sft) == {"policy"}
    assert [k for k, v in PHASE_KINDS.items() if v.evaluation] == ["eval"]


def test_unknown_kind_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown phase kind 'distill'; registered: sft, "):
        phase_kind("distill")


def test_data_a_kind_cannot_read_is_refused_by_its_record(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("phases:\n  - kind: disc_warmup\n"
                      "    data: [{kind: rl_parquet, paths: [x.parquet]}]\n")
    with pytest.raises(ConfigError, match="cannot read data kind 'rl_parquet'"):
        load_config(recipe)


def test_unknown_loss_and_oversized_updates_are_config_errors():
    with pytest.raises(ConfigError, match="unknown policy loss 'reinforce'"):
        load_config(None, ["phases.rlvr.algorithm.loss=reinforce"])
    with pytest.raises(ConfigError, match="updates_per_step .* exceeds the"):
        load_config(None, ["phases.align.updates_per_step=1000"])
    gspo = load_config(None, ["phases.rlvr.algorithm.name=gspo"]).phase("rlvr")
    assert gspo.algorithm.loss == "gspo"


def test_gradient_watch_warns_after_a_streak_and_summarises():
    from prism_ray.driver.loop import GradientWatch

    watch = GradientWatch("rlvr", patience=2)
    assert watch.observe({"policy/grad_norm": 0.5}) is None
    assert watch.observe({"policy/grad_norm": 0.0}) is None
    assert "no gradient for 2 steps" in watch.observe({"policy/skipped_update": 1.0})
    assert watch.observe({"policy/grad_norm": float("nan")}) is None  # unknown: not counted
    assert watch.summary() == "rlvr: 2 of 4 step(s) had no gradient"
    learning = GradientWatch("sft")
    assert learning.observe({"policy/grad_norm": 1.0}) is None and learning.summary() is None
