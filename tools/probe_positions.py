#!/usr/bin/python3
"""Where a trained model loses the positions that relative-position questions need: linear probes on frozen states.

  /usr/bin/python3 tools/probe_positions.py --model models/tiny-llava-screens

Fits a linear classifier (on 70 % of the examples, scored on the rest) that reads
  - each patch's row and column from its vision features and from its projected token, and
  - for position questions, the row and column of the two things named and the answer, from the answer
    position's state after each decoder layer.
A probe near chance says the information is not there (linearly) for the decoder to use. Scenes come from
training seeds the built-in model's run never reached (PROBE_FIRST_SEED).
"""

import argparse
import collections
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tiny_llava as training  # noqa: E402
from reference import safetensors_io  # noqa: E402
from synthetic import scenes  # noqa: E402

PROBE_FIRST_SEED = 700_000_000
THINGS = ("first_row", "first_column", "second_row", "second_column")


def load(folder):
    vocab = training.build_vocab()
    training.SPEC["vocab_size"] = len(vocab)
    config = training.make_fixture.llava_config(training.SPEC, vocab, training.VISION, "F32")
    saved = {name: torch.from_numpy(value.astype("float32")) for name, value in safetensors_io.read_folder(folder).items()}
    model = training.TinyLlava(config, {**training.init_weights(config, 0), **saved})
    model.num_image_tokens = scenes.GRID**2
    return model.eval(), vocab


def probe_accuracy(features, labels, classes, steps=400):
    """Held-out accuracy of a linear classifier of `labels` [N] from standardised `features` [N, d]."""
    train = torch.arange(len(labels)) < int(0.7 * len(labels))
    mean, std = features[train].mean(0), features[train].std(0) + 1e-5
    features = (features - mean) / std
    classifier = torch.nn.Linear(features.shape[1], classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(classifier(features[train]), labels[train]).backward()
        optimizer.step()
    with torch.no_grad():
        return float((classifier(features[~train]).argmax(-1) == labels[~train]).float().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--scenes", type=int, default=600)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, vocab = load(args.model)
    layers = range(model.ref.text_config["num_hidden_layers"])
    states, targets = collections.defaultdict(list), collections.defaultdict(list)
    with torch.no_grad():
        for start in range(PROBE_FIRST_SEED, PROBE_FIRST_SEED + args.scenes, 20):
            batch = training.make_batch(range(start, start + 20), vocab, model.num_image_tokens, questions_per_type=3)
            features, selected, *_ = model.vision(batch["pixels"])
            if start == PROBE_FIRST_SEED:
                patch_states = {"vision features": selected.flatten(0, 1), "projected tokens": features.flatten(0, 1)}
                patch_targets = {axis: batch["patch"][axis].flatten() for axis in ("row", "column")}
            logits, _, outputs = model.answer_logits(features, batch["image_index"], batch["input_ids"], batch["target_positions"], tuple(layers))
            for n, question_type in enumerate(batch["types"]):
                if question_type != "position":
                    continue
                for layer in layers:
                    states[layer].append(outputs[layer][n])
                targets["answer"].append(int(batch["targets"][n, 0]))
                targets["model"].append(int(logits[n, 0].argmax()))
                for name in THINGS:
                    targets[name].append(int(batch["where"][name][n]))
    answers = torch.tensor(targets["answer"])
    print(f"{len(answers)} position questions; the model answers {float((torch.tensor(targets['model']) == answers).float().mean()):.2f} right")
    for name, features in patch_states.items():
        print(f"{name}: " + " ".join(f"{axis} {probe_accuracy(features, labels, scenes.GRID):.2f}" for axis, labels in patch_targets.items()))
    answer_classes = {word: index for index, word in enumerate(sorted(set(targets["answer"])))}
    answer_labels = torch.tensor([answer_classes[a] for a in targets["answer"]])
    for layer in layers:
        features = torch.stack(states[layer])
        readings = [f"answer {probe_accuracy(features, answer_labels, len(answer_classes)):.2f}"]
        readings += [f"{name} {probe_accuracy(features, torch.tensor(targets[name]), scenes.GRID):.2f}" for name in THINGS]
        print(f"answer position after decoder layer {layer}: " + " ".join(readings))


if __name__ == "__main__":
    main()
