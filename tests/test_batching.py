"""Collation with images, the image-count checks, SFT truncation and teacher-forced log-probs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from prism_ray.config.run import RunConfig
from prism_ray.learner.microbatch import plan_micro_batches
from prism_ray.models.batching import (
    SequenceItem,
    VisionMismatchError,
    VisionSpec,
    check_batch_vision,
    collate,
    collate_demonstrations,
    continuation_logprobs,
)
from prism_ray.models.inputs import encode_prompt

SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default


@pytest.fixture(scope="module")
def data(tiny_dataset):
    from prism_ray.data.readers import read_rl_parquet, read_sharegpt

    return (read_rl_parquet(tiny_dataset / "rlvr/train.parquet").records,
            read_sharegpt(tiny_dataset / "sft/teacher.json").records)


@pytest.fixture(scope="module")
def processor(tiny_pair):
    from prism_ray.models.processor import load_processor

    return load_processor(tiny_pair[0])


@pytest.fixture(scope="module")
def items(processor, data):
    prompts = data[0][:2]
    return [SequenceItem(encode_prompt(processor, p.question, p.images,
                                       system_prompt=SYSTEM_PROMPT), cont, f"s{i}")
            for i, (p, cont) in enumerate(zip(prompts, [(105, 106, 107), (108, 109, 110, 111, 112)]))]


def test_collate_shapes_and_mm_token_types(processor, items):
    spec = VisionSpec.from_processor(processor)
    batch = collate(items, spec)
    lengths = [len(it.prompt.input_ids) + len(it.continuation) for it in items]
    assert batch.input_ids.shape == (2, max(lengths))
    assert batch.attention_mask.sum(-1).tolist() == lengths
    assert batch.loss_mask.sum().item() == 8 == batch.num_tokens
    for b, item in enumerate(items):
        start = len(item.prompt.input_ids)
        assert torch.equal(batch.mm_token_type_ids[b, :start], item.prompt.mm_token_type_ids)
        assert batch.mm_token_type_ids[b, start:].sum() == 0  # zeros over continuation + pad
        cont = len(item.continuation)
        assert batch.target_index[b, :cont].tolist() == list(range(start, start + cont))
        ids = batch.input_ids[b, batch.target_index[b, :cont]].tolist()
        assert ids == list(item.continuation)
    assert batch.image_grid_thw.shape == (2, 3)
    assert batch.pixel_values.shape[0] == int(batch.image_grid_thw.prod(-1).sum())
    check_batch_vision(batch, spec)


def test_dropped_pixels_or_wrong_grid_fail_loudly_naming_the_sample(processor, items):
    spec = VisionSpec.from_processor(processor)
    blind = replace(items[1], prompt=replace(items[1].prompt, pixel_values=None))
    with pytest.raises(VisionMismatchError, match="sample 's1'.*no pixel_values"):
        collate([items[0], blind], spec)
    grid = items[0].prompt.image_grid_thw.clone()
    grid[0, 1] += 2
    wrong = replace(items[0], prompt=replace(items[0].prompt, image_grid_thw=grid))
    with pytest.raises(VisionMismatchError, match="sample 's0'.*implies"):
        collate([wrong], spec)
    sampled_pad = replace(items[0], continuation=(105, spec.image_token_id))
    with pytest.raises(VisionMismatchError, match="sample 's0'.*continuation"):
        collate([sampled_pad], spec)
    batch = collate(items, spec)
    batch.pixel_values = None  # lost after collation: the pre-forward check still catches it
    with pytest.raises(VisionMismatchError, match=r"\['s0', 's1'\]"):
        check_batch_vision(batch, spec)


def test_sft_collation_truncates_and_counts(processor, data):
    spec = VisionSpec.from_processor(processor)
    demos = data[1][:3]
    full = collate_demonstrations(processor, demos, spec, max_seq_tokens=4096,
                                  system_prompt=SYSTEM_PROMPT)
    assert full.num_truncated == 0
    ends = full.input_ids.gather(1, (full.attention_mask.sum(-1, keepdim=True) - 1))
    assert (ends == spec.end_token_id).all()  # every continuation closes the turn
    limit = int(full.attention_mask.sum(-1).min()) - 2
    cut = collate_demonstrations(processor, demos, spec, max_seq_tokens=limit,
                                 system_prompt=SYSTEM_PROMPT)
    assert cut.num_truncated == 3
    assert cut.attention_mask.sum(-1).max() <= limit


def test_continuation_logprobs_shift_and_real_forward(tiny_pair, processor, items):
    from transformers import AutoModelForImageTextToText

    spec = VisionSpec.from_processor(processor)
    batch = collate(items, spec)
    logits = torch.randn(*batch.input_ids.shape, 200)
    batch.input_ids = batch.input_ids % 200
    lp = continuation_logprobs(logits, batch)
    b, j = 1, 4
    pos = int(batch.target_index[b, j])
    expected = torch.log_softmax(logits[b, pos - 1], -1)[batch.input_ids[b, pos]]
    assert lp[b, j].item() == pytest.approx(expected.item(), abs=1e-6)
    assert lp[0, 3:].abs().sum() == 0  # padding beyond the shorter continuation
    # The collated batch (extended mm_token_type_ids, concatenated images) runs the real model.
    model = AutoModelForImageTextToText.from_pretrained(tiny_pair[0]).eval()
    real = collate(items, spec)
    with torch.no_grad():
        out = model(**real.model_inputs()).logits
    assert torch.isfinite(continuation_logprobs(out, real)).all()


def test_micro_batch_plan_respects_the_token_budget():
    lengths = [30, 100, 10, 60, 60, 250]
    groups = plan_micro_batches(lengths, token_budget=128)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 128
