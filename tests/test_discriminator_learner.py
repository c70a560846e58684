"""The discriminator learner group on Ray: alignment step direction, warm-up Bradley-Terry
training, clipping and the saved checkpoint. One 1-rank group lives for the module (ZeRO-2,
fp32, gloo); tests run in file order and share its weights."""

from __future__ import annotations

import math

import pytest
import torch

from prism_ray.config.run import ClusterConfig, RunConfig
from prism_ray.config.schema import DiscriminatorConfig, LearnerConfig, OptimizerConfig, Resources
from prism_ray.types import DiscriminatorItem

pytestmark = pytest.mark.ray

CLIP = 0.5  # small enough that warm-up pushes scores past it, larger than the initial |s| ≈ 0.3
ACTOR_ENV = {"OMP_NUM_THREADS": "1"}
PLACEMENT_TIMEOUT_S = ClusterConfig().placement_timeout_s
SYSTEM_PROMPT = RunConfig().system_prompt


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from prism_ray.data.readers import read_rl_parquet, read_warmup_jsonl
    from prism_ray.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("data")
    synthesize(root, size="tiny")
    pairs = read_warmup_jsonl(root / "warmup/pairs.jsonl").records
    prompts = read_rl_parquet(root / "align/train.parquet").records
    return [DiscriminatorItem.from_warmup(p) for p in pairs], prompts


@pytest.fixture(scope="module")
def group(ray_cluster, tiny_pair):
    from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup

    learner = LearnerConfig(num_ranks=1, resources=Resources(num_cpus=1), zero_stage=2)
    config = DiscriminatorConfig(score_clip=CLIP, learner=learner)
    group = DiscriminatorLearnerGroup(tiny_pair[1], config, seed=0, env_vars=ACTOR_ENV,
                                      system_prompt=SYSTEM_PROMPT,
                                      placement_timeout_s=PLACEMENT_TIMEOUT_S)
    yield group
    group.shutdown()


def align_items(data) -> list[DiscriminatorItem]:
    """Two alignment prompts, three rollouts each: two weak-but-valid ones and one invalid."""
    warmup, prompts = data
    items = []
    for prompt, pair in zip(prompts[:2], warmup[:2], strict=True):
        weak = pair.student_responses[0]
        other = weak.replace("</think>", "Done.\n</think>")
        responses = (weak, "I think the answer is 3.", other)
        items.append(DiscriminatorItem.from_prompt(prompt, responses))
    return items


def mean_gap(scores) -> float:
    gaps = [s.teacher_caption - c + s.teacher_reasoning - r
            for s in scores
            for c, r, ok in zip(s.student_caption, s.student_reasoning, s.valid, strict=True)
            if ok]
    return sum(gaps) / len(gaps)


def local_scores(model, path, item: DiscriminatorItem, clip: float) -> torch.Tensor:
    """Scores from an in-process model, in ``item_sequences`` order, clipped."""
    from prism_ray.actors.discriminator import terminator_id
    from prism_ray.algo.discriminator import clip_scores
    from prism_ray.models.batching import VisionSpec, collate
    from prism_ray.models.processor import load_processor
    from prism_ray.models.segments import encode_item, item_sequences, item_views

    processor = load_processor(path)
    encoded = encode_item(processor, item, model.use_images, system_prompt=SYSTEM_PROMPT)
    spec = VisionSpec.from_processor(processor)
    terminator = terminator_id(processor.tokenizer, "<|im_end|>")
    batch = collate(item_sequences(encoded, terminator), spec)
    views = torch.tensor(item_views(encoded))
    with torch.no_grad():
        return clip_scores(model(**batch.model_inputs(), view_index=views).scores, clip)


def remote_scores(scores) -> torch.Tensor:
    """A ``DiscriminatorScores`` in ``item_sequences`` order (valid students only)."""
    caps = [c for c, ok in zip(scores.student_caption, scores.valid, strict=True) if ok]
    cots = [r for r, ok in zip(scores.student_reasoning, scores.valid, strict=True) if ok]
    return torch.tensor([scores.teacher_caption, *caps, scores.teacher_reasoning, *cots])


def test_alignment_step_raises_teacher_over_student(group, data):
    items = align_items(data)
    # Adam's first step moves EVERY weight by ±lr whatever its gradient, which says little
    # about the direction of the BT gradient; with eps ≫ |g| AdamW is plain gradient descent
    # (step ≈ lr·g), whose first-order effect on the loss is guaranteed.
    group.configure_optimizer(OptimizerConfig(lr=1e-2, eps=1.0, weight_decay=0.0),
                              total_steps=1)
    before = group.score(items)
    assert [s.valid for s in before] == [(True, False, True)] * 2
    assert all(s.student_caption[1] == 0.0 and s.student_reasoning[1] == 0.0 for s in before)
    metrics = group.train_step(items, reg_coef=1e-3, aux_coef=0.0)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["valid_ratio"] == pytest.approx(4 / 6)
    assert metrics["valid"] == 4 and "aux_loss" not in metrics
    after = group.score(items)
    assert mean_gap(after) > mean_gap(before) + 1e-3, (mean_gap(before), mean_gap(after))


