#!/usr/bin/python3
"""Train the built-in tiny LLaVA on procedural screenshots and save it as a Hugging Face llava folder.

  /usr/bin/python3 tools/train_tiny_llava.py --out /tmp/tiny-llava-screens --minutes 50
  /usr/bin/python3 tools/train_tiny_llava.py --out DIR --steps 3000 --seed 0

Architecture (exactly what transformers' LlavaForConditionalGeneration loads, old weight names):
CLIP vision tower with [CLS] (168 px, patch 14 -> 12 x 12 = 144 visual tokens, vision_feature_layer -2,
"default" strategy drops [CLS]), mlp2x_gelu projector, Llama decoder, word-level tokenizer with the
llava-1.5 chat template "USER: <image>\\n{question} ASSISTANT:". The forward pass is the PyTorch
reference itself (tools/reference/model.py) with its weights as nn.Parameters.

Objective: cross-entropy on the answer word and the following </s>, plus an auxiliary image-level loss:
small linear heads on post_layernorm([CLS] of the last vision layer) - CLIP's pooled output - predict the
per-colour object counts, the layout, the title word and whether a status bar is shown, so that [CLS]
carries a global summary of the image (FiCoCo-V scores patches with [CLS] attention). The heads are
discarded; the last vision layer and post_layernorm are trained only through them.

Data: scenes generated on the fly from tools/synthetic/scenes.py, train seeds [0, 1e9) (scene i of step s
has seed s * images_per_step + i), held-out evaluation on seeds from make_dataset.EVAL_FIRST_SEED.
Every scene contributes all its questions, so the vision tower runs once per image.

Reproducible from --seed with torch.set_num_threads(2) on the same machine (float sums depend on
the thread count; --minutes makes the stopping step depend on speed, so reproducible runs use --steps).
Run time on this 2-core machine (f32, 2 threads, default sizes: 2.19 M parameters): about 2.2 s per step
of 24 scenes x 2 questions (~27 steps a minute), i.e. --steps 1300 is about 50 minutes; held-out
evaluation of 120 scenes takes ~10 s. train_log.json in --out records the minutes actually taken.
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
from reference.model import LlavaReference, canonical_name, rms_norm  # noqa: E402
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
    },
}

CHAT_WORDS = ["USER", "ASSISTANT", ":"]


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
    return weights


class TinyLlava(nn.Module):
    """The reference model's weights as parameters, plus the auxiliary [CLS] heads."""

    def __init__(self, config, weights):
        super().__init__()
        self.config = config
        self.hf_names = list(weights)
        self.params = nn.ParameterDict({canonical_name(n).replace(".", "__"): nn.Parameter(w.clone()) for n, w in weights.items()})
        self.ref = LlavaReference(config, {n: w.numpy() for n, w in weights.items()})
        self.ref.w = {key.replace("__", "."): p for key, p in self.params.items()}
        d = config["vision_config"]["hidden_size"]
        self.aux_heads = nn.ModuleDict({name: nn.Linear(d, classes) for name, classes in scenes.AUX_HEADS.items()})

    def vision(self, pixel_values):
        """[B, 3, H, W] -> (projected visual tokens [B, 144, h], pooled [CLS] [B, d])."""
        ref = self.ref
        states = ref.vision_hidden_states(pixel_values)
        selected = states[self.config["vision_feature_layer"]][:, 1:]
        pooled = ref.layer_norm(states[-1][:, 0], "vision.post_layernorm")
        return ref.projector(selected), pooled

    def answer_logits(self, features, image_index, input_ids, target_positions):
        """Logits at target_positions ([N, K], in spliced coordinates) of the spliced sequences."""
        ref = self.ref
        image_position = self.config_image_position(input_ids)
        embeddings = ref.embed(input_ids)
        x = torch.cat([embeddings[:, :image_position], features[image_index], embeddings[:, image_position + 1 :]], dim=1)
        positions = torch.arange(x.shape[1])
        cache = ref.new_cache((x.shape[0],))
        for index in range(ref.text_config["num_hidden_layers"]):
            x, positions = ref.decoder_layer(index, x, positions, cache[index])
        x = x.gather(1, target_positions[..., None].expand(-1, -1, x.shape[-1]))
        x = rms_norm(x, ref.w["text.norm.weight"], ref.text_config["rms_norm_eps"])
        return F.linear(x, ref.w["text.lm_head.weight"])

    def config_image_position(self, input_ids):
        positions = (input_ids == self.config["image_token_index"]).nonzero()[:, 1]
        assert bool((positions == positions[0]).all()), "the image token must sit at the same index in every prompt"
        return int(positions[0])

    def hf_weights(self):
        return {name: self.params[canonical_name(name).replace(".", "__")].detach().numpy().copy() for name in self.hf_names}


