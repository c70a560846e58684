"""The sequences the discriminator scores (PRISM_SPEC §3 decisions).

Two views of every response:
  perception  = system + image + question | caption segment   | terminator
  reasoning   = system + image + question | reasoning segment | terminator  (no caption)
The text-only ablation (``use_images=False``) drops the image from both views' prompts.

A response is tokenised ONCE; its caption/reasoning token ranges come from the tokenizer's
character offsets against the ``check_format`` spans (never from decoding growing prefixes, which
is quadratic and disagrees with the real tokenisation at merges). A token belongs to a segment
when its characters overlap the segment's span, so a token that straddles a boundary (a BPE
merge such as ``">\\n"``) is kept, not dropped. Teacher segments are joined into a response
(``DiscriminatorItem.join``) and split by the very same function as the students'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prism_ray.models.batching import SequenceItem
from prism_ray.models.inputs import EncodedPrompt, encode_prompt
from prism_ray.types import DiscriminatorItem
from prism_ray.verify.format_gate import check_format


@dataclass(frozen=True)
class SegmentTokens:
    """Token ids of the two scored segments of one response."""

    caption: tuple[int, ...]
    reasoning: tuple[int, ...]


def token_range(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> tuple[int, int]:
    """[first, last + 1) of the tokens whose characters overlap ``span`` = [start, end)."""
    start, end = span
    hits = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if not hits:
        raise ValueError(f"no token overlaps characters {span}")
    return hits[0], hits[-1] + 1


def split_response(tokenizer, response: str) -> SegmentTokens | None:
    """Caption and reasoning token ids of a response; None when it is format-invalid."""
    verdict = check_format(response)
    if not verdict.ok:
        return None
    encoded = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    cap = token_range(offsets, verdict.caption_span)
    rsn = token_range(offsets, verdict.reasoning_span)
    return SegmentTokens(tuple(ids[cap[0]:cap[1]]), tuple(ids[rsn[0]:rsn[1]]))


@dataclass(frozen=True)
class EncodedItem:
    """A ``DiscriminatorItem`` after the canonical prompt pass and segment splitting."""

    uid: str
    prompt: EncodedPrompt
    teacher: SegmentTokens
    students: tuple[SegmentTokens | None, ...]  # None: format-invalid (score 0, no loss)

    @property
    def valid(self) -> tuple[bool, ...]:
        return tuple(s is not None for s in self.students)

    @property
    def num_sequences(self) -> int:
        return 2 * (1 + sum(self.valid))

    @property
    def longest(self) -> int:
        """Longest scored sequence (prompt + segment + terminator), for micro-batch planning."""
        segments = [self.teacher, *(s for s in self.students if s is not None)]
        body = max(max(len(s.caption), len(s.reasoning)) for s in segments)
        return len(self.prompt.input_ids) + body + 1


def encode_item(processor, item: DiscriminatorItem, use_images: bool = True, *,
                system_prompt: str | None) -> EncodedItem:
    """Prompt through ``encode_prompt``; teacher and students through ``split_response``.
    ``use_images=False``: the prompt is encoded as if the item had no image (no vision tokens,
    no pixels), the text-only ablation."""
    tokenizer = processor.tokenizer
    teacher = split_response(tokenizer, item.teacher_response)
    if teacher is None:
        # A malformed teacher leaves nothing to compare with: a data error, not a rollout one.
        raise ValueError(f"item '{item.uid}': the teacher segments are not format-valid")
    students = tuple(split_response(tokenizer, r) for r in item.student_responses)
    prompt = encode_prompt(processor, item.question, item.images if use_images else (),
                           system_prompt=system_prompt)
    return EncodedItem(item.uid, prompt, teacher, students)


def item_sequences(item: EncodedItem, terminator_id: int) -> list[SequenceItem]:
    """[teacher caption, valid students' captions..., teacher reasoning, valid students'
    reasoning...]: every segment followed by the one terminator token."""
    segments = [item.teacher, *(s for s in item.students if s is not None)]
    who = ["teacher", *(f"student{i}" for i, s in enumerate(item.students) if s is not None)]
    caps = [SequenceItem(item.prompt, (*s.caption, terminator_id), f"{item.uid}/{w}/caption")
            for s, w in zip(segments, who, strict=True)]
    cots = [SequenceItem(item.prompt, (*s.reasoning, terminator_id), f"{item.uid}/{w}/reasoning")
            for s, w in zip(segments, who, strict=True)]
    return caps + cots


PERCEPTION, REASONING = 0, 1  # view ids; hard routing sends a view's tokens to this expert


def item_views(item: EncodedItem) -> list[int]:
    """The view (PERCEPTION or REASONING) of each sequence of ``item_sequences(item)``."""
    count = 1 + sum(item.valid)
    return [PERCEPTION] * count + [REASONING] * count


@dataclass
class ViewScores:
    """Scores of a group of items laid out for ``algo.bradley_terry_loss``.

    P items, N = all their student responses (valid or not). Invalid students hold 0.
    """

    teacher_caption: torch.Tensor  # [P]
    teacher_reasoning: torch.Tensor  # [P]
    student_caption: torch.Tensor  # [N]
    student_reasoning: torch.Tensor  # [N]
    prompt_index: torch.Tensor  # [N] long
    valid: torch.Tensor  # [N] bool


def assemble(scores: torch.Tensor, items: Sequence[EncodedItem]) -> ViewScores:
    """Split the flat scores of ``item_sequences`` (concatenated over ``items``) into views.
    Invalid students are scattered in as zeros, keeping the gradient of the valid ones."""
    t_cap, t_cot, s_cap, s_cot, index, valid = [], [], [], [], [], []
    offset = 0
    for p, item in enumerate(items):
        v = sum(item.valid)
        caps, cots = scores[offset:offset + 1 + v], scores[offset + 1 + v:offset + 2 + 2 * v]
        offset += 2 + 2 * v
        mask = torch.tensor(item.valid, dtype=torch.bool, device=scores.device)
        t_cap.append(caps[:1])
        t_cot.append(cots[:1])
        s_cap.append(scores.new_zeros(len(mask)).masked_scatter(mask, caps[1:]))
        s_cot.append(scores.new_zeros(len(mask)).masked_scatter(mask, cots[1:]))
        index.append(torch.full((len(mask),), p, dtype=torch.long, device=scores.device))
        valid.append(mask)
    if offset != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores for {offset} sequences")
    return ViewScores(torch.cat(t_cap), torch.cat(t_cot), torch.cat(s_cap), torch.cat(s_cot),
                      torch.cat(index), torch.cat(valid))
