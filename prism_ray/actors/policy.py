"""The policy learner: one DeepSpeed ZeRO rank of the policy (SFT, alignment and RLVR updates).

Batch semantics are GLOBAL: every public method takes the whole step's list (the group puts it
in the object store once); rank r learns on ``samples[r::world_size]``, losses are normalised
over all ranks, and results (log-probs, metrics) come back complete and identical on every
rank. Every rank runs the same number of forward passes (``learner.microbatch``), so uneven
shards never hang ZeRO-3's parameter gathers or ZeRO-2's gradient reductions.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from prism_ray.actors.learner import EngineLearner
from prism_ray.algo import (
    PolicyLoss,
    SFTAggregation,
    kl_metrics,
    masked_mean,
    rollout_correction,
    sft_loss,
)
from prism_ray.config.schema import LearnerConfig
from prism_ray.learner.engine import (
    TORCH_DTYPES,
    init_distributed,
)
from prism_ray.learner.flops import mfu, model_dims, peak_tflops, training_flops
from prism_ray.learner.metrics import StepMetrics
from prism_ray.learner.microbatch import (
    Normaliser,
    aligned_count,
    global_normaliser,
    micro_weight,
    plan_micro_batches,
)
from prism_ray.learner.updates import trains
from prism_ray.learner.weights import (
    WeightManifest,
    gather_full_state,
    iter_planned_buckets,
    iter_weight_buckets,
    manifest_of,
)
from prism_ray.models.batching import (
    Batch,
    SequenceItem,
    VisionSpec,
    check_batch_vision,
    collate,
    sft_item,
)
from prism_ray.models.inputs import EncodedPrompt, encode_prompt
from prism_ray.models.token_logprobs import continuation_scores
from prism_ray.sync.cuda_ipc import IpcSender
from prism_ray.sync.endpoints import WeightSender
from prism_ray.sync.plan import Bucket
from prism_ray.types import Demonstration, PolicySample


def _padded(rows: Sequence[Sequence[float]], like: torch.Tensor) -> torch.Tensor:
    """Per-sample float lists -> [B, L] like the batch's response mask (0 beyond each row)."""
    out = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


