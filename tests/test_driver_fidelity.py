"""Caption fidelity in the driver's metrics: RLVR outcomes, alignment rollouts, the eval table."""

from __future__ import annotations

import pytest

from prism_ray.data.fidelity import scene_to_json
from prism_ray.data.scenes import Scene, SceneObject
from prism_ray.driver.align import rollout_metrics
from prism_ray.driver.rewards import flatten_groups, informative_groups, outcome_metrics
from prism_ray.driver.summary import evaluation_table
from prism_ray.prompting import format_response
from prism_ray.types import DiscriminatorScores, RLPrompt, Rollout
from prism_ray.verify import Reason, VerifyResult

SCENE = Scene((SceneObject("red", "circle", 0, 3), SceneObject("blue", "square", 4)))
TRUE = format_response(["red circle with digit 3, top-left"], "x", "1")  # 4 of 4 claims true
FALSE = format_response(["yellow square, top"], "x", "1")  # 0 of 3 (a made-up object)


def prompt(i: int, scene: Scene | None) -> RLPrompt:
    extra = {"split": "train"} if scene is None else {"split": "train", "scene": scene_to_json(scene)}
    return RLPrompt(uid=f"p{i}", data_source="t", images=(b"",), question="q", ground_truth="1",
                    extra_info=extra)


def rollout(i: int, text: str) -> Rollout:
    return Rollout(f"p{i}", 0, text, (1, 2), (-0.5, -0.5), "stop", 0)


def result(correct: bool) -> VerifyResult:
    return VerifyResult(score=1.0 if correct else 0.2, accuracy=float(correct), format_ok=True,
                        reason=Reason.CORRECT if correct else Reason.WRONG)


def test_rlvr_outcome_metrics_report_caption_fidelity_of_prompts_with_a_scene():
    prompts = [prompt(0, SCENE), prompt(1, None), prompt(2, SCENE)]
    groups = [[rollout(0, TRUE), rollout(0, FALSE)], [rollout(1, FALSE)], [rollout(2, TRUE)]]
    results = [result(True), result(False), result(False), result(True)]
    metrics = outcome_metrics(flatten_groups(prompts, groups, results))
    assert metrics["caption_fidelity"] == pytest.approx(8 / 11)  # prompt 1 has no scene
    # after dynamic sampling the kept rollouts still meet their own prompt's scene
    kept, _ = informative_groups(flatten_groups(prompts, groups, results))
    assert [p.uid for p in kept.prompts] == ["p0"]
    assert outcome_metrics(kept)["caption_fidelity"] == pytest.approx(4 / 7)


def test_no_scene_no_caption_fidelity():
    scored = flatten_groups([prompt(0, None)], [[rollout(0, TRUE)]], [result(True)])
    assert "caption_fidelity" not in outcome_metrics(scored)
    scores = [DiscriminatorScores(0.0, 0.0, (0.0,), (0.0,), (True,))]
    assert "rollout/caption_fidelity" not in rollout_metrics([prompt(0, None)],
                                                            [[rollout(0, TRUE)]], scores)


def test_align_rollout_metrics_report_caption_fidelity():
    groups = [[rollout(0, TRUE), rollout(0, FALSE)], [rollout(1, "not the format")]]
    scores = [DiscriminatorScores(0.0, 0.0, (0.0, 0.0), (0.0, 0.0), (True, True)),
              DiscriminatorScores(0.0, 0.0, (0.0,), (0.0,), (False,))]
    metrics = rollout_metrics([prompt(0, SCENE), prompt(1, SCENE)], groups, scores)
    assert metrics["rollout/caption_fidelity"] == pytest.approx(4 / 7)  # invalid one left out
    assert metrics["rollout/format_rate"] == pytest.approx(2 / 3)


def test_evaluation_table_shows_caption_fidelity_next_to_accuracy():
    row = {"after": "sft", "weights": "v1", "prompts": 8, "accuracy": 0.5,
           "format_rate": 1.0, "response_len": 40.0}
    table = evaluation_table([{**row, "caption_fidelity": 0.875},
                              {**row, "caption_fidelity": None}, row])
    header, _, with_scene, without, old = table.splitlines()
    assert header.split()[3:5] == ["accuracy", "caption_fidelity"]
    assert with_scene.split()[3:5] == ["0.500", "0.875"]
    assert without.split()[4] == "–" and old.split()[4] == "–"
