"""Straightforward PyTorch reference of a Hugging Face LLaVA model (CLIP or SigLIP tower + MLP projector +
Llama/Qwen2 decoder), written from transformers' semantics without importing transformers.

All math is float32. Token-reduction hooks are explicit arguments so that the reference can produce
outputs for the engine's hook sites:
  - vision_keep = (layer, indices): inside that vision layer, after the attention residual and
    before the MLP, keep only those sequence positions (CLS, where the tower has one, is position 0).
  - feature_keep = indices: after the projector, keep only those visual tokens.
  - llm_keep = (layer, indices): inside that decoder layer, after the attention residual and
    before the MLP, keep only those sequence positions. Kept tokens keep their original position ids
    ("original" position policy); each layer caches the K/V of the tokens that entered its attention.

The building blocks (embeddings, layers, projector, decoder layers with a cache from new_cache(batch_shape))
also accept a leading batch dimension, and `w` may hold nn.Parameters: tools/train_tiny_llava.py trains
through this same code. The hooks and greedy() are single-sequence only.
"""

import math
import re

import numpy as np
import torch
import torch.nn.functional as F

from .image import select_best_resolution

CANONICAL_PREFIXES = [
    # LLaVA-NeXT / OneVision: the learned row separator, top-level (old layout) or under model. (new layout).
    (r"^(model\.)?image_newline$", "image_newline"),
    (r"^(model\.)?vision_tower\.vision_model\.", "vision."),
    (r"^(model\.)?multi_modal_projector\.", "projector."),
    (r"^(language_model\.model\.|model\.language_model\.)", "text."),
    (r"^(language_model\.)?lm_head\.", "text.lm_head."),
]

