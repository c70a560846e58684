"""An image-only Qwen3-VL processor that needs no torchvision.

The stock ``Qwen3VLProcessor`` also owns a video processor, which is a torchvision class; on
CPU machines torchvision is not installed (the PyPI build is CUDA-only and breaks beside the
CPU torch). Dropping the video processor from ``__init__`` removes it from the processor's
attributes, so it is neither built nor saved; everything else is the stock processor.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor without the video processor (images only)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def build_image_processor(
    patch_size: int, merge_size: int = 2, min_side: int = 32, max_side: int = 128
) -> Qwen2VLImageProcessorPil:
    """PIL image processor; images are resized to multiples of patch_size·merge_size within
    [min_side², max_side²] pixels (so a 64×64 image with patch 8 gives 8×8 patches → 16 tokens)."""
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        temporal_patch_size=2,
        merge_size=merge_size,
        size={"shortest_edge": min_side * min_side, "longest_edge": max_side * max_side},
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )


def load_processor(path: str | Path):
    """Load the processor saved beside a checkpoint.

    Our own checkpoints carry the image-only processor; any other (a published Qwen3-VL)
    goes through AutoProcessor, which needs torchvision for the video part.
    """
    try:
        return ImageOnlyQwen3VLProcessor.from_pretrained(str(path))
    except (OSError, ValueError, TypeError, ImportError):
        return AutoProcessor.from_pretrained(str(path))


# Exports name this class in processor_config.json; registering it makes save_pretrained ship
# this module beside the checkpoint with an ``auto_map`` entry, so plain
# ``AutoProcessor.from_pretrained(export, trust_remote_code=True)`` returns a processor that
# takes images (without it, AutoProcessor falls back to the bare tokenizer).
ImageOnlyQwen3VLProcessor.register_for_auto_class("AutoProcessor")
