"""Minimal safetensors reader/writer (json + struct + numpy), including sharded checkpoints.

File layout: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}
plus "__metadata__", then the raw little-endian tensor bytes.
"""

import json
import os
import struct

import numpy as np

HEADER_ALIGNMENT = 8
INDEX_FILE = "model.safetensors.index.json"

NUMPY_STORAGE = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
ELEMENT_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def float32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Upper 16 bits of each float32, rounded to nearest even (NaN stays a quiet NaN)."""
    floats = np.ascontiguousarray(values, dtype=np.float32)
    bits = floats.view(np.uint32)
    rounding_bias = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    rounded = ((bits + rounding_bias) >> 16).astype(np.uint16)
    quiet_nan = (bits >> 16).astype(np.uint16) | np.uint16(0x40)
    return np.where(np.isnan(floats), quiet_nan, rounded)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """float array -> array whose raw bytes are the safetensors encoding of `dtype`."""
    if dtype == "BF16":
        return float32_to_bf16_bits(values)
    return np.ascontiguousarray(values, dtype=NUMPY_STORAGE[dtype])


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored array -> float32 values."""
    if dtype == "BF16":
        return bf16_bits_to_float32(raw)
    return raw.astype(np.float32)


def _header_bytes(entries) -> bytes:
    """entries: [(name, dtype, shape)] in file order -> padded JSON header."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in entries:
        size = int(np.prod(shape, dtype=np.int64)) * ELEMENT_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces (as the safetensors library does) so tensor data starts 8-byte aligned.
    return text + b" " * (-len(text) % HEADER_ALIGNMENT)


def write_streaming(path: str, entries) -> int:
    """entries: [(name, dtype, shape, produce)] where produce() yields float chunks in row-major order.

    The header is written first from the shapes, then each tensor's chunks are encoded and
    appended, so only one chunk is ever in memory. Returns the number of tensor bytes written.
    """
    header = _header_bytes([(name, dtype, shape) for name, dtype, shape, _ in entries])
    written = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for name, dtype, shape, produce in entries:
            expected = int(np.prod(shape, dtype=np.int64)) * ELEMENT_SIZE[dtype]
            tensor_bytes = 0
            for chunk in produce():
                data = encode(chunk, dtype).tobytes()
                f.write(data)
                tensor_bytes += len(data)
            assert tensor_bytes == expected, f"{name}: wrote {tensor_bytes} bytes, expected {expected}"
            written += tensor_bytes
    return written


def write_file(path: str, tensors: dict, dtype: str) -> int:
    """Write {name: float array} to one file, every tensor stored as `dtype`."""
    entries = [(name, dtype, values.shape, lambda values=values: [values]) for name, values in tensors.items()]
    return write_streaming(path, entries)


def shard_file_names(count: int):
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def write_index(folder: str, total_size: int, weight_map: dict) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    with open(os.path.join(folder, INDEX_FILE), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def write_sharded_streaming(folder: str, shards) -> None:
    """shards: one list of write_streaming entries per shard; writes the shards and the index."""
    names = shard_file_names(len(shards))
    weight_map = {}
    total_size = 0
    for file_name, entries in zip(names, shards):
        total_size += write_streaming(os.path.join(folder, file_name), entries)
        weight_map.update({entry[0]: file_name for entry in entries})
    write_index(folder, total_size, weight_map)


def write_sharded(folder: str, shards, dtype: str) -> None:
    """shards: one {name: float array} dict per shard."""
    write_sharded_streaming(
        folder,
        [[(name, dtype, values.shape, lambda values=values: [values]) for name, values in shard.items()] for shard in shards],
    )


def read_file(path: str) -> dict:
    """{name: float32 array} for every tensor in one safetensors file."""
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = np.frombuffer(data[start:end], dtype=NUMPY_STORAGE[info["dtype"]]).reshape(info["shape"])
        tensors[name] = decode(raw, info["dtype"])
    return tensors


def read_folder(folder: str) -> dict:
    """All weights of a model folder, single-file or sharded."""
    index_path = os.path.join(folder, INDEX_FILE)
    if not os.path.exists(index_path):
        return read_file(os.path.join(folder, "model.safetensors"))
    with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for file_name in sorted(set(weight_map.values())):
        tensors.update(read_file(os.path.join(folder, file_name)))
    return tensors
