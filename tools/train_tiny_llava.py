#!/usr/bin/python3
"""Train the built-in tiny LLaVA on procedural screenshots and save it as a Hugging Face llava folder.

  /usr/bin/python3 tools/train_tiny_llava.py --out models/tiny-llava-screens      (the built-in model)
  /usr/bin/python3 tools/train_tiny_llava.py --out DIR --steps 300 --seed 1        (a quick trial)

Architecture (exactly what transformers' LlavaForConditionalGeneration loads, old weight names):
CLIP vision tower with [CLS] (168 px, patch 14 -> 12 x 12 = 144 visual tokens, vision_feature_layer -2,
"default" strategy drops [CLS]), mlp2x_gelu projector, Llama decoder, word-level tokenizer with the
llava-1.5 chat template "USER: <image>\\n{question} ASSISTANT:". The forward pass is the PyTorch
reference itself (tools/reference/model.py) with its weights as nn.Parameters.

Objective: cross-entropy on the answer word and the following </s>, plus three auxiliary objectives that
use the generator's ground truth (without them a 2-core hour ends at chance level: the decoder never
learns to look things up in the image):
  - [CLS]: small linear heads on post_layernorm([CLS] of the last vision layer) - CLIP's pooled output -
    predict per-colour object counts, layout, title and status bar, so [CLS] carries a global summary
    (FiCoCo-V scores patches with [CLS] attention). The last vision layer is trained only through them.
  - patches: linear heads on the visual tokens (vision feature layer) predict per-patch colour, kind, size,
    letter glyph, object centre, arrow, arrow source/target, title word, row and column; heads on the
    projected tokens predict row and column again (without them the projector lets positions fade and
    relative-position questions stay at chance); and each projected visual token, read through the
    (tied) LM head, names its content words ("red", "box", "A"). The patch position embeddings start
    from 2-D sinusoids (POSITION_INIT_RMS).
  - attention: at the answer position, heads 0 and 1 of decoder layer WORD_FOCUS_LAYER are taught to look
    at the question words naming the first and second thing the question refers to, and the same heads of
    layers IMAGE_FOCUS_LAYERS at the patches showing them (scenes.Scene.focus). Without the first step the
    decoder has to discover on its own how to carry "red box" from the question to the answer position.
    Probes on the answer position name the question type, the answer, and the row and column of both things.
  - reduced tokens: the answer loss is taken a second time with only 16, 36 or 64 of the 144 visual tokens
    (informative patches first, original order), cut where the three kinds of method cut (REDUCED_SITES):
    inside the decoder (original position ids), before it (consecutive ids) or inside the vision tower
    (its later layers run on what is left, the cut tokens dropped or merged into similar kept ones);
    without it the decoder answers nonsense once a method shortens the image's part of the sequence.
All heads are discarded; the saved folder is a plain llava checkpoint. Because every question about an
image shares the prompt prefix "<s> USER :" + visual tokens, the decoder runs that prefix once per image
and each question continues from its KV cache.

Data: scenes generated on the fly from tools/synthetic/scenes.py, train seeds [0, 1e9) (scene i of step s
has seed s * images_per_step + i), held-out evaluation on seeds from make_dataset.EVAL_FIRST_SEED.
Every scene contributes all its questions, so the vision tower runs once per image.

Reproducible from --seed with the same --threads on the same machine (float sums depend on the thread
count; --minutes makes the stopping step depend on speed, so reproducible runs use --steps). The defaults
are the built-in model's run. One thread is faster than two at this size: 1.7 s per step with a second run
on the other core, against 2.4 s on two threads alone. Run time on this 2-core machine (f32, 1 thread, 2.18 M
parameters): about 1.7 s per step of 8 scenes x up to 3 questions per type each, with the reduced-token
pass and four evaluations; 1500 steps took 38.8 minutes. train_log.json in --out records the run.
"""

import argparse
import collections
import json
import math
import random
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import make_fixture  # noqa: E402
from reference import safetensors_io  # noqa: E402
from reference.image import preprocess_pil  # noqa: E402
from reference.model import LlavaReference, canonical_name, gather_tokens, rms_norm  # noqa: E402
from synthetic import scenes  # noqa: E402
from synthetic.make_dataset import EVAL_FIRST_SEED  # noqa: E402

IMAGE_SIZE = scenes.IMAGE_SIZE  # 168
PATCH = 14

VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH,
    "num_channels": 3,
    "layer_norm_eps": 1e-5,
    "hidden_act": "quick_gelu",
    "projection_dim": 128,
}

SPEC = {
    **make_fixture.LLAMA_SPEC,
    "model_max_length": 512,
    "preprocessor": {
        **make_fixture.PREPROCESSOR_CONFIG,
        "size": {"shortest_edge": IMAGE_SIZE},
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    },
    "text": {
        **make_fixture.LLAMA_SPEC["text"],
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    },
}

