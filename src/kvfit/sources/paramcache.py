"""kvfit's own cache of parameter counts, so a model looked up on the Hub once is exact offline.

A Hub lookup (sources/hub.py) reads the safetensors metadata (per-dtype parameter counts, never the
weights) next to config.json, which huggingface_hub caches in the HF cache. The counts themselves
have no place there, so kvfit keeps them in $XDG_CACHE_HOME/kvfit/params (default ~/.cache/kvfit),
one JSON file per repository and commit:

    params/<org>--<name>/<commit>.json   {"repo_id", "commit", "params": {"BF16": 8030261248, ...}}

sources/hfcache.py reads them back when a cached snapshot holds config.json but no safetensors.
Reading and writing never fail a check: an unreadable or odd file is ignored.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..memory.weights import Inventory

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
SOURCE = "Hub safetensors metadata (cached by kvfit)"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "kvfit" / "params"


def _file(repo_id: str, commit: str) -> Path | None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_SAFE.match(p) for p in parts) or not _SAFE.match(commit) or ".." in commit:
        return None
    return cache_dir() / f"{parts[0]}--{parts[1]}" / f"{commit}.json"


def store(repo_id: str, commit: str, counts: dict[str, int]) -> Path | None:
    """Write the counts for (repo, commit); returns the file, or None when it could not be written."""
    f = _file(repo_id, commit)
    if f is None or not counts:
        return None
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"repo_id": repo_id, "commit": commit, "params": counts}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, f)
        return f
    except OSError:
        return None


def load(repo_id: str, commit: str) -> Inventory | None:
    f = _file(repo_id, commit)
    if f is None:
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict) or not params:
        return None
    counts = {}
    for k, v in params.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return None
        counts[k] = v
    return Inventory(counts, SOURCE)
