"""One adapter per benchmark, for the layout its public release ships (the HF dataset cards).

Each turns one raw row into an ``Item``: the question text (multiple-choice options rendered
as "(A) text" lines), the images as encoded bytes, and the ground truth the verifier scores —
the option letter for multiple choice (with "(L) option text" as an equivalent answer, so the
option's text is accepted too), "yes"/"no" for HallusionBench, the value for free-form
answers. A row an adapter cannot use raises ``BadRow``; ``read_benchmark`` counts it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from prism_ray.benchmarks.base import (
    LETTERS,
    Item,
    answer_letter,
    choice_truth,
    first_image,
    letter_of_option,
    numbered_images,
    option_list,
    question_field,
    render_choices,
    text_field,
)
from prism_ray.data.errors import BadRow, BadRowReason

YES_NO_HINT = "Answer yes or no."
MMMU_PRO_VISION_QUESTION = ("Answer the multiple-choice question shown in the image with the "
                            "letter of the correct option.")


def _info(row: dict[str, Any], **keys: str) -> dict[str, Any]:
    """Provenance kept in ``RLPrompt.extra_info`` (``{name: column}``, present ones only)."""
    return {name: row[column] for name, column in keys.items()
            if isinstance(row.get(column), (str, int, float))}


def mathvista(row: dict[str, Any], base: Path) -> Item:
    """AI4Math/MathVista (testmini parquet): ``pid, question, image`` (path) /
    ``decoded_image`` (image struct), ``choices`` (list or null), ``answer`` (the option's
    text for multi_choice), ``question_type``, ``answer_type``, ``precision``."""
    question = question_field(row, "question")
    image = first_image(row, base, "decoded_image", "image")
    kind = text_field(row, "question_type", required=False)
    choices = option_list(row.get("choices"), "choices")
    answer = text_field(row, "answer")
    info = _info(row, id="pid", question_type="question_type", answer_type="answer_type")
    if kind == "multi_choice" or (choices and kind != "free_form"):
        if not choices:
            raise BadRow(BadRowReason.MISSING_FIELD, "multi_choice question without choices")
        truth, equivalents = choice_truth(letter_of_option(answer, choices), choices)
        return Item(render_choices(question, choices), (image,), truth, equivalents, info)
    precision = row.get("precision")
    if row.get("answer_type") == "float" and isinstance(precision, (int, float)) and precision > 0:
        places = int(precision)
        question += f"\n(Answer with a number with {places} decimal place{'s' * (places > 1)}.)"
    return Item(question, (image,), answer, (), info)


_MATHVERSE_OPTION = re.compile(r"^\s*\(?([A-H])\)?\s*[:.：]\s*(.+?)\s*$", re.MULTILINE)


def mathverse(row: dict[str, Any], base: Path) -> Item:
    """AI4Math/MathVerse (testmini): ``question_for_eval`` (the question with its
    "Choices:" lines; falls back to ``question``), ``image``, ``answer`` (a letter for
    multi-choice), ``question_type`` ("multi-choice" / "free-form"), ``problem_version``."""
    question = question_field(row, "question_for_eval", "question", "query_cot")
    image = first_image(row, base, "image", "decoded_image", "image_path")
    answer = text_field(row, "answer")
    info = _info(row, id="sample_index", question_type="question_type",
                 version="problem_version")
    if text_field(row, "question_type", required=False).startswith("multi"):
        # The options are already in the text ("Choices:\nA:55°\nB:35°"), or only in the
        # image (vision-only versions): the letter is the truth, the text an equivalent.
        _, _, tail = question.rpartition("Choices:")
        found = _MATHVERSE_OPTION.findall(tail) if tail != question else []
        options = ([text for _, text in found]
                   if [letter for letter, _ in found] == list(LETTERS[:len(found)]) else None)
        letter = answer_letter(answer, len(options) if options else None)
        truth, equivalents = choice_truth(letter, options or None)
        return Item(question, (image,), truth, equivalents, info)
    return Item(question, (image,), answer, (), info)


def mathvision(row: dict[str, Any], base: Path) -> Item:
    """MathLLMs/MathVision: ``id, question, options`` (list; empty for free-form),
    ``image`` (path) / ``decoded_image`` (image struct), ``answer`` (a letter when there are
    options)."""
    question = question_field(row, "question")
    image = first_image(row, base, "decoded_image", "image")
    options = option_list(row.get("options"))
    answer = text_field(row, "answer")
    info = _info(row, id="id", subject="subject", level="level")
    if options:
        truth, equivalents = choice_truth(answer_letter(answer, len(options)), options)
        return Item(render_choices(question, options), (image,), truth, equivalents, info)
    return Item(question, (image,), answer, (), info)


_WEMATH_SPLIT = re.compile(r"\s*;\s*(?=[A-H]\s*[.．:：])")
_WEMATH_OPTION = re.compile(r"([A-H])\s*[.．:：]\s*(.*)", re.DOTALL)


def wemath(row: dict[str, Any], base: Path) -> Item:
    """We-Math (testmini, JSON or parquet): ``ID, question, option`` ("A. 3; B. 4; …"),
    ``image_path`` (path or image struct), ``answer`` (a letter)."""
    question = question_field(row, "question")
    image = first_image(row, base, "image_path", "image", "decoded_image")
    raw = text_field(row, "option", "options", required=False)
    parts = [_WEMATH_OPTION.fullmatch(p.strip()) for p in _WEMATH_SPLIT.split(raw)] if raw else []
    options = None
    if parts and all(parts) and [m.group(1) for m in parts] == list(LETTERS[:len(parts)]):
        options = [m.group(2).strip() for m in parts]
        question = render_choices(question, options)
    elif raw:
        question = f"{question}\nChoices: {raw}"
    letter = answer_letter(text_field(row, "answer"), len(options) if options else None)
    truth, equivalents = choice_truth(letter, options)
    return Item(question, (image,), truth, equivalents, _info(row, id="ID", split="split"))


def _open_answers(value: Any) -> tuple[str, tuple[str, ...]]:
    """An open answer: a value, or a (stringified) list of accepted values."""
    values = value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            values = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            values = value
    if isinstance(values, (list, tuple)):
        texts = [str(v).strip() for v in values if str(v).strip()]
        if texts:
            return texts[0], tuple(texts[1:])
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    if not text:
        raise BadRow(BadRowReason.MISSING_FIELD, "missing field 'answer'")
    return text, ()


def mmmu(row: dict[str, Any], base: Path) -> Item:
    """MMMU/MMMU (parquet per subject and split): ``id, question, options`` (a stringified
    list), ``image_1`` … ``image_7``, ``answer`` (a letter, or for open questions a value or
    a stringified list of values), ``question_type`` ("multiple-choice" / "open")."""
    question = question_field(row, "question")
    images = numbered_images(row, base)
    options = option_list(row.get("options"))
    kind = text_field(row, "question_type", required=False)
    info = _info(row, id="id", question_type="question_type", subfield="subfield")
    if kind == "multiple-choice" or (options and kind != "open"):
        if not options:
            raise BadRow(BadRowReason.MISSING_FIELD, "multiple-choice question without options")
        truth, equivalents = choice_truth(answer_letter(row.get("answer"), len(options)), options)
        return Item(render_choices(question, options), images, truth, equivalents, info)
    truth, equivalents = _open_answers(row.get("answer"))
    return Item(question, images, truth, equivalents, info)


def mmmu_pro(row: dict[str, Any], base: Path) -> Item:
    """MMMU/MMMU_Pro: "standard" configs (``id, question, options`` (stringified list),
    ``image_1`` …, ``answer`` letter) and the "vision" config (``id, image, options,
    answer``: the question and its options are in the screenshot)."""
    options = option_list(row.get("options"))
    if not options:
        raise BadRow(BadRowReason.MISSING_FIELD, "missing field 'options'")
    truth, equivalents = choice_truth(answer_letter(row.get("answer"), len(options)), options)
    info = _info(row, id="id", subject="subject")
    if "question" in row:
        question = render_choices(question_field(row, "question"), options)
        return Item(question, numbered_images(row, base), truth, equivalents, info)
    image = first_image(row, base, "image")
    return Item(MMMU_PRO_VISION_QUESTION, (image,), truth, equivalents, {**info, "vision": 1})


def hallusionbench(row: dict[str, Any], base: Path) -> Item:
    """HallusionBench (HallusionBench.json, or lmms-lab's parquet): ``question``,
    ``gt_answer`` ("1" yes / "0" no), ``filename`` (an image path relative to the JSON's
    directory; null for the questions asked without a figure, ``visual_input`` "0") or
    ``image``."""
    question = question_field(row, "question")
    gt = str(row.get("gt_answer", "")).strip()
    if gt not in ("0", "1"):
        raise BadRow(BadRowReason.MISSING_FIELD, f"gt_answer must be 0 or 1, got {gt[:20]!r}")
    keys = [k for k in ("filename", "image", "image_path") if row.get(k) not in (None, "")]
    if keys:
        images = (first_image(row, base, *keys),)
    elif str(row.get("visual_input", "")).strip() == "0":
        images = ()  # asked without a figure
    else:
        raise BadRow(BadRowReason.MISSING_IMAGE, "no 'filename' or 'image' for a visual question")
    info = _info(row, category="category", subcategory="subcategory", set_id="set_id",
                 figure_id="figure_id", question_id="question_id")
    return Item(f"{question}\n{YES_NO_HINT}", images, "yes" if gt == "1" else "no", (), info)
