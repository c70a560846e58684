"""The embedded default models: tiny Qwen3-VL-architecture checkpoints built in code.

Random weights, a locally trained tokenizer and a torchvision-free image processor, saved as
an ordinary HF checkpoint directory (safetensors) that ``transformers`` loads back exactly.
Everything is deterministic from a seed. head_dim is 32 so vLLM's paged attention can serve
the policy.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from prism_ray.config.run import RunConfig
from prism_ray.models.processor import ImageOnlyQwen3VLProcessor, build_image_processor
from prism_ray.models.tokenizer import SPECIAL_TOKENS, train_tokenizer

MANIFEST = "prism_tiny.json"
DEFAULT_SYSTEM_PROMPT = RunConfig.model_fields["system_prompt"].default  # the schema's


@dataclass(frozen=True)
class TinyShape:
    """Dimensions of a tiny Qwen3-VL; head_dim = hidden // heads must be ≥ 32 for vLLM."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int | None = None  # default 2 × vision_hidden
    patch_size: int = 8
    vocab_size: int = 2048
    max_image_side: int = 128
    mrope_section: tuple[int, int, int] | None = None  # default: half of head_dim/2 on time
    deepstack: tuple[int, ...] | None = None  # default: the last vision block
    dtype: str = "float32"  # what the checkpoint is saved in


PRESETS = {
    "policy": TinyShape(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384),
    "discriminator": TinyShape(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256),
    # The published Qwen3-VL-2B shape with random weights (2.1 B parameters): for GPU
    # benchmarks of the distributed system, where the weights' values do not matter.
    "qwen3vl-2b-shape": TinyShape(
        hidden=2048, layers=28, heads=16, kv_heads=8, intermediate=6144, vision_hidden=1024,
        vision_depth=24, vision_heads=16, vision_intermediate=4096, patch_size=16,
        vocab_size=151936, max_image_side=512, mrope_section=(24, 20, 20),
        deepstack=(5, 11, 17), dtype="bfloat16"),
}


def qwen3vl_config(shape: TinyShape, token_ids: dict[str, int]) -> Qwen3VLConfig:
    head_dim = shape.hidden // shape.heads
    # M-RoPE splits head_dim/2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope_section = list(shape.mrope_section or (half - 2 * (half // 4), half // 4, half // 4))
    grid = shape.max_image_side // shape.patch_size  # position table: grid² entries
    text = dict(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=head_dim,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": mrope_section, "mrope_interleaved": True},
        pad_token_id=token_ids["<|endoftext|>"],
        bos_token_id=None,
        eos_token_id=token_ids["<|im_end|>"],
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_intermediate or 2 * shape.vision_hidden,
        num_heads=shape.vision_heads,
        patch_size=shape.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=shape.hidden,
        num_position_embeddings=grid * grid,
        deepstack_visual_indexes=list(shape.deepstack or (shape.vision_depth - 1,)),
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_model(shape: TinyShape, token_ids: dict[str, int], seed: int):
    """Random-init model; the same seed gives the same weights on any machine."""
    config = qwen3vl_config(shape, token_ids)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.eos_token_id = token_ids["<|im_end|>"]
    model.generation_config.pad_token_id = token_ids["<|endoftext|>"]
    return model.eval()


def default_corpus(seed: int, system_prompt: str | None, n: int = 4000) -> Iterable[str]:
    """Texts of the embedded task, for the tokenizer.

    The system prompt opens every sequence of every stage; weighting it like a frequent text
    lets BPE merge its words, which shortens every prompt (and every CPU step) several-fold.
    """
    from prism_ray.data.synthetic import corpus_texts

    system = itertools.repeat(system_prompt, n // 20) if system_prompt else ()
    return itertools.chain(system, corpus_texts(seed=seed, n=n, system_prompt=system_prompt))


def create_tiny_checkpoint(
    out_dir: str | Path, preset: str = "policy", seed: int = 0,
    corpus: Iterable[str] | None = None, tokenizer=None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> Path:
    """Build and save a tiny checkpoint (model, tokenizer, processor) into ``out_dir``.

    Pass ``tokenizer`` to share one vocabulary between policy and discriminator; otherwise
    one is trained on ``corpus`` (default: the task's texts and ``system_prompt``).
    """
    shape = PRESETS[preset]
    if tokenizer is None:
        texts = default_corpus(seed, system_prompt) if corpus is None else corpus
        tokenizer = train_tokenizer(texts, vocab_size=shape.vocab_size)
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    model = build_tiny_model(shape, token_ids, seed)
    processor = ImageOnlyQwen3VLProcessor(
        image_processor=build_image_processor(shape.patch_size, max_side=shape.max_image_side),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(getattr(torch, shape.dtype)).save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    info = {"preset": preset, "seed": seed, "shape": asdict(shape),
            "parameters": sum(p.numel() for p in model.parameters())}
    (out / MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
    return out


def create_tiny_pair(out_dir: str | Path, seed: int = 0, policy_preset: str = "policy",
                     discriminator_preset: str = "discriminator",
                     system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> tuple[Path, Path]:
    """The embedded default: policy and discriminator backbone sharing one tokenizer, trained
    with the run's ``system_prompt`` among its texts."""
    out = Path(out_dir)
    tokenizer = train_tokenizer(default_corpus(seed, system_prompt),
                                vocab_size=PRESETS["policy"].vocab_size)
    policy = create_tiny_checkpoint(out / "policy", policy_preset, seed, tokenizer=tokenizer)
    disc = create_tiny_checkpoint(out / "discriminator", discriminator_preset, seed + 1,
                                  tokenizer=tokenizer)
    return policy, disc