def make_batch(seeds, vocab, num_image_tokens, questions_per_image=None):
    """Scenes -> pixel values, per-question token ids (right-padded), targets and aux labels.

    questions_per_image: sample that many of each scene's questions (seeded by the scene); None = all."""
    pixels, rows, aux = [], [], collections.defaultdict(list)
    for image_index, seed in enumerate(seeds):
        scene = scenes.make_scene(seed)
        pixels.append(preprocess_pil(scene.image, SPEC["preprocessor"]))
        for name in scenes.AUX_HEADS:
            aux[name].append(scene.aux[name])
        qa = scene.qa
        if questions_per_image is not None and questions_per_image < len(qa):
            qa = random.Random(f"questions-{seed}").sample(qa, questions_per_image)
        for qtype, question, answer in qa:
            rows.append((image_index, prompt_ids(question, vocab), vocab[answer], qtype))
    length = max(len(ids) for _, ids, _, _ in rows) + 2
    input_ids = torch.full((len(rows), length), vocab["<pad>"], dtype=torch.long)
    targets = torch.zeros(len(rows), 2, dtype=torch.long)
    target_positions = torch.zeros(len(rows), 2, dtype=torch.long)
    for row, (_, ids, answer, _) in enumerate(rows):
        sequence = ids + [answer, vocab["</s>"]]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        last_prompt = len(ids) - 1 + num_image_tokens - 1  # spliced index of the final ':'
        target_positions[row] = torch.tensor([last_prompt, last_prompt + 1])
        targets[row] = torch.tensor([answer, vocab["</s>"]])
    return {
        "pixels": torch.from_numpy(np.stack(pixels)),
        "image_index": torch.tensor([r[0] for r in rows]),
        "input_ids": input_ids,
        "targets": targets,
        "target_positions": target_positions,
        "types": [r[3] for r in rows],
        "aux": {name: torch.tensor(values) for name, values in aux.items()},
    }


def losses(model, batch):
    features, pooled = model.vision(batch["pixels"])
    logits = model.answer_logits(features, batch["image_index"], batch["input_ids"], batch["target_positions"])
    answer_loss = F.cross_entropy(logits[:, 0], batch["targets"][:, 0])
    eos_loss = F.cross_entropy(logits[:, 1], batch["targets"][:, 1])
    aux_loss = sum(F.cross_entropy(head(pooled), batch["aux"][name]) for name, head in model.aux_heads.items()) / len(model.aux_heads)
    return answer_loss, eos_loss, aux_loss, logits


def evaluate(model, vocab, seeds, images_per_batch):
    """First answer token argmax == answer (answers are one word), per question type."""
    correct, total = collections.Counter(), collections.Counter()
    aux_correct = collections.Counter()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(seeds), images_per_batch):
            batch = make_batch(seeds[start : start + images_per_batch], vocab, model.num_image_tokens)
            _, _, _, logits = losses(model, batch)
            hits = (logits[:, 0].argmax(-1) == batch["targets"][:, 0]).tolist()
            for qtype, hit in zip(batch["types"], hits):
                correct[qtype] += hit
                total[qtype] += 1
            _, pooled = model.vision(batch["pixels"])
            for name, head in model.aux_heads.items():
                aux_correct[name] += int((head(pooled).argmax(-1) == batch["aux"][name]).sum())
    model.train()
    per_type = {t: correct[t] / total[t] for t in scenes.QUESTION_TYPES if total[t]}
    overall = sum(correct.values()) / sum(total.values())
    aux = {name: aux_correct[name] / len(seeds) for name in model.aux_heads}
    return overall, per_type, dict(total), aux


