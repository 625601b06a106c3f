"""A model on disk: a directory holding config.json, or a path to the config file itself."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..memory.weights import Inventory
from .model import ModelSource, read_json_file
from .processor import read_dir
from .safetensors import inventory_of_files, vllm_skips


def inventory_in(directory: Path, config: dict | None = None) -> Inventory | None:
    """Tensor inventory from the safetensors headers present in a directory (shards may be partial),
    without the tensors vLLM does not load (safetensors.vllm_skips: MTP layers, a tied lm_head copy)."""
    files = sorted(p for p in directory.glob("*.safetensors") if p.is_file())
    if not files:
        return None
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = read_json_file(index).get("weight_map")
        except ConfigError:
            weight_map = None
        # A malformed index (weight_map not an object of file names) is ignored like an unreadable one.
        wanted = {v for v in weight_map.values() if isinstance(v, str)} if isinstance(weight_map, dict) else set()
        if wanted and not wanted <= {f.name for f in files}:
            return None          # some shards missing: a partial count would understate the weights
        if wanted:
            # vLLM loads only the files the index names (filter_duplicate_safetensors_files): Mistral
            # repos also ship consolidated.safetensors, which must not be counted twice.
            files = [f for f in files if f.name in wanted]
    return Inventory(inventory_of_files(files, vllm_skips(config)), "safetensors headers")


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
    # vLLM builds the processor from the same directory (transformers_utils/processor.py::get_processor)
    return ModelSource(str(path), "local", str(cfg_path), config, quant_config_in(directory),
                       inventory_in(directory, config), read_dir(directory))
