#!/usr/bin/python3
"""Reference outputs of a trained model folder on evaluation items, for the engine parity test.

  /usr/bin/python3 tools/reference_builtin.py --model models/tiny-llava-screens \\
      --data bench/eval-set/data.jsonl --count 12 --out test/fixtures/builtin-reference

For the first --count items of the JSONL set (one per scene, cycling through question types) it writes
reference.json (prompt, token ids, greedy answer tokens) and reference.safetensors (pixel values and
prefill logits at the last position), computed by tools/reference/model.py from the weights read back
from the folder. Greedy decoding runs until </s> (at most --max-new-tokens), as the engine does.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixture  # noqa: E402
from reference import safetensors_io  # noqa: E402
from reference.image import preprocess  # noqa: E402
from reference.model import LlavaReference  # noqa: E402


def folder_tokenizer(folder):
    """(vocab, special tokens, adds BOS) of a word-level tokenizer.json written by make_fixture."""
    tokenizer = json.load(open(os.path.join(folder, "tokenizer.json")))
    vocab = tokenizer["model"]["vocab"]
    specials = [token["content"] for token in tokenizer["added_tokens"]]
    add_bos = json.load(open(os.path.join(folder, "tokenizer_config.json"))).get("add_bos_token", False)
    return vocab, specials, add_bos


def pick_items(rows, count):
    """One question per scene, rotating through question types so every type appears."""
    types = sorted({row["type"] for row in rows})
    picked, seen = [], set()
    for row in rows:
        wanted = types[len(picked) % len(types)]
        if row["seed"] not in seen and row["type"] == wanted:
            picked.append(row)
            seen.add(row["seed"])
        if len(picked) == count:
            break
    return picked


def greedy_until_eos(model, embeddings, eos_id, max_new_tokens):
    tokens, step_logits = model.greedy(embeddings, max_new_tokens)
    if eos_id in tokens:
        tokens = tokens[: tokens.index(eos_id) + 1]
    return tokens, step_logits[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = json.load(open(os.path.join(args.model, "config.json")))
    preprocessor = json.load(open(os.path.join(args.model, "preprocessor_config.json")))
    vocab, specials, add_bos = folder_tokenizer(args.model)
    inverse = {index: token for token, index in vocab.items()}
    model = LlavaReference(config, safetensors_io.read_folder(args.model))
    eos_id = config["text_config"]["eos_token_id"]
    data_dir = os.path.dirname(os.path.abspath(args.data))
    rows = [json.loads(line) for line in open(args.data)]

    os.makedirs(args.out, exist_ok=True)
    tensors, cases = {}, []
    for index, row in enumerate(pick_items(rows, args.count)):
        prompt = make_fixture.render_prompt("llava", row["question"])
        input_ids = make_fixture.tokenize(prompt, vocab, specials, add_bos)
        image_path = os.path.join(data_dir, row["image"])
        pixel_values = preprocess(image_path, preprocessor)
        embeddings, _ = model.splice(input_ids, model.image_features(pixel_values))
        tokens, logits = greedy_until_eos(model, embeddings, eos_id, args.max_new_tokens)
        top2 = torch.topk(logits, 2).values
        tensors[f"pixel_values_{index}"] = pixel_values
        tensors[f"logits_{index}"] = logits.numpy()
        cases.append({
            "image": os.path.relpath(image_path, os.path.abspath(args.out)),
            "question": row["question"],
            "type": row["type"],
            "expected_answer": row["answer"],
            "prompt": prompt,
            "input_ids": input_ids,
            "greedy_tokens": tokens,
            "greedy_text": " ".join(inverse[t] for t in tokens if t != eos_id),
            "top2_gap": float(top2[0] - top2[1]),
        })
        print(f"{index}: {row['question']} -> {cases[-1]['greedy_text']} (expected {row['answer']}, gap {cases[-1]['top2_gap']:.2f})")

    reference = {
        "produced_by": "/usr/bin/python3 tools/reference_builtin.py (reference: tools/reference/model.py, float32 math)",
        "model": os.path.relpath(os.path.abspath(args.model), os.path.abspath(args.out)),
        "greedy_note": "argmax with a KV cache until </s>; logits_* are prefill logits at the last position",
        "cases": cases,
    }
    make_fixture.write_json(os.path.join(args.out, "reference.json"), reference)
    safetensors_io.write_file(os.path.join(args.out, "reference.safetensors"), tensors, "F32")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
