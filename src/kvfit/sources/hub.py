"""The Hugging Face Hub: config.json (downloaded into the HF cache) and safetensors metadata.

Never downloads weights. HF_TOKEN is read by huggingface_hub itself and sent only to the Hub.
huggingface_hub is imported here, lazily, because importing it costs more than the whole check.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HubError, ModelNotFound
from ..memory.weights import Inventory
from . import ModelSource, read_json_file

TIMEOUT_S = float(os.environ.get("KVFIT_HUB_TIMEOUT", "10"))


def _translate(e: Exception, repo_id: str, what: str) -> Exception:
    from huggingface_hub import errors as E

    if isinstance(e, E.GatedRepoError):
        return HubError(f"{repo_id} is gated: the Hub refused {what} without access",
                        "Accept the model's licence on its Hub page, then set HF_TOKEN to a token of that account.")
    if isinstance(e, E.RepositoryNotFoundError):
        return ModelNotFound(f"{repo_id} was not found on the Hugging Face Hub (or it is private)",
                             "Check the id; for a private model set HF_TOKEN. `kvfit models` lists bundled models.")
    if isinstance(e, E.RevisionNotFoundError):
        return ModelNotFound(f"revision not found for {repo_id}", "Check --revision.")
    if isinstance(e, (E.EntryNotFoundError, E.RemoteEntryNotFoundError)):
        return ModelNotFound(f"{repo_id} has no {what} on the Hub")
    if isinstance(e, E.LocalEntryNotFoundError):
        return HubError(f"the Hub could not be reached for {repo_id} ({what})",
                        "Check the network, or work offline with a local directory or a bundled model.")
    if isinstance(e, E.HfHubHTTPError):
        return HubError(f"the Hub answered an error for {repo_id}: {str(e).splitlines()[0]}")
    name = e.__class__.__name__
    if "Timeout" in name or "Connect" in name or isinstance(e, (TimeoutError, ConnectionError, OSError)):
        return HubError(f"the Hub did not answer within {TIMEOUT_S:.0f} s for {repo_id} ({name})",
                        "Check the network or proxy, or work offline with a local directory or a bundled model.")
    return HubError(f"the Hub request for {repo_id} failed: {name}: {e}")


def load(repo_id: str, revision: str | None) -> ModelSource:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(TIMEOUT_S)))
    try:
        from huggingface_hub import get_safetensors_metadata, hf_hub_download
        from huggingface_hub import errors as E
    except ImportError as e:   # pragma: no cover - a declared dependency
        raise HubError("huggingface_hub is not installed", "pip install huggingface_hub") from e
    try:
        cfg_path = hf_hub_download(repo_id, "config.json", revision=revision)
    except Exception as e:  # noqa: BLE001 - translated into one clear message
        raise _translate(e, repo_id, "config.json") from e
    config = read_json_file(Path(cfg_path))
    quant = None
    try:
        quant = read_json_file(Path(hf_hub_download(repo_id, "hf_quant_config.json", revision=revision)))
    except Exception:  # noqa: BLE001 - most repos have none
        quant = None
    inventory = None
    try:
        meta = get_safetensors_metadata(repo_id, revision=revision, timeout=TIMEOUT_S)
        counts = {str(k): int(v) for k, v in (meta.parameter_count or {}).items()}
        if counts:
            inventory = Inventory(counts, "Hub safetensors metadata")
    except E.NotASafetensorsRepoError:
        inventory = None
    except Exception as e:  # noqa: BLE001
        err = _translate(e, repo_id, "safetensors metadata")
        if isinstance(err, HubError) and "gated" in err.message:
            raise err from e
        inventory = None
    return ModelSource(repo_id, "hub", f"revision {revision or 'main'}", config, quant, inventory)
