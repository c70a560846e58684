"""The discriminator learner: one DeepSpeed ZeRO rank of the MoE discriminator.

Same batch semantics as the policy learner: every public method takes the whole step's list of
``DiscriminatorItem``s, rank r works on ``items[r::world_size]``, losses are normalised over
all ranks and every rank runs the same number of forward passes. The micro-batch unit is an
ITEM (one prompt: its teacher segments and all its student responses), because the
Bradley-Terry loss compares each student score with its own prompt's teacher score; items are
packed into micro-batches by the token budget.

Ablations from ``DiscriminatorConfig`` act here: ``use_images=False`` encodes every view
without its image; ``routing="hard"`` passes each row's view to the model (its routing) and
drops the load-balancing term, which only concerns the unused router.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from prism_ray.actors.learner import EngineLearner
from prism_ray.algo.discriminator import bradley_terry_loss, clip_scores
from prism_ray.config.schema import DiscriminatorConfig, LearnerConfig
from prism_ray.learner.engine import TORCH_DTYPES, init_distributed
from prism_ray.learner.metrics import StepMetrics
from prism_ray.learner.microbatch import (
    Normaliser,
    aligned_count,
    global_normaliser,
    plan_micro_batches,
)
from prism_ray.learner.weights import gather_full_state
from prism_ray.models.batching import Batch, VisionSpec, check_batch_vision, collate
from prism_ray.models.discriminator import (
    Discriminator,
    ValueHead,
    build_discriminator,
    is_discriminator_checkpoint,
    load_discriminator,
)
from prism_ray.models.segments import (
    EncodedItem,
    ViewScores,
    assemble,
    encode_item,
    item_sequences,
    item_views,
)
from prism_ray.types import DiscriminatorItem, DiscriminatorScores


def terminator_id(tokenizer, token: str) -> int:
    """The one token every scored segment ends with; it must be a single known token."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"terminator {token!r} is not a token of the discriminator's tokenizer")
    return int(token_id)


