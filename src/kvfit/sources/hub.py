"""The Hugging Face Hub: config.json (downloaded into the HF cache) and safetensors metadata.

Never downloads weights. HF_TOKEN is read by huggingface_hub itself and sent only to the Hub; it is
redacted from every message kvfit prints. huggingface_hub is imported here, lazily, because
importing it costs more than the whole check.

Time: KVFIT_HUB_TIMEOUT (seconds, default 10) bounds each request and the whole Hub lookup.
huggingface_hub alone would retry an unreachable Hub for about 25 s and a silent one for minutes
(hf_hub_download retries failed HEAD requests five times with a 60 s timeout), so kvfit first asks
for config.json's metadata once, without retries, and runs the lookup under a deadline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import GatedModel, HubError, HubUnreachable, ModelNotFound
from ..memory.weights import Inventory
from . import paramcache
from .model import ModelSource, read_json_file
from .processor import NAMES, ProcessorFiles
from .safetensors import vllm_skips



def _timeout_from_env() -> float:
    try:
        t = float(os.environ.get("KVFIT_HUB_TIMEOUT", "10"))
    except ValueError:
        return 10.0
    return t if 0 < t <= 3600 else 10.0     # NaN, negative or absurd values: the default


TIMEOUT_S = _timeout_from_env()


def _redact(text: str) -> str:
    from ..errors import redact

    return redact(text)


def _has_token() -> bool:
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:  # noqa: BLE001
        return bool(os.environ.get("HF_TOKEN"))


class _Deadline(TimeoutError):
    """The whole Hub lookup ran past KVFIT_HUB_TIMEOUT."""


def _within(deadline: float, fn, *args, **kwargs):
    """fn(*args, **kwargs), or _Deadline once `deadline` (time.monotonic) passes; the call is left to
    finish in a daemon thread, which never keeps the process alive."""
    import threading

    left = deadline - time.monotonic()
    if left <= 0:
        raise _Deadline()
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, name="kvfit-hub", daemon=True)
    t.start()
    t.join(left)
    if t.is_alive():
        raise _Deadline()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _translate(e: Exception, repo_id: str, what: str) -> Exception:
    from huggingface_hub import errors as E

    if isinstance(e, _Deadline):
        return HubUnreachable(f"the Hub did not answer within {TIMEOUT_S:g} s for {repo_id} ({what})",
                        "Check the network or proxy (KVFIT_HUB_TIMEOUT sets the wait), or work offline with a "
                        "local directory or a bundled model (--offline).")
    if isinstance(e, E.GatedRepoError):
        if _has_token():
            return GatedModel(f"{repo_id} is gated and the token in HF_TOKEN has no access to it ({what})",
                            "Accept the model's licence on its Hub page with the account of that token.")
        return GatedModel(f"{repo_id} is gated: the Hub refused {what} without a token",
                        "Accept the model's licence on its Hub page, then set HF_TOKEN to a token of that account.")
    if isinstance(e, E.RepositoryNotFoundError):
        private = ("with the token in HF_TOKEN" if _has_token() else
                   "or it is private: set HF_TOKEN to a token that can read it")
        return ModelNotFound(f"{repo_id} was not found on the Hugging Face Hub ({private})",
                             "Check the id. `kvfit models` lists the bundled models.")
    if isinstance(e, E.RevisionNotFoundError):
        return ModelNotFound(f"revision not found for {repo_id}", "Check --revision.")
    # LocalEntryNotFoundError (no connection and nothing cached) subclasses EntryNotFoundError:
    # test it first, or a network failure reads as "the file does not exist".
    if isinstance(e, E.LocalEntryNotFoundError):
        return HubUnreachable(f"the Hub could not be reached for {repo_id} ({what})",
                        "Check the network, or work offline with a local directory or a bundled model.")
    if isinstance(e, (E.EntryNotFoundError, getattr(E, "RemoteEntryNotFoundError", E.EntryNotFoundError))):
        return ModelNotFound(f"{repo_id} has no {what} on the Hub")
    if isinstance(e, E.HfHubHTTPError):
        first = (str(e).splitlines() or [""])[0]
        return HubError(_redact(f"the Hub answered an error for {repo_id}: {first}"))
    if isinstance(e, E.HFValidationError):
        return ModelNotFound(_redact(f"{repo_id!r} is not a valid Hugging Face id: {e}"))
    name = e.__class__.__name__
    if "Timeout" in name or isinstance(e, TimeoutError):
        return HubUnreachable(f"the Hub did not answer within {TIMEOUT_S:g} s for {repo_id} ({what}, {name})",
                        "Check the network or proxy (KVFIT_HUB_TIMEOUT sets the wait), or work offline with a "
                        "local directory or a bundled model (--offline).")
    if "Connect" in name or "Network" in name or isinstance(e, (ConnectionError, OSError)):
        reason = (str(e).splitlines() or [""])[0][:200]
        return HubUnreachable(_redact(f"the Hub could not be reached for {repo_id} ({name}: {reason})"),
                        "Check the network or proxy, or work offline with a local directory or a bundled "
                        "model (--offline).")
    return HubError(_redact(f"the Hub request for {repo_id} failed: {name}: {e}"))


def _loaded_counts(meta, config: dict) -> dict[str, int]:
    """Per-dtype parameter counts from get_safetensors_metadata: tensor by tensor when the per-file
    headers came back (leaving out what vLLM does not load, safetensors.vllm_skips), else the
    repository's parameter_count as the Hub reports it."""
    skip = vllm_skips(config)
    files = getattr(meta, "files_metadata", None)
    counts: dict[str, int] = {}
    if isinstance(files, dict) and files:
        try:
            for fm in files.values():
                for name, info in (getattr(fm, "tensors", None) or {}).items():
                    if skip(str(name)):
                        continue
                    n = 1
                    for d in info.shape:
                        n *= int(d)
                    counts[str(info.dtype)] = counts.get(str(info.dtype), 0) + n
        except (AttributeError, TypeError, ValueError):
            counts = {}
    if not counts:
        counts = {str(k): int(v) for k, v in (getattr(meta, "parameter_count", None) or {}).items()}
    return counts