def test_warmup_training_raises_accuracy_and_gap(group, data):
    warmup, _ = data
    steps, batch = 6, 4
    group.configure_optimizer(OptimizerConfig(lr=1e-3), total_steps=steps)  # engine rebuilt
    history = [group.train_step(warmup[(i * batch) % 8:(i * batch) % 8 + batch],
                                reg_coef=0.0, aux_coef=0.01) for i in range(steps)]
    first, last = history[0], history[-1]
    for key in ("accuracy_cap", "accuracy_cot", "gap_cap", "gap_cot", "teacher_score_cap",
                "student_score_cot", "aux_loss", "valid_ratio", "grad_norm"):
        assert all(math.isfinite(m[key]) for m in history), key
    assert last["aux_loss"] > 0 and last["valid_ratio"] == 1.0
    assert last["gap_cap"] + last["gap_cot"] > first["gap_cap"] + first["gap_cot"] + 0.5
    assert last["accuracy_cap"] + last["accuracy_cot"] >= 1.5
    scores = group.score(warmup[:8])
    correct = [s.teacher_caption > s.student_caption[0] for s in scores]
    correct += [s.teacher_reasoning > s.student_reasoning[0] for s in scores]
    assert sum(correct) / len(correct) >= 0.75


def test_scores_are_clipped(group, data):
    scores = group.score(data[0][:8])
    values = [v for s in scores for v in (s.teacher_caption, s.teacher_reasoning,
                                          *s.student_caption, *s.student_reasoning)]
    assert all(abs(v) <= CLIP for v in values)
    assert any(abs(v) == CLIP for v in values)  # warm-up pushed some raw scores past the clip


def test_saved_checkpoint_scores_like_the_learner(group, data, tmp_path):
    from prism_ray.models.discriminator import load_discriminator

    path = group.save_hf(tmp_path / "disc")
    item = data[0][0]
    local = local_scores(load_discriminator(path), path, item, CLIP)
    torch.testing.assert_close(local, remote_scores(group.score([item])[0]),
                               atol=1e-5, rtol=1e-5)


def test_two_ranks_uneven_shards(ray_cluster, tiny_pair, data):
    """3 items over 2 ranks: rank 1 runs a padding pass; ranks stay identical after a step."""
    from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup
    from prism_ray.models.discriminator import build_discriminator

    items = align_items(data) + data[0][:1]
    learner = LearnerConfig(num_ranks=2, resources=Resources(num_cpus=1), zero_stage=2,
                            micro_batch_tokens=64)  # one item per micro-batch
    config = DiscriminatorConfig(learner=learner)
    group = DiscriminatorLearnerGroup(tiny_pair[1], config, seed=0, env_vars=ACTOR_ENV,
                                      system_prompt=SYSTEM_PROMPT,
                                      placement_timeout_s=PLACEMENT_TIMEOUT_S)
    try:
        group.configure_optimizer(OptimizerConfig(lr=1e-4), total_steps=1)
        scores = group.score(items)
        assert [s.valid for s in scores] == [(True, False, True), (True, False, True), (True,)]
        local = build_discriminator(tiny_pair[1], config, seed=0).eval()
        for item, remote in zip(items, scores, strict=True):  # every rank upcycled identically
            torch.testing.assert_close(local_scores(local, tiny_pair[1], item, 10.0),
                                       remote_scores(remote), atol=1e-5, rtol=1e-5)
        metrics = group.train_step(items, reg_coef=1e-3, aux_coef=0.0)
        assert metrics["valid"] == 5 and metrics["rollouts"] == 7
        assert metrics["micro_batches"] == 2 and math.isfinite(metrics["grad_norm"])
        forward, backward = group.score(items), group.score(items[::-1])[::-1]
        for a, b in zip(forward, backward, strict=True):  # items moved to the other rank
            assert a.teacher_caption == pytest.approx(b.teacher_caption, abs=1e-6)
            assert a.student_reasoning == pytest.approx(b.student_reasoning, abs=1e-6)
        assert forward != scores  # the step changed the weights
    finally:
        group.shutdown()


# ── ablations under DeepSpeed: dense, text-only, hard routing ──────────


