"""Models bundled with kvfit: config.json, parameter counts and (multimodal models) the processor files, so
common ids work offline."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..memory.weights import Inventory
from .model import ModelSource
from .processor import ProcessorFiles

DATA = Path(__file__).with_name("data") / "models"


def _file(repo_id: str) -> Path:
    return DATA / (repo_id.replace("/", "__") + ".json")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"bundled catalog entry {path.name} is unreadable ({e})") from e


def find_file(repo_id: str) -> Path | None:
    f = _file(repo_id)
    if f.is_file():
        return f
    low = repo_id.lower()                          # Hub ids are case-insensitive
    for p in DATA.glob("*.json"):
        if p.stem.replace("__", "/").lower() == low:
            return p
    return None


def load(repo_id: str) -> ModelSource | None:
    f = find_file(repo_id)
    if f is None:
        return None
    entry = _read(f)
    params = entry.get("params") or {}
    inv = Inventory({k: int(v) for k, v in params.items()}, "catalog") if params else None
    return ModelSource(entry["id"], "catalog", f"bundled {f.name}", entry["config"],
                       entry.get("hf_quant_config"), inv, processors_of(entry))


def processors_of(entry: dict) -> ProcessorFiles:
    """The bundled copies of the model's processor files (`processor`: file name -> JSON object), and where
    they were found (`processor_source`); none bundled: said why."""
    files = entry.get("processor")
    src = entry.get("processor_source") or {}
    if isinstance(files, dict) and files:
        commit = str(src.get("commit") or "")[:10]
        return ProcessorFiles(dict(files), f"kvfit's bundled copy, from {src.get('repo')} @{commit}")
    return ProcessorFiles({}, "kvfit's bundled catalog",
                          f"no real copy of {entry['id']}'s processor files was found for kvfit's bundled catalog")


def entries() -> list[dict]:
    return [_read(p) for p in sorted(DATA.glob("*.json"))]
