"""Read tensor dtypes and shapes from safetensors headers: 8-byte little-endian length + JSON.

Only the header is read (a few KB), never the tensor data, and nothing is imported from torch.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
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


# Decoder layers of the language model, whatever wrapper the checkpoint names it with.
_LM_LAYER = re.compile(r"^(?:model\.|backbone\.|language_model\.model\.|model\.language_model\.|"
                       r"language_model\.)layers\.(\d+)\.")


def vllm_skips(config: dict | None) -> Callable[[str], bool]:
    """Tensors a checkpoint stores that vLLM does not load (so they take no GPU memory):
    MTP / next-token-prediction layers beyond num_hidden_layers and `mtp.*` modules (deepseek_v2.py,
    qwen3_next.py ... skip them unless speculative decoding asks for them), and lm_head.weight when
    the embeddings are tied (llama.py, qwen3.py: `if tie_word_embeddings and "lm_head.weight" in name`)."""
    if not isinstance(config, dict):
        return lambda name: False
    from ..arch.normalize import text_config

    cfg, _ = text_config(config)
    n = None
    for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            n = v
            break
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        n = len(pattern)
    tie = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    tied = tie is True

    def skip(name: str) -> bool:
        if tied and name.endswith("lm_head.weight") and name.count(".") <= 2:
            return True
        if name.startswith(("mtp.", "model.mtp.")):
            return True
        m = _LM_LAYER.match(name)
        return bool(m and n is not None and int(m.group(1)) >= n)

    return skip


def params_by_dtype(header: dict, name: str = "safetensors", skip: Callable[[str], bool] | None = None
                    ) -> dict[str, int]:
    """Element counts per storage dtype, tensor by tensor (leaving out what `skip` names)."""
    out: dict[str, int] = {}
    for key, info in header.items():
        if key == "__metadata__" or (skip is not None and skip(key)):
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not isinstance(info.get("shape"), list):
            raise ConfigError(f"{name}: tensor {key!r} has no dtype/shape in its header")
        shape = info["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ConfigError(f"{name}: tensor {key!r} has a bad shape {shape!r}")
        out[info["dtype"]] = out.get(info["dtype"], 0) + math.prod(shape)
    return out


def inventory_of_files(files: list[Path], skip: Callable[[str], bool] | None = None) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in files:
        for dtype, n in params_by_dtype(read_header(f), f.name, skip).items():
            total[dtype] = total.get(dtype, 0) + n
    return total
