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
from pydantic import ValidationError

from prism_ray.config.run import RunConfig
from prism_ray.config.schema import SyntheticData
from prism_ray.data import DataError, corpus_texts, synthesize
from prism_ray.data.fidelity import (
    ClaimCheck,
    caption_claims,
    fidelity_rate,
    scene_from_extra_info,
)
from prism_ray.data.questions import OPTION_LETTERS, Question, QuestionKind
from prism_ray.data.responses import (
    drifted_answer,
    matched_caption_lines,
    public_fidelity,
    public_response,
    student_segments,
    teacher_caption_lines,
    teacher_response,
)
from prism_ray.data.scenes import Scene
from prism_ray.data.synthetic import COUNTS, DatasetSize, Example, sample_examples
from prism_ray.data.writers import ALIGN_SCHEMA, RL_SCHEMA
from prism_ray.prompting import FORMAT_PATTERN

SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default
PRODUCTS = (
    "sft/teacher.json",
    "sft/public.json",
    "warmup/pairs.jsonl",
    "align/train.parquet",
    "rlvr/train.parquet",
    "eval/test.parquet",
)
# The knobs of the task that `synthesize` takes and its manifest records, with the schema's
# defaults.
TASK_SETTINGS = (
    "image_size", "public_perception_error", "public_reasoning_error", "public_answer_drift",
    "digit_probability", "warmup_matched_negatives",
)  # fmt: skip
DIGIT_KINDS = {QuestionKind.SUM_DIGITS, QuestionKind.DIGIT_RANGE}
# The embedded task has no digits; tests that need digit questions or digit rendering ask for
# them at the rate the task used to have.
WITH_DIGITS = 0.5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    synthesize(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with digits on about half the shapes (and so digit questions)."""
    out = tmp_path_factory.mktemp("tiny-digits")
    synthesize(out, seed=0, size="tiny", digit_probability=WITH_DIGITS)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _answer_of(response: str) -> str:
    return re.search(r"<answer>\s*(.*?)\s*</answer>", response, re.DOTALL).group(1)


def _reasoning_of(response: str) -> str:
    return re.search(r"<think>\n(.*?)\n</think>", response, re.DOTALL).group(1)


def _examples(n: int, seed: int = 0, digit_probability: float = WITH_DIGITS) -> list[Example]:
    return sample_examples(seed, "test", n, digit_probability=digit_probability)


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
    assert (manifest["seed"], manifest["size"]) == (0, "tiny")
    defaults = SyntheticData()
    assert {name: manifest[name] for name in TASK_SETTINGS} == {
        name: getattr(defaults, name) for name in TASK_SETTINGS
    }
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
    assert 0.24 < wrong / len(examples) < 0.36  # the PUBLIC profile's rate 0.3, no drift
    teacher_captions = [
        FORMAT_PATTERN.match(teacher_response(e.scene, e.question)).group(1) for e in examples
    ]
    same = sum(
        FORMAT_PATTERN.match(r).group(1) == t
        for r, t in zip(responses, teacher_captions, strict=True)
    )
    assert same / len(examples) < 0.5


def _eval_examples(root: Path) -> list[Example]:
    """The eval examples of a written dataset, rebuilt from its manifest's seed and settings."""
    manifest = json.loads((root / "manifest.json").read_text())
    count = manifest["counts"]["eval/test.parquet"]
    return sample_examples(
        manifest["seed"], "eval", count, digit_probability=manifest["digit_probability"]
    )


def _public_rows(root: Path) -> list[tuple[str, Example]]:
    """(written public response, its example), rebuilt from the same seeded streams."""
    manifest = json.loads((root / "manifest.json").read_text())
    held_out = frozenset(e.scene for e in _eval_examples(root))
    rows = json.loads((root / "sft/public.json").read_text())
    examples = sample_examples(
        manifest["seed"], "sft_public", len(rows), held_out, manifest["digit_probability"]
    )
    return [(row["messages"][-1]["content"], e) for row, e in zip(rows, examples, strict=True)]


def _is_shortcut(response: str, question: Question) -> bool:
    """A wrong answer reached by the shortcut "The answer is X." (public_reasoning_error)."""
    answer = _answer_of(response)
    return answer != question.answer and _reasoning_of(response).endswith(
        f"The answer is {answer}."
    )


def _is_drifted(response: str, question: Question) -> bool:
    """Right steps (all of them, or the conclusion alone) ending in the drifted answer."""
    kept = {"\n".join(question.steps), question.steps[-1]}
    return _reasoning_of(response) in kept and _answer_of(response) == drifted_answer(question)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_public_reasoning_error_reaches_the_written_file(tmp_path: Path, rate: float) -> None:
    # No drift, so every wrong answer is a shortcut and the shortcut rate is `rate` itself.
    synthesize(tmp_path, seed=0, size="tiny", public_reasoning_error=rate, public_answer_drift=0)
    rows = _public_rows(tmp_path)
    wrong = sum(_answer_of(response) != e.question.answer for response, e in rows)
    assert wrong == rate * len(rows)
    assert sum(_is_shortcut(response, e.question) for response, e in rows) == wrong
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["public_reasoning_error"], manifest["public_answer_drift"]) == (rate, 0)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_public_answer_drift_reaches_the_written_file(tmp_path: Path, rate: float) -> None:
    synthesize(tmp_path, seed=0, size="tiny", public_reasoning_error=0, public_answer_drift=rate)
    rows = _public_rows(tmp_path)
    drifted = sum(_is_drifted(response, e.question) for response, e in rows)
    right = sum(_answer_of(response) == e.question.answer for response, e in rows)
    assert (drifted, right) == (rate * len(rows), (1 - rate) * len(rows))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["public_answer_drift"], manifest["public_reasoning_error"]) == (rate, 0)


