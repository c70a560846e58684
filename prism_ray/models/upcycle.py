"""Sparse upcycling: a dense Qwen3-VL becomes a Qwen3-VL-MoE backbone (PRISM_SPEC §3).

Every decoder MLP becomes E experts (each a copy of the dense MLP plus N(0, σ²) noise) behind a
top-k router initialised N(0, router_std²); vision tower, attention, embeddings and norms are
copied unchanged. The target is transformers' own ``qwen3_vl_moe`` architecture, so the result
saves, loads and serves like any published Qwen3-VL-MoE checkpoint.

Expert storage (transformers 5.x): one fused parameter per layer, ``experts.gate_up_proj``
[E, 2·I, H] (gate rows first, then up rows: the forward does ``.chunk(2)`` in that order) and
``experts.down_proj`` [E, H, I], plus ``gate.weight`` [E, H] for the router. The router always
renormalises its top-k probabilities (there is no ``norm_topk_prob`` switch), which is exactly
``norm_topk_prob=True`` and is what makes a zero-noise upcycle equal to the dense model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen3VLMoeConfig
from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeModel

DENSE_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class UpcycleSettings:
    """How the experts and routers start (defaults are the published values)."""

    num_experts: int = 4
    top_k: int = 2
    expert_noise_std: float = 0.01
    router_init_std: float = 0.02
    seed: int = 0


def moe_config(dense_config, settings: UpcycleSettings) -> Qwen3VLMoeConfig:
    """The MoE config of a dense Qwen3-VL config: same shapes, every layer sparse, and the
    expert width equal to the dense MLP width (an expert *is* the dense MLP)."""
    text = dense_config.text_config.to_dict()
    vision = dense_config.vision_config.to_dict()
    for sub in (text, vision):
        sub.pop("model_type", None)  # the MoE sub-configs carry their own model types
        sub.pop("architectures", None)
    text.update(
        num_experts=settings.num_experts,
        num_experts_per_tok=settings.top_k,
        moe_intermediate_size=dense_config.text_config.intermediate_size,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        output_router_logits=False,
    )
    return Qwen3VLMoeConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=dense_config.image_token_id,
        video_token_id=dense_config.video_token_id,
        vision_start_token_id=dense_config.vision_start_token_id,
        vision_end_token_id=dense_config.vision_end_token_id,
        tie_word_embeddings=dense_config.tie_word_embeddings,
    )


def dense_backbone_state(dense_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The dense model's backbone weights, named as in the MoE backbone (``Qwen3VLMoeModel``):
    a ``...ForConditionalGeneration`` keeps them under ``model.``; its lm_head is not needed."""
    backbone = getattr(dense_model, "model", dense_model)
    return dict(backbone.state_dict())


def _noisy_copies(weight: torch.Tensor, count: int, std: float,
                  generator: torch.Generator) -> torch.Tensor:
    """[count, *weight.shape]: ``weight`` plus independent N(0, std²) noise per copy, in fp32
    before the cast so the noise is not lost to bf16 rounding of tiny values."""
    base = weight.detach().float().unsqueeze(0).expand(count, *weight.shape)
    if std == 0:
        return base.clone().to(weight.dtype)
    noise = torch.randn(base.shape, generator=generator, device=weight.device)
    return (base + std * noise).to(weight.dtype)


def _expert_tensors(state: dict[str, torch.Tensor], prefix: str, settings: UpcycleSettings,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The fused expert and router tensors that replace one dense MLP at ``prefix``."""
    gate, up, down = (state.pop(f"{prefix}.{name}.weight") for name in DENSE_MLP)
    gate_up = torch.cat([gate, up], dim=0)  # [2I, H]: gate rows first (the forward's chunk order)
    count, std = settings.num_experts, settings.expert_noise_std
    router = torch.randn((count, gate.shape[1]), generator=generator, device=gate.device)
    return {
        f"{prefix}.experts.gate_up_proj": _noisy_copies(gate_up, count, std, generator),
        f"{prefix}.experts.down_proj": _noisy_copies(down, count, std, generator),
        f"{prefix}.gate.weight": (settings.router_init_std * router).to(gate.dtype),
    }


def upcycled_state(dense_state: dict[str, torch.Tensor], num_layers: int,
                   settings: UpcycleSettings) -> dict[str, torch.Tensor]:
    """Dense backbone state -> MoE backbone state. Deterministic for a seed on a device type
    (noise is drawn on the weights' device, layer by layer, so a 2B model never needs its
    expert noise materialised on the host)."""
    state = dict(dense_state)
    device = next(iter(state.values())).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    for layer in range(num_layers):
        prefix = f"language_model.layers.{layer}.mlp"
        state.update(_expert_tensors(state, prefix, settings, generator))
    return state


def upcycle(dense_model: torch.nn.Module, settings: UpcycleSettings) -> Qwen3VLMoeModel:
    """A ``Qwen3VLMoeModel`` backbone from a dense Qwen3-VL model (any size), on the dense
    model's device and in its dtype. Every tensor of the result is set from the dense model or
    from the seeded noise: a strict load proves nothing was left at its random init."""
    config = moe_config(dense_model.config, settings)
    param = next(dense_model.parameters())
    state = upcycled_state(dense_backbone_state(dense_model),
                           config.text_config.num_hidden_layers, settings)
    with torch.device(param.device):  # built in place: a 2B upcycle never visits the host
        moe = Qwen3VLMoeModel._from_config(config, dtype=param.dtype)
    moe.load_state_dict(state, strict=True)
    return moe.eval()


def load_dense(path: str, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.nn.Module:
    """A dense Qwen3-VL checkpoint (ours or a published one), for upcycling."""
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(str(path), dtype=dtype,
                                                            use_safetensors=True)
    return model.to(device).eval()
