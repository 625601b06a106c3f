"""kvfit: a preflight checker for vLLM's KV-cache capacity.

As a library (README "## Python API"):

    import kvfit
    r = kvfit.check("Qwen/Qwen3-8B", gpu="RTX 4090", max_model_len=32768)
    r.verdict.fits, r.capacity.kv_cache_tokens, r.recommendation.serve_command, r.to_dict()

`import kvfit` is light: the errors only; check, check_launch, explain and the result types load on first use
(kvfit/api.py), so importing kvfit never loads torch, transformers, vllm, rich, huggingface_hub or yaml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (BadFlag, BadInput, ConfigError, GatedModel, GpuError, HubError, HubUnreachable, KvfitError,
                     LaunchError, ModelNotFound, NotModelled)

__version__ = "0.2.0"

_API = ("check", "check_launch", "explain", "CheckResult", "Verdict", "Capacity", "Memory", "Recommendation",
        "Explanation", "Diagnosis", "Fix")

__all__ = ["__version__", *_API, "KvfitError", "BadInput", "BadFlag", "NotModelled", "LaunchError",
           "ModelNotFound", "ConfigError", "HubError", "GatedModel", "HubUnreachable", "GpuError"]

if TYPE_CHECKING:
    from .api import (Capacity, CheckResult, Diagnosis, Explanation, Fix, Memory, Recommendation, Verdict,
                      check, check_launch, explain)


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kvfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