def test_public_answer_drift_in_the_written_file_is_about_the_requested_rate(
    tmp_path: Path,
) -> None:
    synthesize(tmp_path, seed=0, size="tiny", public_reasoning_error=0, public_answer_drift=0.5)
    rows = _public_rows(tmp_path)
    drifted = sum(_is_drifted(response, e.question) for response, e in rows)
    assert 0.25 < drifted / len(rows) < 0.75  # 24 rows: a loose band around 0.5
    # Without shortcuts every answer is either right or the drifted one.
    right = sum(_answer_of(response) == e.question.answer for response, e in rows)
    assert drifted + right == len(rows)


def test_public_answer_drift_keeps_the_steps_at_about_the_requested_rate() -> None:
    examples, rng = _examples(800), random.Random(0)
    fidelity = public_fidelity(0.25, 0.0, 0.6)
    responses = [public_response(e.scene, e.question, rng, fidelity) for e in examples]
    drifted = sum(_is_drifted(r, e.question) for r, e in zip(responses, examples, strict=True))
    assert 0.54 < drifted / len(examples) < 0.66
    wrong = sum(
        _answer_of(r) != e.question.answer for r, e in zip(responses, examples, strict=True)
    )
    assert wrong == drifted  # no shortcuts at reasoning error 0: every wrong answer drifted


