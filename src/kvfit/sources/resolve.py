"""Find a model's config.json and tensor inventory.

Order: a local directory or config.json path; the Hugging Face cache; the bundled catalog; the Hub.
The network is used only when the model is neither local, cached nor bundled, or when a
`--revision` asks for a specific Hub revision (a bundled entry is then the fallback when the Hub
cannot be reached). Nothing is ever imported or executed from a model repository: config.json is
read as JSON data.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import HubError, ModelNotFound
from .model import ModelSource


def _with_bundled_params(src: ModelSource, bundled: ModelSource | None) -> ModelSource:
    """A cached snapshot holding config.json only (what `hf download ID config.json` or a
    Hub lookup leaves) or a Hub repo without safetensors metadata: the bundled parameter counts of the
    same id beat an estimate from the architecture; likewise the bundled processor files beat the class
    defaults when the snapshot holds none (and the Hub did not say the repository has none)."""
    if bundled is None:
        return src
    if (src.source == "hf-cache" and src.processors is not None and not src.processors.found
            and not src.processors.repo_has_none and bundled.processors is not None and bundled.processors.found):
        src = replace(src, processors=bundled.processors)
    if src.inventory is not None or bundled.inventory is None:
        return src
    return replace(src, detail=f"{src.detail}; parameter counts from the bundled catalog", inventory=bundled.inventory)


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
            "Download it once (hf download " + ref + " config.json model.safetensors.index.json: huggingface_hub's CLI) or pass a local directory; "
            "`kvfit models` lists the bundled models.")
    from . import hub

    try:
        return bundled_params(hub.load(ref, revision))
    except HubError as e:
        if bundled is not None:
            return replace(bundled, detail=f"{bundled.detail} (Hub unreachable: {e.message})")
        raise
