"""The embedded synthetic multimodal reasoning task, written in every format of PRISM_SPEC §7.

Scenes of coloured shapes (some with digits) on a 3x3 grid; questions that need perception and a
short chain of reasoning; a programmatic black-box teacher; a lower-fidelity public source;
student segments for the discriminator warm-up. Everything is derived from `random.Random`
streams seeded by (seed, product, purpose), so a seed and a size fix every byte written, and
changing one product's noise never reshuffles another product's scenes.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_ray.config.run import RunConfig
from prism_ray.config.schema import SyntheticData, SyntheticSize
from prism_ray.data.errors import DataError
from prism_ray.data.fidelity import scene_to_json
from prism_ray.data.questions import Question, sample_question
from prism_ray.data.responses import (
    Fidelity,
    public_fidelity,
    public_response,
    split_segments,
    student_segments,
    teacher_response,
)
from prism_ray.data.scenes import DIGIT_PROBABILITY, Scene, render_png, sample_scene
from prism_ray.data.writers import (
    ALIGN_SCHEMA,
    RL_SCHEMA,
    rl_row,
    sharegpt_row,
    write_json,
    write_jsonl,
    write_parquet,
)

FORMAT_VERSION = 2  # 2: RL rows carry extra_info.scene; public captions err in more ways
DATA_SOURCE = "prism_synthetic_shapes"
ABILITY = "visual_reasoning"
Progress = Callable[[str], None]


DatasetSize = SyntheticSize  # one enum for config and synthesis
_TASK = SyntheticData()  # the schema holds the task's defaults; synthesize takes them from it
_SYSTEM_PROMPT = RunConfig.model_fields["system_prompt"].default


@dataclass(frozen=True)
class ProductCounts:
    sft_teacher: int
    sft_public: int
    warmup: int
    align: int
    rlvr: int
    eval: int


COUNTS: dict[DatasetSize, ProductCounts] = {
    DatasetSize.tiny: ProductCounts(24, 24, 16, 12, 12, 16),
    # Public demonstrations outnumber the teacher's about 9:1, as in the paper (1.26M vs 113K).
    DatasetSize.small: ProductCounts(500, 4500, 1024, 256, 512, 256),
    DatasetSize.full: ProductCounts(5000, 45000, 10240, 2560, 5120, 1280),
}
PRODUCT_FILES = {
    "sft_teacher": "sft/teacher.json",
    "sft_public": "sft/public.json",
    "warmup": "warmup/pairs.jsonl",
    "align": "align/train.parquet",
    "rlvr": "rlvr/train.parquet",
    "eval": "eval/test.parquet",
}
# What synthesize owns inside an output directory (and removes on overwrite); nothing else.
_OWNED = ("sft", "warmup", "align", "rlvr", "eval", "manifest.json")


@dataclass(frozen=True)
class Example:
    scene: Scene
    question: Question


def _rng(seed: int, product: str, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: stable across processes and platforms.
    return random.Random(f"prism-ray/synthetic/{seed}/{product}/{purpose}")


def sample_examples(
    seed: int, product: str, count: int, held_out: frozenset[Scene] = frozenset(),
    digit_probability: float = DIGIT_PROBABILITY,
) -> list[Example]:
    """`count` (scene, question) examples of one product, never reusing a held-out scene."""
    rng = _rng(seed, product, "scenes")
    examples: list[Example] = []
    while len(examples) < count:
        scene = sample_scene(rng, digit_probability)
        if scene not in held_out:
            examples.append(Example(scene, sample_question(scene, rng)))
    return examples


def corpus_texts(seed: int, n: int, system_prompt: str | None) -> Iterator[str]:
    """Exactly `n` texts for tokenizer training: the system prompt (if any), then questions,
    teacher and public responses of fresh scenes (no images are rendered)."""
    return itertools.islice(_corpus_stream(seed, system_prompt), n)


def _corpus_stream(seed: int, system_prompt: str | None) -> Iterator[str]:
    if system_prompt:
        yield system_prompt
    noise = _rng(seed, "corpus", "public")
    for example in _endless_examples(_rng(seed, "corpus", "scenes")):
        yield example.question.text
        yield teacher_response(example.scene, example.question)
        yield public_response(example.scene, example.question, noise)


def _endless_examples(rng: random.Random) -> Iterator[Example]:
    while True:
        scene = sample_scene(rng)
        yield Example(scene, sample_question(scene, rng))


def synthesize(
    out_dir: str | Path,
    seed: int = 0,
    size: DatasetSize | str = DatasetSize.tiny,
    image_size: int = _TASK.image_size,
    progress: Progress | None = None,
    overwrite: bool = False,
    public_perception_error: float = _TASK.public_perception_error,
    public_reasoning_error: float = _TASK.public_reasoning_error,
    public_answer_drift: float = _TASK.public_answer_drift,
    digit_probability: float = _TASK.digit_probability,
    system_prompt: str | None = _SYSTEM_PROMPT,
    warmup_matched_negatives: float = _TASK.warmup_matched_negatives,
) -> dict[str, Any]:
    """Write every product of PRISM_SPEC §7 under `out_dir` and return the manifest.

    Prompts carry `system_prompt` as their system turn (none when None or empty), as a run
    with that `RunConfig.system_prompt` encodes them.

    The public demonstrations err at the given rates (see `responses.public_fidelity`); the
    teacher never does. Refuses (DataError) a directory holding anything else unless
    `overwrite`, which then removes only the products this function writes. Rewriting the
    same dataset is allowed (same bytes).

    The products are written to a hidden sibling of `out_dir` and moved in when all are
    complete, so a run that fails or is interrupted leaves `out_dir` as it was.
    """
    import tempfile

    for name, rate in (("digit_probability", digit_probability),
                       ("warmup_matched_negatives", warmup_matched_negatives)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {rate}")
    size = DatasetSize(size)
    counts = COUNTS[size]
    root = Path(out_dir)
    public = public_fidelity(public_perception_error, public_reasoning_error,
                             public_answer_drift)
    rates = {
        "public_perception_error": public_perception_error,
        "public_reasoning_error": public_reasoning_error,
        "public_answer_drift": public_answer_drift,
        "digit_probability": digit_probability,
        "warmup_matched_negatives": warmup_matched_negatives,
    }
    manifest = _manifest(seed, size, image_size, counts, rates)
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not overwrite)):
        _prepare_output(root, manifest, overwrite)  # refuses before anything is written
    report = progress or (lambda _message: None)

    evaluation = sample_examples(seed, "eval", counts.eval, digit_probability=digit_probability)
    held_out = frozenset(example.scene for example in evaluation)

    def train(product: str, count: int) -> list[Example]:
        return sample_examples(seed, product, count, held_out, digit_probability)

    parent = root.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.resolve().name}.partial-", dir=parent))
    try:
        _write_sft(staging, "teacher", train("sft_teacher", counts.sft_teacher), seed,
                   image_size, None, report, system_prompt)
        _write_sft(staging, "public", train("sft_public", counts.sft_public), seed, image_size,
                   public, report, system_prompt)
        _write_warmup(staging, train("warmup", counts.warmup), seed, image_size, report,
                      warmup_matched_negatives)
        for product, examples, split in (("align", train("align", counts.align), "train"),
                                         ("rlvr", train("rlvr", counts.rlvr), "train"),
                                         ("eval", evaluation, "test")):
            _write_rl(staging, product, examples, split, image_size, report, system_prompt)
        write_json(staging / "manifest.json", manifest)
        if root.exists():
            _prepare_output(root, manifest, overwrite)  # removes the products it replaces
        if root.exists() and any(root.iterdir()):  # other files stay: move product by product
            for product in staging.iterdir():
                target = root / product.name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                product.rename(target)
            staging.rmdir()
        else:
            if root.exists():
                root.rmdir()
            staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _manifest(
    seed: int, size: DatasetSize, image_size: int, counts: ProductCounts, rates: dict[str, float]
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "data_source": DATA_SOURCE,
        "seed": seed,
        "size": size.value,
        "image_size": image_size,
        **rates,
        "counts": {PRODUCT_FILES[name]: getattr(counts, name) for name in PRODUCT_FILES},
    }


def _prepare_output(root: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(root, "output path exists and is not a directory")
    if not root.exists() or not any(root.iterdir()):
        root.mkdir(parents=True, exist_ok=True)
        return
    if _read_manifest(root) == manifest:
        return
    if not overwrite:
        raise DataError(
            root,
            "directory is not empty and does not hold this dataset (seed, size, image_size or "
            "format differ, or it holds other files); pass overwrite=True to replace it",
        )
    for name in _OWNED:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _ticker(report: Progress, label: str, total: int) -> Callable[[int], None]:
    every = max(1, total // 4)

    def tick(done: int) -> None:
        if done % every == 0 or done == total:
            report(f"synthesize {label}: {done}/{total}")

    return tick


def _write_sft(
    root: Path,
    name: str,
    examples: list[Example],
    seed: int,
    image_size: int,
    degraded: Fidelity | None,
    report: Progress,
    system_prompt: str | None,
) -> None:
    """sft/<name>.json with images under sft/images/; `degraded` = Fidelity, None for the teacher."""
    directory, noise = root / "sft", _rng(seed, f"sft_{name}", "responses")
    (directory / "images").mkdir(parents=True, exist_ok=True)
    tick, rows = _ticker(report, f"sft/{name}.json", len(examples)), []
    for index, (scene, question) in enumerate((e.scene, e.question) for e in examples):
        image = f"images/{name}_{index:05d}.png"
        (directory / image).write_bytes(render_png(scene, image_size))
        if degraded is None:
            response = teacher_response(scene, question)
        else:
            response = public_response(scene, question, noise, degraded)
        rows.append(sharegpt_row(question.text, response, [image], system_prompt=system_prompt))
        tick(index + 1)
    write_json(directory / f"{name}.json", rows)


def _write_warmup(
    root: Path, examples: list[Example], seed: int, image_size: int, report: Progress,
    matched_negatives: float,
) -> None:
    """warmup/pairs.jsonl: teacher vs student segments; a share `matched_negatives` of the
    student captions keep the teacher's form with one claim false (`matched_caption_lines`)."""
    directory, noise = root / "warmup", _rng(seed, "warmup", "student")
    (directory / "images").mkdir(parents=True, exist_ok=True)
    tick, rows = _ticker(report, "warmup/pairs.jsonl", len(examples)), []
    for index, example in enumerate(examples):
        image = f"images/{index:05d}.png"
        (directory / image).write_bytes(render_png(example.scene, image_size))
        teacher_caption, teacher_cot = split_segments(
            teacher_response(example.scene, example.question)
        )
        matched = matched_negatives > 0 and noise.random() < matched_negatives  # no draw at 0
        student_caption, student_cot = student_segments(example.scene, example.question, noise,
                                                        matched=matched)
        rows.append(
            {
                "prompt": example.question.text,
                "image": image,
                "teacher_caption": teacher_caption,
                "student_caption": student_caption,
                "teacher_cot": teacher_cot,
                "student_cot": student_cot,
            }
        )
        tick(index + 1)
    write_jsonl(directory / "pairs.jsonl", rows)


def _write_rl(
    root: Path, product: str, examples: list[Example], split: str, image_size: int,
    report: Progress, system_prompt: str | None,
) -> None:
    """align/train.parquet (with teacher segments), rlvr/train.parquet or eval/test.parquet."""
    relative = PRODUCT_FILES[product]
    tick, rows = _ticker(report, relative, len(examples)), []
    for index, (scene, question) in enumerate((e.scene, e.question) for e in examples):
        row = rl_row(
            data_source=DATA_SOURCE,
            question=question.text,
            image_png=render_png(scene, image_size),
            ground_truth=question.answer,
            equivalent_answers=list(question.equivalent_answers),
            extra_info={
                "split": split,
                "index": index,
                "question_type": question.kind.value,
                "scene": scene_to_json(scene),  # the ground truth a caption is checked against
            },
            ability=ABILITY,
            system_prompt=system_prompt,
        )
        if product == "align":
            row["teacher_caption"], row["teacher_cot"] = split_segments(
                teacher_response(scene, question)
            )
        rows.append(row)
        tick(index + 1)
    write_parquet(root / relative, rows, ALIGN_SCHEMA if product == "align" else RL_SCHEMA)