def save_folder(model, vocab, config, out, log):
    make_fixture.write_model_folder(out, SPEC, vocab, config, model.hf_weights(), "F32", sharded=False)
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
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps (the LR schedule spans them)")
    parser.add_argument("--minutes", type=float, default=None, help="stop early after this much wall time")
    parser.add_argument("--images-per-step", type=int, default=24, help="scenes per step")
    parser.add_argument("--questions-per-image", type=int, default=2, help="questions sampled per scene (of its 4-5)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--aux-weight", type=float, default=0.5)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-scenes", type=int, default=None, help="cycle over this many train scenes (overfit check); default: fresh scenes")
    args = parser.parse_args()

    started = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = build_vocab()
    SPEC["vocab_size"] = len(vocab)
    config = make_fixture.llava_config(SPEC, vocab, VISION, "F32")
    model = TinyLlava(config, init_weights(config, args.seed))
    model.num_image_tokens = (IMAGE_SIZE // PATCH) ** 2
    parameters = sum(p.numel() for p in model.params.values())
    print(f"vocab {len(vocab)}, LLaVA parameters {parameters / 1e6:.2f} M, aux heads {sum(p.numel() for p in model.aux_heads.parameters())}")

    decay = [p for k, p in model.params.items() if p.dim() >= 2 and "embedding" not in k]
    no_decay = [p for k, p in model.params.items() if not (p.dim() >= 2 and "embedding" not in k)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay + list(model.aux_heads.parameters()), "weight_decay": 0.0}],
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
        batch = make_batch(seeds, vocab, model.num_image_tokens, args.questions_per_image)
        answer_loss, eos_loss, aux_loss, logits = losses(model, batch)
        loss = answer_loss + 0.2 * eos_loss + args.aux_weight * aux_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
        running["answer"] += float(answer_loss)
        running["eos"] += float(eos_loss)
        running["aux"] += float(aux_loss)
        running["acc"] += float((logits[:, 0].argmax(-1) == batch["targets"][:, 0]).float().mean())
        running_count += 1
        elapsed = time.time() - started
        if (step + 1) % 25 == 0:
            means = {k: v / running_count for k, v in running.items()}
            print(
                f"step {step + 1} {elapsed / 60:.1f} min lr {lr_at(step):.2e} answer {means['answer']:.3f} "
                f"eos {means['eos']:.3f} aux {means['aux']:.3f} train acc {means['acc']:.3f}",
                flush=True,
            )
            log["history"].append({"step": step + 1, "minutes": elapsed / 60, **means})
            running, running_count = collections.defaultdict(float), 0
        out_of_time = args.minutes is not None and elapsed > args.minutes * 60
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps or out_of_time:
            overall, per_type, counts, aux = evaluate(model, vocab, eval_seeds, 32)
            chance = scenes.chance_levels()
            print(f"eval step {step + 1}: overall {overall:.3f} | " + " ".join(f"{t} {a:.2f}/{chance[t]:.2f}" for t, a in per_type.items()), flush=True)
            print("  aux [CLS] heads: " + " ".join(f"{k} {v:.2f}" for k, v in aux.items()), flush=True)
            log["evals"].append({"step": step + 1, "minutes": (time.time() - started) / 60, "overall": overall, "per_type": per_type, "counts": counts, "aux": aux})
        if out_of_time:
            print(f"stopping at step {step + 1}: --minutes {args.minutes} reached", flush=True)
            break
    log["steps_done"] = step + 1
    log["train_minutes"] = (time.time() - started) / 60
    log["torch_threads"] = torch.get_num_threads()
    save_folder(model, vocab, config, args.out, log)
    check = check_saved(args.out, vocab, eval_seeds[:20])
    log["saved_folder_greedy_accuracy_20_scenes"] = check
    make_fixture.write_json(os.path.join(args.out, "train_log.json"), log)
    print(f"saved {args.out}; reloaded-folder greedy accuracy on 20 held-out scenes {check:.3f}; total {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