class PolicyLearner(EngineLearner, WeightSender, IpcSender):
    """One rank. ``WeightSender`` adds ``sync_connect``/``sync_send`` on top of
    ``gathered_buckets`` (the broadcast to rollout workers lives in ``sync``)."""

    def __init__(self, rank: int, world_size: int, model_path: str,
                 learner_config: LearnerConfig, seed: int = 0, *,
                 system_prompt: str | None) -> None:
        super().__init__(rank, world_size)
        self.model_path, self.config, self.seed = str(model_path), learner_config, seed
        self.system_prompt = system_prompt  # the run's: the rollout workers encode with it too
        self.engine = None
        self.model: torch.nn.Module | None = None

    # ── lifecycle ───────────────────────────────────────────────

    def setup(self, master_addr: str, port: int) -> str:
        """Join the process group, load model and processor. Returns the backend name."""
        from prism_ray.models.processor import load_processor

        backend = init_distributed(self.rank, self.world_size, master_addr, port)
        torch.manual_seed(self.seed + self.rank)
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        self.dtype = TORCH_DTYPES[self.config.dtype]
        self.processor = load_processor(self.model_path)
        self.spec = VisionSpec.from_processor(self.processor)
        self.model = self._load(self.model_path)
        return backend

    @property
    def learner_config(self) -> LearnerConfig:
        return self.config

    def _rebuild(self, state: dict[str, torch.Tensor], config) -> torch.nn.Module:
        from transformers import AutoModelForImageTextToText

        # Built on the learner's device: built on the CPU, every weight is first initialised
        # at random on the actor's few cores only to be overwritten from ``state`` (85-100 s
        # of every phase transition at the 2B shape, measured on one H200).
        with torch.device(self.device):
            model = AutoModelForImageTextToText.from_config(config, dtype=self.dtype)
        model.load_state_dict(state, strict=False)  # buffers (rotary tables) are rebuilt
        return model.to(self.device)

    def _load(self, path: str) -> torch.nn.Module:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(
            path, dtype=self.dtype, use_safetensors=True).to(self.device)

    # ── forward passes ──────────────────────────────────────────

    def _items(self, samples: Sequence[PolicySample], indices: Sequence[int]
               ) -> list[SequenceItem]:
        """Canonical prompt encoding; the rollouts of one prompt share one processor pass.
        ``indices`` are the samples' places in the global list (named in errors)."""
        cache: dict[tuple, EncodedPrompt] = {}
        items = []
        for index, s in zip(indices, samples, strict=True):
            key = (s.question, s.images)
            if key not in cache:
                cache[key] = encode_prompt(self.processor, s.question, s.images,
                                           system_prompt=self.system_prompt)
            items.append(SequenceItem(cache[key], tuple(s.response_ids), f"#{index}"))
        return items

    def _passes(self, items: list[SequenceItem], pad: SequenceItem,
                indices: Sequence[int] | None = None
                ) -> Iterator[tuple[list[int], Batch, bool]]:
        """(indices, batch, is_padding) per forward over ``items[indices]`` (default: all);
        every rank yields the same number."""
        indices = range(len(items)) if indices is None else indices
        lengths = [len(items[j].prompt.input_ids) + len(items[j].continuation) for j in indices]
        groups = [[indices[k] for k in group]
                  for group in plan_micro_batches(lengths, self.config.micro_batch_tokens)]
        for i in range(aligned_count(len(groups), self.device)):
            chosen = groups[i] if i < len(groups) else []
            batch = collate([items[j] for j in chosen] or [pad], self.spec)
            check_batch_vision(batch, self.spec)
            yield chosen, batch.to(self.device, self.dtype), not chosen

    def _logits(self, batch: Batch) -> torch.Tensor:
        return self._module()(**batch.model_inputs()).logits

    def _scores(self, batch: Batch, with_entropy: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Continuation log-probs [B, L] fp32 (and entropies), chunked from the hidden states
        (``models.token_logprobs``): the [B, T, V] logits are never built."""
        return continuation_scores(self._module(), self._unwrapped(), batch,
                                   self.config.logprob_chunk_tokens, with_entropy=with_entropy)

    @torch.no_grad()
    def compute_logprobs(self, samples: Sequence[PolicySample]) -> list[list[float]]:
        """Teacher-forced log-probs of every response token (eval mode, fp32 logsumexp)."""
        if not samples:
            return []
        module = self._module()
        module.eval()
        mine = self._shard(len(samples))
        items = self._items([samples[i] for i in mine], mine)
        pad = self._items(samples[:1], [0])[0]
        local: list[list[float] | None] = [None] * len(items)
        for chosen, batch, _ in self._passes(items, pad):
            log_probs = self._scores(batch)[0].cpu()
            for row, j in enumerate(chosen):
                local[j] = log_probs[row, : len(items[j].continuation)].tolist()
        return self._gather_ordered(local, len(samples))

    # ── updates ─────────────────────────────────────────────────

    def _optimizer_step(self, items, pad, normaliser: Normaliser,
                        micro_loss: Callable[[Batch, list[int]], tuple[torch.Tensor, dict]],
                        train: Sequence[int] | None = None) -> dict[str, float]:
        """One optimizer step over this rank's items (shared by policy and SFT steps).

        Only ``items[train]`` (default: all) are forwarded; the normaliser still counts every
        item, so leaving out items whose gradient is exactly zero changes nothing else.
        """
        start = time.perf_counter()
        self.engine.train()
        total = global_normaliser([len(it.continuation) for it in items], normaliser, self.device)
        metrics, passes = StepMetrics(), list(self._passes(items, pad, train))
        lr = self.engine.get_lr()[0]  # the lr this step applies (the schedule steps after it)
        params, layers, hidden = model_dims(self._unwrapped())
        for i, (chosen, batch, padding) in enumerate(passes):
            loss, micro = micro_loss(batch, chosen)
            weight = 0.0 if padding else micro_weight(
                batch.response_mask, normaliser, total, self.world_size)
            self.engine.set_gradient_accumulation_boundary(i == len(passes) - 1)
            self.engine.backward(loss * weight, scale_wrt_gas=False)
            tokens = 0.0 if padding else float(batch.num_tokens)
            # "loss" is summed with its global weight below; algo's own counts are replaced by ours.
            metrics.add_mean({k: v for k, v in micro.items() if k not in ("loss", "num_tokens")},
                             tokens)
            metrics.add_sum("loss", micro["loss"] * weight / self.world_size)
            metrics.add_sum("tokens", tokens)
            metrics.add_sum("sequences", float(len(chosen)))
            lengths = [] if padding else batch.attention_mask.sum(-1).tolist()
            metrics.add_sum("_seq_tokens", float(sum(lengths)))
            metrics.add_sum("_padded_tokens", 0.0 if padding else float(batch.input_ids.numel()))
            metrics.add_sum("_flops", training_flops(params, layers, hidden, lengths))
        self.engine.step()
        out = metrics.reduce(self.device)
        norm = self.engine.get_global_grad_norm()
        out.update(grad_norm=float(norm) if norm is not None else float("nan"), lr=lr,
                   micro_batches=float(len(passes)))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        out.update(self._throughput(out, time.perf_counter() - start))
        return out

    def _throughput(self, out: dict[str, float], seconds: float) -> dict[str, float]:
        """tokens_per_s (prompt + response tokens, padding excluded, all ranks), padding_frac
        (padded positions / all positions forwarded) and, on a GPU with a known peak, mfu."""
        tokens, padded, flops = (out.pop(k) for k in ("_seq_tokens", "_padded_tokens", "_flops"))
        result = {"tokens_per_s": tokens / seconds,
                  "padding_frac": 1.0 - tokens / padded if padded else 0.0}
        peak = peak_tflops(self.config.peak_tflops) if self.device.type == "cuda" else None
        value = mfu(flops, seconds, peak, self.world_size)
        if value is not None:
            result["mfu"] = value
        return result

    def _skipped_step(self, skipped: int) -> dict[str, float]:
        """A step whose every sample has a zero gradient: no forward, backward or optimizer
        step (Adam's moments and weight decay would still move the weights). The lr schedule
        advances, so later steps keep the lr of their place in the phase."""
        lr = self.engine.get_lr()[0]
        with warnings.catch_warnings():  # torch warns when the schedule steps before any
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.engine.lr_scheduler.step()  # optimizer step: here that is the point
        return {"loss": 0.0, "pg_loss": 0.0, "tokens": 0.0, "sequences": 0.0,
                "micro_batches": 0.0, "grad_norm": 0.0, "lr": lr,
                "skipped_zero_adv_samples": float(skipped), "optimizer_step_skipped": 1.0}

    def _rollout_diagnostics(self, samples: Sequence[PolicySample],
                             loss_settings: PolicyLoss) -> dict[str, float]:
        """For a step that trains nothing: the rollout-vs-learner mismatch and the rollout
        correction's ratio metrics, from one no-grad forward (the sync's health check)."""
        learner = self.compute_logprobs(samples)
        width = max(len(row) for row in learner)
        mask = torch.zeros(len(samples), width)
        for b, row in enumerate(learner):
            mask[b, : len(row)] = 1.0
        old = _padded(learner, mask)
        rollout = _padded([s.rollout_logprobs for s in samples], mask)
        _, _, metrics = rollout_correction(old, rollout, mask, loss_settings.clip.correction)
        # The same keys as a step that trains (the loss reports k1 and k3 there).
        metrics.update(kl_metrics(rollout, old, mask, prefix="rollout_mismatch"))
        metrics["rollout_mismatch_abs"] = masked_mean((rollout - old).abs(), mask).item()
        return metrics

    def policy_step(self, samples: Sequence[PolicySample], loss_settings: PolicyLoss,
                    old_logprobs: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
        """One optimizer step of the policy-gradient loss over all samples.

        Without ``old_logprobs`` the step is on-policy (one update per rollout batch): the old
        log-probs are the detached current ones, so the ratio is 1 and no extra forward runs.
        Samples whose gradient is exactly zero (``learner.updates.trains``) are not forwarded
        but still count in the loss normaliser; the step's diagnostics (ratio, entropy, clip
        fractions) are over the trained samples. With none left, no step is taken.
        """
        if not samples:
            raise ValueError("policy_step needs at least one sample")
        has_rollout = [s.rollout_logprobs is not None for s in samples]
        if any(has_rollout) and not all(has_rollout):
            raise ValueError("rollout_logprobs must be given for all samples or for none")
        training = [trains(s, loss_settings) for s in samples]
        if not any(training):
            out = self._skipped_step(len(samples))
            if all(has_rollout):  # the sync's health check still needs a (no-grad) forward
                out.update(self._rollout_diagnostics(samples, loss_settings))
            return out
        mine = self._shard(len(samples))
        items = self._items([samples[i] for i in mine], mine)
        pad = self._items(samples[:1], [0])[0]
        local = [samples[i] for i in mine]
        old = None if old_logprobs is None else [old_logprobs[i] for i in mine]

        def micro_loss(batch: Batch, chosen: list[int]):
            rows = chosen or [None]  # padding pass: the first global sample
            picked = [local[j] if j is not None else samples[0] for j in rows]
            log_probs, entropy = self._scores(batch, with_entropy=True)
            mask = batch.response_mask
            old_lp = log_probs.detach() if old is None else _padded(
                [old[j] if j is not None else old_logprobs[0] for j in rows], mask)
            rollout = _padded([p.rollout_logprobs for p in picked], mask) if all(
                has_rollout) else None
            advantages = torch.tensor([p.advantage for p in picked], device=mask.device)
            loss, metrics = loss_settings(log_probs, old_lp, advantages, mask,
                                          rollout_log_probs=rollout)
            metrics["entropy"] = masked_mean(entropy, mask).item()
            if rollout is not None:
                metrics["rollout_mismatch_abs"] = masked_mean(
                    (rollout - old_lp).abs(), mask).item()
            return loss, metrics

        normaliser = Normaliser.TOKENS if loss_settings.per_token else Normaliser.SEQUENCES
        train = [j for j, i in enumerate(mine) if training[i]]
        out = self._optimizer_step(items, pad, normaliser, micro_loss, train)
        out.update(skipped_zero_adv_samples=float(len(samples) - sum(training)),
                   optimizer_step_skipped=0.0)
        return out

    def sft_step(self, demos: Sequence[Demonstration],
                 aggregation: SFTAggregation = SFTAggregation.TOKEN_MEAN,
                 max_seq_tokens: int = 1024) -> dict[str, float]:
        """One optimizer step of masked cross-entropy on the assistant turns of ``demos``."""
        if not demos:
            raise ValueError("sft_step needs at least one demonstration")
        pairs = [sft_item(self.processor, d, self.spec, max_seq_tokens,
                          system_prompt=self.system_prompt)
                 for d in demos[self.rank::self.world_size]]
        pad, _ = sft_item(self.processor, demos[0], self.spec, max_seq_tokens,
                          system_prompt=self.system_prompt)
        normaliser = (Normaliser.TOKENS if aggregation is SFTAggregation.TOKEN_MEAN
                      else Normaliser.SEQUENCES)

        def micro_loss(batch: Batch, _chosen: list[int]):
            return sft_loss(self._logits(batch), batch.input_ids, batch.loss_mask, aggregation)

        metrics = self._optimizer_step([it for it, _ in pairs], pad, normaliser, micro_loss)
        truncated = torch.tensor([float(sum(cut for _, cut in pairs))], device=self.device)
        if dist.is_initialized() and self.world_size > 1:
            dist.all_reduce(truncated)
        metrics["truncated"] = float(truncated.item())
        return metrics

    # ── checkpoints and weight sync ─────────────────────────────

    def weight_manifest(self) -> WeightManifest:
        """Names, full shapes, dtypes and bytes of every parameter (no collective)."""
        return manifest_of(self._unwrapped())

    def weight_buckets(self, bucket_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Full tensors in buckets of ≤ ``bucket_bytes`` (contract: ``learner.weights``).
        A collective under ZeRO-3: every rank must iterate it in lockstep, to the end."""
        return iter_weight_buckets(self._unwrapped(), bucket_bytes)

    def gathered_buckets(self, plan: Sequence[Bucket]
                         ) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Full tensors for a plan made from ``weight_manifest()`` (same lockstep rule)."""
        return iter_planned_buckets(self._unwrapped(), plan)

    def full_state_dict(self, bucket_bytes: int = 64 * 2**20) -> dict[str, torch.Tensor]:
        """Every parameter, full, on CPU (a collective: call it on all ranks)."""
        return gather_full_state(self._unwrapped(), bucket_bytes)

    def save_hf(self, path: str) -> None:
        """Rank 0 writes model (safetensors) + processor files; all ranks take part in the
        ZeRO-3 gather. Buffers are full on every rank and come from the module itself."""
        module = self._unwrapped()
        state = gather_full_state(module)
        if self.rank == 0:
            buffers = dict(module.named_buffers())
            persistent = {k: buffers[k] for k in module.state_dict() if k in buffers}
            module.save_pretrained(Path(path), state_dict={**persistent, **state},
                                   safe_serialization=True)
            self.processor.save_pretrained(Path(path))
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()  # the checkpoint is complete when any rank returns
