"""Rollout with transformers ``generate`` (CPU, or one GPU): the reference engine.

Batched and left-padded, images included, through the canonical prompt encoding. Each prompt
is repeated ``n`` times in the batch rather than using ``num_return_sequences``: expanding a
flat ``pixel_values`` tensor per sequence is version-dependent in transformers, repetition is
not (the vision encoder runs ``n`` times, which only matters on this non-production path).

Log-probs are ``log_softmax`` of the raw per-step logits generate returns (``output_logits``,
before any logits processor): the distribution the tokens were actually drawn from at
temperature 1. A teacher-forced recompute would agree to ~1e-6 (tests/test_rollout_hf.py)
but would hide the engine/learner mismatch that PRISM_SPEC §9 asks to measure every step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from prism_ray.models.inputs import decode_images, encode_prompt, prompt_text, vision_token_ids
from prism_ray.models.processor import load_processor
from prism_ray.rollout.base import (
    END_OF_TURN,
    RolloutEngine,
    call_seed,
    cut_at_stop,
    finish_reason,
)
from prism_ray.types import RLPrompt, Rollout, SamplingParams

log = logging.getLogger(__name__)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for one call without disturbing the process's global RNG streams."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class HFEngine(RolloutEngine):
    def __init__(
        self, checkpoint: str | Path, seed: int = 0, device: str = "cpu",
        dtype: torch.dtype = torch.float32, *, system_prompt: str | None,
    ) -> None:
        """``system_prompt``: the run's, the same the learner encodes with."""
        super().__init__()
        self.system_prompt = system_prompt
        self.device = torch.device(device)
        self.processor = load_processor(checkpoint)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(checkpoint), dtype=dtype, use_safetensors=True)
        self.model.to(self.device).eval()
        self.stop_id = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self.pad_id = self.tokenizer.pad_token_id
        self.banned = vision_token_ids(self.tokenizer)
        self._seed, self._calls = seed, 0

    # ── generation ──────────────────────────────────────────────

    def generate(self, prompts: Sequence[RLPrompt], params: SamplingParams) -> list[list[Rollout]]:
        if not prompts:
            return []
        seed = call_seed(self._seed, self._calls, params)
        self._calls += 1
        batch = self._encode_batch([p for p in prompts for _ in range(params.n)])
        with torch.no_grad(), seeded(seed, self.device):
            out = self.model.generate(**batch, **self._generate_kwargs(params))
        new = out.sequences[:, batch["input_ids"].shape[1]:]
        logps = self._sampled_logprobs(out.logits, new)
        return self._to_rollouts(prompts, params.n, new, logps)

    def _encode_batch(self, prompts: Sequence[RLPrompt]) -> dict[str, torch.Tensor]:
        """One processor pass over the batch: the same ids as ``encode_prompt`` per prompt,
        left-padded."""
        texts = [prompt_text(self.processor, p.question, len(p.images),
                             system_prompt=self.system_prompt) for p in prompts]
        images = [img for p in prompts for img in decode_images(p.images)]
        batch = self.processor(text=texts, images=images or None, padding=True,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def _generate_kwargs(self, params: SamplingParams) -> dict:
        """Every sampling knob explicit, so a checkpoint's generation_config.json (Qwen ships
        top_k=20, top_p=0.8) never leaks into RL sampling."""
        sampling = params.temperature > 0
        kwargs = dict(
            do_sample=sampling, max_new_tokens=params.max_tokens, eos_token_id=self.stop_id,
            pad_token_id=self.pad_id, bad_words_ids=[[i] for i in self.banned],
            repetition_penalty=1.0, return_dict_in_generate=True, output_logits=True,
        )
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _sampled_logprobs(self, logits: tuple[torch.Tensor, ...], new: torch.Tensor) -> torch.Tensor:
        """[B, steps] raw-model log-prob of each sampled token (one step at a time: the full
        [B, steps, vocab] tensor is large for a 150k vocabulary)."""
        columns = []
        for step, step_logits in enumerate(logits):
            logp = torch.log_softmax(step_logits.float(), dim=-1)
            columns.append(logp.gather(1, new[:, step:step + 1]))
        return torch.cat(columns, dim=1).cpu()

    def _to_rollouts(
        self, prompts: Sequence[RLPrompt], n: int, new: torch.Tensor, logps: torch.Tensor
    ) -> list[list[Rollout]]:
        groups: list[list[Rollout]] = [[] for _ in prompts]
        for row, (sampled, row_logps) in enumerate(zip(new.tolist(), logps.tolist())):
            ids = cut_at_stop(sampled, self.stop_id)
            prompt = prompts[row // n]
            groups[row // n].append(Rollout(
                prompt_uid=prompt.uid, sample_index=row % n,
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=tuple(ids), logprobs=tuple(row_logps[:len(ids)]),
                finish_reason=finish_reason(ids, self.stop_id), weight_version=self._version,
            ))
        return groups

    # ── teacher forcing ─────────────────────────────────────────

    def logprobs_of(
        self, prompts: Sequence[RLPrompt], token_ids_per_prompt: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """One unpadded forward per sequence: exactly the learner's computation."""
        return [self._teacher_forced(p, ids) for p, ids in zip(prompts, token_ids_per_prompt,
                                                               strict=True)]

    @torch.no_grad()
    def _teacher_forced(self, prompt: RLPrompt, continuation: Sequence[int]) -> list[float]:
        enc = encode_prompt(self.processor, prompt.question, prompt.images,
                            system_prompt=self.system_prompt)
        cont = torch.tensor(list(continuation), dtype=torch.long)
        ids = torch.cat([enc.input_ids, cont])[None].to(self.device)
        mm = torch.cat([enc.mm_token_type_ids, torch.zeros_like(cont)])[None].to(self.device)
        vision = {k: v.to(self.device) for k, v in
                  (("pixel_values", enc.pixel_values), ("image_grid_thw", enc.image_grid_thw))
                  if v is not None}
        logits = self.model(input_ids=ids, mm_token_type_ids=mm, **vision).logits[0]
        start = enc.input_ids.numel() - 1  # logits at t predict token t + 1
        logp = torch.log_softmax(logits[start:start + cont.numel()].float(), dim=-1)
        return logp.gather(1, cont[:, None].to(self.device))[:, 0].tolist()

    # ── weights ─────────────────────────────────────────────────

    @torch.no_grad()
    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, last: bool = True
    ) -> None:
        """Copy each tensor into the live parameter at once (buckets need no staging here)."""
        targets = self._weight_targets()
        count = 0
        for name, tensor in named_tensors:
            target = targets.get(name)
            if target is None:
                raise KeyError(f"load_weights: {name!r} is not a parameter or buffer of the "
                               f"rollout model ({len(targets)} known names)")
            if tuple(target.shape) != tuple(tensor.shape):
                raise ValueError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(target.shape)}")
            target.copy_(tensor)  # same dtype: bit-exact; otherwise one cast
            count += 1
        if last:
            self._version = version
        log.debug("loaded %d tensors (version %d, last=%s)", count, version, last)

    def _weight_targets(self) -> dict[str, torch.Tensor]:
        """Every name a sender may use, tied aliases included (``lm_head.weight`` shares
        storage with the embedding when word embeddings are tied)."""
        targets = dict(self.model.named_buffers(remove_duplicate=False))
        targets.update(self.model.named_parameters(remove_duplicate=False))
        return targets

    def close(self) -> None:
        self.model = None
