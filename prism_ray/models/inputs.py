"""The one canonical processor pass (PRISM_SPEC §9).

Rollout engines, learners and the discriminator all build model inputs here, so a prompt
tokenises to the same ids everywhere. Engines that expand images themselves (vLLM) get the
*collapsed* prompt text (one placeholder per image) plus the images; HF forwards get the
processor's expanded ids with pixel values. Sequences that continue a prompt (a response,
a segment) append their ids and extend ``mm_token_type_ids`` with zeros, which transformers
needs whenever ``image_grid_thw`` is passed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image


@dataclass
class EncodedPrompt:
    """One prompt after the processor: ids with expanded image placeholders + vision inputs."""

    input_ids: torch.Tensor  # [T] long
    mm_token_type_ids: torch.Tensor  # [T] long (1 at image tokens)
    pixel_values: torch.Tensor | None  # [num_patches, patch_dim]
    image_grid_thw: torch.Tensor | None  # [num_images, 3]

    @property
    def num_image_tokens(self) -> int:
        return int((self.mm_token_type_ids == 1).sum())


def chat_messages(question: str, num_images: int, *, system_prompt: str | None) -> list[dict]:
    """System turn (the run's ``system_prompt``; none when it is None or empty) + user turn
    (images first, then the question)."""
    content = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": question})
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": content}]


def prompt_text(processor, question: str, num_images: int, *, system_prompt: str | None) -> str:
    """The chat-formatted prompt with collapsed image placeholders, ready for generation."""
    return processor.apply_chat_template(
        chat_messages(question, num_images, system_prompt=system_prompt), tokenize=False,
        add_generation_prompt=True,
    )


def decode_images(images: Sequence[bytes]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(data)).convert("RGB") for data in images]


def encode_prompt(
    processor, question: str, images: Sequence[bytes], *, system_prompt: str | None
) -> EncodedPrompt:
    """``system_prompt`` is the run's (``RunConfig.system_prompt``): every role passes the same
    one, so a prompt has the same ids in rollout, training and scoring."""
    text = prompt_text(processor, question, len(images), system_prompt=system_prompt)
    pil = decode_images(images) if images else None
    batch = processor(text=[text], images=pil, return_tensors="pt")
    return EncodedPrompt(
        input_ids=batch["input_ids"][0],
        mm_token_type_ids=batch["mm_token_type_ids"][0],
        pixel_values=batch.get("pixel_values"),
        image_grid_thw=batch.get("image_grid_thw"),
    )


def vision_token_ids(tokenizer) -> list[int]:
    """Placeholder tokens that must never be sampled (a sampled image pad breaks the next
    forward: "image features and image tokens do not match")."""
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    ids = [tokenizer.convert_tokens_to_ids(n) for n in names]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]
