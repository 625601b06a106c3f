"""Find a model's config.json and tensor inventory.

Order: a local directory or config.json path; the Hugging Face cache; the bundled catalog; the Hub.
The network is used only when the model is neither local, cached nor bundled, or when a
`--revision` asks for a specific Hub revision (a bundled entry is then the fallback when the Hub
cannot be reached). Nothing is ever imported or executed from a model repository: config.json is
read as JSON data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, HubError, KvfitError, ModelNotFound
from ..memory.weights import Inventory


@dataclass(frozen=True)
class ModelSource:
    id: str
    source: str                  # "local" | "hf-cache" | "hub" | "catalog"
    detail: str                  # path, cache snapshot, Hub revision, catalog file
    config: dict
    hf_quant_config: dict | None
    inventory: Inventory | None


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


def _with_bundled_params(src: ModelSource, bundled: ModelSource | None) -> ModelSource:
    """A cached snapshot holding config.json only (what `huggingface-cli download ID config.json` or a
    Hub lookup leaves) or a Hub repo without safetensors metadata: the bundled parameter counts of the
    same id beat an estimate from the architecture."""
    if src.inventory is not None or bundled is None or bundled.inventory is None:
        return src
    return ModelSource(src.id, src.source, f"{src.detail}; parameter counts from the bundled catalog",
                       src.config, src.hf_quant_config, bundled.inventory)


def offline_requested(offline_flag: bool) -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return offline_flag or env in ("1", "true", "yes", "on")


def resolve(ref: str, *, revision: str | None = None, offline: bool = False) -> ModelSource:
    from . import catalog, hfcache, local

    if not isinstance(ref, str) or not ref.strip():
        raise ModelNotFound("no model given", "Pass a Hugging Face id (org/name) or a local directory.")
    ref = ref.strip()
    try:
        path = Path(ref).expanduser()
    except RuntimeError:        # ~user of an unknown user: not a path kvfit can read
        path = Path(ref)
    try:
        exists = path.exists()
    except OSError as e:        # a name too long for the file system, a parent it may not search
        raise ModelNotFound(f"{ref[:120]}{'...' if len(ref) > 120 else ''}: not a readable path "
                            f"({e.strerror or e.__class__.__name__}) and not a Hugging Face id") from None
    if exists:
        return local.load(path)
    if ref.startswith((".", "/", "~")) or ref.endswith(".json"):
        raise ModelNotFound(f"{ref}: no such file or directory")
    if ref.count("/") > 1:
        raise ModelNotFound(f"{ref!r} is neither an existing path nor a Hugging Face id (org/name)")

    bundled_params = lambda src: _with_bundled_params(src, catalog.load(ref))  # noqa: E731
    cached = hfcache.load(ref, revision)
    if cached is not None:
        return bundled_params(cached)
    bundled = catalog.load(ref)
    if bundled is not None and revision is None:
        return bundled
    if offline_requested(offline):
        if bundled is not None:
            return bundled
        raise ModelNotFound(
            f"{ref} is not a local path, not in the Hugging Face cache and not bundled, and the Hub is off "
            f"({'--offline' if offline else 'HF_HUB_OFFLINE'})",
            "Download it once (huggingface-cli download " + ref + " config.json) or pass a local directory; "
            "`kvfit models` lists the bundled models.")
    from . import hub

    try:
        return bundled_params(hub.load(ref, revision))
    except HubError as e:
        if bundled is not None:
            return ModelSource(bundled.id, bundled.source, f"{bundled.detail} (Hub unreachable: {e.message})",
                               bundled.config, bundled.hf_quant_config, bundled.inventory)
        raise
