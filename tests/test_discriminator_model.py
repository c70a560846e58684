"""The MoE discriminator without Ray: upcycling, value head, scoring position, checkpoints and
the scored segments (PRISM_SPEC §3)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from pydantic import ValidationError

from prism_ray.config import ConfigError, load_config
from prism_ray.config.run import RunConfig
from prism_ray.config.schema import DiscriminatorConfig
from prism_ray.data.readers import read_warmup_jsonl
from prism_ray.data.synthetic import synthesize
from prism_ray.models.batching import VisionSpec, collate
from prism_ray.models.discriminator import (
    ValueHead,
    build_discriminator,
    load_discriminator,
)
from prism_ray.models.inputs import vision_token_ids
from prism_ray.models.processor import load_processor
from prism_ray.models.segments import (
    PERCEPTION,
    REASONING,
    assemble,
    encode_item,
    item_sequences,
    item_views,
    split_response,
    token_range,
)
from prism_ray.models.upcycle import UpcycleSettings, load_dense, upcycle
from prism_ray.types import DiscriminatorItem
from prism_ray.verify.format_gate import check_format

# fp32 on CPU: top-k weights renormalised to sum 1 over identical experts reproduce the dense MLP
# up to rounding (measured max |Δ| ≈ 1e-6 on hidden states of magnitude ~1).
EQUIVALENCE_ATOL = 1e-5
SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default


@pytest.fixture(scope="module")
def dense(tiny_pair):
    return load_dense(str(tiny_pair[1]))


@pytest.fixture(scope="module")
def processor(tiny_pair):
    return load_processor(tiny_pair[1])


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[DiscriminatorItem]:
    root = tmp_path_factory.mktemp("synthetic")
    synthesize(root, seed=0, size="tiny")
    pairs = read_warmup_jsonl(root / "warmup" / "pairs.jsonl").records
    return [DiscriminatorItem.from_warmup(p) for p in pairs]


@pytest.fixture(scope="module")
def disc(tiny_pair):
    return build_discriminator(tiny_pair[1], DiscriminatorConfig(), seed=0).eval()


def _inputs(processor, items, count: int = 2):
    spec = VisionSpec.from_processor(processor)
    encoded = [encode_item(processor, it, system_prompt=SYSTEM_PROMPT) for it in items[:count]]
    sequences = [s for e in encoded for s in item_sequences(e, spec.end_token_id)]
    return encoded, collate(sequences, spec)


# ── upcycling ──────────────────────────────────────────────────


@pytest.mark.parametrize("top_k,seed", [(1, 0), (2, 0), (2, 7), (4, 3)])
def test_zero_noise_upcycle_equals_dense(dense, processor, items, top_k, seed):
    settings = UpcycleSettings(num_experts=4, top_k=top_k, expert_noise_std=0.0, seed=seed)
    moe = upcycle(dense, settings)
    _, batch = _inputs(processor, items)
    with torch.no_grad():
        want = dense.model(**batch.model_inputs(), use_cache=False).last_hidden_state
        got = moe(**batch.model_inputs(), use_cache=False).last_hidden_state
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=EQUIVALENCE_ATOL, rtol=0)


def test_every_expert_alone_is_the_dense_mlp(dense):
    """Any routing (any expert, any renormalised weights) gives the dense MLP at zero noise."""
    moe = upcycle(dense, UpcycleSettings(num_experts=4, top_k=2, expert_noise_std=0.0))
    hidden = torch.randn(10, dense.config.text_config.hidden_size)
    for layer in range(dense.config.text_config.num_hidden_layers):
        mlp = dense.model.language_model.layers[layer].mlp
        experts = moe.language_model.layers[layer].mlp.experts
        with torch.no_grad():
            want = mlp(hidden)
            for e in range(4):
                index = torch.full((10, 1), e)
                got = experts(hidden, index, torch.ones(10, 1))
                torch.testing.assert_close(got, want, atol=EQUIVALENCE_ATOL, rtol=0)
            pair = experts(hidden, torch.tensor([[0, 3]] * 10), torch.tensor([[0.3, 0.7]] * 10))
            torch.testing.assert_close(pair, want, atol=EQUIVALENCE_ATOL, rtol=0)


def test_noisy_upcycle_statistics_and_determinism(dense):
    settings = UpcycleSettings(num_experts=4, top_k=2, expert_noise_std=0.01,
                               router_init_std=0.02, seed=5)
    moe = upcycle(dense, settings)
    again = upcycle(dense, settings)
    other = upcycle(dense, UpcycleSettings(seed=6))
    dense_state = dense.model.state_dict()
    for layer in range(dense.config.text_config.num_hidden_layers):
        prefix = f"language_model.layers.{layer}.mlp"
        block = moe.language_model.layers[layer].mlp
        gate_up = torch.cat([dense_state[f"{prefix}.gate_proj.weight"],
                             dense_state[f"{prefix}.up_proj.weight"]])
        noise = block.experts.gate_up_proj.detach() - gate_up
        assert noise.std().item() == pytest.approx(0.01, rel=0.05)
        assert noise.mean().abs().item() < 1e-3
        assert not torch.equal(block.experts.gate_up_proj[0], block.experts.gate_up_proj[1])
        down = block.experts.down_proj.detach() - dense_state[f"{prefix}.down_proj.weight"]
        assert down.std().item() == pytest.approx(0.01, rel=0.05)
        assert block.gate.weight.std().item() == pytest.approx(0.02, rel=0.15)
    moe_state, again_state = moe.state_dict(), again.state_dict()
    assert all(torch.equal(moe_state[k], again_state[k]) for k in moe_state)
    assert not torch.equal(moe_state[f"{prefix}.gate.weight"],
                           other.state_dict()[f"{prefix}.gate.weight"])
    for key, value in dense_state.items():  # vision, attention, embeddings, norms: unchanged
        if ".mlp." not in key or key.startswith("visual."):
            assert torch.equal(moe_state[key], value), key


def test_parameter_counts(dense, disc):
    dense_backbone = sum(p.numel() for p in dense.model.parameters())
    text = dense.config.text_config
    mlp = 3 * text.hidden_size * text.intermediate_size
    extra = text.num_hidden_layers * (3 * mlp + 4 * text.hidden_size)  # 3 more experts + router
    moe = sum(p.numel() for p in disc.backbone.parameters())
    assert moe == dense_backbone + extra
    assert sum(p.numel() for p in disc.head.parameters()) == text.hidden_size


# ── value head and scores ──────────────────────────────────────


def test_value_head_shape_and_init():
    head = ValueHead(4096, dropout=0.1, init_std=0.02, seed=3)
    assert head.linear.weight.shape == (1, 4096) and head.linear.bias is None
    assert head.linear.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert head.dropout.p == 0.1
    assert head(torch.randn(2, 5, 4096)).shape == (2, 5)
    assert torch.equal(head.linear.weight, ValueHead(4096, 0.1, 0.02, seed=3).linear.weight)


def test_score_is_read_at_the_terminator(disc, processor, items):
    encoded, batch = _inputs(processor, items)
    spec = VisionSpec.from_processor(processor)
    lengths = batch.attention_mask.sum(-1)
    assert lengths.unique().numel() > 1  # padding is exercised
    last = batch.input_ids[torch.arange(len(lengths)), lengths - 1]
    assert (last == spec.end_token_id).all()
    with torch.no_grad():
        scores = disc(**batch.model_inputs()).scores
        hidden = disc.backbone(**batch.model_inputs(), use_cache=False).last_hidden_state
        manual = disc.head(hidden[torch.arange(len(lengths)), lengths - 1])
        torch.testing.assert_close(scores, manual)
        # Unpadded, one sequence at a time: the same score (padding never leaks in).
        sequences = [s for e in encoded for s in item_sequences(e, spec.end_token_id)]
        alone = torch.cat([disc(**collate([s], spec).model_inputs()).scores
                           for s in sequences[:3]])
    torch.testing.assert_close(scores[:3], alone, atol=1e-5, rtol=1e-4)


def test_aux_loss_is_returned_on_request(disc, processor, items):
    _, batch = _inputs(processor, items, count=1)
    with torch.no_grad():
        assert disc(**batch.model_inputs()).aux_loss is None
        aux = disc(**batch.model_inputs(), output_router_logits=True).aux_loss
    assert aux.ndim == 0 and aux.item() > 0


def test_save_load_round_trip_is_exact(disc, processor, items, tmp_path):
    disc.save(tmp_path / "d")
    assert (tmp_path / "d" / "value_head.safetensors").is_file()
    assert not list((tmp_path / "d").glob("*.bin"))
    loaded = load_discriminator(tmp_path / "d")
    want, got = disc.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    _, batch = _inputs(processor, items, count=1)
    with torch.no_grad():
        assert torch.equal(disc(**batch.model_inputs()).scores,
                           loaded(**batch.model_inputs()).scores)


# ── segments ───────────────────────────────────────────────────


def _covered(offsets, first: int, last: int) -> tuple[int, int]:
    return offsets[first][0], offsets[last - 1][1]


def test_segment_boundaries_follow_the_format_spans(processor, items):
    tokenizer = processor.tokenizer
    for item in items[:6]:
        for response in (item.teacher_response, item.student_responses[0]):
            verdict = check_format(response)
            enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
            segments = split_response(tokenizer, response)
            for span, ids in ((verdict.caption_span, segments.caption),
                              (verdict.reasoning_span, segments.reasoning)):
                first, last = token_range(enc["offset_mapping"], span)
                assert tuple(enc["input_ids"][first:last]) == ids
                start, end = _covered(enc["offset_mapping"], first, last)
                assert start <= span[0] and end >= span[1]
                # Beyond the span only whitespace that a boundary token merged in.
                assert not response[start:span[0]].strip() and not response[span[1]:end].strip()
                assert tokenizer.decode(ids).strip() == response[span[0]:span[1]]


def test_token_range_keeps_a_straddling_token():
    offsets = [(0, 3), (3, 6), (6, 9), (9, 12)]  # a token (6, 9) across the boundary at 7
    assert token_range(offsets, (0, 7)) == (0, 3)
    assert token_range(offsets, (8, 12)) == (2, 4)
    with pytest.raises(ValueError):
        token_range([(0, 0), (0, 2)], (5, 6))


def test_teacher_and_student_take_the_same_path(disc, processor, items):
    """A student whose response IS the teacher's gets the teacher's tokens and scores."""
    item = items[0]
    twin = DiscriminatorItem(item.uid, item.question, item.images, item.teacher_caption,
                             item.teacher_cot, (item.teacher_response,))
    encoded = encode_item(processor, twin, system_prompt=SYSTEM_PROMPT)
    assert encoded.students[0] == encoded.teacher
    assert encoded.teacher == split_response(processor.tokenizer, item.teacher_response)
    spec = VisionSpec.from_processor(processor)
    batch = collate(item_sequences(encoded, spec.end_token_id), spec)
    with torch.no_grad():
        views = assemble(disc(**batch.model_inputs()).scores, [encoded])
    torch.testing.assert_close(views.teacher_caption, views.student_caption)
    torch.testing.assert_close(views.teacher_reasoning, views.student_reasoning)


def test_invalid_responses_score_zero_and_are_masked(processor, items):
    item = items[0]
    responses = ("no tags at all", item.student_responses[0], "<caption>x</caption> only")
    mixed = DiscriminatorItem(item.uid, item.question, item.images, item.teacher_caption,
                              item.teacher_cot, responses)
    encoded = encode_item(processor, mixed, system_prompt=SYSTEM_PROMPT)
    assert encoded.valid == (False, True, False)
    assert len(item_sequences(encoded, 0)) == 4  # teacher + the one valid student, two views
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    views = assemble(scores, [encoded])
    assert views.student_caption.tolist() == [0.0, 2.0, 0.0]
    assert views.student_reasoning.tolist() == [0.0, 4.0, 0.0]
    assert views.valid.tolist() == [False, True, False]
    assert views.teacher_caption.tolist() == [1.0] and views.teacher_reasoning.tolist() == [3.0]
    views.student_caption.sum().backward()
    assert scores.grad.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_malformed_teacher_is_a_data_error(processor, items):
    item = items[0]
    bad = DiscriminatorItem(item.uid, item.question, item.images, "caption without tags",
                            item.teacher_cot, item.student_responses)
    with pytest.raises(ValueError, match="teacher"):
        encode_item(processor, bad, system_prompt=SYSTEM_PROMPT)


# ── ablations (DiscriminatorConfig.num_experts=1, use_images, routing) ────


def _view_batch(processor, items, use_images: bool = True, count: int = 2):
    """(batch, view_index [B]) of ``count`` items, as the learner builds them."""
    spec = VisionSpec.from_processor(processor)
    encoded = [encode_item(processor, it, use_images, system_prompt=SYSTEM_PROMPT)
               for it in items[:count]]
    sequences = [s for e in encoded for s in item_sequences(e, spec.end_token_id)]
    views = torch.tensor([v for e in encoded for v in item_views(e)])
    return collate(sequences, spec), views


def _routed(model, inputs: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(top_k_index, top_k_weights) that every MoE layer's experts received in one forward."""
    seen = []
    hooks = [layer.mlp.experts.register_forward_hook(
        lambda m, args, out: seen.append((args[1], args[2])))
        for layer in model.backbone.language_model.layers]
    try:
        with torch.no_grad():
            scores = model(**inputs).scores
    finally:
        for hook in hooks:
            hook.remove()
    return seen, scores