def test_dense_text_only_learner(ray_cluster, tiny_pair, data):
    """One expert (the dense ablation) on text-only views: scoring matches the in-process
    model, ignores the image, and warm-up (with the aux term) and alignment steps run."""
    import dataclasses

    from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup
    from prism_ray.models.discriminator import build_discriminator

    items = align_items(data)
    learner = LearnerConfig(num_ranks=1, resources=Resources(num_cpus=1), zero_stage=2)
    config = DiscriminatorConfig(num_experts=1, top_k=1, use_images=False, learner=learner)
    group = DiscriminatorLearnerGroup(tiny_pair[1], config, seed=0, env_vars=ACTOR_ENV,
                                      system_prompt=SYSTEM_PROMPT,
                                      placement_timeout_s=PLACEMENT_TIMEOUT_S)
    try:
        group.configure_optimizer(OptimizerConfig(lr=1e-2, eps=1.0, weight_decay=0.0),
                                  total_steps=2)
        swapped = [dataclasses.replace(it, images=data[0][5].images) for it in items]
        assert all(s.images != it.images for s, it in zip(swapped, items, strict=True))
        before = group.score(items)
        assert group.score(swapped) == before
        local = build_discriminator(tiny_pair[1], config, seed=0).eval()
        torch.testing.assert_close(local_scores(local, tiny_pair[1], items[0], 10.0),
                                   remote_scores(before[0]), atol=1e-5, rtol=1e-5)
        warm = group.train_step(data[0][:4], reg_coef=0.0, aux_coef=0.01)
        assert all(math.isfinite(v) for v in warm.values()) and "aux_loss" in warm
        before = group.score(items)
        metrics = group.train_step(items, reg_coef=1e-3, aux_coef=0.0)
        assert all(math.isfinite(v) for v in metrics.values()) and metrics["valid"] == 4
        after = group.score(items)
        assert mean_gap(after) > mean_gap(before) + 1e-3, (mean_gap(before), mean_gap(after))
        assert group.score(swapped) == after
    finally:
        group.shutdown()


def test_hard_routing_learner_zero3(ray_cluster, tiny_pair, data, tmp_path):
    """Hard routing under ZeRO-3 (MoE blocks gathered as leaves) with gradient checkpointing:
    the learner routes each view as the in-process model does, trains without the aux term,
    and its checkpoint reloads only under a hard-routing config."""
    from prism_ray.actors.discriminator import DiscriminatorLearner
    from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup
    from prism_ray.models.discriminator import build_discriminator

    items = align_items(data)
    learner = LearnerConfig(num_ranks=1, resources=Resources(num_cpus=1), zero_stage=3,
                            gradient_checkpointing=True)  # the backward recomputes routing
    config = DiscriminatorConfig(routing="hard", learner=learner)
    group = DiscriminatorLearnerGroup(tiny_pair[1], config, seed=0, env_vars=ACTOR_ENV,
                                      system_prompt=SYSTEM_PROMPT,
                                      placement_timeout_s=PLACEMENT_TIMEOUT_S)
    try:
        group.configure_optimizer(OptimizerConfig(lr=1e-2, eps=1.0, weight_decay=0.0),
                                  total_steps=2)
        local = build_discriminator(tiny_pair[1], config, seed=0).eval()
        torch.testing.assert_close(local_scores(local, tiny_pair[1], items[0], 10.0),
                                   remote_scores(group.score(items[:1])[0]),
                                   atol=1e-5, rtol=1e-5)
        warm = group.train_step(data[0][:4], reg_coef=0.0, aux_coef=0.01)
        assert all(math.isfinite(v) for v in warm.values()) and "aux_loss" not in warm
        before = group.score(items)
        group.train_step(items, reg_coef=1e-3, aux_coef=0.0)
        after = group.score(items)
        assert mean_gap(after) > mean_gap(before) + 1e-3, (mean_gap(before), mean_gap(after))
        path = group.save_hf(tmp_path / "hard")
    finally:
        group.shutdown()
    learned = DiscriminatorLearner(0, 1, str(path), DiscriminatorConfig(), 0, SYSTEM_PROMPT)
    learned.dtype, learned.device, learned.seed = torch.float32, torch.device("cpu"), 0
    with pytest.raises(ValueError, match="trained with routing=hard"):
        learned._load(str(path))
    hard = DiscriminatorLearner(0, 1, str(path), config, 0, SYSTEM_PROMPT)
    hard.dtype, hard.device, hard.seed = torch.float32, torch.device("cpu"), 0
    reloaded = hard._load(str(path))
    assert reloaded.routing == "hard"
    torch.testing.assert_close(local_scores(reloaded, path, items[0], 10.0),
                               remote_scores(after[0]), atol=1e-5, rtol=1e-5)