CHAT_WORDS = ["USER", "ASSISTANT", ":"]
# The attention objectives: head h of the answer position looks at the words naming the h-th thing the
# question refers to in WORD_FOCUS_LAYER, and at the patches showing it in IMAGE_FOCUS_LAYERS.
WORD_FOCUS_LAYER = 0
# Per-patch targets that need relations between patches (which box an arrow ends at, how many shapes share a
# colour) learn slowest; they weigh more.
PATCH_HEAD_WEIGHTS = {"arrow_target": 3.0, "arrow_source": 3.0, "count": 3.0}
# ... and get an attention objective too: in this vision layer, head 0 of every box patch looks at the box
# patches the arrow's head overlaps, and head 0 of every shape patch at the centres of the shapes of its colour.
VISION_FOCUS_LAYER = 2
IMAGE_FOCUS_LAYERS = (1, 2)
FOCUS_HEADS = 2
# Visual token counts of the second, reduced answer loss (one drawn per step), its weight, and the count
# the evaluation reports.
REDUCED_BUDGETS = (16, 36, 64)
REDUCED_WEIGHT = 0.5
EVAL_REDUCED_BUDGET = 16
# Where the reduced pass cuts the image (one drawn per step), as the three kinds of method hand tokens over:
#   "decoder": projected tokens keep their original position ids, as a pruner inside the decoder leaves them;
#   "projector": projected tokens take consecutive position ids, as after a method before the decoder;
#   "vision": cut inside one of REDUCED_VISION_LAYERS, the tower's later layers run on what is left, then
#             consecutive position ids, as after a method inside the vision tower;
#   "vision-merged": the same, each cut token merged into its most similar kept one (merge_into_kept).
REDUCED_SITES = ("decoder", "projector", "vision", "vision-merged")
REDUCED_VISION_LAYERS = (1, 2, 3, 4)
EVAL_REDUCED_SITE = ("projector", None)
# Weight of the probes that read from the answer position where the question's two things are.
WHERE_PROBE_WEIGHT = 1.0
# RMS of the 2-D sinusoids the patch position embeddings start from: about a third of the patch content's
# (0.84 at initialisation), so every visual token carries its row and column from the first step.
POSITION_INIT_RMS = 0.3


def build_vocab():
    """Ids: <unk> <s> </s> <pad>, chat words, question/answer words, <image> last."""
    tokens = make_fixture.BASE_SPECIALS + CHAT_WORDS + scenes.vocabulary_words() + ["<image>"]
    assert len(set(tokens)) == len(tokens)
    return {token: index for index, token in enumerate(tokens)}


def prompt_ids(question, vocab):
    prompt = make_fixture.render_prompt("llava", question)
    return make_fixture.tokenize(prompt, vocab, make_fixture.special_tokens(SPEC), SPEC["add_bos"])


