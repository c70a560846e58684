"""The discriminator at the published backbone shape (Qwen3-VL-2B, random weights, no download):
upcycle to 4 experts / top-2, bf16, score a batch with an image per sequence and take one
train step. Prints peak GPU memory. Run on a GPU host:

Plain PyTorch here (bf16 weights, grads and AdamW states: 8 B/param, ≈ 42 GB for the 5.3 B
upcycled parameters). The learner's DeepSpeed bf16 path keeps fp32 master weights and fp32
Adam states besides (≈ 16 B/param, ≈ 85 GB): one 80 GB GPU cannot hold it on a single rank;
use ≥ 2 ranks with ZeRO-2/3, or optimizer offload.

    python -m pytest -q -s tests/test_discriminator_gpu.py
"""

from __future__ import annotations

import math
import time

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

IMAGE_PAD, VISION_START, VISION_END, IM_END = 151655, 151652, 151653, 151645


def qwen3vl_2b_config():
    """The published Qwen3-VL-2B-Instruct dimensions (text 2048 × 28 layers, vision 1024 × 24)."""
    from transformers import Qwen3VLConfig

    text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                 "mrope_section": [24, 20, 20], "mrope_interleaved": True},
                eos_token_id=IM_END, bos_token_id=151643, pad_token_id=151643)
    vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=2048, num_position_embeddings=2304,
                  deepstack_visual_indexes=[5, 11, 17])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD,
                         video_token_id=151656, vision_start_token_id=VISION_START,
                         vision_end_token_id=VISION_END, tie_word_embeddings=True)


def scored_batch(batch: int, grid: int, segment_lengths: list[int], device) -> dict:
    """Right-padded sequences: text, one image (grid × grid patches), text, segment, <|im_end|>."""
    gen = torch.Generator().manual_seed(0)
    image_tokens = grid * grid // 4  # spatial merge 2 × 2
    rows = []
    for b in range(batch):
        prefix = torch.randint(1000, 100000, (40,), generator=gen).tolist()
        body = torch.randint(1000, 100000, (segment_lengths[b % len(segment_lengths)],),
                             generator=gen).tolist()
        rows.append([*prefix, VISION_START, *[IMAGE_PAD] * image_tokens, VISION_END,
                     *prefix[:8], *body, IM_END])
    longest = max(map(len, rows))
    ids = torch.full((batch, longest), 151643, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
        mask[b, :len(row)] = 1
    patches = 2 * 3 * 16 * 16  # temporal × channels × patch²
    return {
        "input_ids": ids.to(device), "attention_mask": mask.to(device),
        "mm_token_type_ids": (ids == IMAGE_PAD).long().to(device),
        "pixel_values": torch.randn(batch * grid * grid, patches, generator=gen)
        .to(device, torch.bfloat16),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * batch, device=device),
    }


def train_step(model, optimizer, inputs: dict, device) -> tuple[float, dict]:
    """One Bradley-Terry step (+ 0.01·aux) on the 16 sequences; returns (seconds, metrics)."""
    from prism_ray.algo.discriminator import bradley_terry_loss

    torch.cuda.synchronize()
    start = time.perf_counter()
    out = model(**inputs, output_router_logits=True)
    s = out.scores.float()
    cap, cot = s[:8], s[8:]  # per view: [teacher0, teacher1, students of 0 ×3, students of 1 ×3]
    loss, metrics = bradley_terry_loss(
        cap[:2], cot[:2], cap[2:], cot[2:], torch.tensor([0, 0, 0, 1, 1, 1], device=device),
        torch.ones(6, dtype=torch.bool, device=device), reg_coef=0.0,
        aux_loss=out.aux_loss, aux_coef=0.01)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return time.perf_counter() - start, metrics


def test_upcycled_2b_scores_and_trains_in_bf16():
    from transformers import Qwen3VLForConditionalGeneration

    from prism_ray.algo.discriminator import clip_scores
    from prism_ray.models.discriminator import Discriminator, ValueHead
    from prism_ray.models.upcycle import UpcycleSettings, upcycle

    device = torch.device("cuda", 0)
    torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        dense = Qwen3VLForConditionalGeneration(qwen3vl_2b_config()).to(torch.bfloat16)
    dense_params = sum(p.numel() for p in dense.model.parameters())
    start = time.perf_counter()
    backbone = upcycle(dense, UpcycleSettings(num_experts=4, top_k=2, seed=0))
    upcycle_s = time.perf_counter() - start
    del dense
    torch.cuda.empty_cache()
    model = Discriminator(backbone, ValueHead(2048, 0.1, 0.02).to(device, torch.bfloat16),
                          routing="learned", use_images=True)
    moe_params = sum(p.numel() for p in model.parameters())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # 2 prompts × (teacher + 3 students) × 2 views = 16 sequences of ≈ 100–600 tokens.
    inputs = scored_batch(16, grid=16, segment_lengths=[64, 200, 400, 520], device=device)
    model.eval()
    with torch.no_grad():
        scores = clip_scores(model(**inputs).scores.float())
    assert scores.shape == (16,) and torch.isfinite(scores).all()

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01, fused=True)
    step_s = [train_step(model, optimizer, inputs, device) for _ in range(2)]
    metrics = step_s[-1][1]
    assert math.isfinite(metrics["loss"]) and metrics["aux_loss"] > 0
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"\n2B-shape discriminator: dense backbone {dense_params / 1e9:.2f} B params, "
          f"upcycled {moe_params / 1e9:.2f} B; upcycle {upcycle_s:.1f} s; "
          f"{int(inputs['attention_mask'].sum())} tokens, train step {step_s[0][0]:.2f} s "
          f"(first), {step_s[1][0]:.2f} s (second); "
          f"peak memory {peak:.1f} GiB")
