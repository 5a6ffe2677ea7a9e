#!/usr/bin/python3
"""Create random-weight LLaVA checkpoints in the exact Hugging Face llava folder layouts.

  /usr/bin/python3 tools/make_fixture.py
      Regenerates everything under test/fixtures/ (except preprocess/ and builtin-reference/)
      deterministically: the test images and the tiny model folders, each with reference outputs
      from tools/reference/model.py:
        tiny-llava-llama, -llama-f16, tiny-llava-qwen2 (sharded), -qwen2-bf16, tiny-llava-siglip-qwen2
            LLaVA-1.5 style (model_type llava): one image -> one tower pass -> f*f visual tokens;
        tiny-llava-next-mistral      LLaVA-NeXT (llava_next, llava-v1.6-mistral-7b-hf layout): CLIP 32 px
            tiles, AnyRes pinpoints, image_newline; old weight names (language_model.model.*);
        tiny-llava-onevision-qwen2   LLaVA-OneVision (llava_onevision, llava-onevision-qwen2-0.5b-ov-hf
            layout): SigLIP 30 px tiles (30 // 7 = 4 features a side), anyres_max_9; new weight names
            (model.language_model.*), tied embeddings.
  /usr/bin/python3 tools/make_fixture.py --only tiny-llava-next-mistral [--only NAME ...]
      Regenerates only the named fixtures (and the images only they use): float sums differ in the
      last bits between machines, so regenerating a fixture rewrites its reference files slightly.

AnyRes fixtures store per case pixel_values_{i} [passes, 3, S, S] (base image, then the tiles row-major),
image_features_{i} (the packed sequence: base tokens, then each row of the unpadded / shrunk tile grid
followed by image_newline) and the geometry (best resolution, tiles, grids, num_image_tokens) in reference.json.

Full-size random-weight models for benchmarks are written by bench/randomModel.ts (no Python needed).

Needs Debian's /usr/bin/python3 (torch, numpy, PIL); transformers is not used.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import safetensors_io  # noqa: E402
from reference.image import preprocess, preprocess_anyres_pil, select_best_resolution  # noqa: E402
from reference.model import LlavaReference  # noqa: E402

FIXTURE_VERSION = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "test", "fixtures")
PRODUCED_BY = "/usr/bin/python3 tools/make_fixture.py (reference: tools/reference/model.py, float32 math)"
GREEDY_STEPS = 5
# Greedy tokens must not hinge on near-ties, or tiny float differences in the engine would flip them.
MIN_GREEDY_LOGIT_GAP = 0.01

CASES = [
    {"image": "shapes.png", "question": "what colour is the big box ?"},
    {"image": "diagram.png", "question": "which box does the arrow point to ?"},
]
SCREENSHOT_CASE = {"image": "screenshot.png", "question": "what does the text on the left box say ?"}
# AnyRes cases: non-square images that land on different pinpoint grids (see ANYRES_EXPECTATIONS).
NEXT_CASES = CASES + [
    SCREENSHOT_CASE,
    {"image": "banner.png", "question": "how many circles are in the picture ?"},
    {"image": "tall.png", "question": "which colour is at the top ?"},
]
ONEVISION_CASES = CASES + [SCREENSHOT_CASE]

# ---- chat templates and tokenizer ----

LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% elif item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% if message['role'] == 'user' %} {% else %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# llava-v1.6-mistral-7b-hf style: images first, then the text, inside [INST] ... [/INST]; BOS from the tokenizer.
MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    " [/INST]{% elif message['role'] == 'assistant' %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)

WORDS = (
    "USER ASSISTANT user assistant system : ? . , ! ' - "
    "what which where who how many is are was does do the a an of to in on at with and or it this that "
    "colour color big small box boxes arrow point points line lines circle square rectangle triangle shape "
    "shapes picture image diagram text label left right top bottom middle above below next red green blue "
    "yellow orange purple white black grey light dark one two three four yes no there here shows see"
).split()

BASE_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_vocab(vocab_size, tail_specials):
    """Ids: base specials, then words padded with dummy words, then tail specials (ending with <image>)."""
    filler_count = vocab_size - len(BASE_SPECIALS) - len(WORDS) - len(tail_specials)
    assert filler_count >= 0, "vocab_size too small for the word list"
    tokens = BASE_SPECIALS + WORDS + [f"word{i}" for i in range(filler_count)] + tail_specials
    assert len(set(tokens)) == len(tokens)
    return {token: index for index, token in enumerate(tokens)}


def tokenizer_json(vocab, specials, add_bos):
    """tokenizers-format JSON: WordLevel model, Whitespace pre-tokenizer, specials as added tokens."""
    added = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for t in specials
    ]
    post_processor = None
    if add_bos:
        bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
        post_processor = {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}},
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": sorted(added, key=lambda token: token["id"]),
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": post_processor,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }


def tokenizer_config(vocab, specials, spec):
    return {
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(vocab[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for t in specials
        },
        "bos_token": "<s>" if spec["add_bos"] else None,
        "chat_template": spec["chat_template"],
        "clean_up_tokenization_spaces": False,
        "eos_token": spec["eos_token"],
        "model_max_length": spec["model_max_length"],
        "pad_token": "<pad>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }


def tokenize(text, vocab, specials, add_bos):
    """What tokenizer.json does: split out special tokens, Whitespace-split the rest, look up words."""
    special_pattern = "(" + "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)) + ")"
    ids = [vocab["<s>"]] if add_bos else []
    for piece in re.split(special_pattern, text):
        if piece in specials:
            ids.append(vocab[piece])
        else:
            # The Whitespace pre-tokenizer: \w+|[^\w\s]+ (newlines and spaces vanish).
            ids.extend(vocab.get(word, vocab["<unk>"]) for word in re.findall(r"\w+|[^\w\s]+", piece))
    return ids


def render_prompt(template_kind, question):
    """The chat template rendered for [user: image + question] with add_generation_prompt=True."""
    if template_kind == "llava":
        return f"USER: <image>\n{question} ASSISTANT:"
    if template_kind == "mistral":
        return f"[INST] <image>\n{question} [/INST]"
    return f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"


# ---- model specs ----

PREPROCESSOR_CONFIG = {
    "image_processor_type": "CLIPImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 48},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 48, "width": 48},
    "do_rescale": True,
    "rescale_factor": 0.00392156862745098,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}

TINY_VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    # 4 layers so that the vision_even hook in layer 1 changes what the feature layer (-2 = output of
    # layer 2) sees; with 3 it would equal projector_even exactly (the MLP is per token).
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 48,
    "patch_size": 8,
    "num_channels": 3,
    "layer_norm_eps": 1e-5,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
}

# SigLIP as LLaVA-OneVision and LLaVA-Interleave use it: no class token, every layer's output taken ("full").
TINY_SIGLIP = {
    **{key: value for key, value in TINY_VISION.items() if key != "projection_dim"},
    "model_type": "siglip_vision_model",
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
}

SIGLIP_PREPROCESSOR_CONFIG = {
    **{key: value for key, value in PREPROCESSOR_CONFIG.items() if key not in ("do_center_crop", "crop_size")},
    "image_processor_type": "SiglipImageProcessor",
    "size": {"height": 48, "width": 48},
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}

LLAMA_SPEC = {
    "seed": 1234,
    "layout": "old",
    "vocab_size": 128,
    "tail_specials": ["<image>"],
    "add_bos": True,
    "eos_token": "</s>",
    "chat_template": LLAVA_TEMPLATE,
    "template_kind": "llava",
    "model_max_length": 512,
    "preprocessor": PREPROCESSOR_CONFIG,
    "text": {
        "model_type": "llama",
        "hidden_size": 48,
        "intermediate_size": 96,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 12,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
}

QWEN2_SPEC = {
    "seed": 5681,
    "layout": "new",
    "vocab_size": 136,
    "tail_specials": ["<|im_start|>", "<|im_end|>", "<image>"],
    "add_bos": False,
    "eos_token": "<|im_end|>",
    "chat_template": CHATML_TEMPLATE,
    "template_kind": "chatml",
    "model_max_length": 512,
    "preprocessor": {**PREPROCESSOR_CONFIG, "image_processor_type": "LlavaImageProcessor", "do_pad": True},
    "text": {
        "model_type": "qwen2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 512,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
    },
}

SIGLIP_QWEN2_SPEC = {
    **QWEN2_SPEC,
    "seed": 9107,
    "preprocessor": SIGLIP_PREPROCESSOR_CONFIG,
    "vision": TINY_SIGLIP,
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full",
}

# ---- AnyRes families (tiny versions of llava-v1.6-mistral-7b-hf and llava-onevision-qwen2-0.5b-ov-hf) ----

# The real [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]] divided by 10.5 (336 px tiles -> 32 px).
NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]

NEXT_PREPROCESSOR_CONFIG = {
    "aspect_ratio_setting": "anyres",
    "crop_size": {"height": 32, "width": 32},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_grid_pinpoints": NEXT_PINPOINTS,
    "image_mean": PREPROCESSOR_CONFIG["image_mean"],
    "image_processor_type": "LlavaNextImageProcessor",
    "image_std": PREPROCESSOR_CONFIG["image_std"],
    "processor_class": "LlavaNextProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 32},
}

NEXT_VISION = {**TINY_VISION, "image_size": 32}  # CLIP, patch 8: 4 x 4 = 16 features per tile plus [CLS]

NEXT_MISTRAL_SPEC = {
    **LLAMA_SPEC,
    "seed": 7302,
    "family": "llava_next",
    "tail_specials": ["[INST]", "[/INST]", "<image>"],
    "chat_template": MISTRAL_TEMPLATE,
    "template_kind": "mistral",
    "preprocessor": NEXT_PREPROCESSOR_CONFIG,
    "processor_config": {
        "image_token": "<image>",
        "num_additional_image_tokens": 1,
        "patch_size": 8,
        "processor_class": "LlavaNextProcessor",
        "vision_feature_select_strategy": "default",
    },
    "vision": NEXT_VISION,
    "cases": NEXT_CASES,
    "hook_variants": ["llm_even", "vision_even"],
    "text": {
        **{key: value for key, value in LLAMA_SPEC["text"].items() if key != "attention_bias"},
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "sliding_window": None,
    },
}

# LlavaOnevisionConfig's default pinpoints pattern: for a in 1..6: for b in 1..6: [a * tile, b * tile].
ONEVISION_PINPOINTS = [[a * 30, b * 30] for a in range(1, 7) for b in range(1, 7)]

ONEVISION_PREPROCESSOR_CONFIG = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_grid_pinpoints": ONEVISION_PINPOINTS,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "LlavaOnevisionImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "LlavaOnevisionProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 30, "width": 30},
}

# SigLIP, patch 7 on 30 px: the valid convolution gives 4 x 4 = 16 features and drops the last 2 pixels.
ONEVISION_VISION = {**TINY_SIGLIP, "image_size": 30, "patch_size": 7, "vision_use_head": False}

ONEVISION_QWEN2_SPEC = {
    **QWEN2_SPEC,
    "seed": 4423,
    "family": "llava_onevision",
    "tail_specials": ["<|im_start|>", "<|im_end|>", "<image>", "<video>"],
    "preprocessor": ONEVISION_PREPROCESSOR_CONFIG,
    "processor_config": {
        "image_token": "<image>",
        "num_image_tokens": 16,
        "processor_class": "LlavaOnevisionProcessor",
        "video_token": "<video>",
        "vision_feature_select_strategy": "full",
    },
    "vision": ONEVISION_VISION,
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full",
    "cases": ONEVISION_CASES,
    "hook_variants": ["llm_even", "vision_even"],
    # 3 decoder layers (QWEN2_SPEC has 2) so that the llm_even hook in layer 1 changes the logits.
    "text": {**QWEN2_SPEC["text"], "num_hidden_layers": 3},
}

TORCH_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def special_tokens(spec):
    return BASE_SPECIALS + spec["tail_specials"]


def llava_config(spec, vocab, vision, dtype):
    eos_id = vocab[spec["eos_token"]]
    text = {**spec["text"], "vocab_size": spec["vocab_size"], "bos_token_id": vocab["<s>"], "eos_token_id": eos_id, "pad_token_id": vocab["<pad>"]}
    family = spec.get("family", "llava")
    if family == "llava_next":
        return {
            "architectures": ["LlavaNextForConditionalGeneration"],
            "model_type": "llava_next",
            "ignore_index": -100,
            "image_grid_pinpoints": NEXT_PINPOINTS,
            "image_token_index": vocab["<image>"],
            "projector_hidden_act": "gelu",
            "text_config": text,
            "tie_word_embeddings": False,
            "torch_dtype": TORCH_DTYPE_NAMES[dtype],
            "transformers_version": "4.44.2",
            "use_image_newline_parameter": True,
            "vision_config": vision,
            "vision_feature_layer": -2,
            "vision_feature_select_strategy": "default",
            "vocab_size": spec["vocab_size"],
        }
    if family == "llava_onevision":
        return {
            "architectures": ["LlavaOnevisionForConditionalGeneration"],
            "model_type": "llava_onevision",
            "ignore_index": -100,
            "image_grid_pinpoints": ONEVISION_PINPOINTS,
            "image_token_index": vocab["<image>"],
            "projector_hidden_act": "gelu",
            "text_config": text,
            "tie_word_embeddings": True,
            "torch_dtype": TORCH_DTYPE_NAMES[dtype],
            "transformers_version": "4.52.4",
            "use_image_newline_parameter": True,
            "video_token_index": vocab["<video>"],
            "vision_aspect_ratio": "anyres_max_9",
            "vision_config": vision,
            "vision_feature_layer": -1,
            "vision_feature_select_strategy": "full",
        }
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": vocab["<image>"],
        "projector_hidden_act": "gelu",
        "vision_feature_layer": spec.get("vision_feature_layer", -2),
        "vision_feature_select_strategy": spec.get("vision_feature_select_strategy", "default"),
        "torch_dtype": TORCH_DTYPE_NAMES[dtype],
        "vision_config": vision,
        "text_config": text,
        "tie_word_embeddings": text["tie_word_embeddings"],
        "transformers_version": "4.44.2" if spec["layout"] == "old" else "4.52.4",
    }


def generation_config(config):
    text = config["text_config"]
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {key: text[key] for key in keys}


# ---- weights ----


def weight_shapes(config):
    """[(old-layout name, shape, kind)] for a llava model; kind picks the initialisation."""
    vision, text = config["vision_config"], config["text_config"]
    d, d_ff, channels, patch = vision["hidden_size"], vision["intermediate_size"], vision["num_channels"], vision["patch_size"]
    clip = vision["model_type"] == "clip_vision_model"
    positions = (vision["image_size"] // patch) ** 2 + (1 if clip else 0)
    h, h_ff, vocab = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    head_dim = text.get("head_dim") or h // text["num_attention_heads"]
    q_dim, kv_dim = text["num_attention_heads"] * head_dim, text["num_key_value_heads"] * head_dim
    qkv_bias = text["model_type"] == "qwen2"

    v = "vision_tower.vision_model."
    # CLIP: a class embedding and pre_layrnorm; SigLIP: a bias on the patch convolution instead.
    shapes = [(v + "embeddings.class_embedding", (d,), "embedding")] if clip else []
    shapes.append((v + "embeddings.patch_embedding.weight", (d, channels, patch, patch), "linear"))
    shapes += [] if clip else [(v + "embeddings.patch_embedding.bias", (d,), "bias")]
    shapes.append((v + "embeddings.position_embedding.weight", (positions, d), "position"))
    shapes += layer_norm_shapes(v + "pre_layrnorm", d) if clip else []
    for i in range(vision["num_hidden_layers"]):
        layer = f"{v}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes += linear_shapes(f"{layer}self_attn.{proj}", d, d, bias=True)
        shapes += layer_norm_shapes(layer + "layer_norm1", d) + layer_norm_shapes(layer + "layer_norm2", d)
        shapes += linear_shapes(layer + "mlp.fc1", d_ff, d, bias=True) + linear_shapes(layer + "mlp.fc2", d, d_ff, bias=True)
    shapes += layer_norm_shapes(v + "post_layernorm", d)
    shapes += linear_shapes("multi_modal_projector.linear_1", h, d, bias=True)
    shapes += linear_shapes("multi_modal_projector.linear_2", h, h, bias=True)

    t = "language_model.model."
    shapes.append((t + "embed_tokens.weight", (vocab, h), "embedding"))
    for i in range(text["num_hidden_layers"]):
        layer = f"{t}layers.{i}."
        shapes += linear_shapes(layer + "self_attn.q_proj", q_dim, h, bias=qkv_bias, kind="attention_qk")
        shapes += linear_shapes(layer + "self_attn.k_proj", kv_dim, h, bias=qkv_bias, kind="attention_qk")
        shapes += linear_shapes(layer + "self_attn.v_proj", kv_dim, h, bias=qkv_bias)
        shapes.append((layer + "self_attn.o_proj.weight", (h, q_dim), "residual_out"))
        shapes += linear_shapes(layer + "mlp.gate_proj", h_ff, h, bias=False)
        shapes += linear_shapes(layer + "mlp.up_proj", h_ff, h, bias=False)
        shapes.append((layer + "mlp.down_proj.weight", (h, h_ff), "residual_out"))
        shapes.append((layer + "input_layernorm.weight", (h,), "norm_weight"))
        shapes.append((layer + "post_attention_layernorm.weight", (h,), "norm_weight"))
    shapes.append((t + "norm.weight", (h,), "norm_weight"))
    if not text["tie_word_embeddings"]:
        shapes.append(("language_model.lm_head.weight", (vocab, h), "lm_head"))
    if config.get("use_image_newline_parameter"):  # LLaVA-NeXT / OneVision row separator, in the text space
        shapes.append(("image_newline", (h,), "newline"))
    return shapes


def linear_shapes(prefix, out_features, in_features, bias, kind="linear"):
    shapes = [(prefix + ".weight", (out_features, in_features), kind)]
    return shapes + [(prefix + ".bias", (out_features,), "bias")] if bias else shapes


def layer_norm_shapes(prefix, size):
    return [(prefix + ".weight", (size,), "norm_weight"), (prefix + ".bias", (size,), "bias")]


def tiny_init(rng, shape, kind, tied_embeddings):
    """Random values scaled so activations stay O(1) and logits spread over a few units."""
    normal = rng.standard_normal(shape, dtype=np.float32)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    scale = {
        "linear": fan_in**-0.5,
        # Decoder layers must outweigh the token embedding in the residual stream, or (with a tied
        # table) every token predicts itself.
        "residual_out": 3.0 * fan_in**-0.5,
        # Sharp decoder attention, so that the next token depends on the last ones, not on an average.
        "attention_qk": 2.5 * fan_in**-0.5,
        "bias": 0.1,
        "norm_weight": 0.1,
        "position": 0.5,
        # A tied table is also the output head, so it gets the head's scale.
        "embedding": 2.5 * shape[-1] ** -0.5 if tied_embeddings and len(shape) == 2 else 1.0,
        "lm_head": 2.5 * fan_in**-0.5,
        # An embedding-like row of the size of the projector outputs (which are O(1)).
        "newline": 1.0,
    }[kind]
    values = normal * np.float32(scale)
    return values + np.float32(1.0) if kind == "norm_weight" else values


def tiny_weights(config, seed):
    rng = np.random.default_rng(seed)
    tied = config["text_config"]["tie_word_embeddings"]
    return {name: tiny_init(rng, shape, kind, tied) for name, shape, kind in weight_shapes(config)}


NEW_LAYOUT_PREFIXES = [
    ("vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("image_newline", "model.image_newline"),
]


def layout_name(name, layout):
    """Old transformers names (language_model.model.*) -> new ones (model.language_model.*) when asked."""
    if layout == "old":
        return name
    for old, new in NEW_LAYOUT_PREFIXES:
        if name.startswith(old):
            return new + name[len(old) :]
    raise ValueError(name)


# ---- images ----


def draw_shapes_image(path):
    image = Image.new("RGB", (96, 64), (236, 234, 224))
    draw = ImageDraw.Draw(image)
    draw.rectangle([6, 8, 54, 52], fill=(40, 90, 200), outline=(20, 40, 110))
    draw.ellipse([62, 6, 88, 32], fill=(220, 50, 40))
    draw.rectangle([64, 40, 90, 56], fill=(60, 170, 80))
    draw.polygon([(20, 58), (30, 44), (40, 58)], fill=(240, 200, 30))
    image.save(path)


def draw_diagram_image(path):
    image = Image.new("RGB", (64, 100), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([6, 6, 40, 26], outline=(0, 0, 0), fill=(255, 240, 200))
    draw.text((18, 11), "A", fill=(0, 0, 0))
    draw.rectangle([24, 70, 58, 92], outline=(0, 0, 0), fill=(200, 230, 255))
    draw.text((36, 76), "B", fill=(0, 0, 0))
    draw.line([(23, 27), (41, 66)], fill=(200, 0, 0), width=2)
    draw.polygon([(41, 69), (35, 60), (45, 58)], fill=(200, 0, 0))
    draw.text((2, 44), "go", fill=(60, 60, 60))
    image.save(path)


def draw_screenshot_image(path):
    """160 x 90 (16:9), like a small desktop screenshot: title bar, a sidebar, two boxes with text."""
    image = Image.new("RGB", (160, 90), (245, 246, 248))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, 159, 11], fill=(52, 58, 70))
    draw.text((4, 0), "File  Edit  View", fill=(230, 230, 230))
    for x, colour in ((140, (230, 80, 70)), (150, (90, 200, 90))):
        draw.ellipse([x, 3, x + 6, 9], fill=colour)
    draw.rectangle([0, 12, 26, 89], fill=(225, 229, 236))
    for y in range(18, 84, 12):
        draw.rectangle([4, y, 22, y + 5], fill=(160, 170, 190))
    draw.rectangle([32, 18, 92, 52], outline=(40, 40, 40), fill=(255, 250, 220))
    draw.text((36, 22), "Save?", fill=(0, 0, 0))
    draw.rectangle([40, 38, 62, 48], fill=(60, 120, 220))
    draw.text((43, 37), "OK", fill=(255, 255, 255))
    draw.rectangle([100, 18, 154, 84], outline=(120, 120, 120), fill=(255, 255, 255))
    for y in range(24, 80, 9):
        draw.line([(104, y), (104 + (y * 7) % 44, y)], fill=(90, 90, 90), width=2)
    draw.text((34, 62), "v1.2", fill=(200, 0, 0))
    image.save(path)


def draw_banner_image(path):
    """200 x 60, very wide: three circles and a label."""
    image = Image.new("RGB", (200, 60), (20, 30, 60))
    draw = ImageDraw.Draw(image)
    for x, colour in ((10, (250, 200, 40)), (60, (240, 90, 60)), (110, (80, 200, 140))):
        draw.ellipse([x, 12, x + 36, 48], fill=colour)
    draw.text((156, 24), "3 ok", fill=(255, 255, 255))
    draw.line([(0, 56), (199, 56)], fill=(200, 200, 255), width=2)
    image.save(path)


def draw_tall_image(path):
    """40 x 120, tall: stacked coloured bands and a triangle."""
    image = Image.new("RGB", (40, 120), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for index, colour in enumerate(((220, 40, 40), (240, 160, 30), (60, 160, 70), (50, 90, 200))):
        draw.rectangle([4, 4 + 28 * index, 35, 26 + 28 * index], fill=colour)
    draw.polygon([(20, 8), (30, 22), (10, 22)], fill=(255, 255, 255))
    draw.text((8, 90), "Z", fill=(255, 255, 255))
    image.save(path)


IMAGE_DRAWERS = {
    "shapes.png": draw_shapes_image,
    "diagram.png": draw_diagram_image,
    "screenshot.png": draw_screenshot_image,
    "banner.png": draw_banner_image,
    "tall.png": draw_tall_image,
}


def write_images(names):
    folder = os.path.join(FIXTURES, "images")
    os.makedirs(folder, exist_ok=True)
    for name in names:
        IMAGE_DRAWERS[name](os.path.join(folder, name))


# ---- model folders ----


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_folder_metadata(folder, spec, vocab, config):
    """Everything of a Hugging Face llava folder except the weights."""
    specials = special_tokens(spec)
    write_json(os.path.join(folder, "config.json"), config)
    write_json(os.path.join(folder, "generation_config.json"), generation_config(config))
    write_json(os.path.join(folder, "tokenizer.json"), tokenizer_json(vocab, specials, spec["add_bos"]))
    write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config(vocab, specials, spec))
    write_json(os.path.join(folder, "preprocessor_config.json"), spec["preprocessor"])
    if "processor_config" in spec:  # llava-hf NeXT / OneVision repos ship one (prompt expansion settings)
        write_json(os.path.join(folder, "processor_config.json"), spec["processor_config"])


def write_model_folder(folder, spec, vocab, config, weights, dtype, sharded):
    """HF llava folder: config, weights (single file or 2 shards + index), tokenizer, processor config."""
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    named = {layout_name(name, spec["layout"]): values for name, values in weights.items()}
    if sharded:
        vision_and_projector = {n: v for n, v in named.items() if "language_model" not in n}
        language_model = {n: v for n, v in named.items() if "language_model" in n}
        safetensors_io.write_sharded(folder, [vision_and_projector, language_model], dtype)
    else:
        safetensors_io.write_file(os.path.join(folder, "model.safetensors"), named, dtype)
    write_folder_metadata(folder, spec, vocab, config)


# ---- reference outputs ----


def even_patch_keep(num_patches, class_token):
    """Vision hook: CLS (sequence 0, where there is one) plus patches with even patch index."""
    lead = 1 if class_token else 0
    return [0] * lead + [lead + i for i in range(0, num_patches, 2)]


def llm_even_keep(sequence_length, image_start, num_image_tokens, structure=()):
    """Decoder hook: drop visual tokens with odd index among the image span's content tokens; text tokens and the
    span's structure tokens (offsets in `structure`: AnyRes row ends) stay."""
    content = [i for i in range(num_image_tokens) if i not in set(structure)]
    odd_visual = {image_start + i for i in content[1::2]}
    return [i for i in range(sequence_length) if i not in odd_visual]