def test_ablation_config_validation():
    with pytest.raises(ValidationError, match=r"routing=hard .* needs num_experts ≥ 2 \(got 1\)"):
        DiscriminatorConfig(num_experts=1, top_k=1, routing="hard")
    with pytest.raises(ValidationError, match="routing"):
        DiscriminatorConfig(routing="soft")
    with pytest.raises(ValidationError, match="use_images"):
        DiscriminatorConfig(use_images="sometimes")
    with pytest.raises(ConfigError, match="needs num_experts ≥ 2"):
        load_config(None, ["discriminator.num_experts=1", "discriminator.top_k=1",
                           "discriminator.routing=hard"])
    config = load_config(None, ["discriminator.use_images=false",
                                "discriminator.routing=hard"]).discriminator
    assert config.use_images is False and config.routing == "hard"
    dense = load_config(None, ["discriminator.num_experts=1", "discriminator.top_k=1"])
    assert dense.discriminator.num_experts == 1 and dense.discriminator.routing == "learned"


def test_text_only_views_ignore_the_image(tiny_pair, disc, processor, items):
    spec = VisionSpec.from_processor(processor)
    vision = set(vision_token_ids(processor.tokenizer))
    encoded = encode_item(processor, items[0], use_images=False, system_prompt=SYSTEM_PROMPT)
    assert encoded.prompt.pixel_values is None and encoded.prompt.image_grid_thw is None
    assert encoded.prompt.num_image_tokens == 0
    assert not vision & set(encoded.prompt.input_ids.tolist())
    assert encoded.teacher == encode_item(processor, items[0], system_prompt=SYSTEM_PROMPT).teacher  # same segments
    other = dataclasses.replace(items[0], images=items[1].images)
    assert other.images != items[0].images
    text_only = build_discriminator(tiny_pair[1], DiscriminatorConfig(use_images=False)).eval()
    scores = []
    for item, use_images, model in ((items[0], False, text_only), (other, False, text_only),
                                    (items[0], True, disc), (other, True, disc)):
        encoded = encode_item(processor, item, use_images, system_prompt=SYSTEM_PROMPT)
        batch = collate(item_sequences(encoded, spec.end_token_id), spec)
        assert (batch.pixel_values is None) == (not use_images)
        with torch.no_grad():
            scores.append(model(**batch.model_inputs()).scores)
    torch.testing.assert_close(scores[0], scores[1], atol=0, rtol=0)
    assert not torch.allclose(scores[2], scores[3])  # with images, the image does matter
    with_pixels, _ = _view_batch(processor, items, count=1)
    with pytest.raises(ValueError, match="text-only"):
        text_only(**with_pixels.model_inputs())


