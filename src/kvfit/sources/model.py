"""What a model source hands the core: config.json as data, the quantization file beside it, the tensor
inventory; and the readers for the files a user names. Never executes anything from a model repository."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, KvfitError
from ..memory.weights import Inventory


@dataclass(frozen=True)
class ProcessorFiles:
    """The processor files of one model as a source found them (sources/processor.py reads and picks them)."""

    files: Mapping[str, dict] = field(default_factory=dict)   # file name -> its JSON object (the ones found)
    where: str = ""                 # where they were read ("/models/x", "the HF cache snapshot ...", ...)
    missing: str | None = None      # none found: why, in words (None when some were found)
    repo_has_none: bool = False     # the repository itself has none (a local directory, the Hub's answer)

    @property
    def found(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True)
class ModelSource:
    id: str
    source: str                  # "local" | "hf-cache" | "hub" | "catalog"
    detail: str                  # path, cache snapshot, Hub revision, catalog file
    config: dict
    hf_quant_config: dict | None
    inventory: Inventory | None
    processors: ProcessorFiles | None = None   # the processor files found with config.json (sources/processor.py)


def _reject_constant(name: str):
    # Python's json accepts NaN/Infinity (real configs contain them); keep them as floats and let
    # the normalizer reject them only where a number must be finite.
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def parse_config_text(text: str, where: str) -> dict:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ConfigError(f"{where} is not valid JSON: {e}",
                          "Check the file; kvfit reads config.json as plain JSON.") from e
    except RecursionError:   # nesting deeper than Python's recursion limit: no config looks like that
        raise ConfigError(f"{where} is not a config: its JSON is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object, not {type(data).__name__}")
    return data


def read_text_file(path: Path, what: str, error: type[KvfitError] = ConfigError) -> str:
    """A UTF-8 text file the user pointed at, or `error` saying what is wrong with it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what}: not UTF-8 text") from None
    except OSError as e:
        raise error(f"{what}: cannot read it ({e.strerror or e})") from None


def read_json_file(path: Path) -> dict:
    return parse_config_text(read_text_file(path, str(path)), str(path))
