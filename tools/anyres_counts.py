"""Writes test/fixtures/anyres-token-counts.json: how many image tokens transformers' processors put in the prompt for
one image of each of many sizes, for LLaVA-NeXT (llava-v1.6-mistral-7b-hf) and LLaVA-OneVision (-qwen2-*-ov-hf).

The counts follow LlavaNextProcessor._get_number_of_features and LlavaOnevisionProcessor._get_number_of_features
(research notes: anyres.md §4), in Python's own arithmetic: `round(x, 7)` and float floor division (`//`), which is
where a port is easiest to get wrong. Sizes: common screens both ways round, the edges of the pinpoint grids, and
seeded random ones.

Run from the repository root with Debian's Python (PIL + numpy, for tools/reference/image.py):
    /usr/bin/python3 tools/anyres_counts.py
"""

import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.reference.image import select_best_resolution  # noqa: E402

OUT = Path("test/fixtures/anyres-token-counts.json")

FAMILIES = {
    "llava_next": {
        "tile": 336,
        "patch": 14,
        "pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        # 576 + 1 ([CLS]) features of the base image, less the [CLS] that the "default" strategy drops
        "base": 24 * 24 + 1 - 1,
        "max_num_patches": None,
    },
    "llava_onevision": {
        "tile": 384,
        "patch": 14,
        "pinpoints": [[384 * h, 384 * w] for h in range(1, 7) for w in range(1, 7)],
        "base": 729,
        "max_num_patches": 9,
    },
}

SCREENS = [
    (1024, 768), (1280, 720), (1280, 800), (1280, 1024), (1366, 768), (1440, 900), (1536, 864), (1600, 900),
    (1680, 1050), (1920, 1080), (1920, 1200), (2048, 1536), (2560, 1080), (2560, 1440), (2560, 1600), (2880, 1800),
    (3024, 1964), (3440, 1440), (3840, 2160), (5120, 2880),
]
# Square and near-square images, the smallest, thin strips, and sizes where Python's float `//` is one below
# floor(a / b) in OneVision's anyres_max shrink (1920 × 1920: 135 // (135 / 81) is 80).
EDGES = [
    (1, 1), (16, 16), (32, 32), (100, 100), (336, 336), (384, 384), (672, 672), (768, 768), (1008, 1008),
    (1152, 1152), (1920, 1920), (2304, 2304), (4000, 4000), (1, 1000), (1000, 1), (20, 3000), (3000, 20),
    (1422, 1150), (1152, 1420), (2304, 711), (2304, 1394),
]


def number_of_image_tokens(family, height, width):
    """The processor's count for one image of height × width pixels (single-image prompt)."""
    spec = FAMILIES[family]
    tile, f = spec["tile"], spec["tile"] // spec["patch"]
    best_height, best_width = select_best_resolution([height, width], spec["pinpoints"])
    current_height = f * (best_height // tile)
    current_width = f * (best_width // tile)
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= 2 * ((current_height - new_height) // 2)
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= 2 * ((current_width - new_width) // 2)
    unpadded, newlines = current_height * current_width, current_height
    if spec["max_num_patches"] is not None:
        ratio = math.sqrt(current_height * current_width / (spec["max_num_patches"] * f**2))
        if ratio > 1.1:
            unpadded = int(current_height // ratio) * int(current_width // ratio)
            newlines = int(current_height // ratio)
    return spec["base"] + unpadded + newlines


def main():
    rng = random.Random(20261205)
    sizes = SCREENS + [(h, w) for w, h in SCREENS] + EDGES
    sizes += [(rng.randint(16, 4096), rng.randint(16, 4096)) for _ in range(400)]
    fixture = {
        family: {
            "pinpoints": spec["pinpoints"],
            "counts": [[w, h, number_of_image_tokens(family, h, w)] for w, h in sizes],
        }
        for family, spec in FAMILIES.items()
    }
    OUT.write_text(json.dumps({"columns": ["width", "height", "image tokens"], **fixture}) + "\n")
    print(f"wrote {OUT}: {len(sizes)} sizes per family")


if __name__ == "__main__":
    main()
