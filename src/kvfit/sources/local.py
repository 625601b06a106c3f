"""A model on disk: a directory holding config.json, or a path to the config file itself."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..memory.weights import Inventory
from . import ModelSource, read_json_file
from .safetensors import inventory_of_files


def inventory_in(directory: Path) -> Inventory | None:
    """Tensor inventory from the safetensors headers present in a directory (shards may be partial)."""
    files = sorted(p for p in directory.glob("*.safetensors") if p.is_file())
    if not files:
        return None
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            wanted = set(read_json_file(index).get("weight_map", {}).values())
        except ConfigError:
            wanted = set()
        if wanted and not wanted <= {f.name for f in files}:
            return None          # some shards missing: a partial count would understate the weights
    return Inventory(inventory_of_files(files), "safetensors headers")


def quant_config_in(directory: Path) -> dict | None:
    f = directory / "hf_quant_config.json"
    return read_json_file(f) if f.is_file() else None


def load(path: Path) -> ModelSource:
    path = path.expanduser()
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"{path} has no config.json",
                              "Point kvfit at the model directory that holds config.json, or at the file itself.")
        directory = path
    else:
        cfg_path, directory = path, path.parent
    config = read_json_file(cfg_path)
    return ModelSource(str(path), "local", str(cfg_path), config, quant_config_in(directory), inventory_in(directory))