def load(repo_id: str, revision: str | None) -> ModelSource:
    deadline = time.monotonic() + TIMEOUT_S
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(TIMEOUT_S)))
    try:
        from huggingface_hub import get_hf_file_metadata, get_safetensors_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub import errors as E
        from huggingface_hub.utils import logging as hf_logging
    except ImportError as e:   # pragma: no cover - a declared dependency
        raise HubError("huggingface_hub is not installed", "pip install huggingface_hub") from e
    hf_logging.set_verbosity_error()        # its retry chatter; kvfit says what went wrong once
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)           # a malformed id never reaches the network
        # One HEAD without retries: an unreachable, silent, gated or missing repo answers here, fast.
        _within(deadline, get_hf_file_metadata, hf_hub_url(repo_id, "config.json", revision=revision),
                timeout=TIMEOUT_S)
        cfg_path = _within(deadline, hf_hub_download, repo_id, "config.json", revision=revision,
                           etag_timeout=TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - translated into one clear message
        raise _translate(e, repo_id, "config.json") from e
    config = read_json_file(Path(cfg_path))
    quant = None
    try:
        quant = read_json_file(Path(_within(deadline, hf_hub_download, repo_id, "hf_quant_config.json",
                                            revision=revision, etag_timeout=TIMEOUT_S)))
    except Exception:  # noqa: BLE001 - most repos have none
        quant = None
    inventory = None
    try:
        meta = _within(deadline, get_safetensors_metadata, repo_id, revision=revision, timeout=TIMEOUT_S)
        counts = _loaded_counts(meta, config)
        if counts:
            inventory = Inventory(counts, "Hub safetensors metadata")
            # config.json sits in the HF cache at snapshots/<commit>/: keep the counts for that commit,
            # so a later offline run reads them back (sources/hfcache.py)
            paramcache.store(repo_id, Path(cfg_path).parent.name, counts)
    except E.NotASafetensorsRepoError:
        inventory = None
    except Exception as e:  # noqa: BLE001
        err = _translate(e, repo_id, "safetensors metadata")
        if isinstance(err, HubError) and "gated" in err.message:
            raise err from e
        inventory = None
    return ModelSource(repo_id, "hub", f"revision {revision or 'main'}", config, quant, inventory,
                       _processor_files(repo_id, revision, config, deadline, Path(cfg_path).parent))


def _processor_files(repo_id: str, revision: str | None, config: dict, deadline: float,
                     snapshot: Path) -> ProcessorFiles | None:
    """A multimodal model's processor files (sources/processor.py), downloaded into the HF cache beside
    config.json under the same deadline; a file the repository does not have is normal. A text-only model
    costs no request."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as E

    from ..memory.encoder import family_of

    if family_of(config) is None:
        return None
    where = f"the Hub, {repo_id} revision {revision or 'main'}"
    files: dict[str, dict] = {}
    for name in NAMES:
        try:
            path = _within(deadline, hf_hub_download, repo_id, name, revision=revision, etag_timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - a missing file is normal; anything else is said, not fatal
            if isinstance(e, E.EntryNotFoundError) and not isinstance(e, E.LocalEntryNotFoundError):
                continue
            err = _translate(e, repo_id, name)
            if files:
                return ProcessorFiles(files, f"{where}; {name} could not be read ({err.message})")
            return ProcessorFiles({}, where, f"the processor files could not be read from the Hub ({err.message})")
        files[name] = read_json_file(Path(path))
    return ProcessorFiles(files, where, None if files else f"the repository has no processor file ({where})",
                          repo_has_none=not files)
