"""Perception fidelity: caption claims checked against the scene, teacher exact, public degraded."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_ray.data import read_rl_parquet
from prism_ray.data.fidelity import (
    ClaimCheck,
    caption_claims,
    caption_fidelity,
    fidelity_rate,
    scene_from_extra_info,
    scene_from_json,
    scene_to_json,
)
from prism_ray.data.responses import (
    PERCEPTION_ERRORS,
    PUBLIC,
    PUBLIC_PERCEPTION_ERROR,
    degraded_caption_lines,
    public_fidelity,
    public_response,
    teacher_caption_lines,
    teacher_response,
)
from prism_ray.data.scenes import Scene, SceneObject, render_png
from prism_ray.data.synthetic import sample_examples
from prism_ray.data.writers import rl_row
from prism_ray.prompting import format_response

# red circle "3" top-left, blue square centre, green triangle "7" bottom-right.
SCENE = Scene(
    (
        SceneObject("red", "circle", 0, 3),
        SceneObject("blue", "square", 4),
        SceneObject("green", "triangle", 8, 7),
    )
)
HEADER3 = "- Flat drawing, white background, 3 shapes on a 3x3 grid."


def caption(*lines: str) -> str:
    return "<caption>\n" + "\n".join(lines) + "\n</caption>"


def _claims(scene: Scene) -> int:
    """What a complete caption claims: the count, then existence, colour, shape and digit."""
    return 1 + 3 * len(scene.objects) + len(scene.digits())


def test_teacher_captions_are_exactly_true_on_many_scenes() -> None:
    for example in sample_examples(seed=5, product="fidelity", count=1000):
        check = caption_fidelity(teacher_response(example.scene, example.question), example.scene)
        assert check == ClaimCheck(_claims(example.scene), _claims(example.scene))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # the teacher's own caption: header 1, circle 4, square 3, triangle 4
        ((HEADER3, "- red circle with digit 3, top-left", "- blue square, center",
          "- green triangle with digit 7, bottom-right"), (12, 12)),
        # miscounted header; a singular header is read too
        (("- Flat drawing, white background, 4 shapes on a 3x3 grid.",), (0, 1)),
        (("- Flat drawing, white background, 1 shape on a 3x3 grid.",), (0, 1)),
        # wrong colour, wrong shape: one false claim each
        (("- yellow circle with digit 3, top-left",), (3, 4)),
        (("- blue triangle, center",), (2, 3)),
        # wrong digit; a digit named for an object that has none
        (("- red circle with digit 5, top-left",), (3, 4)),
        (("- blue square with digit 2, center",), (3, 4)),
        # a digit not mentioned is no claim (an omission)
        (("- red circle, top-left",), (3, 3)),
        # hallucinated objects: every claim about an empty cell is false
        (("- yellow square, top",), (0, 3)),
        (("- red circle with digit 3, top",), (0, 4)),
        # a dropped object costs only through the header count
        (("- Flat drawing, white background, 2 shapes on a 3x3 grid.", "- blue square, center",
          "- green triangle with digit 7, bottom-right"), (7, 8)),
        # unparseable lines (including an unknown position) are one false claim each
        (("- a nice picture", "- red circle, middle"), (0, 2)),
        # blank lines and bare bullets claim nothing
        (("", "-", "   "), (0, 0)),
        # case, bullet style and a trailing full stop do not matter
        (("* Red Circle With Digit 3, Top-Left.",), (4, 4)),
    ],
)
def test_hand_made_captions_have_exact_counts(lines: tuple[str, ...], expected: tuple) -> None:
    assert caption_claims(caption(*lines), SCENE) == ClaimCheck(*expected)


def test_a_degraded_caption_adds_up_its_errors() -> None:
    text = caption(
        "- Flat drawing, white background, 3 shapes on a 3x3 grid.",  # true (1/1)
        "- red square with digit 3, top-left",  # wrong shape (3/4)
        "- blue square, center",  # true (3/3)
        "- yellow circle with digit 1, right",  # hallucinated (0/4)
    )  # the green triangle is left out: no claim
    assert caption_claims(text, SCENE) == ClaimCheck(7, 12)
    assert caption_claims(text.removeprefix("<caption>").removesuffix("</caption>"), SCENE) == (
        ClaimCheck(7, 12)
    )


def test_caption_fidelity_goes_through_the_format_gate() -> None:
    lines = ["Flat drawing, white background, 3 shapes on a 3x3 grid.", "blue circle, center"]
    response = format_response(lines, "Count: 3.", "3")
    assert caption_fidelity(response, SCENE) == ClaimCheck(3, 4)
    assert caption_fidelity("<think>x</think><answer>3</answer>", SCENE) is None
    assert caption_fidelity(response + " trailing", SCENE) is None


def test_fidelity_rate_is_the_share_of_true_claims() -> None:
    good = format_response(["red circle with digit 3, top-left"], "x", "1")  # 4/4
    bad = format_response(["yellow square, top"], "x", "1")  # 0/3
    assert fidelity_rate([(good, SCENE), (bad, SCENE)]) == pytest.approx(4 / 7)
    # no scene, or no valid format: left out; nothing left: no fidelity at all
    assert fidelity_rate([(good, SCENE), (bad, None), ("garbage", SCENE)]) == 1.0
    assert fidelity_rate([(bad, None), ("garbage", SCENE)]) is None
    assert fidelity_rate([]) is None


def test_scene_json_round_trips_and_bad_scenes_are_none() -> None:
    text = scene_to_json(SCENE)
    assert " " not in text and scene_from_json(text) == SCENE
    assert scene_from_extra_info({"split": "test", "scene": text}) == SCENE
    assert scene_from_extra_info({"split": "test"}) is None
    assert scene_from_extra_info({"scene": None}) is None
    for bad in ("not json", "{}", "[1]", '[{"color": "red"}]', '[{"color":"red","shape":"x",'
                '"cell":9,"digit":null}]'):
        assert scene_from_extra_info({"scene": bad}) is None


def test_rl_parquet_without_a_scene_loads_and_reports_no_fidelity(tmp_path: Path) -> None:
    row = rl_row(data_source="user", question="How many?", image_png=render_png(SCENE),
                 ground_truth="3", equivalent_answers=[], extra_info={"split": "test"},
                 ability="x", system_prompt=None)
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "user.parquet")
    (prompt,) = read_rl_parquet(tmp_path / "user.parquet").records
    assert prompt.extra_info == {"split": "test"}
    assert scene_from_extra_info(prompt.extra_info) is None


@settings(max_examples=300, deadline=None)
@given(text=st.text(), objects=st.lists(st.tuples(st.sampled_from(["red", "blue"]),
                                                   st.sampled_from(["circle", "square"]),
                                                   st.integers(0, 8),
                                                   st.none() | st.integers(1, 9)), max_size=5))
def test_arbitrary_text_never_raises(text: str, objects: list) -> None:
    scene = Scene(tuple(SceneObject(*o) for o in objects))
    for candidate in (text, caption(text), f"<caption>{text}</caption><think></think>"
                                           f"<answer></answer>"):
        check = caption_claims(candidate, scene)
        assert 0 <= check.true <= check.total
        full = caption_fidelity(candidate, scene)
        assert full is None or 0 <= full.true <= full.total
    assert scene_from_extra_info({"scene": text}) is None or isinstance(
        scene_from_extra_info({"scene": text}), Scene
    )


def _public_fidelity_of(perception_error: float, n: int = 1000) -> float:
    rng, fidelity = random.Random(0), public_fidelity(perception_error, PUBLIC.wrong_answer)
    examples = sample_examples(seed=1, product="fidelity", count=n)
    rate = fidelity_rate(
        (public_response(e.scene, e.question, rng, fidelity), e.scene) for e in examples
    )
    assert rate is not None
    return rate


def test_public_fidelity_falls_as_the_perception_error_rises() -> None:
    assert _public_fidelity_of(0.0, 300) == 1.0  # no perception error: as true as the teacher
    default = _public_fidelity_of(PUBLIC_PERCEPTION_ERROR)
    assert 0.7 < default < 0.95
    assert _public_fidelity_of(0.6) < default


ONLY = dict.fromkeys(PERCEPTION_ERRORS, 0.0) | {"drop_header": 0.0}


@pytest.mark.parametrize(
    ("error", "false_claims"),
    [
        ("wrong_color", lambda s: len(s.objects)),  # one false colour per object
        ("wrong_shape", lambda s: len(s.objects)),
        ("miscount", lambda s: 1),  # the header only
        ("drop_digit", lambda s: 0),  # omissions are no claims
    ],
)
def test_each_perception_error_costs_exactly_its_claims(error: str, false_claims) -> None:
    fidelity = replace(PUBLIC, **(ONLY | {error: 1.0}))
    rng = random.Random(0)
    for example in sample_examples(seed=3, product="fidelity", count=200):
        scene = example.scene
        check = caption_claims(caption(*(f"- {line}" for line in
                                         degraded_caption_lines(scene, rng, fidelity))), scene)
        total = _claims(scene) - (len(scene.digits()) if error == "drop_digit" else 0)
        assert check == ClaimCheck(total - false_claims(scene), total)


def test_hallucinated_and_dropped_objects_cost_their_claims() -> None:
    rng = random.Random(0)
    hallucinate, drop = (replace(PUBLIC, **(ONLY | {e: 1.0})) for e in ("hallucinate",
                                                                        "drop_object"))
    for example in sample_examples(seed=4, product="fidelity", count=200):
        scene = example.scene
        lines = degraded_caption_lines(scene, rng, hallucinate)
        new_lines = set(lines) - set(teacher_caption_lines(scene))  # the header and the made-up
        made_up = 4 if any("digit" in line for line in new_lines) else 3
        # the header counts the made-up object too: false; the made-up line: all false
        assert caption_claims(caption(*lines), scene) == ClaimCheck(
            _claims(scene) - 1, _claims(scene) + made_up
        )
        first = scene.objects[0]  # everything dropped: the first object is kept, "1 shape"
        kept = 3 + (first.digit is not None)
        assert caption_claims(caption(*degraded_caption_lines(scene, rng, drop)), scene) == (
            ClaimCheck(kept, kept + 1)
        )


def test_public_fidelity_rejects_rates_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="perception_error"):
        public_fidelity(1.5, 0.3)
    with pytest.raises(ValueError, match="reasoning_error"):
        public_fidelity(0.25, -0.1)
    assert public_fidelity(1.0, 0.3).drop_object == 1.0  # capped probabilities
    assert public_fidelity(PUBLIC_PERCEPTION_ERROR, PUBLIC.wrong_answer) == PUBLIC
