"""Reference image preprocessing: what transformers' (slow) CLIP/Llava image processors do, on PIL.

Used as ground truth by the image fixtures and by the PyTorch reference. Run with Debian's
/usr/bin/python3 (PIL + numpy).
"""

import math

import numpy as np
from PIL import Image


def _size_dict(value, default_to_square):
    """transformers' get_size_dict: an int means shortest_edge (CLIP) or a square."""
    if isinstance(value, int):
        if default_to_square:
            return {"height": value, "width": value}
        return {"shortest_edge": value}
    return value


def pad_to_square(img: Image.Image, image_mean) -> Image.Image:
    """LLaVA's expand2square: background is the mean colour, image centred (floor)."""
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    background = tuple(int(m * 255) for m in image_mean)
    square = Image.new("RGB", (side, side), background)
    square.paste(img, ((side - width) // 2, (side - height) // 2))
    return square


def resize_target(width: int, height: int, size: dict):
    """(new_width, new_height) as transformers' get_resize_output_image_size computes it."""
    if "shortest_edge" in size:
        short, long = (width, height) if width <= height else (height, width)
        new_short = size["shortest_edge"]
        new_long = int(new_short * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    return size["width"], size["height"]


def center_crop(array: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """transformers' center_crop on an HWC array, zero-padding when the image is smaller."""
    height, width = array.shape[:2]
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return array[top : top + crop_height, left : left + crop_width]
    new_height, new_width = max(crop_height, height), max(crop_width, width)
    padded = np.zeros((new_height, new_width) + array.shape[2:], dtype=array.dtype)
    top_pad = math.ceil((new_height - height) / 2)
    left_pad = math.ceil((new_width - width) / 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = array
    top += top_pad
    left += left_pad
    return padded[max(0, top) : min(new_height, top + crop_height), max(0, left) : min(new_width, left + crop_width)]


def preprocess_pil(img: Image.Image, preprocessor_config: dict) -> np.ndarray:
    cfg = preprocessor_config
    img = img.convert("RGB")
    mean = cfg.get("image_mean", [0.5, 0.5, 0.5])
    std = cfg.get("image_std", [0.5, 0.5, 0.5])
    if cfg.get("do_pad", False):
        img = pad_to_square(img, mean)
    if cfg.get("do_resize", True):
        size = _size_dict(cfg["size"], default_to_square=False)
        img = img.resize(resize_target(img.width, img.height, size), cfg.get("resample", 3))
    array = np.asarray(img, dtype=np.uint8)
    if cfg.get("do_center_crop", False):
        crop = _size_dict(cfg["crop_size"], default_to_square=True)
        array = center_crop(array, crop["height"], crop["width"])
    if cfg.get("do_rescale", True):
        # transformers.image_transforms.rescale: multiply in float64, then cast to float32.
        array = (array.astype(np.float64) * cfg.get("rescale_factor", 1 / 255)).astype(np.float32)
    else:
        array = array.astype(np.float32)
    if cfg.get("do_normalize", True):
        # transformers.image_transforms.normalize: float32 arithmetic throughout.
        array = (array - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def preprocess(image_path: str, preprocessor_config: dict) -> np.ndarray:
    """float32 [3, H, W] pixel values for one image file, as the model's image processor makes them."""
    with Image.open(image_path) as img:
        return preprocess_pil(img, preprocessor_config)