def assert_cache_consistent(model, embeddings, tokens, step_logits, llm_keep_for):
    """Cached greedy decode must equal recomputing the whole sequence without a cache."""
    for step, token in enumerate(tokens):
        sequence = torch.cat([embeddings, model.embed(tokens[:step])])
        keep = llm_keep_for(sequence.shape[0])
        full = model.full_sequence_logits(sequence, keep)
        assert int(full.argmax()) == token, f"step {step}: uncached argmax {int(full.argmax())} != cached {token}"
        assert torch.allclose(full, step_logits[step], atol=1e-4), f"step {step}: cached logits drift"


def assert_robust_greedy(tokens, step_logits, image_token_id, label):
    assert len(set(tokens)) > 1, f"{label}: degenerate greedy sequence {tokens}"
    assert image_token_id not in tokens, f"{label}: greedy produced the image token"
    for logits in step_logits:
        top2 = torch.topk(logits, 2).values
        gap = float(top2[0] - top2[1])
        assert gap >= MIN_GREEDY_LOGIT_GAP, f"{label}: greedy near-tie (gap {gap:.2e}); change the seed"
    max_logit = float(step_logits[0].abs().max())
    assert 1.0 <= max_logit <= 20.0, f"{label}: max |logit| {max_logit:.2f} out of the useful range"


