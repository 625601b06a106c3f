"""The Hugging Face cache, read as files (no huggingface_hub import on this path: it is slow).

Layout (huggingface_hub file_download.py): $HF_HUB_CACHE/models--ORG--NAME/refs/REVISION holds a
commit hash; snapshots/HASH/ holds the files; .no_exist/HASH/NAME marks a file the Hub said the repository
does not have. A snapshot with config.json but no safetensors takes the parameter counts a Hub lookup of that
commit left in kvfit's cache (sources/paramcache.py). The processor files (sources/processor.py) are read from
the snapshot too.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import paramcache
from .model import ModelSource, read_json_file
from .local import inventory_in, quant_config_in
from .processor import IMAGE, PROCESSOR, ProcessorFiles, read_dir


def cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def snapshot(repo_id: str, revision: str | None) -> Path | None:
    repo = cache_dir() / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    rev = revision or "main"
    ref = repo / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev
    snap = repo / "snapshots" / commit
    return snap if (snap / "config.json").is_file() else None


def load(repo_id: str, revision: str | None) -> ModelSource | None:
    snap = snapshot(repo_id, revision)
    if snap is None:
        return None
    config = read_json_file(snap / "config.json")
    # safetensors headers in the snapshot, else the counts an earlier Hub lookup of this commit cached
    inventory = inventory_in(snap, config) or paramcache.load(repo_id, snap.name)
    return ModelSource(repo_id, "hf-cache", str(snap), config, quant_config_in(snap), inventory,
                       processors_in(snap))


def processors_in(snap: Path) -> ProcessorFiles:
    """The processor files of a cached snapshot; without any, whether the Hub said the repository has none
    (huggingface_hub leaves .no_exist/<commit>/<file> markers) or they were simply not downloaded."""
    pf = read_dir(snap, f"the HF cache snapshot {snap}")
    if pf.found:
        return pf
    absent = snap.parent.parent / ".no_exist" / snap.name
    if all((absent / n).is_file() for n in (PROCESSOR, IMAGE)):     # what the image processor would read
        return ProcessorFiles({}, pf.where, "the repository has no processor file (the HF cache records the "
                                            "Hub's answer)", repo_has_none=True)
    return ProcessorFiles({}, pf.where, f"the HF cache snapshot {snap} holds none of the repository's processor "
                                        f"files (`hf download {repo_id(snap)} {IMAGE} {PROCESSOR}` fetches them)")


def repo_id(snap: Path) -> str:
    return snap.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