class DiscriminatorLearner(EngineLearner):
    def __init__(self, rank: int, world_size: int, model_path: str,
                 config: DiscriminatorConfig, seed: int, system_prompt: str | None) -> None:
        """``system_prompt``: the run's, the one the policy's prompts are encoded with."""
        super().__init__(rank, world_size)
        self.model_path, self.config, self.seed = str(model_path), config, seed
        self.system_prompt = system_prompt
        self.engine = None
        self.model: Discriminator | None = None

    # ── lifecycle ───────────────────────────────────────────────

    def setup(self, master_addr: str, port: int) -> str:
        """Join the process group; load a discriminator checkpoint, or upcycle a dense one
        (every rank upcycles with the same seed, so all ranks start identical)."""
        from prism_ray.models.processor import load_processor

        backend = init_distributed(self.rank, self.world_size, master_addr, port)
        torch.manual_seed(self.seed + self.rank)  # dropout streams differ per rank
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        self.dtype = TORCH_DTYPES[self.config.learner.dtype]
        self.processor = load_processor(self.model_path)
        self.spec = VisionSpec.from_processor(self.processor)
        self.terminator = terminator_id(self.processor.tokenizer, self.config.terminator)
        self.model = self._load(self.model_path)
        return backend

    @property
    def learner_config(self) -> LearnerConfig:
        return self.config.learner

    def _load(self, path: str) -> Discriminator:
        if is_discriminator_checkpoint(path):
            model = load_discriminator(path, self.dtype, self.device)
            trained = (model.routing, model.use_images)
            if trained != (self.config.routing, self.config.use_images):
                raise ValueError(
                    f"{path}: the discriminator was trained with routing={trained[0]}, "
                    f"use_images={trained[1]}; the config asks for "
                    f"routing={self.config.routing}, use_images={self.config.use_images}")
            return model
        return build_discriminator(path, self.config, self.seed, self.dtype, self.device)

    def _before_engine(self, model: Discriminator) -> None:
        if self.config.learner.zero_stage == 3:
            self._mark_moe_leaves(model)

    def _rebuild(self, state: dict[str, torch.Tensor], config) -> Discriminator:
        from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeModel

        backbone = Qwen3VLMoeModel._from_config(config, dtype=self.dtype)
        head = ValueHead(config.text_config.hidden_size, self.config.head_dropout, init_std=0.0)
        model = Discriminator(backbone, head.to(self.dtype), routing=self.config.routing,
                              use_images=self.config.use_images)
        model.load_state_dict(state, strict=False)  # buffers (rotary tables) are rebuilt
        return model.to(self.device)

    @staticmethod
    def _mark_moe_leaves(model: Discriminator) -> None:
        """ZeRO-3 must gather a sparse block as a whole (PRISM_SPEC §9): routing hits a
        different expert subset per rank, and per-submodule gathers would then deadlock."""
        from deepspeed.utils import set_z3_leaf_modules
        from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import (
            Qwen3VLMoeTextSparseMoeBlock,
        )

        set_z3_leaf_modules(model, [Qwen3VLMoeTextSparseMoeBlock])

    # ── forward passes ──────────────────────────────────────────

    def _encode(self, items: Sequence[DiscriminatorItem]) -> tuple[list[EncodedItem], EncodedItem]:
        """This rank's shard, encoded, and the padding item (the first global one)."""
        images, system = self.config.use_images, self.system_prompt
        mine = [encode_item(self.processor, items[i], images, system_prompt=system)
                for i in self._shard(len(items))]
        pad = mine[0] if self.rank == 0 and mine else encode_item(
            self.processor, items[0], images, system_prompt=system)
        return mine, pad

    def _passes(self, encoded: list[EncodedItem], pad: EncodedItem
                ) -> Iterator[tuple[list[int], list[EncodedItem], Batch]]:
        """(indices, items, batch) per forward; every rank yields the same number of passes
        (a padding pass has no indices and carries ``pad``)."""
        per_item = max([e.num_sequences for e in encoded] or [pad.num_sequences])
        budget = max(self.config.learner.micro_batch_tokens // per_item, 1)
        groups = plan_micro_batches([e.longest for e in encoded], budget)
        for i in range(aligned_count(len(groups), self.device)):
            chosen = groups[i] if i < len(groups) else []
            group = [encoded[j] for j in chosen] or [pad]
            sequences = [s for item in group for s in item_sequences(item, self.terminator)]
            batch = collate(sequences, self.spec)
            check_batch_vision(batch, self.spec)
            yield chosen, group, batch.to(self.device, self.dtype)

    def _views(self, batch: Batch, group: list[EncodedItem], with_aux: bool
               ) -> tuple[ViewScores, torch.Tensor | None]:
        views = torch.tensor([v for item in group for v in item_views(item)],
                             device=self.device)
        out = self._module()(**batch.model_inputs(), view_index=views,
                             output_router_logits=with_aux)
        return assemble(out.scores.float(), group), out.aux_loss

    @torch.no_grad()
    def score(self, items: Sequence[DiscriminatorItem]) -> list[DiscriminatorScores]:
        """Clipped scores per item (eval mode: no dropout). Teacher segments once per item."""
        if not items:
            return []
        self._module().eval()
        encoded, pad = self._encode(items)
        local: list[DiscriminatorScores | None] = [None] * len(encoded)
        for chosen, group, batch in self._passes(encoded, pad):
            views, _ = self._views(batch, group, with_aux=False)
            for p, j in enumerate(chosen):
                local[j] = self._item_scores(views, p, encoded[j])
        return self._gather_ordered(local, len(items))

    def _item_scores(self, views: ViewScores, p: int, item: EncodedItem) -> DiscriminatorScores:
        limit, rows = self.config.score_clip, views.prompt_index == p
        clipped = [clip_scores(t, limit).cpu() for t in (
            views.teacher_caption[p], views.teacher_reasoning[p],
            views.student_caption[rows], views.student_reasoning[rows])]
        return DiscriminatorScores(
            teacher_caption=float(clipped[0]), teacher_reasoning=float(clipped[1]),
            student_caption=tuple(clipped[2].tolist()),
            student_reasoning=tuple(clipped[3].tolist()), valid=item.valid)

    # ── updates ─────────────────────────────────────────────────

    def train_step(self, items: Sequence[DiscriminatorItem], reg_coef: float,
                   aux_coef: float) -> dict[str, float]:
        """One optimizer step of L_cap + L_cot + reg_coef·L_reg (+ aux_coef·MoE aux loss).

        Warm-up: reg_coef=0, aux_coef=0.01; alignment: reg_coef=0.001, aux_coef=0 (hard
        routing has no aux term: its router is unused). Each
        micro-batch's loss is a mean over its valid rollouts, rescaled to its share of the
        valid rollouts of the whole step (all ranks), so accumulation is exact.
        """
        self.engine.train()
        encoded, pad = self._encode(items)
        total = global_normaliser([sum(e.valid) for e in encoded], Normaliser.TOKENS,
                                  self.device)
        metrics, passes = StepMetrics(), list(self._passes(encoded, pad))
        lr = self.engine.get_lr()[0]  # the lr this step applies (the schedule steps after it)
        with_aux = aux_coef > 0 and self.config.routing == "learned"
        for i, (chosen, group, batch) in enumerate(passes):
            views, aux = self._views(batch, group, with_aux=with_aux)
            loss, micro = bradley_terry_loss(
                views.teacher_caption, views.teacher_reasoning, views.student_caption,
                views.student_reasoning, views.prompt_index, views.valid, reg_coef=reg_coef,
                aux_loss=aux, aux_coef=aux_coef)
            valid = float(views.valid.sum()) if chosen else 0.0
            weight = valid / total * self.world_size  # undoes DeepSpeed's mean over ranks
            self.engine.set_gradient_accumulation_boundary(i == len(passes) - 1)
            self.engine.backward(loss * weight, scale_wrt_gas=False)
            metrics.add_mean({k: v for k, v in micro.items()
                              if k not in ("loss", "valid_ratio")}, valid)
            metrics.add_sum("loss", micro["loss"] * weight / self.world_size)
            metrics.add_sum("valid", valid)
            metrics.add_sum("rollouts", float(len(views.valid)) if chosen else 0.0)
        self.engine.step()
        out = metrics.reduce(self.device)
        out["valid_ratio"] = out["valid"] / max(out["rollouts"], 1.0)
        norm = self.engine.get_global_grad_norm()
        out.update(grad_norm=float(norm) if norm is not None else float("nan"), lr=lr,
                   micro_batches=float(len(passes)))
        return out

    # ── checkpoints ─────────────────────────────────────────────

    def save_hf(self, path: str) -> None:
        """Rank 0 writes the discriminator directory (+ processor files); every rank takes
        part in the ZeRO-3 gather."""
        module = self._unwrapped()
        state = gather_full_state(module)
        if self.rank == 0:
            buffers = dict(module.backbone.named_buffers())
            persistent = {k: buffers[k] for k in module.backbone.state_dict() if k in buffers}
            backbone = {k.removeprefix("backbone."): v for k, v in state.items()
                        if k.startswith("backbone.")}
            head = {k.removeprefix("head."): v for k, v in state.items()
                    if k.startswith("head.")}
            module.save(Path(path), backbone_state={**persistent, **backbone}, head_state=head)
            self.processor.save_pretrained(Path(path))
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()  # the checkpoint is complete when any rank returns
