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


# ---- AnyRes tiling (LLaVA-NeXT / LLaVA-OneVision image processors, slow PIL path) ----


def select_best_resolution(original_size, possible_resolutions):
    """transformers' image_processing_utils.select_best_resolution: original_size and pinpoints are (height, width).
    The pinpoint showing the most original pixels (upscaling counts only up to the original), ties to the least waste."""
    original_height, original_width = original_size
    best_fit = None
    max_effective = 0
    min_wasted = float("inf")
    for height, width in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width, downscaled_height = int(original_width * scale), int(original_height * scale)
        effective = min(downscaled_width * downscaled_height, original_width * original_height)
        wasted = width * height - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            max_effective = effective
            min_wasted = wasted
            best_fit = (height, width)
    return best_fit


def get_patch_output_size(original_size, target_resolution):
    """transformers' get_patch_output_size: (new_height, new_width) keeping the aspect ratio inside the target."""
    original_height, original_width = original_size
    target_height, target_width = target_resolution
    scale_w = target_width / original_width
    scale_h = target_height / original_height
    if scale_w < scale_h:
        return min(math.ceil(original_height * scale_w), target_height), target_width
    return target_height, min(math.ceil(original_width * scale_h), target_width)


def padding_for_patching(new_size, target_resolution):
    """((top, bottom), (left, right)): divmod(target - new, 2), the odd pixel at the bottom / right."""
    (new_height, new_width), (target_height, target_width) = new_size, target_resolution
    top, r_y = divmod(target_height - new_height, 2)
    left, r_x = divmod(target_width - new_width, 2)
    return (top, top + r_y), (left, left + r_x)


def anyres_sizes(preprocessor_config: dict):
    """((base height, base width), tile side) as the processors pass them to get_image_patches."""
    cfg = preprocessor_config
    size = _size_dict(cfg["size"], default_to_square=False)
    # The base: a square of shortest_edge, or height x width. (NeXT's older numpy processor took a square of
    # min(height, width) for the latter; its PIL and fast backends, like OneVision's, take height x width.)
    base = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    if cfg.get("image_processor_type") == "LlavaNextImageProcessor":
        tile = _size_dict(cfg["crop_size"], default_to_square=True)["height"]  # patch_size=crop_size["height"]
    else:  # LlavaOnevisionImageProcessor: size_tuple for both
        tile = base[0]
    return base, tile


def anyres_patches(img: Image.Image, preprocessor_config: dict):
    """[base image] + tiles (row-major) as PIL images, before the per-tile preprocessing; and the geometry used."""
    cfg = preprocessor_config
    img = img.convert("RGB")
    height, width = img.height, img.width
    base_size, tile = anyres_sizes(cfg)
    resample = cfg.get("resample", 3)
    best = select_best_resolution((height, width), cfg["image_grid_pinpoints"])
    new_height, new_width = get_patch_output_size((height, width), best)
    resized = np.asarray(img.resize((new_width, new_height), resample), dtype=np.uint8)
    (top, bottom), (left, right) = padding_for_patching((new_height, new_width), best)
    padded = np.pad(resized, ((top, bottom), (left, right), (0, 0)), mode="constant", constant_values=0)
    assert padded.shape[:2] == tuple(best)
    tiles = [
        Image.fromarray(np.ascontiguousarray(padded[y : y + tile, x : x + tile]))
        for y in range(0, best[0], tile)
        for x in range(0, best[1], tile)
    ]
    base = img.resize((base_size[1], base_size[0]), resample)
    geometry = {
        "best_resolution": list(best),
        "resized": [new_height, new_width],
        "padding": [top, bottom, left, right],
        "tiles": [best[0] // tile, best[1] // tile],
    }
    return [base] + tiles, geometry


def preprocess_anyres_pil(img: Image.Image, preprocessor_config: dict):
    """(pixel_values float32 [passes, 3, S, S], (H, W), geometry) for one image, as LlavaNextImageProcessor /
    LlavaOnevisionImageProcessor (slow, PIL) make them for a single image: base image first, then the tiles."""
    rgb = img.convert("RGB")
    patches, geometry = anyres_patches(rgb, preprocessor_config)
    # do_pad means "pad for patching" here (done above), not LLaVA-1.5's expand-to-square.
    per_tile = {**preprocessor_config, "do_pad": False}
    pixel_values = np.stack([preprocess_pil(patch, per_tile) for patch in patches])
    return pixel_values, (rgb.height, rgb.width), geometry


def preprocess_anyres(image_path: str, preprocessor_config: dict):
    """(pixel_values float32 [passes, 3, S, S], (H, W)) for one image file; passes = 1 + tiles."""
    with Image.open(image_path) as img:
        pixel_values, image_size, _ = preprocess_anyres_pil(img, preprocessor_config)
    return pixel_values, image_size