VISION_ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}
# What CLIPVisionConfig and SiglipVisionConfig default to: a saved config leaves out values equal to these.
VISION_DEFAULTS = {
    "clip_vision_model": {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
    "siglip_vision_model": {"hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
}


def canonical_name(name: str) -> str:
    """Map both transformers weight layouts (old `language_model.model.*`, new `model.language_model.*`) to one."""
    for pattern, replacement in CANONICAL_PREFIXES:
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    raise ValueError(f"unexpected weight name {name}")


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, positions, theta):
    """HF rotate_half RoPE; x [..., heads, L, d], positions LongTensor [L], or [B, L] for a batch of x [B, heads, L, d]."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = positions.float()[..., None] * inv_freq
    angles = torch.cat([freqs, freqs], dim=-1)
    if positions.dim() == 2:
        angles = angles[:, None]
    return x * angles.cos() + rotate_half(x) * angles.sin()


def rms_norm(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x.float() * torch.rsqrt(variance + eps))


def attention(q, k, v, mask=None, probs_out=None):
    """q [heads, Lq, d], k/v [heads, Lk, d]; mask [Lq, Lk] bool (True = may attend).
    probs_out: a list that receives the attention probabilities [heads, Lq, Lk] (for training objectives)."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if probs_out is not None:
        probs_out.append(probs)
    return probs @ v


def gather_tokens(x, index):
    """Per-sequence rows of a batch: x [B, tokens, D], index [B, K] -> [B, K, D]."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def split_heads(x, heads):
    """[..., L, heads*d] -> [..., heads, L, d]"""
    return x.view(*x.shape[:-1], heads, -1).transpose(-3, -2)


def merge_heads(x):
    """[..., heads, L, d] -> [..., L, heads*d]"""
    return x.transpose(-3, -2).reshape(*x.shape[:-3], x.shape[-2], -1)


def causal_mask_with_past(query_length, past_length):
    """New tokens see the whole cache and, among themselves, only earlier-or-equal sequence slots."""
    past = torch.ones(query_length, past_length, dtype=torch.bool)
    new = torch.tril(torch.ones(query_length, query_length, dtype=torch.bool))
    return torch.cat([past, new], dim=1)


# ---- AnyRes packing (LLaVA-NeXT / LLaVA-OneVision), as transformers' modeling_llava_next / _onevision ----


def anyres_grid_shape(image_size, pinpoints, tile_size):
    """get_anyres_image_grid_shape: (tile rows, tile cols) of the best resolution for an (H, W) image."""
    height, width = select_best_resolution(tuple(image_size), pinpoints)
    return height // tile_size, width // tile_size


def unpad_extent(original_size, current_size):
    """transformers' unpad_image arithmetic, with its float order (scale first, then round to 7 digits):
    (axis "rows" or "columns", the image's extent on that axis in features, features cut from each end)."""
    original_height, original_width = original_size
    current_height, current_width = current_size
    original_aspect_ratio = original_width / original_height
    current_aspect_ratio = current_width / current_height
    if original_aspect_ratio > current_aspect_ratio:
        scale_factor = current_width / original_width
        new_height = int(round(original_height * scale_factor, 7))
        return "rows", new_height, (current_height - new_height) // 2
    scale_factor = current_height / original_height
    new_width = int(round(original_width * scale_factor, 7))
    return "columns", new_width, (current_width - new_width) // 2


def unpad_image(tensor, original_size):
    """transformers' unpad_image on a [C, h, w] feature grid: drop the rows (or columns) that only saw padding."""
    current_height, current_width = tensor.shape[1:]
    axis, _, padding = unpad_extent(original_size, (current_height, current_width))
    if axis == "rows":
        return tensor[:, padding : current_height - padding, :]
    return tensor[:, :, padding : current_width - padding]


def anyres_max_patches(vision_aspect_ratio):
    """'anyres_max_9' -> 9 (OneVision); None when the config has no such limit."""
    if vision_aspect_ratio is None:
        return None
    match = re.fullmatch(r"anyres_max_(\d+)", vision_aspect_ratio)
    assert match, f"unsupported vision_aspect_ratio {vision_aspect_ratio}"
    return int(match.group(1))


def pack_image_features(features, image_size, pinpoints, tile_size, image_newline, max_num_patches=None):
    """features [passes, f*f, C] (pass 0 = base image, then the tiles row-major) -> (packed [N, C], geometry).

    base tokens, then the tiles' feature grid with the padding's rows/columns removed (and, for anyres_max_N,
    bilinearly shrunk when it exceeds N tiles' worth by more than 1.1), each row followed by image_newline."""
    passes, tokens_per_pass, channels = features.shape
    f = math.isqrt(tokens_per_pass)
    assert f * f == tokens_per_pass, f"{tokens_per_pass} features per pass is not a square grid"
    rows, cols = anyres_grid_shape(image_size, pinpoints, tile_size)
    assert passes == 1 + rows * cols, f"{passes} passes for a {rows}x{cols} tile grid"
    base = features[0]
    grid = features[1:].view(rows, cols, f, f, channels).permute(4, 0, 2, 1, 3).contiguous()
    grid = grid.flatten(1, 2).flatten(2, 3)  # [C, rows*f, cols*f]
    full_grid = list(grid.shape[1:])
    grid = unpad_image(grid, image_size)
    unpadded_grid = list(grid.shape[1:])
    shrunk = False
    if max_num_patches is not None:
        height, width = grid.shape[1:]
        ratio = math.sqrt(height * width / (max_num_patches * f**2))
        if ratio > 1.1:
            grid = F.interpolate(grid[None], [int(height // ratio), int(width // ratio)], mode="bilinear")[0]
            shrunk = True
    final_grid = list(grid.shape[1:])
    newline = image_newline[:, None, None].expand(*grid.shape[:-1], 1).to(grid.dtype)
    grid = torch.cat([grid, newline], dim=-1)  # one extra column: a newline after every row
    packed = torch.cat([base, grid.flatten(1, 2).transpose(0, 1)], dim=0)
    axis, extent, cut = unpad_extent(image_size, full_grid)
    remainder = full_grid[0 if axis == "rows" else 1] - extent
    geometry = {
        "best_resolution": [rows * tile_size, cols * tile_size],
        "tiles": [rows, cols],
        "features_per_tile_side": f,
        "feature_grid": full_grid,
        # remainder = grid side - image extent in features; an odd one keeps one extra row/column
        "unpad": {"axis": axis, "image_extent": extent, "remainder": remainder, "cut_each_side": cut},
        "unpadded_grid": unpadded_grid,
        "final_grid": final_grid,
        "shrunk": shrunk,
        "num_image_tokens": packed.shape[0],
    }
    return packed, geometry


def pack_pruned_tiles(features, kept_patches, f, image_size, pinpoints, tile_size, image_newline):
    """Tiles thinned inside the tower — every pass kept the patches `kept_patches` (raster order in its f x f grid);
    features [passes, len(kept_patches), C] — packed by where their tokens came from: the base image's tokens first,
    then each kept grid token at its own cell of the grid cut to the image (tokens on the padding go), row-major, a
    newline after every row that kept a token. No anyres_max shrink: the reduction already made the image smaller."""
    passes = features.shape[0]
    rows, cols = anyres_grid_shape(image_size, pinpoints, tile_size)
    assert passes == 1 + rows * cols
    grid_height, grid_width = rows * f, cols * f
    axis, _, cut = unpad_extent(image_size, (grid_height, grid_width))
    first_row, first_col = (cut, 0) if axis == "rows" else (0, cut)
    kept_rows = grid_height - 2 * first_row
    kept_cols = grid_width - 2 * first_col
    placed = []  # (cell, feature)
    for tile in range(rows * cols):
        tile_row, tile_col = divmod(tile, cols)
        for token, patch in enumerate(kept_patches):
            r = tile_row * f + patch // f - first_row
            c = tile_col * f + patch % f - first_col
            if 0 <= r < kept_rows and 0 <= c < kept_cols:
                placed.append((r * kept_cols + c, features[1 + tile, token]))
    placed.sort(key=lambda item: item[0])
    sequence = list(features[0])
    for i, (cell, feature) in enumerate(placed):
        sequence.append(feature)
        if i + 1 == len(placed) or placed[i + 1][0] // kept_cols != cell // kept_cols:
            sequence.append(image_newline)
    return torch.stack(sequence)


class LlavaReference:
    def __init__(self, config: dict, weights: dict):
        """config: the llava config.json dict; weights: {HF name: float array} in either layout."""
        self.config = config
        self.vision_config = config["vision_config"]
        self.text_config = config["text_config"]
        self.w = {canonical_name(name): torch.from_numpy(np.asarray(v, dtype=np.float32)) for name, v in weights.items()}
        if "text.lm_head.weight" not in self.w:
            assert config.get("tie_word_embeddings", self.text_config.get("tie_word_embeddings")), "no lm_head and not tied"
            self.w["text.lm_head.weight"] = self.w["text.embed_tokens.weight"]

    def linear(self, x, prefix):
        bias = self.w.get(prefix + ".bias")
        return F.linear(x, self.w[prefix + ".weight"], bias)

    def layer_norm(self, x, prefix):
        eps = self.vision_setting("layer_norm_eps")
        return F.layer_norm(x, x.shape[-1:], self.w[prefix + ".weight"], self.w[prefix + ".bias"], eps)

    # ---- vision tower ----

    def vision_setting(self, key):
        """A vision config value, or its transformers default for the tower's model_type (CLIP's when unnamed)."""
        defaults = VISION_DEFAULTS[self.vision_config.get("model_type", "clip_vision_model")]
        return self.vision_config.get(key, defaults[key])

    def has_class_token(self):
        """CLIP prepends a class embedding; SigLIP has none."""
        return "vision.embeddings.class_embedding" in self.w

    def vision_embeddings(self, pixel_values):
        """pixel_values [3, H, W] -> [(CLS +) patches, D] (before CLIP's pre_layrnorm); a batch [B, 3, H, W] -> [B, ..., D]."""
        patch = self.vision_config["patch_size"]
        batched = pixel_values.dim() == 4
        images = pixel_values if batched else pixel_values[None]
        conv_bias = self.w.get("vision.embeddings.patch_embedding.bias")  # SigLIP's convolution has one, CLIP's not
        patches = F.conv2d(images, self.w["vision.embeddings.patch_embedding.weight"], conv_bias, stride=patch)
        patches = patches.flatten(2).transpose(1, 2)
        if self.has_class_token():
            cls = self.w["vision.embeddings.class_embedding"].expand(patches.shape[0], 1, -1)
            patches = torch.cat([cls, patches], dim=1)
        embeddings = patches + self.w["vision.embeddings.position_embedding.weight"]
        return embeddings if batched else embeddings[0]

    def vision_attention(self, x, prefix, probs_out=None):
        heads = self.vision_config["num_attention_heads"]
        q, k, v = (split_heads(self.linear(x, f"{prefix}.{name}"), heads) for name in ("q_proj", "k_proj", "v_proj"))
        return self.linear(merge_heads(attention(q, k, v, probs_out=probs_out)), f"{prefix}.out_proj")

    def vision_layer(self, index, x, keep=None, probs_out=None):
        prefix = f"vision.encoder.layers.{index}"
        x = x + self.vision_attention(self.layer_norm(x, f"{prefix}.layer_norm1"), f"{prefix}.self_attn", probs_out)
        if callable(keep):  # a reduction of its own (training merges tokens here)
            x = keep(x)
        elif keep is not None:  # a batch [B, tokens, D] keeps per image: keep [B, kept]
            x = x[keep] if x.dim() == 2 else gather_tokens(x, keep)
        act = VISION_ACTIVATIONS[self.vision_setting("hidden_act")]
        hidden = act(self.linear(self.layer_norm(x, f"{prefix}.layer_norm2"), f"{prefix}.mlp.fc1"))
        return x + self.linear(hidden, f"{prefix}.mlp.fc2")

    def vision_hidden_states(self, pixel_values, vision_keep=None, attention_out=None):
        """[embeddings (after CLIP's pre_layrnorm), output of layer 0, output of layer 1, ...] as in HF hidden_states.
        attention_out: {layer: []} receives those layers' attention probabilities (for training objectives)."""
        x = self.vision_embeddings(pixel_values)
        if "vision.pre_layrnorm.weight" in self.w:  # CLIP only
            x = self.layer_norm(x, "vision.pre_layrnorm")
        states = [x]
        for index in range(self.vision_config["num_hidden_layers"]):
            keep = vision_keep[1] if vision_keep is not None and vision_keep[0] == index else None
            x = self.vision_layer(index, x, keep, (attention_out or {}).get(index))
            states.append(x)
        return states

    def projector(self, x):
        # projector_hidden_act, "gelu" (the exact erf GELU) unless the config names another.
        act = VISION_ACTIVATIONS[self.config.get("projector_hidden_act", "gelu")]
        return self.linear(act(self.linear(x, "projector.linear_1")), "projector.linear_2")

    def image_features(self, pixel_values, vision_keep=None, feature_keep=None):
        """pixel_values float array [3, H, W] -> projected visual tokens [N, text hidden]."""
        states = self.vision_hidden_states(torch.from_numpy(np.asarray(pixel_values, dtype=np.float32)), vision_keep)
        selected = states[self.config["vision_feature_layer"]]
        if self.config["vision_feature_select_strategy"] == "default":
            selected = selected[1:]  # drop CLS (transformers drops the first token whatever it is)
        features = self.projector(selected)
        return features if feature_keep is None else features[feature_keep]

    def is_anyres(self):
        return self.config.get("model_type") in ("llava_next", "llava_onevision")

    def anyres_image_features(self, pixel_values, image_size, vision_keep=None):
        """LLaVA-NeXT / OneVision: pixel_values [passes, 3, S, S] (base image + tiles) of an (H, W) image ->
        (packed visual tokens [N, text hidden], geometry dict). Tower and projector per pass, then packing.
        vision_keep = (layer, sequence indices) keeps those tokens of every pass in that layer; the passes are then
        packed by provenance (pack_pruned_tiles) and the geometry is None."""
        pixels = torch.from_numpy(np.asarray(pixel_values, dtype=np.float32))
        keep = None
        if vision_keep is not None:
            keep = (vision_keep[0], torch.tensor(vision_keep[1]).expand(pixels.shape[0], -1))
        states = self.vision_hidden_states(pixels, keep)
        selected = states[self.config["vision_feature_layer"]]
        if self.config["vision_feature_select_strategy"] == "default":
            selected = selected[:, 1:]  # drop CLS of every pass
        features = self.projector(selected)
        if vision_keep is not None:
            lead = 1 if self.has_class_token() else 0
            kept_patches = [index - lead for index in vision_keep[1] if index >= lead]
            f = self.vision_config["image_size"] // self.vision_config["patch_size"]
            packed = pack_pruned_tiles(
                features,
                kept_patches,
                f,
                image_size,
                self.config["image_grid_pinpoints"],
                self.vision_config["image_size"],
                self.w["image_newline"],
            )
            return packed, None
        max_num_patches = None
        if self.config["model_type"] == "llava_onevision":
            max_num_patches = anyres_max_patches(self.config.get("vision_aspect_ratio", "anyres_max_9"))
        return pack_image_features(
            features,
            image_size,
            self.config["image_grid_pinpoints"],
            self.vision_config["image_size"],
            self.w["image_newline"],
            max_num_patches,
        )

    # ---- language model ----

    def embed(self, token_ids):
        return self.w["text.embed_tokens.weight"][torch.as_tensor(token_ids, dtype=torch.long)]

    def splice(self, input_ids, image_features):
        """Replace the single image token by the visual tokens; returns (embeddings, image span start)."""
        image_position = input_ids.index(self.config["image_token_index"])
        parts = [self.embed(input_ids[:image_position]), image_features, self.embed(input_ids[image_position + 1 :])]
        return torch.cat(parts), image_position

    def head_dim(self):
        tc = self.text_config
        return tc.get("head_dim") or tc["hidden_size"] // tc["num_attention_heads"]

    def decoder_attention(self, x, positions, prefix, layer_cache, probs_out=None):
        tc = self.text_config
        heads, kv_heads = tc["num_attention_heads"], tc["num_key_value_heads"]
        # transformers 5 keeps the base in rope_parameters.
        theta = (tc.get("rope_parameters") or {}).get("rope_theta", tc.get("rope_theta", 10000.0))
        q = apply_rope(split_heads(self.linear(x, f"{prefix}.q_proj"), heads), positions, theta)
        k = apply_rope(split_heads(self.linear(x, f"{prefix}.k_proj"), kv_heads), positions, theta)
        v = split_heads(self.linear(x, f"{prefix}.v_proj"), kv_heads)
        past_length = layer_cache["k"].shape[-2]
        layer_cache["k"] = torch.cat([layer_cache["k"], k], dim=-2)
        layer_cache["v"] = torch.cat([layer_cache["v"], v], dim=-2)
        # GQA: query head h uses kv head h // (heads / kv_heads), as HF repeat_kv does.
        repeats = heads // kv_heads
        k_all = layer_cache["k"].repeat_interleave(repeats, dim=-3)
        v_all = layer_cache["v"].repeat_interleave(repeats, dim=-3)
        out = attention(q, k_all, v_all, causal_mask_with_past(x.shape[-2], past_length), probs_out)
        return self.linear(merge_heads(out), f"{prefix}.o_proj")

    def decoder_layer(self, index, x, positions, layer_cache, keep=None, probs_out=None):
        prefix = f"text.layers.{index}"
        eps = self.text_config["rms_norm_eps"]
        normed = rms_norm(x, self.w[f"{prefix}.input_layernorm.weight"], eps)
        x = x + self.decoder_attention(normed, positions, f"{prefix}.self_attn", layer_cache, probs_out)
        if keep is not None:
            x, positions = x[keep], positions[keep]
        normed = rms_norm(x, self.w[f"{prefix}.post_attention_layernorm.weight"], eps)
        gated = F.silu(self.linear(normed, f"{prefix}.mlp.gate_proj")) * self.linear(normed, f"{prefix}.mlp.up_proj")
        return x + self.linear(gated, f"{prefix}.mlp.down_proj"), positions

    def new_cache(self, batch_shape=()):
        shape = (*batch_shape, self.text_config["num_key_value_heads"], 0, self.head_dim())
        return [{"k": torch.zeros(shape), "v": torch.zeros(shape)} for _ in range(self.text_config["num_hidden_layers"])]

    def decoder(self, embeddings, positions, cache, llm_keep=None):
        """Run new tokens through the decoder, appending to `cache`; returns logits of the last token."""
        x = embeddings
        for index in range(self.text_config["num_hidden_layers"]):
            keep = llm_keep[1] if llm_keep is not None and llm_keep[0] == index else None
            x, positions = self.decoder_layer(index, x, positions, cache[index], keep)
        x = rms_norm(x[-1:], self.w["text.norm.weight"], self.text_config["rms_norm_eps"])
        return F.linear(x, self.w["text.lm_head.weight"])[0]

    def greedy(self, embeddings, steps, llm_keep=None):
        """Prefill then `steps` argmax tokens with a KV cache (EOS ignored).

        Returns (tokens, step_logits) where step_logits[i] are the logits token i was chosen from
        (step_logits[0] = prefill logits at the last position).
        """
        with torch.no_grad():
            cache = self.new_cache()
            prefill_length = embeddings.shape[0]
            step_logits = [self.decoder(embeddings, torch.arange(prefill_length), cache, llm_keep)]
            tokens = [int(step_logits[0].argmax())]
            for step in range(1, steps):
                # Generated token t (1-based) gets position L0 + t - 1 whatever was reduced.
                position = torch.tensor([prefill_length + step - 1])
                step_logits.append(self.decoder(self.embed(tokens[-1:]), position, cache))
                tokens.append(int(step_logits[-1].argmax()))
            return tokens, step_logits

    def full_sequence_logits(self, embeddings, llm_keep=None):
        """Last-position logits of a whole sequence in one pass without reuse (for cache self-checks)."""
        with torch.no_grad():
            return self.decoder(embeddings, torch.arange(embeddings.shape[0]), self.new_cache(), llm_keep)