def init_weights(config, seed):
    """GPT-2 style: normal(0.02) matrices, residual outputs scaled by 1/sqrt(2 layers), norms 1, biases 0."""
    generator = torch.Generator().manual_seed(seed)
    layers = max(config["vision_config"]["num_hidden_layers"], config["text_config"]["num_hidden_layers"])
    weights = {}
    for name, shape, kind in make_fixture.weight_shapes(config):
        if kind == "norm_weight":
            value = torch.ones(shape)
        elif kind == "bias":
            value = torch.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * layers) if kind == "residual_out" or name.endswith(("out_proj.weight", "fc2.weight")) else 0.02
            value = torch.randn(shape, generator=generator) * std
        weights[name] = value
    positions = weights["vision_tower.vision_model.embeddings.position_embedding.weight"]
    positions[1:] = 0.5 * positions[1:] + grid_sinusoids(IMAGE_SIZE // PATCH, positions.shape[1], POSITION_INIT_RMS)
    return weights


def grid_sinusoids(grid, dim, scale):
    """[grid*grid, dim] 2-D sin/cos features of (row, column), RMS `scale`: a head start for the learned patch
    position embeddings (relative-position questions need them)."""
    rows, columns = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    frequencies = torch.pi / grid * grid ** torch.linspace(0, 1, dim // 4)  # half a period across the grid .. one per 2 patches
    parts = [f(c.flatten()[:, None] * frequencies) for c in (rows, columns) for f in (torch.sin, torch.cos)]
    features = torch.cat(parts, dim=1)
    return scale * features / features.pow(2).mean().sqrt()


class TinyLlava(nn.Module):
    """The reference model's weights as parameters, plus the auxiliary [CLS] heads."""

    def __init__(self, config, weights):
        super().__init__()
        self.config = config
        self.hf_names = list(weights)
        self.params = nn.ParameterDict({canonical_name(n).replace(".", "__"): nn.Parameter(w.clone()) for n, w in weights.items()})
        self.ref = LlavaReference(config, {n: w.numpy() for n, w in weights.items()})
        self.ref.w = {key.replace("__", "."): p for key, p in self.params.items()}
        if "text.lm_head.weight" not in self.ref.w:
            self.ref.w["text.lm_head.weight"] = self.ref.w["text.embed_tokens.weight"]
        d = config["vision_config"]["hidden_size"]
        self.aux_heads = nn.ModuleDict({name: nn.Linear(d, classes) for name, classes in scenes.AUX_HEADS.items()})
        self.patch_heads = nn.ModuleDict({name: nn.Linear(d, classes) for name, classes in scenes.PATCH_HEADS.items()})
        # ... and on the projected tokens the decoder reads, their row and column (the projector otherwise lets them fade)
        self.token_position_heads = nn.ModuleDict({axis: nn.Linear(config["text_config"]["hidden_size"], scenes.GRID) for axis in ("row", "column")})
        # Probes on the answer position inside the decoder (discarded like the other heads): after
        # WORD_FOCUS_LAYER it names the words of the first and of the second thing the question refers to, and
        # the question type; after the last image focus layer, the answer and where those things are.
        h, vocab_size = config["text_config"]["hidden_size"], config["text_config"]["vocab_size"]
        self.answer_probes = nn.ModuleDict({
            "first_words": nn.Linear(h, vocab_size),
            "second_words": nn.Linear(h, vocab_size),
            "question_type": nn.Linear(h, len(scenes.QUESTION_TYPES)),
            "answer": nn.Linear(h, vocab_size),
            **{f"{thing}_{axis}": nn.Linear(h, scenes.GRID) for thing in ("first", "second") for axis in ("row", "column")},
        })

    def vision(self, pixel_values):
        """[B, 3, H, W] -> (projected visual tokens [B, 144, h], selected patch features [B, 144, d], pooled [CLS] [B, d],
        attention of vision layer VISION_FOCUS_LAYER [B, heads, 145, 145], every layer's hidden states)."""
        ref = self.ref
        attention = {VISION_FOCUS_LAYER: []}
        states = ref.vision_hidden_states(pixel_values, attention_out=attention)
        selected = states[self.config["vision_feature_layer"]][:, 1:]
        pooled = ref.layer_norm(states[-1][:, 0], "vision.post_layernorm")
        return ref.projector(selected), selected, pooled, attention[VISION_FOCUS_LAYER][0], states

    def vision_reduced(self, states, kept_patches, layer, merge):
        """Projected visual tokens [B, kept, h] when vision layer `layer` keeps [CLS] and kept_patches [B, kept] after its
        attention (as a vision-side hook does), merging the others into them if `merge`, and the tower's later
        layers run on what is left."""
        kept = torch.cat([torch.zeros_like(kept_patches[:, :1]), 1 + kept_patches], dim=1)
        x = self.ref.vision_layer(layer, states[layer], merge_into_kept(kept) if merge else kept)
        last = self.ref.vision_config["num_hidden_layers"] + self.config["vision_feature_layer"]
        for index in range(layer + 1, last + 1):
            x = self.ref.vision_layer(index, x)
        return self.ref.projector(x[:, 1:])

    def head_parameters(self):
        return [p for heads in (self.aux_heads, self.patch_heads, self.token_position_heads, self.answer_probes) for p in heads.parameters()]

    def answer_logits(self, features, image_index, input_ids, target_positions, focus_layers=(), kept_patches=None):
        """Logits at target_positions ([N, K], counted from the first token after the image) of each question,
        and for focus_layers {layer: attention of the first target position [N, heads, keys]}, keys being the
        prompt up to the image, the visual tokens, then the question's tokens, and {layer: that position's
        output of the layer [N, hidden]}. With kept_patches the visual tokens keep those patches' position ids
        and the question starts where it would after all 144; without, positions are consecutive.

        The prompt before the image ("<s> USER :" + visual tokens) is the same for every question about an
        image, so the decoder runs it once per image and the questions continue from its KV cache."""
        ref = self.ref
        image_position = self.config_image_position(input_ids)
        layers = ref.text_config["num_hidden_layers"]
        prefix_ids = input_ids[0, :image_position]
        prefix = torch.cat([ref.embed(prefix_ids).expand(features.shape[0], -1, -1), features], dim=1)
        image_cache = ref.new_cache((features.shape[0],))
        x, positions = prefix, torch.arange(prefix.shape[1])
        if kept_patches is not None:
            # as the engine does after a reduction: kept visual tokens keep their original position ids
            positions = torch.cat([positions[:image_position].expand(len(kept_patches), -1), image_position + kept_patches], dim=1)
        for index in range(layers):
            x, positions = ref.decoder_layer(index, x, positions, image_cache[index])
        question_cache = [{"k": layer["k"][image_index], "v": layer["v"][image_index]} for layer in image_cache]
        x = ref.embed(input_ids[:, image_position + 1 :])
        question_start = image_position + (self.num_image_tokens if kept_patches is not None else features.shape[1])
        positions = torch.arange(question_start, question_start + x.shape[1])
        focus_attention, layer_outputs = {}, {}
        answer_rows = target_positions[:, 0, None, None, None]
        for index in range(layers):
            probs = [] if index in focus_layers else None
            x, positions = ref.decoder_layer(index, x, positions, question_cache[index], probs_out=probs)
            if probs:
                focus_attention[index] = probs[0].gather(2, answer_rows.expand(-1, probs[0].shape[1], 1, probs[0].shape[-1]))[:, :, 0]
                layer_outputs[index] = gather_tokens(x, target_positions[:, :1])[:, 0]
        x = gather_tokens(x, target_positions)
        return self.lm_head(x), focus_attention, layer_outputs

    def lm_head(self, x):
        """Final norm and the (tied) LM head."""
        return F.linear(rms_norm(x, self.ref.w["text.norm.weight"], self.ref.text_config["rms_norm_eps"]), self.ref.w["text.lm_head.weight"])

    def config_image_position(self, input_ids):
        positions = (input_ids == self.config["image_token_index"]).nonzero()[:, 1]
        assert bool((positions == positions[0]).all()), "the image token must sit at the same index in every prompt"
        return int(positions[0])

    def hf_weights(self):
        return {name: self.params[canonical_name(name).replace(".", "__")].detach().numpy().copy() for name in self.hf_names}


def make_batch(seeds, vocab, num_image_tokens, questions_per_type=None):
    """Scenes -> pixel values, per-question token ids (right-padded), targets and aux labels.

    questions_per_type: train on up to that many of every question each scene can answer per type (sampled,
    seeded by the scene); None = the scene's own questions, one per type, as in the evaluation sets."""
    pixels, rows, aux, patch, patch_words, vision_focus = [], [], collections.defaultdict(list), collections.defaultdict(list), [], []
    for image_index, seed in enumerate(seeds):
        scene = scenes.make_scene(seed)
        vision_focus.append(relation_focus(scene.patch_labels))
        pixels.append(preprocess_pil(scene.image, SPEC["preprocessor"]))
        for name in scenes.AUX_HEADS:
            aux[name].append(scene.aux[name])
        for name in scenes.PATCH_HEADS:
            patch[name].append(scene.patch_labels[name])
        patch_words.append(words_of_patches(scene.patch_labels, vocab))
        qa = list(zip(scene.qa, scene.focus)) if questions_per_type is None else sample_per_type(scene, seed, questions_per_type)
        for (qtype, question, answer), focus in qa:
            rows.append((image_index, prompt_ids(question, vocab), vocab[answer], qtype, focus))
    length = max(len(row[1]) for row in rows) + 2
    # focus[n, h, k] = 1 when head h should look at key k for question n: keys are the prompt before the
    # image, the visual tokens, then the question; patches for the image focus, words for the word focus.
    image_position = rows[0][1].index(vocab["<image>"])
    focus = torch.zeros(len(rows), FOCUS_HEADS, image_position + num_image_tokens + length - (image_position + 1))
    word_focus = torch.zeros_like(focus)
    focus_words = torch.zeros(len(rows), FOCUS_HEADS, len(vocab))
    # where[first_row][n]: the row of the patch in the middle of the first thing question n refers to, ...
    where = {f"{thing}_{axis}": torch.full((len(rows),), scenes.IGNORE) for thing in ("first", "second") for axis in ("row", "column")}
    input_ids = torch.full((len(rows), length), vocab["<pad>"], dtype=torch.long)
    targets = torch.zeros(len(rows), 2, dtype=torch.long)
    target_positions = torch.zeros(len(rows), 2, dtype=torch.long)
    for row, (_, ids, answer, _, groups) in enumerate(rows):
        for head, (patches, words) in enumerate(groups):
            focus[row, head, [image_position + p for p in patches]] = 1.0
            # question word k is the k-th token after <image> (the template puts only whitespace between them)
            word_focus[row, head, [image_position + num_image_tokens + k for k in words]] = 1.0
            for k in words:
                focus_words[row, head, ids[image_position + 1 + k]] += 1.0
            if patches:
                thing = ("first", "second")[head]
                where[f"{thing}_row"][row] = round(sum(p // scenes.GRID for p in patches) / len(patches))
                where[f"{thing}_column"][row] = round(sum(p % scenes.GRID for p in patches) / len(patches))
        sequence = ids + [answer, vocab["</s>"]]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        last_prompt = len(ids) - 1 - ids.index(vocab["<image>"]) - 1  # the final ':' counted after the image
        target_positions[row] = torch.tensor([last_prompt, last_prompt + 1])
        targets[row] = torch.tensor([answer, vocab["</s>"]])
    return {
        "pixels": torch.from_numpy(np.stack(pixels)),
        "image_index": torch.tensor([r[0] for r in rows]),
        "input_ids": input_ids,
        "targets": targets,
        "target_positions": target_positions,
        "types": [r[3] for r in rows],
        "type_ids": torch.tensor([scenes.QUESTION_TYPES.index(r[3]) for r in rows]),
        "focus": focus,
        "word_focus": word_focus,
        "focus_words": focus_words / focus_words.sum(-1, keepdim=True).clamp(min=1.0),
        "where": where,
        "patch_words": torch.stack(patch_words),
        "vision_focus": torch.stack(vision_focus),
        "aux": {name: torch.tensor(values) for name, values in aux.items()},
        "patch": {name: torch.tensor(values) for name, values in patch.items()},
    }


def relation_focus(labels):
    """[144, 145] keys (0 = [CLS], 1 + p = patch p) each patch should attend to in VISION_FOCUS_LAYER: for box
    patches, boxes under the arrow's head; for shape patches, the centres of shapes of the same colour."""
    focus = torch.zeros(len(labels["colour"]), 1 + len(labels["colour"]))
    box = scenes.PATCH_KINDS.index("box")
    kinds, colours = labels["kind"], labels["colour"]
    under_head = [p for p in range(len(kinds)) if kinds[p] == box and labels["arrow_head"][p]]
    for query in range(len(kinds)):
        if kinds[query] == box:
            focus[query, [1 + p for p in under_head]] = 1.0
        elif kinds[query] > 0:
            focus[query, [1 + p for p in range(len(kinds)) if labels["centre"][p] and colours[p] == colours[query]]] = 1.0
    return focus


def sample_per_type(scene, seed, limit):
    by_type = collections.defaultdict(list)
    for qa, focus in zip(scene.all_qa, scene.all_focus):
        by_type[qa[0]].append((qa, focus))
    sampler = random.Random(f"questions-{seed}")
    return [item for items in by_type.values() for item in (sampler.sample(items, limit) if len(items) > limit else items)]


def informative_first(patch_labels, budget):
    """[B, budget] patches a pruning method might keep, in their original order: the scene's informative
    patches (objects, arrows, title text) before random others."""
    informative = (patch_labels["kind"] > 0) | (patch_labels["arrow"] == 1) | (patch_labels["title_text"] == 1)
    score = informative.float() + torch.rand(informative.shape)  # informative patches score >= 1 > the rest
    return score.topk(budget, dim=1).indices.sort(dim=1).values


def merge_into_kept(kept):
    """A vision-layer reduction keeping tokens `kept` [B, k] ([CLS] first): each other token joins the kept patch most
    cosine-similar to it, x_k <- (x_k + sum_i w_i x_i) / (1 + sum_i w_i) with w_i = max(cos, 0), as merging methods do."""

    def reduce(x):
        cut = torch.ones(x.shape[:2], dtype=torch.bool).scatter(1, kept, False)
        dropped = cut.nonzero()[:, 1].view(x.shape[0], -1)
        kept_x, dropped_x = gather_tokens(x, kept), gather_tokens(x, dropped)
        similarity = F.normalize(dropped_x, dim=-1) @ F.normalize(kept_x[:, 1:], dim=-1).transpose(1, 2)
        weight, receiver = similarity.max(-1)
        weight, receiver = weight.clamp(min=0)[..., None], 1 + receiver[..., None]  # receivers are patches, never [CLS]
        sums = kept_x.scatter_add(1, receiver.expand(-1, -1, x.shape[-1]), weight * dropped_x)
        mass = torch.ones(kept.shape + (1,)).scatter_add(1, receiver, weight)
        return sums / mass

    return reduce


def reduced_logits(model, batch, features, states, reduction):
    """Answer logits with only `budget` visual tokens cut at `site` (see REDUCED_SITES); training on these keeps the
    model answering when a method thins out the image's tokens."""
    budget, site, layer = reduction
    kept_patches = informative_first(batch["patch"], budget)
    if site.startswith("vision"):
        reduced = model.vision_reduced(states, kept_patches, layer, merge=site == "vision-merged")
    else:
        reduced = gather_tokens(features, kept_patches)
    original_positions = kept_patches if site == "decoder" else None
    logits, *_ = model.answer_logits(reduced, batch["image_index"], batch["input_ids"], batch["target_positions"], kept_patches=original_positions)
    return logits


def draw_reduction():
    """(budget, site, vision layer or None) of this step's reduced pass, from torch's seeded generator."""
    budget = REDUCED_BUDGETS[int(torch.randint(len(REDUCED_BUDGETS), ()))]
    site = REDUCED_SITES[int(torch.randint(len(REDUCED_SITES), ()))]
    layer = REDUCED_VISION_LAYERS[int(torch.randint(len(REDUCED_VISION_LAYERS), ()))] if site.startswith("vision") else None
    return budget, site, layer


def losses(model, batch, reduction):
    features, patches, pooled, vision_attention, states = model.vision(batch["pixels"])
    layers = (WORD_FOCUS_LAYER, *IMAGE_FOCUS_LAYERS)
    logits, focus_attention, layer_outputs = model.answer_logits(features, batch["image_index"], batch["input_ids"], batch["target_positions"], layers)
    reduced = reduced_logits(model, batch, features, states, reduction)
    attention_loss = focus_loss([focus_attention[WORD_FOCUS_LAYER]], batch["word_focus"])
    # Probes give the answer position direct signals: after WORD_FOCUS_LAYER it holds the words of the first and
    # of the second thing the question refers to, apart (the image focus heads' queries are built from them), and
    # the question type; after the last image focus layer, the answer. Separate probes, not the LM head, so
    # these states keep their own subspaces.
    probes = model.answer_probes
    words_state, answer_state = layer_outputs[WORD_FOCUS_LAYER], layer_outputs[IMAGE_FOCUS_LAYERS[-1]]
    for head, thing in enumerate(("first", "second")):
        targets = batch["focus_words"][:, head]
        named = targets.sum(-1) > 0
        if bool(named.any()):
            attention_loss = attention_loss - (targets[named] * F.log_softmax(probes[f"{thing}_words"](words_state[named]), -1)).sum(-1).mean()
    attention_loss = attention_loss + F.cross_entropy(probes["question_type"](words_state), batch["type_ids"])
    attention_loss = attention_loss + 0.5 * F.cross_entropy(probes["answer"](answer_state), batch["targets"][:, 0])
    # ... and where the things the question refers to are (relative positions compare them).
    for name, target in batch["where"].items():
        if bool((target != scenes.IGNORE).any()):
            attention_loss = attention_loss + WHERE_PROBE_WEIGHT * F.cross_entropy(probes[name](answer_state), target, ignore_index=scenes.IGNORE)
    attention_loss = attention_loss + focus_loss([focus_attention[layer] for layer in IMAGE_FOCUS_LAYERS], batch["focus"])
    patch_queries = vision_attention[:, 0, 1:, None].flatten(0, 1)  # [B * 144, 1, 145]: head 0 of each patch as a query
    attention_loss = attention_loss + focus_loss([patch_queries], batch["vision_focus"].flatten(0, 1)[:, None])
    answer_loss = F.cross_entropy(logits[:, 0], batch["targets"][:, 0]) + REDUCED_WEIGHT * F.cross_entropy(reduced[:, 0], batch["targets"][:, 0])
    eos_loss = F.cross_entropy(logits[:, 1], batch["targets"][:, 1]) + REDUCED_WEIGHT * F.cross_entropy(reduced[:, 1], batch["targets"][:, 1])
    aux_loss = sum(F.cross_entropy(head(pooled), batch["aux"][name]) for name, head in model.aux_heads.items()) / len(model.aux_heads)
    patch_logits = {name: head(patches) for name, head in model.patch_heads.items()}
    labelled = [name for name in patch_logits if bool((batch["patch"][name] != scenes.IGNORE).any())]  # a batch may lack diagrams
    patch_loss = sum(
        PATCH_HEAD_WEIGHTS.get(name, 1.0) * F.cross_entropy(patch_logits[name].flatten(0, 1), batch["patch"][name].flatten()) for name in labelled
    ) / len(patch_logits)
    word_loss = patch_word_loss(model, features, batch["patch_words"])
    word_loss = word_loss + sum(F.cross_entropy(head(features).flatten(0, 1), batch["patch"][axis].flatten()) for axis, head in model.token_position_heads.items()) / 2
    masses = {"words": focus_mass(focus_attention[WORD_FOCUS_LAYER], batch["word_focus"])}
    masses.update({f"patches@{layer}": focus_mass(focus_attention[layer], batch["focus"]) for layer in IMAGE_FOCUS_LAYERS})
    return answer_loss, eos_loss, aux_loss, patch_loss + word_loss, attention_loss, logits, patch_logits, pooled, masses, reduced


def patch_word_loss(model, features, patch_words):
    """Cross-entropy between each visual token read through the LM head and the words naming what it shows."""
    logits = model.lm_head(features)
    named = patch_words.sum(-1) > 0
    return -(patch_words[named] * F.log_softmax(logits[named], dim=-1)).sum(-1).mean()


def words_of_patches(labels, vocab):
    """[144, vocab] target distributions: uniform over the words naming a patch's colour, kind, size, letter,
    how many shapes share its colour, title text or arrow (rows of unnamed patches stay zero)."""
    targets = torch.zeros(len(labels["colour"]), len(vocab))
    for p in range(len(labels["colour"])):
        words = []
        if labels["colour"][p] > 0:
            words.append(scenes.COLOUR_NAMES[labels["colour"][p] - 1])
        if labels["kind"][p] > 0:
            words.append(scenes.PATCH_KINDS[labels["kind"][p]])
        if labels["size"][p] > 0:
            words.append(scenes.SIZES[labels["size"][p] - 1])
        if labels["letter"][p] > 0:
            words.append(scenes.LETTERS[labels["letter"][p] - 1])
        if 0 < labels["count"][p] < len(scenes.COUNT_WORDS):
            words.append(scenes.COUNT_WORDS[labels["count"][p]])
        if labels["title_text"][p]:
            words.append(scenes.TITLES[labels["title"][p]])
        if labels["arrow"][p]:
            words.append("arrow")
        for word in words:
            targets[p, vocab[word]] = 1.0 / len(words)
    return targets


def focus_loss(focus_attention, focus):
    """-log(attention mass on the keys the question is about), per supervised head, averaged over layers."""
    supervised = focus.sum(-1) > 0  # [N, FOCUS_HEADS]
    return sum(-torch.log(focus_mass(attention, focus)[supervised] + 1e-6).mean() for attention in focus_attention) / len(focus_attention)


def focus_mass(attention, focus):
    """[N, FOCUS_HEADS] attention mass of the supervised heads on the keys the question is about."""
    return (attention[:, :FOCUS_HEADS] * focus).sum(-1)


def evaluate(model, vocab, seeds, images_per_batch):
    """First answer token argmax == answer (answers are one word), per question type."""
    correct, total = collections.Counter(), collections.Counter()
    aux_correct, patch_correct, patch_total = collections.Counter(), collections.Counter(), collections.Counter()
    focus_total, reduced_hits = 0.0, 0
    mass_sums, mass_counts = collections.Counter(), collections.Counter()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(seeds), images_per_batch):
            batch = make_batch(seeds[start : start + images_per_batch], vocab, model.num_image_tokens)
            *_, attention_loss, logits, patch_logits, pooled, masses, reduced = losses(model, batch, (EVAL_REDUCED_BUDGET, *EVAL_REDUCED_SITE))
            reduced_hits += int((reduced[:, 0].argmax(-1) == batch["targets"][:, 0]).sum())
            focus_total += float(attention_loss) * len(batch["types"])
            for name, mass in masses.items():
                supervised = batch["word_focus" if name == "words" else "focus"].sum(-1) > 0
                for qtype, row_mass, row_supervised in zip(batch["types"], mass.tolist(), supervised.tolist()):
                    for head, (value, used) in enumerate(zip(row_mass, row_supervised)):
                        if used:
                            mass_sums[(name, qtype, head)] += value
                            mass_counts[(name, qtype, head)] += 1
            hits = (logits[:, 0].argmax(-1) == batch["targets"][:, 0]).tolist()
            for qtype, hit in zip(batch["types"], hits):
                correct[qtype] += hit
                total[qtype] += 1
            for name, head in model.aux_heads.items():
                aux_correct[name] += int((head(pooled).argmax(-1) == batch["aux"][name]).sum())
            for name, predicted in patch_logits.items():
                labels = batch["patch"][name]
                patch_correct[name] += int(((predicted.argmax(-1) == labels) & (labels != scenes.IGNORE)).sum())
                patch_total[name] += int((labels != scenes.IGNORE).sum())
    model.train()
    per_type = {t: correct[t] / total[t] for t in scenes.QUESTION_TYPES if total[t]}
    overall = sum(correct.values()) / sum(total.values())
    aux = {name: aux_correct[name] / len(seeds) for name in model.aux_heads}
    aux.update({f"patch_{name}": patch_correct[name] / max(1, patch_total[name]) for name in model.patch_heads})
    aux["focus_loss"] = focus_total / sum(total.values())
    aux[f"answer_with_{EVAL_REDUCED_BUDGET}_tokens"] = reduced_hits / sum(total.values())
    focus = {"/".join(map(str, key)): mass_sums[key] / mass_counts[key] for key in sorted(mass_counts)}
    return overall, per_type, dict(total), aux, focus


def save_folder(model, vocab, config, out, log, dtype):
    """The llava folder (rewritten from scratch; a model card README.md already there is kept)."""
    card_path = os.path.join(out, "README.md")
    card = open(card_path).read() if os.path.exists(card_path) else None
    make_fixture.write_model_folder(out, SPEC, vocab, config, model.hf_weights(), dtype, sharded=False)
    if card is not None:
        open(card_path, "w").write(card)
    make_fixture.write_json(os.path.join(out, "train_log.json"), log)


def check_saved(out, vocab, seeds):
    """Reload the folder with the plain (unbatched) reference and answer a few held-out questions greedily."""
    config = json.load(open(os.path.join(out, "config.json")))
    ref = LlavaReference(config, safetensors_io.read_folder(out))
    inverse = {i: t for t, i in vocab.items()}
    hits = total = 0
    for seed in seeds:
        scene = scenes.make_scene(seed)
        features = ref.image_features(preprocess_pil(scene.image, SPEC["preprocessor"]))
        for _, question, answer in scene.qa:
            embeddings, _ = ref.splice(prompt_ids(question, vocab), features)
            tokens, _ = ref.greedy(embeddings, 2)
            hits += inverse[tokens[0]] == answer and inverse[tokens[1]] == "</s>"
            total += 1
    return hits / total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (the LR schedule spans them)")
    parser.add_argument("--minutes", type=float, default=None, help="stop early after this much wall time")
    parser.add_argument("--images-per-step", type=int, default=8, help="scenes per step")
    parser.add_argument("--questions-per-type", type=int, default=3, help="training questions per scene and type, from all it can answer")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--aux-weight", type=float, default=0.5)
    parser.add_argument("--patch-weight", type=float, default=1.0, help="weight of the per-patch objective on the visual tokens")
    parser.add_argument("--focus-weight", type=float, default=0.5, help="weight of the attention objective on the answer position")
    parser.add_argument("--eval-every", type=int, default=433)
    parser.add_argument("--eval-images", type=int, default=48)
    parser.add_argument("--dtype", choices=["F32", "F16"], default="F16", help="weight dtype of the saved folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-scenes", type=int, default=None, help="cycle over this many train scenes (overfit check); default: fresh scenes")
    args = parser.parse_args()

    started = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = build_vocab()
    SPEC["vocab_size"] = len(vocab)
    config = make_fixture.llava_config(SPEC, vocab, VISION, "F32")
    saved_config = dict(config, torch_dtype=make_fixture.TORCH_DTYPE_NAMES[args.dtype])
    model = TinyLlava(config, init_weights(config, args.seed))
    model.num_image_tokens = (IMAGE_SIZE // PATCH) ** 2
    parameters = sum(p.numel() for p in model.params.values())
    print(f"vocab {len(vocab)}, LLaVA parameters {parameters / 1e6:.2f} M, auxiliary heads {sum(p.numel() for p in model.head_parameters())}")

    decay = [p for k, p in model.params.items() if p.dim() >= 2 and "embedding" not in k]
    no_decay = [p for k, p in model.params.items() if not (p.dim() >= 2 and "embedding" not in k)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay + model.head_parameters(), "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    eval_seeds = list(range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + args.eval_images))
    log = {"args": vars(args), "history": [], "evals": []}
    running = collections.defaultdict(float)
    running_count = 0
    step = 0
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        seeds = range(step * args.images_per_step, (step + 1) * args.images_per_step)
        if args.train_scenes:
            seeds = [seed % args.train_scenes for seed in seeds]
        batch = make_batch(seeds, vocab, model.num_image_tokens, args.questions_per_type)
        answer_loss, eos_loss, aux_loss, patch_loss, attention_loss, logits, *_ = losses(model, batch, draw_reduction())
        loss = answer_loss + 0.2 * eos_loss + args.aux_weight * aux_loss + args.patch_weight * patch_loss + args.focus_weight * attention_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
        running["answer"] += float(answer_loss)
        running["eos"] += float(eos_loss)
        running["aux"] += float(aux_loss)
        running["patch"] += float(patch_loss)
        running["focus"] += float(attention_loss)
        running["acc"] += float((logits[:, 0].argmax(-1) == batch["targets"][:, 0]).float().mean())
        running_count += 1
        elapsed = time.time() - started
        if (step + 1) % 25 == 0:
            means = {k: v / running_count for k, v in running.items()}
            print(
                f"step {step + 1} {elapsed / 60:.1f} min lr {lr_at(step):.2e} answer {means['answer']:.3f} "
                f"eos {means['eos']:.3f} aux {means['aux']:.3f} patch {means['patch']:.3f} focus {means['focus']:.3f} train acc {means['acc']:.3f}",
                flush=True,
            )
            log["history"].append({"step": step + 1, "minutes": elapsed / 60, **means})
            running, running_count = collections.defaultdict(float), 0
        out_of_time = args.minutes is not None and elapsed > args.minutes * 60
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps or out_of_time:
            overall, per_type, counts, aux, focus = evaluate(model, vocab, eval_seeds, 32)
            chance = scenes.chance_levels()
            print(f"eval step {step + 1}: overall {overall:.3f} | " + " ".join(f"{t} {a:.2f}/{chance[t]:.2f}" for t, a in per_type.items()), flush=True)
            print("  aux [CLS] heads: " + " ".join(f"{k} {v:.2f}" for k, v in aux.items()), flush=True)
            print("  attention mass (objective/type/head): " + " ".join(f"{k} {v:.2f}" for k, v in focus.items()), flush=True)
            log["evals"].append({"step": step + 1, "minutes": (time.time() - started) / 60, "overall": overall, "per_type": per_type, "counts": counts, "aux": aux, "attention_mass": focus})
            # a checkpoint at every evaluation, so a run cut short still leaves a loadable folder
            save_folder(model, vocab, saved_config, args.out, log, args.dtype)
        if out_of_time:
            print(f"stopping at step {step + 1}: --minutes {args.minutes} reached", flush=True)
            break
    log["steps_done"] = step + 1
    log["train_minutes"] = (time.time() - started) / 60
    log["torch_threads"] = torch.get_num_threads()
    save_folder(model, vocab, saved_config, args.out, log, args.dtype)
    check = check_saved(args.out, vocab, eval_seeds[:20])
    log["saved_folder_greedy_accuracy_20_scenes"] = check
    make_fixture.write_json(os.path.join(args.out, "train_log.json"), log)
    print(f"saved {args.out}; reloaded-folder greedy accuracy on 20 held-out scenes {check:.3f}; total {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
