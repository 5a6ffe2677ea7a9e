#!/usr/bin/python3
"""Write a split of synthetic scenes: PNG images + data.jsonl of {image, question, answer, type, seed}.

  /usr/bin/python3 tools/synthetic/make_dataset.py --split eval --count 300 --out DIR
  /usr/bin/python3 tools/synthetic/make_dataset.py --first-seed 5000 --count 100 --out DIR

Splits are seed ranges that never overlap: train scenes use seeds [0, 1e9), held-out ones start at
EVAL_FIRST_SEED (evaluation) and TEST_FIRST_SEED (a second held-out split). Every scene contributes all
its questions (at most one per type). Prints per-type counts, uniform chance and majority-answer rates.
"""

import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from synthetic.scenes import QUESTION_TYPES, chance_levels, make_scene  # noqa: E402

SPLITS = {"train": 0, "eval": 1_000_000_000, "test": 2_000_000_000}
EVAL_FIRST_SEED = SPLITS["eval"]
TEST_FIRST_SEED = SPLITS["test"]


def split_stats(rows):
    """{type: (count, uniform chance, majority-answer rate)}"""
    chance = chance_levels()
    by_type = collections.defaultdict(collections.Counter)
    for row in rows:
        by_type[row["type"]][row["answer"]] += 1
    stats = {}
    for t in QUESTION_TYPES:
        answers = by_type.get(t)
        if answers:
            total = sum(answers.values())
            stats[t] = (total, chance[t], max(answers.values()) / total)
    return stats


def print_stats(rows, out=sys.stdout):
    stats = split_stats(rows)
    print(f"{'type':10s} {'items':>6s} {'chance':>7s} {'majority':>9s}", file=out)
    for t, (count, chance, majority) in stats.items():
        print(f"{t:10s} {count:6d} {chance:7.3f} {majority:9.3f}", file=out)
    print(f"{'all':10s} {len(rows):6d}", file=out)


def write_split(out, first_seed, count):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rows = []
    for seed in range(first_seed, first_seed + count):
        scene = make_scene(seed)
        name = f"images/{seed}.png"
        scene.image.save(os.path.join(out, name), optimize=True)
        for qtype, question, answer in scene.qa:
            rows.append({"image": name, "question": question, "answer": answer, "type": qtype, "seed": seed, "layout": scene.layout})
    with open(os.path.join(out, "data.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", choices=sorted(SPLITS), default="eval")
    parser.add_argument("--first-seed", type=int, help="overrides --split")
    parser.add_argument("--count", type=int, default=300, help="number of scenes (each gives 4-5 questions)")
    args = parser.parse_args()
    first = args.first_seed if args.first_seed is not None else SPLITS[args.split]
    rows = write_split(args.out, first, args.count)
    print(f"wrote {args.count} scenes, {len(rows)} questions (seeds {first}..{first + args.count - 1}) to {args.out}")
    print_stats(rows)


if __name__ == "__main__":
    main()
