"""The PRISM discriminator: an upcycled Qwen3-VL-MoE backbone and a scalar value head.

D(x, y) is the head's output at the LAST token of the scored sequence, which is always one
fixed terminator token appended after the segment (``models.segments``), so teacher and
student segments are read at the same kind of position. Positions are the backbone's own
M-RoPE ids computed from ``mm_token_type_ids`` + ``image_grid_thw`` in every forward (warm-up,
alignment, scoring), never supplied from outside.

Ablations (``DiscriminatorConfig``): ``num_experts=1`` is the dense discriminator (one expert,
a constant router); ``use_images=False`` is a discriminator trained and scored on text-only
views (recorded here so a text-only checkpoint refuses pixels); ``routing="hard"`` replaces the
router's choice by the view of each row (``HardRouting``).

Checkpoint directory: the backbone via ``save_pretrained`` (config + safetensors), the head in
``value_head.safetensors`` and a small manifest ``discriminator.json`` (with the routing and
whether images are seen); loading reads only safetensors. No lm_head: the backbone is
``Qwen3VLMoeModel``, so no [B, T, vocab] logits are ever computed and no unused parameter sits
in the optimizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import (
    Qwen3VLMoeModel,
    Qwen3VLMoeTextTopKRouter,
    load_balancing_loss_func,
)

from prism_ray.models.upcycle import UpcycleSettings, load_dense, upcycle

if TYPE_CHECKING:  # the model needs no pydantic at run time (GPU hosts may lack it)
    from prism_ray.config.schema import DiscriminatorConfig

MANIFEST = "discriminator.json"
HEAD_FILE = "value_head.safetensors"
FORMAT_VERSION = 2  # 2: the manifest records routing and use_images


class ValueHead(nn.Module):
    """Dropout → Linear(hidden, 1, bias=False), weight N(0, init_std²)."""

    def __init__(self, hidden: int, dropout: float, init_std: float, seed: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, 1, bias=False)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(1, hidden, generator=generator) * init_std)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [...]"""
        return self.linear(self.dropout(hidden)).squeeze(-1)