def run_variant(model, input_ids, pixel_values, variant, label, image_size=None):
    """One hook variant (None = unreduced) of one case: (image features, greedy tokens, prefill logits, L0).
    AnyRes models (image_size = original (H, W)) take pixel_values [passes, 3, S, S] and only the llm hooks."""
    structure = ()
    num_patches = (model.vision_config["image_size"] // model.vision_config["patch_size"]) ** 2
    vision_keep = (1, even_patch_keep(num_patches, model.has_class_token())) if variant == "vision_even" else None
    if model.is_anyres():
        assert variant in (None, "llm_even", "vision_even"), f"{variant} is not defined for AnyRes fixtures"
        features, geometry = model.anyres_image_features(pixel_values, image_size, vision_keep)
        if geometry is not None:
            rows, cols = geometry["final_grid"]
            base = geometry["features_per_tile_side"] ** 2
            structure = [base + r * (cols + 1) + cols for r in range(rows)]
    else:
        features = model.image_features(pixel_values, vision_keep=vision_keep)
    if variant == "projector_even":
        features = features[0::2]
    embeddings, image_start = model.splice(input_ids, features)

    def llm_keep_for(length):
        keep = llm_even_keep(length, image_start, features.shape[0], structure)
        return (1, keep) if variant == "llm_even" else None

    tokens, step_logits = model.greedy(embeddings, GREEDY_STEPS, llm_keep_for(embeddings.shape[0]))
    assert_cache_consistent(model, embeddings, tokens, step_logits, llm_keep_for)
    assert_robust_greedy(tokens, step_logits, model.config["image_token_index"], f"{label}/{variant}")
    return features, tokens, step_logits[0], embeddings.shape[0]


HOOK_VARIANTS = {
    "projector_even": "after the projector keep visual tokens 0, 2, 4, ... before splicing",
    "vision_even": "in vision layer 1 after the attention residual, before the MLP: keep CLS + patches with even patch index",
    "llm_even": (
        "in decoder layer 1 after the attention residual, before the MLP: drop visual tokens with odd index in the image span; "
        "kept tokens keep original position ids; layers 0-1 cache the full prefill, later layers the reduced one; "
        "generated token t (1-based) has position L0 + t - 1"
    ),
}
ANYRES_HOOK_NOTES = {
    "llm_even": " (AnyRes: odd among the image's content tokens, base and grid; its image_newline row ends are structure and stay)",
    "vision_even": (
        " (AnyRes: in every pass, base image and tiles alike; the thinned tiles are then packed by provenance: each kept"
        " token at its own cell of the unpadded grid, tokens on the padding dropped, a newline after every row that"
        " kept a token, no anyres_max shrink — tools/reference/model.py pack_pruned_tiles)"
    ),
}


def processor_num_image_tokens(config, image_size):
    """LlavaNextProcessor / LlavaOnevisionProcessor._get_number_of_features, in integers (no tensors)."""
    height, width = image_size
    vision = config["vision_config"]
    f = vision["image_size"] // vision["patch_size"]
    best_height, best_width = select_best_resolution((height, width), config["image_grid_pinpoints"])
    current_height = f * (best_height // vision["image_size"])
    current_width = f * (best_width // vision["image_size"])
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= (current_height - new_height) // 2 * 2
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= (current_width - new_width) // 2 * 2
    unpadded, newlines = current_height * current_width, current_height
    if config["model_type"] == "llava_onevision":
        max_num_patches = int(config["vision_aspect_ratio"][len("anyres_max_") :])
        ratio = math.sqrt(current_height * current_width / (max_num_patches * f**2))
        if ratio > 1.1:
            unpadded = int(current_height // ratio) * int(current_width // ratio)
            newlines = int(current_height // ratio)
    return f * f + unpadded + newlines  # NeXT: 576 + 1 - 1 ("default" drops CLS); OneVision: 729


def anyres_case_facts(model, pixel_values, image_size, preprocessing, label):
    """The case's AnyRes geometry for reference.json, checked against the processors' token count."""
    _, geometry = model.anyres_image_features(pixel_values, image_size)
    rows, cols = geometry["final_grid"]
    f = geometry["features_per_tile_side"]
    tile_rows, tile_cols = geometry["tiles"]
    assert geometry["num_image_tokens"] == f * f + rows * cols + rows, f"{label}: token count"
    assert geometry["num_image_tokens"] == processor_num_image_tokens(model.config, image_size), f"{label}: processor count"
    assert preprocessing["best_resolution"] == geometry["best_resolution"] and preprocessing["tiles"] == geometry["tiles"]
    assert pixel_values.shape[0] == 1 + tile_rows * tile_cols
    return {
        "image_size": list(image_size),
        "best_resolution": geometry["best_resolution"],
        "resized": preprocessing["resized"],
        "padding_top_bottom_left_right": preprocessing["padding"],
        "tiles_rows_cols": [tile_rows, tile_cols],
        "num_passes": int(pixel_values.shape[0]),
        "features_per_tile_side": f,
        "feature_grid": geometry["feature_grid"],
        "unpad": geometry["unpad"],
        "unpadded_grid": geometry["unpadded_grid"],
        "shrunk": geometry["shrunk"],
        "final_grid": geometry["final_grid"],
        "num_image_tokens": geometry["num_image_tokens"],
    }


def assert_anyres_coverage(model, cases):
    """The AnyRes cases must exercise the geometry: 3+ pinpoint grids, unpadding of rows and of columns, an odd
    remainder that keeps an extra row/column, and (anyres_max) grids both shrunk and kept as they are."""
    facts = [case["anyres"] for case in cases]
    assert len({tuple(fact["tiles_rows_cols"]) for fact in facts}) >= 3, "fewer than 3 pinpoint grids"
    for axis in ("rows", "columns"):
        assert any(f["unpad"]["axis"] == axis and f["unpad"]["cut_each_side"] > 0 for f in facts), f"no case unpads {axis}"
    assert any(f["unpad"]["remainder"] % 2 == 1 and f["unpad"]["cut_each_side"] > 0 for f in facts), "no odd unpad remainder"
    if model.config["model_type"] == "llava_onevision":
        assert {f["shrunk"] for f in facts} == {True, False}, "anyres_max: need a shrunk and a kept grid"


def reference_case(model, spec, vocab, case_index, case, tensors):
    prompt = render_prompt(spec["template_kind"], case["question"])
    input_ids = tokenize(prompt, vocab, special_tokens(spec), spec["add_bos"])
    assert input_ids.count(vocab["<image>"]) == 1
    image_path = os.path.join(FIXTURES, "images", case["image"])
    label = f"case {case_index}"
    image_size, anyres = None, None
    if model.is_anyres():
        with Image.open(image_path) as img:
            pixel_values, image_size, preprocessing = preprocess_anyres_pil(img, spec["preprocessor"])
        anyres = anyres_case_facts(model, pixel_values, image_size, preprocessing, label)
    else:
        pixel_values = preprocess(image_path, spec["preprocessor"])
    features, tokens, logits, prefill_length = run_variant(model, input_ids, pixel_values, None, label, image_size)
    tensors[f"pixel_values_{case_index}"] = pixel_values
    tensors[f"image_features_{case_index}"] = features.numpy()
    tensors[f"logits_{case_index}"] = logits.numpy()
    entry = {
        "image": f"../images/{case['image']}",
        "question": case["question"],
        "prompt": prompt,
        "input_ids": input_ids,
        "image_token_position": input_ids.index(vocab["<image>"]),
        "num_image_tokens": features.shape[0],
        "prefill_length": prefill_length,
        "greedy_tokens": tokens,
    }
    if anyres is not None:
        assert anyres["num_image_tokens"] == features.shape[0]
        entry = {**entry, "image_size": anyres["image_size"], "anyres": anyres}
    for variant in spec.get("hook_variants", HOOK_VARIANTS):
        variant_features, variant_tokens, variant_logits, _ = run_variant(model, input_ids, pixel_values, variant, label, image_size)
        entry[f"greedy_{variant}"] = variant_tokens
        tensors[f"logits_{variant}_{case_index}"] = variant_logits.numpy()
        if variant == "vision_even":
            tensors[f"image_features_{variant}_{case_index}"] = variant_features.numpy()
    return entry


def config_summary(config, spec, weights_dtype, sharded):
    vision, text = config["vision_config"], config["text_config"]
    summary = {
        "weights_dtype": weights_dtype,
        "weight_names": "language_model.model.* (old layout)" if spec["layout"] == "old" else "model.language_model.* (new layout)",
        "sharded": sharded,
        "text_model_type": text["model_type"],
        "vocab_size": text["vocab_size"],
        "image_token_index": config["image_token_index"],
        "bos_token_id": text["bos_token_id"] if spec["add_bos"] else None,
        "eos_token_id": text["eos_token_id"],
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
        "num_image_tokens": (vision["image_size"] // vision["patch_size"]) ** 2,
        "vision_feature_layer": config["vision_feature_layer"],
        "vision_hidden_size": vision["hidden_size"],
        "text_hidden_size": text["hidden_size"],
        "vision_layers": vision["num_hidden_layers"],
        "text_layers": text["num_hidden_layers"],
    }
    if config["model_type"] in ("llava_next", "llava_onevision"):
        # Tokens per image vary: see each case's anyres.num_image_tokens.
        del summary["num_image_tokens"]
        summary.update(
            {
                "model_type": config["model_type"],
                "features_per_tile": (vision["image_size"] // vision["patch_size"]) ** 2,
                "vision_feature_select_strategy": config["vision_feature_select_strategy"],
                "image_grid_pinpoints": config["image_grid_pinpoints"],
                "vision_aspect_ratio": config.get("vision_aspect_ratio"),
                "image_newline": "image_newline (old layout)" if spec["layout"] == "old" else "model.image_newline (new layout)",
            }
        )
    return summary


def write_reference(folder, spec, vocab, config, weights_dtype, sharded):
    """reference.json + reference.safetensors, computed from the weights read back from the folder
    (so f16/bf16 references use the rounded weights and the file layout is exercised too)."""
    model = LlavaReference(config, safetensors_io.read_folder(folder))
    tensors = {}
    cases = [reference_case(model, spec, vocab, index, case, tensors) for index, case in enumerate(spec.get("cases", CASES))]
    hooks = {name: HOOK_VARIANTS[name] for name in spec.get("hook_variants", HOOK_VARIANTS)}
    if model.is_anyres():
        assert_anyres_coverage(model, cases)
        hooks = {name: note + ANYRES_HOOK_NOTES[name] for name, note in hooks.items()}
    reference = {
        "fixture_version": FIXTURE_VERSION,
        "produced_by": PRODUCED_BY,
        "model": os.path.basename(folder),
        "config": config_summary(config, spec, weights_dtype, sharded),
        "greedy_steps": GREEDY_STEPS,
        "greedy_note": "argmax with a KV cache, EOS ignored; logits_* are prefill logits at the last position",
        "hooks": hooks,
        "cases": cases,
    }
    write_json(os.path.join(folder, "reference.json"), reference)
    safetensors_io.write_file(os.path.join(folder, "reference.safetensors"), tensors, "F32")


def make_fixture(name, spec, weights_dtype, sharded):
    vocab = build_vocab(spec["vocab_size"], spec["tail_specials"])
    config = llava_config(spec, vocab, spec.get("vision", TINY_VISION), weights_dtype)
    # The f16/bf16 fixtures share their f32 sibling's seed, so their weights are its weights rounded.
    weights = tiny_weights(config, spec["seed"])
    folder = os.path.join(FIXTURES, name)
    write_model_folder(folder, spec, vocab, config, weights, weights_dtype, sharded)
    write_reference(folder, spec, vocab, config, weights_dtype, sharded)
    print(f"wrote {os.path.relpath(folder, REPO_ROOT)}")


# name -> (spec, weights dtype, sharded)
FIXTURE_SPECS = {
    "tiny-llava-llama": (LLAMA_SPEC, "F32", False),
    "tiny-llava-qwen2": (QWEN2_SPEC, "F32", True),
    "tiny-llava-llama-f16": (LLAMA_SPEC, "F16", False),
    "tiny-llava-qwen2-bf16": (QWEN2_SPEC, "BF16", False),
    "tiny-llava-siglip-qwen2": (SIGLIP_QWEN2_SPEC, "F32", False),
    "tiny-llava-next-mistral": (NEXT_MISTRAL_SPEC, "F32", False),
    "tiny-llava-onevision-qwen2": (ONEVISION_QWEN2_SPEC, "F32", False),
}


def fixture_images(name):
    return [case["image"] for case in FIXTURE_SPECS[name][0].get("cases", CASES)]


def make_fixtures(names):
    torch.set_num_threads(1)  # one thread: identical float sums on every run
    # Images a fixture that is not regenerated also uses stay as they are (its reference was computed on them).
    kept = {image for name in FIXTURE_SPECS if name not in names for image in fixture_images(name)}
    images = [image for name in names for image in fixture_images(name)]
    write_images([image for image in IMAGE_DRAWERS if image in images and image not in kept])
    for name in names:
        spec, dtype, sharded = FIXTURE_SPECS[name]
        make_fixture(name, spec, dtype, sharded)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", action="append", choices=list(FIXTURE_SPECS), metavar="NAME", help="regenerate only this fixture (repeatable)"
    )
    args = parser.parse_args()
    make_fixtures([name for name in FIXTURE_SPECS if args.only is None or name in args.only])


if __name__ == "__main__":
    main()