def test_drifted_answer_is_one_more_or_the_next_option() -> None:
    count = Question(QuestionKind.COUNT_COLOR, "How many red shapes are there?", "3", ("x",))
    assert drifted_answer(count) == "4"
    assert drifted_answer(Question(QuestionKind.COUNT_SHAPE, "q", "0", ("x",))) == "1"
    colors = ("red", "blue", "green", "yellow")
    for answer, drifted in (("A", "B"), ("C", "D"), ("D", "A")):  # cyclically
        choice = Question(QuestionKind.MOST_FREQUENT_COLOR, "q", answer, ("x",), colors)
        assert drifted_answer(choice) == drifted
    for answer, drifted in (("A", "B"), ("B", "A")):
        yes_no = Question(QuestionKind.COMPARE_SHAPES, "q", answer, ("x",), ("yes", "no"))
        assert drifted_answer(yes_no) == drifted
    for example in _examples(300):  # every kind: always wrong, always a valid answer
        question = example.question
        drifted = drifted_answer(question)
        assert drifted != question.answer
        if question.options:
            assert drifted in OPTION_LETTERS[: len(question.options)]
        else:
            assert int(drifted) == int(question.answer) + 1


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.75])
def test_public_perception_error_reaches_the_written_file(tmp_path: Path, rate: float) -> None:
    # With digits, so the digit claims (and drop_digit) are measured too.
    synthesize(
        tmp_path, seed=0, size="tiny", public_perception_error=rate, digit_probability=WITH_DIGITS
    )
    fidelity = fidelity_rate((response, e.scene) for response, e in _public_rows(tmp_path))
    assert (fidelity == 1.0) if rate == 0.0 else (fidelity < 1.0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["public_perception_error"] == rate


@pytest.mark.parametrize("rate", ["public_perception_error", "public_answer_drift"])
def test_rates_outside_zero_one_are_refused(tmp_path: Path, rate: str) -> None:
    with pytest.raises(ValueError, match=rate.removeprefix("public_")):
        synthesize(tmp_path, size="tiny", **{rate: 1.2})
    assert not any(tmp_path.iterdir())


def test_schema_defaults_are_the_synthesis_defaults() -> None:
    source, defaults = SyntheticData(), inspect.signature(synthesize).parameters
    for name in TASK_SETTINGS:
        assert getattr(source, name) == defaults[name].default, name


@pytest.mark.parametrize("field", ["public_answer_drift", "digit_probability",
                                   "warmup_matched_negatives"])
def test_schema_holds_the_new_rates_to_zero_one(field: str) -> None:
    assert getattr(SyntheticData(**{field: 0.0}), field) == 0.0
    assert getattr(SyntheticData(**{field: 1.0}), field) == 1.0
    for bad in (-0.1, 1.1):
        with pytest.raises(ValidationError, match=field):
            SyntheticData(**{field: bad})


def test_no_digits_means_no_digit_questions() -> None:
    examples = _examples(400, digit_probability=0.0)
    assert all(not e.scene.digits() for e in examples)
    assert {e.question.kind for e in examples} == set(QuestionKind) - DIGIT_KINDS
    assert all("digit" not in teacher_response(e.scene, e.question) for e in examples)


def test_the_default_task_writes_no_digits(tiny: Path) -> None:
    assert SyntheticData().digit_probability == 0.0
    for product in ("align/train.parquet", "rlvr/train.parquet", "eval/test.parquet"):
        for row in pq.read_table(tiny / product).to_pylist():
            assert not scene_from_extra_info(row["extra_info"]).digits()
            assert "digit" not in row["prompt"][1]["content"]
    for row in json.loads((tiny / "sft/teacher.json").read_text()):
        assert all("digit" not in message["content"] for message in row["messages"])
    for line in (tiny / "warmup/pairs.jsonl").read_text().splitlines():
        pair = json.loads(line)
        assert "digit" not in pair["teacher_caption"] + pair["student_caption"]


def test_rl_rows_carry_their_scene(tiny_digits: Path) -> None:
    tiny = tiny_digits  # digits, so scenes with and without them travel
    eval_examples = _eval_examples(tiny)
    rows = pq.read_table(tiny / "eval/test.parquet").to_pylist()
    assert [scene_from_extra_info(r["extra_info"]) for r in rows] == [
        e.scene for e in eval_examples
    ]
    assert any(e.scene.digits() for e in eval_examples)
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


def test_matched_captions_keep_the_teachers_form_with_one_claim_false() -> None:
    rng = random.Random(0)
    kinds = Counter()
    for example in _examples(300):
        teacher = teacher_caption_lines(example.scene)
        matched = matched_caption_lines(example.scene, rng)
        assert matched[0] == teacher[0] and len(matched) == len(teacher)  # text can't tell
        assert matched != teacher
        claims = caption_claims("\n".join(matched), example.scene)
        assert claims.total == _claim_count(example.scene)
        false = claims.total - claims.true
        # one wrong colour or shape; or a moved object, whose line is false on every count
        assert false in (1, 3, 4)
        changed = sum(a != b for a, b in zip(matched[1:], teacher[1:]))
        kinds["moved" if false > 1 else "attribute"] += 1
        assert changed >= 1
    assert kinds["moved"] > 30 and kinds["attribute"] > 100


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_warmup_matched_negatives_reach_the_written_pairs(tmp_path: Path, rate: float) -> None:
    synthesize(tmp_path, seed=0, size="tiny", warmup_matched_negatives=rate)
    pairs = [json.loads(line) for line in (tmp_path / "warmup/pairs.jsonl").read_text().splitlines()]
    same_form = sum(len(p["student_caption"].splitlines()) == len(p["teacher_caption"].splitlines())
                    and p["student_caption"].splitlines()[1] == p["teacher_caption"].splitlines()[1]
                    for p in pairs)  # line 0 is the <caption> tag, line 1 the header
    if rate == 0.0:
        assert same_form < len(pairs) / 2
    elif rate == 1.0:
        assert same_form == len(pairs)
    else:
        assert 0 < same_form < len(pairs)
    assert json.loads((tmp_path / "manifest.json").read_text())["warmup_matched_negatives"] == rate


def test_corpus_texts_are_deterministic_and_exactly_n() -> None:
    texts = list(corpus_texts(seed=0, n=50, system_prompt=SYSTEM_PROMPT))
    assert len(texts) == 50 and texts[0] == SYSTEM_PROMPT
    assert texts == list(corpus_texts(seed=0, n=50, system_prompt=SYSTEM_PROMPT))
    assert texts != list(corpus_texts(seed=1, n=50, system_prompt=SYSTEM_PROMPT))
    assert list(corpus_texts(seed=0, n=49, system_prompt=None)) == texts[1:]
    assert any(FORMAT_PATTERN.match(text) for text in texts[1:])