@dataclass
class DiscriminatorOutput:
    scores: torch.Tensor  # [B] raw (unclipped) score at each sequence's last token
    aux_loss: torch.Tensor | None  # MoE load-balancing loss (when router logits were asked for)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] index of each row's last real token. Rows must be right-padded (``collate`` does):
    a left-padded row would silently be read at a padding position."""
    lengths = attention_mask.sum(dim=-1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if bool(((positions.unsqueeze(0) < lengths.unsqueeze(1)) != attention_mask.bool()).any()):
        raise ValueError("discriminator inputs must be right-padded")
    return lengths - 1


class HardRouting:
    """Hard-routed experts: every token of a row goes to ONE expert, the row's view id
    (``segments.PERCEPTION`` = expert 0, ``REASONING`` = expert 1), with weight 1.

    A forward hook on each router replaces its (weights, indices) output after it ran; the
    sparse block then runs only the chosen expert. The hook lives inside the MoE block that
    ZeRO-3 gathers as one leaf, so the block's parameters are whole when it fires. The row
    views stay set after a forward, so a gradient-checkpointing recompute in the backward
    routes exactly as the forward did.
    """

    def __init__(self, backbone: Qwen3VLMoeModel) -> None:
        self.row_expert: torch.Tensor | None = None  # [B] long
        routers = [m for m in backbone.modules() if isinstance(m, Qwen3VLMoeTextTopKRouter)]
        self.handles = [m.register_forward_hook(self._route) for m in routers]

    def _route(self, module, args, output):
        logits, weights, _ = output  # logits [B·T, E]; weights, indices [B·T, top_k]
        rows = self.row_expert
        if rows is None or logits.shape[0] % rows.numel():
            raise RuntimeError("hard routing needs the view of every row of the batch")
        index = rows.to(logits.device).repeat_interleave(logits.shape[0] // rows.numel())
        index = index.unsqueeze(-1)  # [B·T, 1]: one expert per token
        return logits, torch.ones(index.shape, dtype=weights.dtype, device=index.device), index


class Discriminator(nn.Module):
    def __init__(self, backbone: Qwen3VLMoeModel, head: ValueHead, *, routing: str,
                 use_images: bool) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.routing, self.use_images = routing, use_images
        if routing not in ("learned", "hard"):
            raise ValueError(f"unknown routing {routing!r} (learned | hard)")
        self.hard = HardRouting(backbone) if routing == "hard" else None

    @property
    def config(self):
        return self.backbone.config

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        """Delegated so the learner engine treats the discriminator like any HF model."""
        self.backbone.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                mm_token_type_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None, view_index: torch.Tensor | None = None,
                output_router_logits: bool = False) -> DiscriminatorOutput:
        """``view_index`` [B] long: each row's view (``segments.item_views``); hard routing
        needs it, learned routing does not look at it."""
        if not self.use_images and pixel_values is not None:
            raise ValueError("a text-only discriminator (use_images=False) got pixel values")
        if self.hard is not None:
            if view_index is None:
                raise ValueError("hard routing needs view_index, the view of every row")
            if output_router_logits:
                raise ValueError("hard routing ignores the router: there is no "
                                 "load-balancing loss to return")
            self.hard.row_expert = view_index
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask,
            mm_token_type_ids=mm_token_type_ids, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, output_router_logits=output_router_logits,
            use_cache=False,
        )
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        last = out.last_hidden_state[rows, last_token_index(attention_mask)]  # [B, H]
        aux = None
        if output_router_logits:
            text = self.backbone.config.text_config
            aux = load_balancing_loss_func(out.router_logits, text.num_experts,
                                           text.num_experts_per_tok, attention_mask)
        return DiscriminatorOutput(scores=self.head(last), aux_loss=aux)

    # ── checkpoints ─────────────────────────────────────────────

    def save(self, path: str | Path, backbone_state: dict | None = None,
             head_state: dict | None = None) -> Path:
        """Write the checkpoint directory. The learner passes gathered states (ZeRO-3)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, state_dict=backbone_state, safe_serialization=True)
        head = head_state if head_state is not None else self.head.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, out / HEAD_FILE)
        manifest = {"format_version": FORMAT_VERSION, "backbone": "Qwen3VLMoeModel",
                    "hidden_size": self.head.linear.in_features,
                    "head_dropout": self.head.dropout.p, "routing": self.routing,
                    "use_images": self.use_images}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return out


def build_discriminator(dense_path: str | Path, config: DiscriminatorConfig, seed: int = 0,
                        dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> Discriminator:
    """Upcycle a dense checkpoint and attach a fresh value head (deterministic from ``seed``)."""
    if not config.norm_topk_prob:
        raise ValueError("transformers' qwen3_vl_moe router always renormalises its top-k "
                         "probabilities; norm_topk_prob=False is not supported")
    settings = UpcycleSettings(num_experts=config.num_experts, top_k=config.top_k,
                               expert_noise_std=config.expert_noise_std,
                               router_init_std=config.router_init_std, seed=seed)
    backbone = upcycle(load_dense(str(dense_path), dtype, device), settings)
    hidden = backbone.config.text_config.hidden_size
    head = ValueHead(hidden, config.head_dropout, config.head_init_std, seed=seed + 1)
    return Discriminator(backbone, head.to(device=device, dtype=dtype), routing=config.routing,
                         use_images=config.use_images)


def is_discriminator_checkpoint(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_discriminator(path: str | Path, dtype: torch.dtype = torch.float32,
                       device: torch.device | str = "cpu") -> Discriminator:
    """Load a directory written by ``Discriminator.save`` (safetensors only), with the
    routing and image use it was trained with."""
    root = Path(path)
    manifest = json.loads((root / MANIFEST).read_text())
    backbone = Qwen3VLMoeModel.from_pretrained(str(root), dtype=dtype, use_safetensors=True)
    head = ValueHead(manifest["hidden_size"], manifest["head_dropout"], init_std=0.0)
    head.load_state_dict(load_file(str(root / HEAD_FILE)))
    # Version 1 predates the ablations: learned routing, images seen.
    routing, use_images = (("learned", True) if manifest["format_version"] == 1
                           else (manifest["routing"], manifest["use_images"]))
    return Discriminator(backbone.to(device), head.to(device=device, dtype=dtype),
                         routing=routing, use_images=use_images).eval()
