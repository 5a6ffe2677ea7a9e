"""Writes test/fixtures/preprocess/: small images in every supported flavour, the RGB of each as transformers'
load_image gives it (PIL's decode, upright by its EXIF orientation), and the reference preprocessing
(tools/reference/image.py) for several processor configs.

Run from the repository root with Debian's Python (PIL 9.4 + numpy):
    /usr/bin/python3 tools/make_image_fixtures.py
Arrays are raw files (uint8 RGB as `.rgb`, little-endian float32 CHW as `.f32`) described in
manifest.json.
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.reference.image import preprocess  # noqa: E402

OUT = Path("test/fixtures/preprocess")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CONFIGS = {
    "clip": {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 48}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 48, "width": 48},
        "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    },
    "llava_pad": {
        "image_processor_type": "LlavaImageProcessor", "do_pad": True,
        "do_resize": True, "size": {"shortest_edge": 48}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 48, "width": 48},
        "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    },
    "siglip_bilinear": {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True, "size": {"height": 40, "width": 40}, "resample": 2,
        "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    },
    "nearest_no_crop": {
        "do_resize": True, "size": {"shortest_edge": 30}, "resample": 0,
        "do_center_crop": False, "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": False,
    },
    "crop_larger_than_image": {
        "do_resize": False, "do_center_crop": True, "crop_size": {"height": 30, "width": 40},
        "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    },
}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, array, color_type, bit_depth, interlace=False):
    """Minimal PNG writer (filter 0) for what PIL cannot write: 16-bit RGB, Adam7 interlacing."""
    dtype = ">u2" if bit_depth == 16 else "u1"

    def rows(a):
        return b"".join(b"\0" + a[r].astype(dtype).tobytes() for r in range(a.shape[0]))

    if interlace:
        passes = [array[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        raw = b"".join(rows(p) for p in passes if p.size)
    else:
        raw = rows(array)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = array.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def test_pattern(width, height, seed):
    """Gradients, a noisy block and hard edges: exercises rounding, clipping and chroma."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 255 / width), (y * 255 / height), ((x ^ y) * 7) % 256], -1).astype(np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(0, 256, (height // 2 - height // 4, width // 2 - width // 4, 3))
    image[(x - width * 0.7) ** 2 + (y - height * 0.6) ** 2 < (height / 5) ** 2] = (255, 255, 0)
    return image


def large_pattern(width, height):
    """Large yet small on disk: flat shapes and stripes compress well in PNG."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.where((x // 7) % 2 == 0, 250, 10)
    image[..., 1] = np.where((y // 13) % 2 == 0, 200, 30)
    image[..., 2] = ((x + y) // 50 % 2) * 255
    return image


def write_images():
    rgb = test_pattern(64, 48, 1)
    rgba = np.dstack([rgb, (np.arange(64)[None, :] * 4 % 256).repeat(48, 0).astype(np.uint8)])
    pil = Image.fromarray(rgb)
    pil.save(OUT / "rgb.png")
    Image.fromarray(rgba).save(OUT / "rgba.png")
    pil.quantize(colors=32).save(OUT / "palette.png")
    pil.convert("L").save(OUT / "gray.png")
    rgb16 = rgb.astype(np.uint16) * 257 + np.random.default_rng(2).integers(0, 257, rgb.shape).astype(np.uint16)
    write_png(OUT / "rgb16.png", rgb16, 2, 16)
    write_png(OUT / "interlaced.png", rgb, 2, 8, interlace=True)
    pil.save(OUT / "baseline.jpg", quality=85)
    pil.save(OUT / "progressive.jpg", quality=85, progressive=True)
    pil.convert("L").save(OUT / "gray.jpg", quality=85)
    pil.save(OUT / "lossy.webp", quality=80)
    Image.fromarray(rgba).save(OUT / "lossless.webp", lossless=True)
    second = Image.fromarray(255 - rgb)
    pil.quantize(colors=64).save(OUT / "animated.gif", save_all=True, append_images=[second.quantize(colors=64)], duration=100, loop=0)
    Image.fromarray(test_pattern(30, 20, 3)).save(OUT / "small.png")
    Image.fromarray(large_pattern(1000, 700)).save(OUT / "large.png", optimize=True)
    full = (OUT / "rgb.png").read_bytes()
    (OUT / "truncated.png").write_bytes(full[: len(full) * 2 // 3])
    jpeg = (OUT / "baseline.jpg").read_bytes()
    (OUT / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (OUT / "notes.png").write_text("These are notes, not an image.\n")
    # EXIF orientations: PNG (eXIf chunk) for all eight and one out of range, a phone-style JPEG and a WebP (EXIF chunk).
    for orientation in range(1, 10):
        Image.fromarray(test_pattern(7, 5, 4)).save(OUT / f"orientation-{orientation}.png", exif=exif_orientation(orientation))
    pil.save(OUT / "portrait.jpg", quality=85, exif=exif_orientation(6))
    pil.save(OUT / "transposed.webp", lossless=True, exif=exif_orientation(5))


def exif_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


DECODE_CASES = ["rgb.png", "rgba.png", "palette.png", "gray.png", "rgb16.png", "interlaced.png", "baseline.jpg",
                "progressive.jpg", "gray.jpg", "lossy.webp", "lossless.webp", "animated.gif", "small.png", "large.png",
                *[f"orientation-{k}.png" for k in range(1, 10)], "portrait.jpg", "transposed.webp"]
PREPROCESS_CASES = [("rgb.png", "clip"), ("rgb.png", "llava_pad"), ("rgb.png", "siglip_bilinear"), ("rgb.png", "nearest_no_crop"),
                    ("small.png", "clip"), ("small.png", "llava_pad"), ("small.png", "crop_larger_than_image"),
                    ("large.png", "clip"), ("large.png", "llava_pad"), ("large.png", "siglip_bilinear"), ("large.png", "nearest_no_crop")]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_images()
    manifest = {"configs": CONFIGS, "decode": [], "preprocess": []}
    for name in DECODE_CASES:
        if name == "large.png":
            continue  # its pixels are checked through preprocessing only (2 MB of RGB)
        with Image.open(OUT / name) as img:
            # As transformers' load_image: upright by the EXIF orientation, then RGB.
            array = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        (OUT / (name + ".rgb")).write_bytes(array.tobytes())
        manifest["decode"].append({"image": name, "rgb": name + ".rgb", "width": array.shape[1], "height": array.shape[0]})
    for name, config in PREPROCESS_CASES:
        values = preprocess(str(OUT / name), CONFIGS[config])
        file = f"{name}.{config}.f32"
        (OUT / file).write_bytes(values.astype("<f4").tobytes())
        manifest["preprocess"].append({"image": name, "config": config, "values": file, "shape": list(values.shape)})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
