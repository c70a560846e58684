"""Collation of (prompt, continuation) sequences into one HF forward batch, with images.

Every learner forward goes through ``collate``: prompts come from the canonical processor pass
(``models.inputs.encode_prompt``), continuations (sampled responses, demonstration answers) are
appended as plain token ids. The collated batch is right-padded; ``mm_token_type_ids`` is
extended with zeros over continuation tokens and padding (transformers 5.x raises when
``image_grid_thw`` is passed without it).

Vision inputs are checked per sample (PRISM_SPEC §9): a sample whose image placeholders do not
match its grids, or whose pixel values went missing, fails here with its name, instead of the
policy silently training blind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prism_ray.models.inputs import EncodedPrompt, encode_prompt
from prism_ray.types import Demonstration


class VisionMismatchError(ValueError):
    """Image placeholder tokens, image grids and pixel rows of a sample disagree."""


@dataclass(frozen=True)
class VisionSpec:
    """What collation needs from the processor: the placeholder id, padding and merge size."""

    image_token_id: int
    pad_token_id: int
    end_token_id: int  # <|im_end|>: closes an assistant turn
    merge_size: int

    @classmethod
    def from_processor(cls, processor) -> VisionSpec:
        tok = processor.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return cls(
            image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
            pad_token_id=int(pad),
            end_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            merge_size=int(processor.image_processor.merge_size),
        )


@dataclass(frozen=True)
class SequenceItem:
    """One sequence to collate: the encoded prompt, the continuation ids and a name for errors."""

    prompt: EncodedPrompt
    continuation: tuple[int, ...]
    name: str


@dataclass
class Batch:
    """A right-padded forward batch. B sequences, T = longest sequence, L = longest continuation.

    ``target_index[b, j]`` is the position in ``input_ids`` of continuation token j of sample b
    (0 where ``response_mask`` is 0); its log-prob comes from the logits at position
    ``target_index - 1`` (causal shift, see ``continuation_logprobs``).
    """

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    mm_token_type_ids: torch.Tensor  # [B, T] long (1 at image tokens)
    loss_mask: torch.Tensor  # [B, T] long (1 at continuation tokens; unshifted)
    target_index: torch.Tensor  # [B, L] long
    response_mask: torch.Tensor  # [B, L] long
    pixel_values: torch.Tensor | None  # [sum patches, patch_dim]
    image_grid_thw: torch.Tensor | None  # [num_images, 3]
    names: tuple[str, ...]
    num_truncated: int = 0

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the HF forward."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                  "mm_token_type_ids": self.mm_token_type_ids}
        if self.pixel_values is not None:
            inputs["pixel_values"] = self.pixel_values
            inputs["image_grid_thw"] = self.image_grid_thw
        return inputs

    def to(self, device: torch.device | str, float_dtype: torch.dtype | None = None) -> Batch:
        """Move every tensor; pixel values also take the model's float dtype when given."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        if self.pixel_values is not None and float_dtype is not None:
            moved["pixel_values"] = moved["pixel_values"].to(float_dtype)
        return Batch(**{**vars(self), **moved})

    @property
    def num_tokens(self) -> int:
        """Continuation (learned-on) tokens."""
        return int(self.response_mask.sum())


def check_sample_vision(item: SequenceItem, spec: VisionSpec) -> None:
    """Placeholders == features implied by the grids (prod / merge²); pixel rows == patches."""
    prompt = item.prompt
    if spec.image_token_id in item.continuation:
        # A sampled image pad makes the forward fail far from its cause (PRISM_SPEC §9).
        raise VisionMismatchError(
            f"sample '{item.name}': the continuation contains the image placeholder token "
            f"{spec.image_token_id}; vision tokens must be banned during sampling")
    placeholders = int((prompt.input_ids == spec.image_token_id).sum())
    if prompt.image_grid_thw is None or prompt.pixel_values is None:
        if placeholders:
            raise VisionMismatchError(
                f"sample '{item.name}': {placeholders} image placeholder tokens but no "
                f"{'image_grid_thw' if prompt.image_grid_thw is None else 'pixel_values'} "
                "(images were dropped from the batch)")
        return
    patches = int(prompt.image_grid_thw.prod(dim=-1).sum())
    features = patches // (spec.merge_size**2)
    if placeholders != features:
        raise VisionMismatchError(
            f"sample '{item.name}': {placeholders} image placeholder tokens but image_grid_thw "
            f"{prompt.image_grid_thw.tolist()} implies {features} image features")
    if prompt.pixel_values.shape[0] != patches:
        raise VisionMismatchError(
            f"sample '{item.name}': pixel_values has {prompt.pixel_values.shape[0]} rows but "
            f"image_grid_thw {prompt.image_grid_thw.tolist()} implies {patches} patches")


