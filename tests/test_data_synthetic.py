"""The synthetic task: determinism, products and schemas, teacher correctness, public fidelity."""

from __future__ import annotations

import inspect
import json
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prism_ray.config.schema import SyntheticData
from prism_ray.data import DataError, corpus_texts, synthesize
from prism_ray.data.fidelity import (
    ClaimCheck,
    caption_claims,
    fidelity_rate,
    scene_from_extra_info,
)
from prism_ray.data.questions import QuestionKind
from prism_ray.data.responses import public_response, student_segments, teacher_response
from prism_ray.data.scenes import Scene
from prism_ray.data.synthetic import COUNTS, DatasetSize, Example, sample_examples
from prism_ray.data.writers import ALIGN_SCHEMA, RL_SCHEMA
from prism_ray.prompting import FORMAT_PATTERN, SYSTEM_PROMPT

PRODUCTS = (
    "sft/teacher.json",
    "sft/public.json",
    "warmup/pairs.jsonl",
    "align/train.parquet",
    "rlvr/train.parquet",
    "eval/test.parquet",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    synthesize(out, seed=0, size="tiny")
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _answer_of(response: str) -> str:
    return re.search(r"<answer>\s*(.*?)\s*</answer>", response, re.DOTALL).group(1)


def _examples(n: int, seed: int = 0) -> list[Example]:
    return sample_examples(seed, "test", n)


@pytest.mark.timeout(60)
def test_same_seed_gives_identical_bytes(tiny: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "again", seed=0, size="tiny")
    assert _files(tmp_path / "again") == _files(tiny)


def test_different_seed_gives_different_data(tiny: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "other", seed=1, size="tiny")
    for product in PRODUCTS:
        assert (tmp_path / "other" / product).read_bytes() != (tiny / product).read_bytes()


def test_every_product_exists_with_its_row_count(tiny: Path) -> None:
    manifest = json.loads((tiny / "manifest.json").read_text())
    counts = COUNTS[DatasetSize.tiny]
    expected = [counts.sft_teacher, counts.sft_public, counts.warmup]
    expected += [counts.align, counts.rlvr, counts.eval]
    assert manifest["counts"] == dict(zip(PRODUCTS, expected, strict=True))
    assert (manifest["seed"], manifest["size"], manifest["image_size"]) == (0, "tiny", 64)
    rates = (manifest["public_perception_error"], manifest["public_reasoning_error"])
    assert rates == (SyntheticData().public_perception_error, SyntheticData().public_reasoning_error)
    assert len(json.loads((tiny / "sft/teacher.json").read_text())) == counts.sft_teacher
    assert len(json.loads((tiny / "sft/public.json").read_text())) == counts.sft_public
    assert len((tiny / "warmup/pairs.jsonl").read_text().splitlines()) == counts.warmup
    for product, count in zip(PRODUCTS[3:], expected[3:], strict=True):
        assert pq.read_metadata(tiny / product).num_rows == count


def test_sharegpt_rows_follow_llama_factory_layout(tiny: Path) -> None:
    for row in json.loads((tiny / "sft/teacher.json").read_text()):
        system, user, assistant = row["messages"]
        assert (system["role"], system["content"]) == ("system", SYSTEM_PROMPT)
        assert user["role"] == "user" and user["content"].startswith("<image>")
        assert assistant["role"] == "assistant" and FORMAT_PATTERN.match(assistant["content"])
        assert [(tiny / "sft" / image).is_file() for image in row["images"]] == [True]


def test_warmup_pairs_hold_the_format_segments(tiny: Path) -> None:
    for line in (tiny / "warmup/pairs.jsonl").read_text().splitlines():
        pair = json.loads(line)
        assert (tiny / "warmup" / pair["image"]).is_file()
        for who in ("teacher", "student"):
            response = f"{pair[f'{who}_caption']}\n{pair[f'{who}_cot']}"
            match = FORMAT_PATTERN.match(response)
            assert match and match.groups() == (pair[f"{who}_caption"], pair[f"{who}_cot"])
        assert pair["teacher_caption"] != pair["student_caption"]
        assert pair["teacher_cot"] != pair["student_cot"]


def test_parquet_schemas(tiny: Path) -> None:
    assert pq.read_schema(tiny / "align/train.parquet").remove_metadata() == ALIGN_SCHEMA
    for product in ("rlvr/train.parquet", "eval/test.parquet"):
        assert pq.read_schema(tiny / product).remove_metadata() == RL_SCHEMA
    rows = pq.read_table(tiny / "align/train.parquet").to_pylist()
    for row in rows:
        assert [turn["role"] for turn in row["prompt"]] == ["system", "user"]
        assert row["prompt"][1]["content"].startswith("<image>")
        assert row["images"][0]["bytes"].startswith(b"\x89PNG")
        assert row["reward_model"]["style"] == "rule"
        assert FORMAT_PATTERN.match(f"{row['teacher_caption']}\n{row['teacher_cot']}")
    assert {row["extra_info"]["split"] for row in rows} == {"train"}


def test_eval_scenes_are_held_out_of_every_training_product(tmp_path: Path) -> None:
    synthesize(tmp_path, seed=3, size="tiny")
    images = {
        p: {r[0]["bytes"] for r in pq.read_table(tmp_path / p).column("images").to_pylist()}
        for p in ("align/train.parquet", "rlvr/train.parquet", "eval/test.parquet")
    }
    train = images["align/train.parquet"] | images["rlvr/train.parquet"]
    train |= {p.read_bytes() for p in tmp_path.glob("*/images/*.png")}
    assert images["eval/test.parquet"].isdisjoint(train)


def test_progress_reports_every_product_to_completion(tmp_path: Path) -> None:
    messages: list[str] = []
    synthesize(tmp_path, size="tiny", progress=messages.append)
    counts = json.loads((tmp_path / "manifest.json").read_text())["counts"]
    for product, total in counts.items():
        assert f"synthesize {product}: {total}/{total}" in messages


def test_refuses_a_directory_holding_another_dataset(tmp_path: Path) -> None:
    synthesize(tmp_path, seed=0, size="tiny")
    synthesize(tmp_path, seed=0, size="tiny")  # the same dataset again is fine
    with pytest.raises(DataError, match="overwrite=True"):
        synthesize(tmp_path, seed=1, size="tiny")
    synthesize(tmp_path, seed=1, size="tiny", overwrite=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=str(foreign)):
        synthesize(foreign, size="tiny")


def _recomputed_answer(scene: Scene, kind: QuestionKind, text: str) -> str:
    """The ground truth, recomputed from the scene and the question's wording alone."""
    objects, digits = scene.objects, [o.digit for o in scene.objects if o.digit is not None]
    if kind is QuestionKind.COUNT_COLOR:
        color = re.match(r"How many (\w+) shapes", text).group(1)
        return str(sum(o.color == color for o in objects))
    if kind is QuestionKind.COUNT_SHAPE:
        shape = re.match(r"How many (\w+)s are", text).group(1)
        return str(sum(o.shape == shape for o in objects))
    if kind is QuestionKind.SUM_DIGITS:
        color = re.search(r"on the (\w+) shapes", text).group(1)
        return str(sum(o.digit or 0 for o in objects if o.color == color))
    if kind is QuestionKind.DIGIT_RANGE:
        return str(max(digits) - min(digits))
    options = dict(re.findall(r"\(([A-H])\) (\w+)", text))
    if kind is QuestionKind.COMPARE_SHAPES:
        first, second = re.match(r"Are there more (\w+)s than (\w+)s", text).groups()
        more = sum(o.shape == first for o in objects) > sum(o.shape == second for o in objects)
        correct = "yes" if more else "no"
    else:
        counts = Counter(o.color for o in objects).most_common()
        assert len(counts) == 1 or counts[0][1] > counts[1][1], "the question must be well-posed"
        correct = counts[0][0]
    return next(letter for letter, option in options.items() if option == correct)


def test_teacher_answers_are_correct_and_captions_complete() -> None:
    examples = _examples(400)
    assert {e.question.kind for e in examples} == set(QuestionKind)
    for example in examples:
        scene, question = example.scene, example.question
        response = teacher_response(scene, question)
        match = FORMAT_PATTERN.match(response)
        assert match, response
        assert _answer_of(response) == question.answer
        assert question.answer == _recomputed_answer(scene, question.kind, question.text)
        bullets = [line[2:] for line in match.group(1).splitlines() if line.startswith("- ")]
        assert len(bullets) == len(scene.objects) + 1  # a style header, then one per object
        for obj, bullet in zip(scene.objects, bullets[1:], strict=True):
            digit = f" with digit {obj.digit}" if obj.digit is not None else ""
            assert bullet == f"{obj.color} {obj.shape}{digit}, {obj.position}"


def test_teacher_responses_are_short() -> None:
    lengths = [len(teacher_response(e.scene, e.question).split()) for e in _examples(200)]
    assert max(lengths) < 80  # whitespace words; about 60-120 BPE tokens at most


def test_public_source_is_lower_fidelity_at_the_configured_rate() -> None:
    examples, rng = _examples(600), random.Random(0)
    responses = [public_response(e.scene, e.question, rng) for e in examples]
    assert all(FORMAT_PATTERN.match(response) for response in responses)
    wrong = sum(
        _answer_of(r) != e.question.answer for r, e in zip(responses, examples, strict=True)
    )
    assert 0.24 < wrong / len(examples) < 0.36  # default rate 0.3
    teacher_captions = [
        FORMAT_PATTERN.match(teacher_response(e.scene, e.question)).group(1) for e in examples
    ]
    same = sum(
        FORMAT_PATTERN.match(r).group(1) == t
        for r, t in zip(responses, teacher_captions, strict=True)
    )
    assert same / len(examples) < 0.5


def _public_rows(root: Path) -> list[tuple[str, Example]]:
    """(written public response, its example), rebuilt from the same seeded streams."""
    held_out = frozenset(e.scene for e in sample_examples(0, "eval", COUNTS[DatasetSize.tiny].eval))
    rows = json.loads((root / "sft/public.json").read_text())
    examples = sample_examples(0, "sft_public", len(rows), held_out)
    return [(row["messages"][-1]["content"], e) for row, e in zip(rows, examples, strict=True)]


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_public_reasoning_error_reaches_the_written_file(tmp_path: Path, rate: float) -> None:
    synthesize(tmp_path, seed=0, size="tiny", public_reasoning_error=rate)
    rows = _public_rows(tmp_path)
    wrong = sum(_answer_of(response) != e.question.answer for response, e in rows)
    assert wrong == rate * len(rows)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["public_reasoning_error"] == rate


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.75])
def test_public_perception_error_reaches_the_written_file(tmp_path: Path, rate: float) -> None:
    synthesize(tmp_path, seed=0, size="tiny", public_perception_error=rate)
    fidelity = fidelity_rate((response, e.scene) for response, e in _public_rows(tmp_path))
    assert (fidelity == 1.0) if rate == 0.0 else (fidelity < 1.0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["public_perception_error"] == rate


def test_rates_outside_zero_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="perception_error"):
        synthesize(tmp_path, size="tiny", public_perception_error=1.2)
    assert not any(tmp_path.iterdir())


