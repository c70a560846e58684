"""Learning, not just running: short real runs (local Ray, DeepSpeed learners, HF rollout,
the verifier pool, the MoE discriminator) on a choice the tiny policy can learn in seconds.

SFT demonstrations answer "A" or "B" (half each) after a one-line caption that says "a red
shape" or "a shape" (half each); every RL prompt's ground truth is "A" and the teacher's
caption says "a red shape". So a correctly wired RLVR phase must raise the reward, and a
correctly wired alignment phase must widen the discriminator's margin and move the policy's
discriminator score up. The same runs with the advantage's sign flipped must not: that is
what catches a sign, a reward or a weight-sync bug that a pipeline that merely runs would hide.
Both phases start from the SFT export through ``init_from``, so their first step also checks
that a phase's starting weights reach the rollout workers before it samples.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import yaml

from prism_ray.config import load_config
from prism_ray.config.run import RunConfig
from prism_ray.data.scenes import render_png, sample_scene
from prism_ray.data.writers import (
    ALIGN_SCHEMA,
    rl_row,
    sharegpt_row,
    write_json,
    write_jsonl,
    write_parquet,
)
from prism_ray.driver import align as align_module
from prism_ray.driver import rlvr as rlvr_module
from prism_ray.driver.main import run
from prism_ray.prompting import format_response

pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUESTION = "Which option is right?\n(A) this one (B) that one"
SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default
TEACHER_CAPTION, OTHER_CAPTION = "a red shape", "a shape"
ROLES = {
    "policy": {"resources": {"num_cpus": 0.5}},
    "rollout": {"resources": {"num_cpus": 0.5}},
    "verifier": {"resources": {"num_cpus": 0.25}},
    "discriminator": {"learner": {"resources": {"num_cpus": 0.5}}},
    "tracking": {"enabled": False},
}


def response(caption: str, answer: str) -> str:
    return format_response([caption], "pick", answer)


@pytest.fixture(scope="module")
def choice_data(tmp_path_factory):
    """The learnable task in the published formats (ShareGPT JSON, RL parquet)."""
    root = tmp_path_factory.mktemp("choice-data")
    rng = random.Random(0)
    (root / "images").mkdir()
    demos, prompts = [], []
    for i in range(64):
        image = f"images/{i:03d}.png"
        png = render_png(sample_scene(rng), 32)
        (root / image).write_bytes(png)
        caption = (TEACHER_CAPTION, OTHER_CAPTION)[i % 2]
        answer = "AB"[(i // 2) % 2]
        demos.append(sharegpt_row(QUESTION, response(caption, answer), [image],
                                  system_prompt=SYSTEM_PROMPT))
        row = rl_row(data_source="choice", question=QUESTION, image_png=png, ground_truth="A",
                     equivalent_answers=[], extra_info={"split": "train", "index": i,
                                                        "question_type": "choice"},
                     ability="choice", system_prompt=SYSTEM_PROMPT)
        row["teacher_caption"] = f"<caption>\n- {TEACHER_CAPTION}\n</caption>"
        row["teacher_cot"] = "<think>\npick\n</think>\n<answer>\nA\n</answer>"
        prompts.append(row)
    pairs = [{"prompt": QUESTION, "image": f"images/{i:03d}.png",
              "teacher_caption": f"<caption>\n- {TEACHER_CAPTION}\n</caption>",
              "student_caption": f"<caption>\n- {OTHER_CAPTION}\n</caption>",
              "teacher_cot": "<think>\npick\n</think>\n<answer>\nA\n</answer>",
              "student_cot": "<think>\npick\n</think>\n<answer>\nB\n</answer>"}
             for i in range(64)]
    write_jsonl(root / "pairs.jsonl", pairs)
    write_json(root / "demos.json", demos)
    write_parquet(root / "prompts.parquet", prompts, ALIGN_SCHEMA)
    return root


def write_recipe(path, name: str, phases: list[dict]) -> str:
    path.write_text(yaml.safe_dump({"name": name, "output_dir": str(path.parent / name),
                                    "phases": phases, **ROLES}))
    return str(path)


@pytest.fixture(scope="module")
def sft_export(ray_cluster, choice_data, tmp_path_factory):
    """The policy after a short SFT on the demonstrations: format learnt, A and B both likely."""
    root = tmp_path_factory.mktemp("choice-sft")
    recipe = write_recipe(root / "sft.yaml", "sft", [{
        "kind": "sft", "epochs": 8, "steps": 60, "batch_size": 8, "max_seq_tokens": 256,
        "data": [{"kind": "sharegpt", "paths": [str(choice_data / "demos.json")]}],
        "optimizer": {"lr": 3e-3}}])
    ctx = run(load_config(recipe))
    return ctx.run_dir / "phases" / "sft" / "policy"


def learning_run(tmp_path, choice_data, sft_export, sign: float) -> list[dict]:
    """Alignment then RLVR, each from the SFT weights; returns the metrics records."""
    data = [{"kind": "rl_parquet", "paths": [str(choice_data / "prompts.parquet")]}]
    # T = 0.7: a 60-step SFT leaves ~1 % noise per token, which at T = 1 breaks the format of
    # a third of the responses and drowns the A/B signal in format noise.
    shared = {"data": data, "init_from": str(sft_export), "samples_per_prompt": 8,
              "max_response_tokens": 48, "sampling": {"temperature": 0.7}}
    pairs = [{"kind": "warmup_jsonl", "paths": [str(choice_data / "pairs.jsonl")]}]
    recipe = write_recipe(tmp_path / "learn.yaml", "learn-pos" if sign > 0 else "learn-neg", [
        {"kind": "disc_warmup", "data": pairs, "steps": 8, "batch_size": 8,
         "optimizer": {"lr": 1e-3}},
        {"kind": "align", "steps": 6, "prompts_per_step": 4, **shared,
         "optimizer": {"lr": 2e-4}, "disc_optimizer": {"lr": 1e-3}},
        {"kind": "rlvr", "steps": 8, "prompts_per_step": 8, **shared,
         "optimizer": {"lr": 3e-4}},
    ])
    ctx = run(load_config(recipe))
    lines = (ctx.run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def flip_advantages(monkeypatch, sign: float) -> None:
    """Scale every advantage the driver computes (alignment and RLVR) by ``sign``, at the
    step loop's advantage seam."""
    for stepper in (rlvr_module.RLVRStepper, align_module.AlignStepper):
        def flipped(self, batch, original=stepper.advantages):
            samples, metrics = original(self, batch)
            return [replace(s, advantage=sign * s.advantage) for s in samples], metrics

        monkeypatch.setattr(stepper, "advantages", flipped)


