"""The embedded default model: tiny Qwen3-VL checkpoints, tokenizer and processor."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

from prism_ray.config.run import RunConfig
from prism_ray.models.processor import ImageOnlyQwen3VLProcessor, load_processor
from prism_ray.models.tiny import PRESETS, build_tiny_model
from prism_ray.models.tokenizer import SPECIAL_TOKENS, train_tokenizer

SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default
TEXTS = ["<caption>\n- red circle, top-left\n</caption>\n<think>\n1 + 2 = 3\n</think>"] * 50


def red_circle(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((4, 4, size // 2, size // 2), fill="red")
    return image


def chat(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def test_presets_fit_vllm_and_stay_tiny(tiny_pair):
    for preset, path in zip(("policy", "discriminator"), tiny_pair):
        manifest = json.loads((path / "prism_tiny.json").read_text())
        assert manifest["preset"] == preset
        assert manifest["parameters"] < 5_000_000
        config = json.loads((path / "config.json").read_text())
        assert config["text_config"]["head_dim"] >= 32  # vLLM paged attention on CPU
    policy = json.loads((tiny_pair[0] / "prism_tiny.json").read_text())["parameters"]
    disc = json.loads((tiny_pair[1] / "prism_tiny.json").read_text())["parameters"]
    assert disc < policy


def test_tokenizer_is_deterministic_and_has_qwen_specials():
    a, b = train_tokenizer(TEXTS, 300), train_tokenizer(TEXTS, 300)
    assert a.get_vocab() == b.get_vocab()
    ids = [a.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and a.unk_token_id not in ids
    text = "<|im_start|>user\n<|image_pad|>hi<|im_end|>"
    encoded = a(text).input_ids
    assert a.convert_tokens_to_ids("<|image_pad|>") in encoded
    assert a.decode(encoded) == text  # byte-level BPE round-trips any text


def test_chat_template_collapses_both_image_spellings(tiny_pair):
    tokenizer = AutoTokenizer.from_pretrained(tiny_pair[0])
    parts = tokenizer.apply_chat_template(chat("How many?"), tokenize=False,
                                          add_generation_prompt=True)
    sharegpt = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT},
         {"role": "user", "content": "<image>How many?"}], tokenize=False,
        add_generation_prompt=True)
    assert parts == sharegpt
    assert parts.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert parts.endswith("<|im_start|>assistant\n")


def test_checkpoint_loads_back_bit_identically(tiny_pair):
    path = tiny_pair[0]
    loaded = Qwen3VLForConditionalGeneration.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    rebuilt = build_tiny_model(PRESETS["policy"], token_ids, seed=0)
    expected = rebuilt.state_dict()
    got = loaded.state_dict()
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name


def test_seed_decides_the_weights():
    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    a = build_tiny_model(PRESETS["discriminator"], ids, seed=0)
    b = build_tiny_model(PRESETS["discriminator"], ids, seed=0)
    c = build_tiny_model(PRESETS["discriminator"], ids, seed=1)
    wa, wb, wc = (m.model.language_model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_processor_round_trips_without_torchvision(tiny_pair, tmp_path):
    processor = load_processor(tiny_pair[0])
    assert isinstance(processor, ImageOnlyQwen3VLProcessor)
    assert not hasattr(processor, "video_processor")
    processor.save_pretrained(tmp_path)
    again = load_processor(tmp_path)
    text = processor.apply_chat_template(chat("How many?"), tokenize=False,
                                         add_generation_prompt=True)
    a = processor(text=[text], images=[red_circle()], return_tensors="pt")
    b = again(text=[text], images=[red_circle()], return_tensors="pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_plain_autoprocessor_loads_an_export_that_takes_images(tiny_pair, tmp_path):
    """What a user of the exported model runs, in a fresh interpreter without prism_ray."""
    load_processor(tiny_pair[0]).save_pretrained(tmp_path)
    code = (
        "import sys; from PIL import Image; from transformers import AutoProcessor\n"
        f"p = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
        "m = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'hi'}]}]\n"
        "t = p.apply_chat_template(m, add_generation_prompt=True)\n"
        "out = p(text=[t], images=[Image.new('RGB', (64, 64))], return_tensors='pt')\n"
        "assert 'prism_ray' not in sys.modules\n"
        "print(type(p).__name__, tuple(out['image_grid_thw'][0].tolist()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ImageOnlyQwen3VLProcessor", "(1,", "8,", "8)"]


@pytest.mark.parametrize("side", [64, 96])
def test_forward_and_generate_on_an_image(tiny_pair, side):
    path = tiny_pair[0]
    model = Qwen3VLForConditionalGeneration.from_pretrained(path).eval()
    processor = load_processor(path)
    text = processor.apply_chat_template(chat("How many red shapes?"), tokenize=False,
                                         add_generation_prompt=True)
    png = io.BytesIO()
    red_circle(side).save(png, format="PNG")
    batch = processor(text=[text], images=[Image.open(png)], return_tensors="pt")
    merge = processor.image_processor.merge_size
    expected_tokens = int(batch["image_grid_thw"].prod()) // merge**2
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == expected_tokens
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=8, do_sample=True, top_k=0)
    assert out.shape[1] > batch["input_ids"].shape[1]


def test_a_different_image_changes_the_logits(tiny_pair):
    """The vision tower is wired in: the model does not ignore pixels."""
    path = tiny_pair[0]
    model = Qwen3VLForConditionalGeneration.from_pretrained(path).eval()
    processor = load_processor(path)
    text = processor.apply_chat_template(chat("What?"), tokenize=False, add_generation_prompt=True)
    blank = Image.new("RGB", (64, 64), "white")
    with torch.no_grad():
        a = model(**processor(text=[text], images=[red_circle()], return_tensors="pt")).logits
        b = model(**processor(text=[text], images=[blank], return_tensors="pt")).logits
    assert not torch.allclose(a[0, -1], b[0, -1])