def test_schema_defaults_are_the_synthesis_defaults() -> None:
    source, defaults = SyntheticData(), inspect.signature(synthesize).parameters
    assert source.public_perception_error == defaults["public_perception_error"].default
    assert source.public_reasoning_error == defaults["public_reasoning_error"].default


def test_rl_rows_carry_their_scene(tiny: Path) -> None:
    eval_examples = sample_examples(0, "eval", COUNTS[DatasetSize.tiny].eval)
    rows = pq.read_table(tiny / "eval/test.parquet").to_pylist()
    assert [scene_from_extra_info(r["extra_info"]) for r in rows] == [
        e.scene for e in eval_examples
    ]
    for row in pq.read_table(tiny / "align/train.parquet").to_pylist():
        scene = scene_from_extra_info(row["extra_info"])
        assert scene is not None
        assert caption_claims(row["teacher_caption"], scene) == ClaimCheck(
            _claim_count(scene), _claim_count(scene)
        )
    for row in pq.read_table(tiny / "rlvr/train.parquet").to_pylist():
        assert scene_from_extra_info(row["extra_info"]) is not None


def _claim_count(scene: Scene) -> int:
    return 1 + 3 * len(scene.objects) + len(scene.digits())


def test_student_segments_always_differ_from_the_teacher() -> None:
    rng = random.Random(0)
    for example in _examples(300):
        teacher = FORMAT_PATTERN.match(teacher_response(example.scene, example.question)).groups()
        student = student_segments(example.scene, example.question, rng)
        assert FORMAT_PATTERN.match("\n".join(student))
        assert student[0] != teacher[0] and student[1] != teacher[1]


def test_corpus_texts_are_deterministic_and_exactly_n() -> None:
    texts = list(corpus_texts(seed=0, n=50))
    assert len(texts) == 50 and texts[0] == SYSTEM_PROMPT
    assert texts == list(corpus_texts(seed=0, n=50))
    assert texts != list(corpus_texts(seed=1, n=50))
    assert any(FORMAT_PATTERN.match(text) for text in texts[1:])