def series(records: list[dict], key: str) -> list[float]:
    return [r[key] for r in records if key in r]


def early_late(values: list[float], k: int = 2) -> tuple[float, float]:
    return sum(values[:k]) / k, sum(values[-k:]) / k


@pytest.fixture(scope="module")
def runs(ray_cluster, choice_data, sft_export, tmp_path_factory):
    out = {}
    for sign in (1.0, -1.0):
        with pytest.MonkeyPatch.context() as monkeypatch:
            flip_advantages(monkeypatch, sign)
            out[sign] = learning_run(tmp_path_factory.mktemp("learn-pos" if sign > 0 else "learn-neg"),
                                     choice_data, sft_export, sign)
    return out


def test_rlvr_raises_the_reward_and_the_flipped_sign_does_not(runs):
    start, end = early_late(series(runs[1.0], "rlvr/rollout/reward"))
    assert end >= start + 0.15, (start, end)
    flipped_start, flipped_end = early_late(series(runs[-1.0], "rlvr/rollout/reward"))
    assert flipped_end <= flipped_start + 0.05, (flipped_start, flipped_end)
    assert end > flipped_end + 0.2


def test_alignment_widens_the_discriminator_and_moves_the_policy_score(runs):
    # The discriminator learns to tell the teacher's caption from the other one ...
    gap = series(runs[1.0], "disc_warmup/discriminator/gap_cap")
    assert early_late(gap)[1] > early_late(gap)[0] + 0.5, gap
    # ... and in alignment the policy moves the way its scores reward: its captions close the
    # gap to the teacher's, and end closer to it than when the advantage pushes the other way
    # (same SFT start, same discriminator start, same seeds). The gap, not the raw score:
    # the discriminator keeps learning, so its absolute scale drifts between steps.
    gap = series(runs[1.0], "align/discriminator/gap_cap")
    flipped = series(runs[-1.0], "align/discriminator/gap_cap")
    assert early_late(gap)[1] < early_late(gap)[0], gap
    assert early_late(gap)[1] < early_late(flipped)[1], (gap, flipped)


def test_init_from_weights_reach_the_rollout_workers_before_step_one(runs):
    for records in runs.values():
        for phase in ("align", "rlvr"):
            mismatch = series(records, f"{phase}/policy/rollout_mismatch_abs")
            assert mismatch[0] < 1e-4, (phase, mismatch)
            assert mismatch[0] <= 10 * max(mismatch[1], 1e-7)