def test_hard_routing_sends_each_view_to_its_expert(tiny_pair, processor, items, tmp_path):
    noisy = {"expert_noise_std": 0.05}  # experts far enough apart to tell the routings apart
    learned = build_discriminator(tiny_pair[1], DiscriminatorConfig(**noisy)).eval()
    hard = build_discriminator(tiny_pair[1], DiscriminatorConfig(routing="hard", **noisy)).eval()
    batch, views = _view_batch(processor, items, count=1)
    assert views.tolist().count(PERCEPTION) == views.tolist().count(REASONING) == len(views) // 2
    inputs = {**batch.model_inputs(), "view_index": views}
    routed, hard_scores = _routed(hard, inputs)
    assert len(routed) == hard.backbone.config.text_config.num_hidden_layers
    rows, length = batch.input_ids.shape
    for index, weights in routed:
        assert index.shape == weights.shape == (rows * length, 1)
        assert torch.equal(index.view(rows, length), views.unsqueeze(1).expand(rows, length))
        assert torch.equal(weights, torch.ones_like(weights))
    per_expert = torch.bincount(routed[0][0].flatten(), minlength=4)
    assert per_expert.tolist() == [rows // 2 * length, rows // 2 * length, 0, 0]
    learned_routed, learned_scores = _routed(learned, inputs)  # view_index unused
    assert all(index.shape[-1] == 2 for index, _ in learned_routed)
    assert len(learned_routed[0][0].unique()) == 4  # the router spreads tokens over all experts
    assert not torch.allclose(hard_scores, learned_scores, atol=1e-4)
    with pytest.raises(ValueError, match="view_index"):
        hard(**batch.model_inputs())
    with pytest.raises(ValueError, match="load-balancing"):
        hard(**inputs, output_router_logits=True)
    loaded = load_discriminator(hard.save(tmp_path / "hard"))
    assert loaded.routing == "hard" and loaded.use_images
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).scores, hard_scores, atol=0, rtol=0)


def test_dense_discriminator_is_the_dense_backbone(tiny_pair, dense, processor, items):
    config = DiscriminatorConfig(num_experts=1, top_k=1, expert_noise_std=0.0)
    model = build_discriminator(tiny_pair[1], config).eval()
    text = dense.config.text_config
    extra = sum(p.numel() for p in model.backbone.parameters()) - sum(
        p.numel() for p in dense.model.parameters())
    assert extra == text.num_hidden_layers * text.hidden_size  # only the 1 × H routers
    batch, _ = _view_batch(processor, items)
    with torch.no_grad():
        want = dense.model(**batch.model_inputs(), use_cache=False).last_hidden_state
        got = model.backbone(**batch.model_inputs(), use_cache=False).last_hidden_state
        out = model(**batch.model_inputs(), output_router_logits=True)
    torch.testing.assert_close(got, want, atol=EQUIVALENCE_ATOL, rtol=0)
    assert out.scores.shape == (batch.input_ids.shape[0],) and torch.isfinite(out.scores).all()
    assert torch.isfinite(out.aux_loss)
