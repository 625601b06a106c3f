"""Read tensor dtypes and shapes from safetensors headers: 8-byte little-endian length + JSON.

Only the header is read (a few KB), never the tensor data, and nothing is imported from torch.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from ..errors import ConfigError

MAX_HEADER = 100 * 1024 * 1024      # the safetensors format's own limit


def read_header(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ConfigError(f"{path.name}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER:
                raise ConfigError(f"{path.name}: safetensors header of {n} bytes is not credible")
            data = f.read(n)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) != n:
        raise ConfigError(f"{path.name}: safetensors header is truncated")
    try:
        header = json.loads(data)
    except ValueError as e:
        raise ConfigError(f"{path.name}: safetensors header is not JSON ({e})") from e
    except RecursionError:
        raise ConfigError(f"{path.name}: safetensors header is nested too deeply to be one") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path.name}: safetensors header is not a JSON object")
    return header


def params_by_dtype(header: dict, name: str = "safetensors") -> dict[str, int]:
    """Element counts per storage dtype, tensor by tensor."""
    out: dict[str, int] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not isinstance(info.get("shape"), list):
            raise ConfigError(f"{name}: tensor {key!r} has no dtype/shape in its header")
        shape = info["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ConfigError(f"{name}: tensor {key!r} has a bad shape {shape!r}")
        out[info["dtype"]] = out.get(info["dtype"], 0) + math.prod(shape)
    return out


def inventory_of_files(files: list[Path]) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in files:
        for dtype, n in params_by_dtype(read_header(f), f.name).items():
            total[dtype] = total.get(dtype, 0) + n
    return total