def collate(items: Sequence[SequenceItem], spec: VisionSpec) -> Batch:
    """Right-pad prompts + continuations into one batch (checks every sample's images first)."""
    if not items:
        raise ValueError("collate needs at least one sequence")
    for item in items:
        check_sample_vision(item, spec)
    lengths = [len(it.prompt.input_ids) + len(it.continuation) for it in items]
    longest, longest_cont = max(lengths), max(max(len(it.continuation) for it in items), 1)
    size = (len(items), longest)
    input_ids = torch.full(size, spec.pad_token_id, dtype=torch.long)
    attention_mask, mm_types, loss_mask = (torch.zeros(size, dtype=torch.long) for _ in range(3))
    target_index = torch.zeros((len(items), longest_cont), dtype=torch.long)
    response_mask = torch.zeros_like(target_index)
    for b, (item, length) in enumerate(zip(items, lengths, strict=True)):
        start, cont = len(item.prompt.input_ids), len(item.continuation)
        input_ids[b, :start] = item.prompt.input_ids
        input_ids[b, start:length] = torch.tensor(item.continuation, dtype=torch.long)
        attention_mask[b, :length] = 1
        mm_types[b, :start] = item.prompt.mm_token_type_ids  # zeros over the continuation
        loss_mask[b, start:length] = 1
        target_index[b, :cont] = torch.arange(start, length)
        response_mask[b, :cont] = 1
    pixels = [it.prompt.pixel_values for it in items if it.prompt.pixel_values is not None]
    grids = [it.prompt.image_grid_thw for it in items if it.prompt.image_grid_thw is not None]
    return Batch(
        input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm_types,
        loss_mask=loss_mask, target_index=target_index, response_mask=response_mask,
        pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.cat(grids) if grids else None,
        names=tuple(it.name for it in items),
    )


def check_batch_vision(batch: Batch, spec: VisionSpec) -> None:
    """The same count check on a whole collated batch, right before the forward: a batch can be
    rebuilt or moved between collation and the model, and a blind step must never run."""
    placeholders = int((batch.input_ids == spec.image_token_id).sum())
    grid = batch.image_grid_thw
    patches = 0 if grid is None else int(grid.prod(dim=-1).sum())
    rows = 0 if batch.pixel_values is None else batch.pixel_values.shape[0]
    if placeholders != patches // spec.merge_size**2 or rows != patches:
        raise VisionMismatchError(
            f"batch of {list(batch.names)}: {placeholders} image placeholder tokens, "
            f"{patches // spec.merge_size**2} image features from image_grid_thw, "
            f"{rows} pixel_values rows for {patches} patches")


def sft_item(
    processor, demo: Demonstration, spec: VisionSpec, max_seq_tokens: int, *,
    system_prompt: str | None,
) -> tuple[SequenceItem, bool]:
    """A demonstration as a sequence: the canonical prompt + response ids + ``<|im_end|>``.

    The continuation is cut to fit ``max_seq_tokens`` (the prompt never is: cutting it would
    cut image placeholders). Returns the item and whether it was truncated.
    """
    prompt = encode_prompt(processor, demo.question, demo.images, system_prompt=system_prompt)
    response = processor.tokenizer(demo.response, add_special_tokens=False)["input_ids"]
    continuation = (*response, spec.end_token_id)
    room = max_seq_tokens - len(prompt.input_ids)
    if room < 1:
        raise ValueError(f"demonstration '{demo.uid}': prompt alone is {len(prompt.input_ids)} "
                         f"tokens, max_seq_tokens is {max_seq_tokens}")
    truncated = len(continuation) > room
    return SequenceItem(prompt, continuation[:room], demo.uid), truncated


def collate_demonstrations(
    processor, demos: Sequence[Demonstration], spec: VisionSpec, max_seq_tokens: int, *,
    system_prompt: str | None,
) -> Batch:
    """SFT batch from demonstrations; ``num_truncated`` counts responses cut to fit."""
    pairs = [sft_item(processor, d, spec, max_seq_tokens, system_prompt=system_prompt)
             for d in demos]
    batch = collate([item for item, _ in pairs], spec)
    batch.num_truncated = sum(cut for _, cut in pairs)
    return batch


def continuation_logprobs(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Teacher-forced log pi(y_j | y_<j) of every continuation token, fp32. Returns [B, L].

    The shift: logits at position p predict the token at p + 1, so continuation token j (at
    ``target_index[b, j]``) is scored by the logits at ``target_index[b, j] - 1``. Only those
    rows are gathered before the fp32 log_softmax of the raw logits (no temperature), which
    keeps the [B, L, V] float copy as small as the continuation. Padding positions give 0.
    """
    log_probs = torch.log_softmax(continuation_logits(logits, batch).float(), dim=-1)
    targets = torch.gather(batch.input_ids, 1, batch.target_index)
    token_lp = torch.gather(log_probs, -1, targets.unsqueeze(-1)).squeeze(-1)
    return token_lp * batch.response_mask.to(token_lp.dtype)


def continuation_logits(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Logits that score each continuation token, [B, L, V] aligned with the log-probs."""
    rows = (batch.target_index - 1).clamp(min=0)
    return torch.gather(logits, 1, rows.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
