"""The pure core: a model, a GPU and a launch in; vLLM's numbers and whether vLLM would serve the launch out.

No files, network, GPU or printing here. app/inputs.py gathers the inputs; plan/planner.py searches for the
launch to recommend (every candidate is evaluated here); render/ prints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Mapping

from ..arch.model import ModelArch
from ..arch import families as F
from ..errors import BadFlag, BadInput
from ..gpu.model import Gpu
from ..kv import cpu_host
from ..kv.capacity import Capacity, auto_fit, capacity, estimate_max_model_len
from ..kv.layout import KVLayout, KVOptions, build_layout
from ..kv.specs import RequestContext
from ..memory.encoder import encoder_profile
from ..memory.overhead import (Overhead, cuda_context_bytes, estimate_cudagraph_bytes, estimate_overhead,
                               is_multimodal)
from ..memory.profiles import (Profile, batch_defaults, cudagraph_headroom_warning, cudagraph_rule,
                               flashinfer_hd256_needs_32, gdn_checkpoint_alignment, kv_cache_dtype_error, kv_layout_rule, mamba_align_spec_refused,
                               mamba_cache_mode, max_len_refusal, minimax_fp32_state_refused, mxfp4_moe_backend,
                               nemotron_h_ssm_dtype,
                               reported_tokens, resolve_batch, rope_scaled_max_len, supports_mamba_prefix_caching,
                               v0_batch, v0_chunked_prefill)
from ..memory import parallel as P
from ..memory.variants import check_quantization, online_quantized
from ..memory.weights import (DTYPE_BYTES, Inventory, LoraSpec, estimate_inventory, online_quantized_inventory,
                              weights_breakdown)
from ..units import GiB
from ..settings import KV_CACHE_DTYPES, Settings, replaced


# --- memoised pure steps ------------------------------------------------------------------------------
# The planner probes the same model and GPU hundreds of times (binary searches over length and utilization,
# alternatives), and a manifest checks the same models on many GPUs and layouts: the steps below are pure
# functions of their arguments, remembered by the identity of the large objects (model, arch, config,
# inventory; held by the cache, so an id is never reused while remembered) and the value of the rest.
_MEMO: dict = {}
_MEMO_MAX = 8192


def _memo(kind: str, objs: tuple, key: tuple, compute):
    k = (kind, *map(id, objs), key)
    hit = _MEMO.get(k)
    if hit is not None and (len(objs) == 1 and hit[0][0] is objs[0] or all(map(_same, hit[0], objs))):
        return hit[1]
    value = compute()
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[k] = (objs, value)
    return value


def _same(a, b) -> bool:
    return a is b


@dataclass(frozen=True)
class Model:
    id: str
    source: str
    detail: str
    arch: ModelArch
    inventory: Inventory | None
    config: Mapping | None = field(default=None, compare=False, repr=False)   # config.json as read (no overrides)
    # The image / video processor settings transformers builds from the repository's processor files
    # (sources/processor.py; None: the class defaults), and where they came from or why there are none.
    processor: Mapping | None = field(default=None, compare=False, repr=False)
    video_processor: Mapping | None = field(default=None, compare=False, repr=False)
    processor_origin: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Memory:
    total_bytes: int
    requested_bytes: int          # ceil(total x utilization)
    weights_bytes: int
    activation_bytes: int
    cudagraph_bytes: int
    non_torch_bytes: int
    kv_available_bytes: int       # what vLLM hands the KV cache
    kv_cache_bytes: int           # what the blocks actually take
    free_at_start_bytes: int | None
    weights_estimated: bool
    explicit_kv_budget: bool      # --kv-cache-memory-bytes: the budget is exact
    lora_bytes: int = 0           # LoRA slots preallocated (inside weights_bytes)
    cpu_offload_bytes: int = 0    # weights moved to CPU by --cpu-offload-gb (outside weights_bytes)
    weights_detail: str = ""      # how the weights were placed (padding, TP, PP stage)

    @property
    def left_free_bytes(self) -> int:
        return max(0, self.total_bytes - self.weights_bytes - self.activation_bytes - self.cudagraph_bytes
                   - self.non_torch_bytes - self.kv_cache_bytes)


@dataclass(frozen=True)
class Resolved:
    max_model_len: int
    auto_fit: bool
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int
    model_dtype: str
    kv_cache_dtype: str
    kv_dtype_bytes: int


@dataclass(frozen=True)
class Result:
    model: Model
    gpu: Gpu
    profile: Profile
    settings: Settings
    resolved: Resolved
    layout: KVLayout
    memory: Memory
    capacity: Capacity
    fits: bool
    reasons: tuple[str, ...]
    startup_ok: bool
    notes: tuple[str, ...] = field(default=())
    inventory: Inventory | None = None          # the weights as loaded (after --quantization)


# --- resolution -------------------------------------------------------------------------------

def resolve_model_dtype(arch: ModelArch, user: str, gpu: Gpu, device: str) -> str:
    """config/model.py::_get_and_verify_dtype and _resolve_auto_dtype."""
    if device == "cpu":
        supported = ["bfloat16", "float16", "float32"]
    elif gpu.compute_capability >= (8, 0):
        supported = ["bfloat16", "float16", "float32"]
    else:
        supported = ["float16", "float32"]
    if arch.model_type in F.NO_FP16:
        supported = [d for d in supported if d != "float16"]
    if user != "auto":
        if user not in supported:
            if user == "bfloat16":
                raise BadInput(f"--dtype bfloat16 needs compute capability 8.0; {gpu.name} has "
                               f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}", "Use --dtype float16.")
            raise BadInput(f"vLLM refuses --dtype {user} for {arch.model_type} (numerical instability)")
        return user
    config = arch.config_dtype or "float32"
    if config not in ("float32", "float16", "bfloat16"):
        config = "float32"
    if config == "float32":
        config = supported[0]
    return config if config in supported else supported[0]


def resolve_kv_dtype(arch: ModelArch, settings: Settings, model_dtype: str) -> tuple[str, int]:
    s = settings.kv_cache_dtype
    if s == "auto" and arch.kv_scheme:
        s = arch.kv_scheme if arch.kv_scheme in KV_CACHE_DTYPES else "fp8"
    if s == "auto":
        return model_dtype, DTYPE_BYTES[model_dtype]
    if s in ("fp8_ds_mla", "nvfp4_ds_mla") and not arch.use_mla:
        raise BadInput(f"--kv-cache-dtype {s} is only for MLA models (DeepSeek V3.2 class)")
    return s, KV_CACHE_DTYPES[s]


def default_block_size(arch: ModelArch, settings: Settings, gpu: Gpu | None = None) -> int:
    """cache_config.block_size before the hybrid alignment (spec §1.12).

    CUDA: CacheConfig.DEFAULT_BLOCK_SIZE 16, or the MLA backend's preferred size (FLASHMLA_SPARSE 64
    for DeepSeek-V3.2-style indexed models, FLASHINFER_MLA 32 on SM 10.x). CPU: per host ISA path,
    kv.cpu_host.block_size (platforms/cpu.py).
    """
    if settings.device == "cpu":
        return cpu_host.block_size(cpu_host.from_settings(settings), use_mla=arch.use_mla,
                                   user_block_size=settings.block_size, model_type=arch.model_type)
    if settings.block_size:
        return settings.block_size
    if arch.use_mla:
        if any(x.kind == "indexer" for x in arch.attention_layers):
            return 64
        if gpu is not None and gpu.compute_capability >= (10, 0):
            return 32
    return 16


def derived_length(arch: ModelArch, settings: Settings, profile: Profile, config: Mapping | None
                   ) -> tuple[int, str, int, tuple[str, ...]]:
    """(derived max_model_len, where it came from, the default length, notes) as this vLLM release reads
    config.json with --hf-overrides / --rope-scaling / --rope-theta (memory/profiles.py::rope_scaled_max_len);
    without the raw config, normalize's reading (0.32's rules)."""
    if config is None:
        return arch.derived_max_len, arch.derived_max_len_key, arch.default_max_len, ()
    rl = _memo("rope", (config,), (profile, settings.hf_overrides, settings.rope_scaling, settings.rope_theta),
               lambda: rope_scaled_max_len(
                   profile, config,
                   hf_overrides=json.loads(settings.hf_overrides) if settings.hf_overrides else None,
                   rope_scaling=json.loads(settings.rope_scaling) if settings.rope_scaling else None,
                   rope_theta=settings.rope_theta))
    if rl.error:
        flag = "rope_scaling" if settings.rope_scaling else ("hf_overrides" if settings.hf_overrides else None)
        raise BadFlag(rl.error, flag=flag)
    return rl.derived_len, rl.key, rl.default_len, rl.notes


def resolve(arch: ModelArch, settings: Settings, gpu: Gpu, profile: Profile, config: Mapping | None = None
            ) -> Resolved:
    model_dtype = resolve_model_dtype(arch, settings.dtype_canonical, gpu, settings.device)
    kv_error = kv_cache_dtype_error(profile, settings.kv_cache_dtype, model_dtype)
    if kv_error:
        raise BadFlag(kv_error, flag="kv_cache_dtype")
    kv_str, kv_bytes = resolve_kv_dtype(arch, settings, model_dtype)
    asked = settings.max_model_len
    derived, derived_key, default_len, _ = derived_length(arch, settings, profile, config)
    if settings.disable_sliding_window and arch.sliding_window is not None and arch.sliding_window < derived:
        # config/model.py::_get_and_verify_max_len: --disable-sliding-window caps the length to the window
        if default_len == derived:
            default_len = arch.sliding_window
        derived, derived_key = arch.sliding_window, "sliding_window"
    if asked is None or asked == -1:
        length = default_len
    else:
        length = asked
        if arch.length_from_config:
            error, _ = max_len_refusal(profile, asked=length, derived=derived, derived_key=derived_key,
                                       model_max_length=arch.model_max_length, env=dict(settings.vllm_env))
            if error:
                raise BadFlag(error.replace("the derived max_model_len", "the model's derived max_model_len"),
                              f"Use --max-model-len {derived} or less (VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 overrides it, "
                              "at the risk of wrong outputs).", flag="max_model_len")
    util = settings.gpu_memory_utilization or profile.default_gpu_memory_utilization
    world = settings.tensor_parallel_size * settings.pipeline_parallel_size
    defaults = batch_defaults(device=settings.device, total_bytes=gpu.total_bytes, gpu_name=gpu.name,
                              entrypoint=settings.entrypoint, world_size=world, profile=profile,
                              compute_capability=gpu.compute_capability if settings.device == "cuda" else None)
    # ModelConfig.is_chunked_prefill_supported: off for encoder-decoder models (SchedulerConfig then
    # takes max(max_model_len, default) tokens and refuses a smaller --max-num-batched-tokens).
    chunked = not arch.is_encoder_decoder
    if profile.engine == "V0":
        # V0 profiles max(max_model_len, 2048) tokens unless its automatic chunked prefill is on
        # (memory/profiles.py::v0_chunked_prefill): capacity then depends on the length asked for.
        sliding = any(x.kind == "sliding" for x in arch.attention_layers) and not settings.disable_sliding_window
        chunked = v0_chunked_prefill(profile, max_model_len=length, device=settings.device,
                                     sliding_window=sliding, use_mla=arch.use_mla,
                                     multimodal=is_multimodal(arch), lora=settings.enable_lora)
        mnbt, seqs = v0_batch(profile, max_model_len=length, chunked=chunked,
                              max_num_batched_tokens=settings.max_num_batched_tokens,
                              max_num_seqs=settings.max_num_seqs)
    else:
        mnbt, seqs = resolve_batch(defaults, max_num_batched_tokens=settings.max_num_batched_tokens,
                                   max_num_seqs=settings.max_num_seqs, max_model_len=length,
                                   chunked_prefill=chunked)
    if not chunked and settings.max_num_batched_tokens is not None and settings.max_num_batched_tokens < length:
        raise BadInput(f"--max-num-batched-tokens ({settings.max_num_batched_tokens}) is smaller than "
                       f"max_model_len ({length}) and chunked prefill is off; vLLM refuses that")
    if profile.engine != "V0" and arch.is_encoder_decoder and mnbt < arch.encoder_item_tokens:
        # The encoder input of one request is not chunked (multimodal budget check at startup).
        raise BadInput(f"max_num_batched_tokens ({mnbt}) is smaller than one encoder input "
                       f"({arch.encoder_item_tokens} tokens); vLLM refuses that "
                       "(\"Chunked MM input disabled but max_tokens_per_mm_item ...\")",
                       f"Use --max-num-batched-tokens {arch.encoder_item_tokens} or more.")
    if profile.engine != "V0" and settings.device == "cpu" and cpu_host.mla_disables_chunking(
            cpu_host.from_settings(settings), use_mla=arch.use_mla, model_type=arch.model_type):
        mnbt = cpu_host.mla_max_num_batched_tokens(length)      # CPU_MLA: over any user value
    return Resolved(length, asked == -1, util, mnbt, seqs, default_block_size(arch, settings, gpu),
                    model_dtype, kv_str, kv_bytes)


def _mamba_cache_mode(arch: ModelArch, settings: Settings, profile: Profile | None = None) -> str:
    """models/config.py::MambaModelConfig: "align" when prefix caching is on, else "none". Prefix caching
    defaults on for decoders and hybrids, off for attention-free and encoder-decoder models
    (ModelConfig.is_prefix_caching_supported); CPU_MLA turns it off (kv.cpu_host.mla_disables_chunking).
    With `profile`, the release's rule for every model with mamba layers (profiles.mamba_cache_mode: off by
    default for hybrids before 0.28, "all" for SupportsMambaPrefixCaching models before 0.28, which kvfit
    refuses, nothing before 0.11.1); without it, 0.32's."""
    attention_free, mamba = _memo("kinds", (arch,), (), lambda: (arch.is_attention_free, bool(arch.mamba_layers)))
    asked = prefix = settings.enable_prefix_caching
    if prefix is None:
        prefix = not attention_free and not arch.is_encoder_decoder
    if settings.device == "cpu" and cpu_host.mla_disables_chunking(cpu_host.from_settings(settings),
                                                                   use_mla=arch.use_mla, model_type=arch.model_type):
        prefix = asked = False
    if profile is None or not mamba:
        return "align" if prefix and mamba else "none"
    v = profile.version
    mode = mamba_cache_mode(v, asked, hybrid=not attention_free,
                            supports_prefix=supports_mamba_prefix_caching(v, arch.architectures),
                            speculative=settings.speculative_method is not None)
    if mode == "all":
        raise BadInput(f"prefix caching on {', '.join(arch.architectures) or 'this model'}: vLLM {v} keeps a mamba "
                       "state page for every block (mamba_cache_mode \"all\", model_executor/models/config.py::"
                       "MambaModelConfig for a SupportsMambaPrefixCaching model), which kvfit does not model",
                       "Leave prefix caching off (vLLM's default for this model before 0.28), or use vLLM 0.28.0 "
                       "or later (mamba_cache_mode \"align\").")
    if mode == "align" and settings.speculative_method is not None and mamba_align_spec_refused(v):
        raise BadInput(f"prefix caching with speculative decoding on a mamba model: vLLM {v} asserts \"Mamba cache "
                       "mode 'align' is currently not compatible with speculative decoding.\" "
                       "(model_executor/models/config.py::MambaModelConfig)",
                       "Drop --enable-prefix-caching or the speculative config, or use vLLM 0.17.0 or later.")
    return mode


def request_context(r: Resolved, settings: Settings, arch: ModelArch, length: int | None = None,
                    profile: Profile | None = None) -> RequestContext:
    """max_in_flight = max_concurrent_batches x mnbt (config/vllm.py::VllmConfig.max_in_flight_tokens).

    Async scheduling (on by default on GPU, off on the CPU platform and with ngram-style speculative
    decoding) makes it 2 batches, pp+1 under pipeline parallelism (model runner V2); otherwise pp.
    EAGLE-family speculative decoding looks ahead during prefill: sliding windows retain
    num_prefill_lookahead_tokens - 1 more tokens (multi-module MTP: num_speculative_tokens - 1).
    With `profile`, the release's rule (profiles.kv_layout_rule): one batch of in-flight tokens before
    0.26, no retained lookahead before 0.28, no speculative mamba pages charged before 0.15; without it, 0.32's.
    """
    rule = kv_layout_rule(profile, dict(settings.vllm_env), device=settings.device) if profile is not None else None
    pp = settings.pipeline_parallel_size
    method = settings.speculative_method
    concurrent = pp
    if settings.device == "cuda" and (method is None or method in F.ASYNC_SPEC_METHODS):
        concurrent = pp + 1 if pp > 1 else 2
    lookahead = 0
    if method in F.EAGLE_METHODS:
        n = settings.num_speculative_tokens
        lookahead = n if method == "mtp" and min(arch.mtp_layers or 1, n) > 1 else 1
    if rule is not None and not rule.in_flight_batches:
        concurrent = 1
    if rule is not None and not rule.extra_retained:
        lookahead = 0
    return RequestContext(max_model_len=length or r.max_model_len, max_num_batched_tokens=r.max_num_batched_tokens,
                          max_in_flight_tokens=concurrent * r.max_num_batched_tokens,
                          extra_retained_tokens=max(0, lookahead - 1),
                          num_speculative_blocks=settings.num_speculative_tokens if method and (
                              rule is None or rule.mamba_spec_blocks_charged) else 0,
                          mamba_cache_mode=_mamba_cache_mode(arch, settings, profile),
                          decode_context_parallel_size=settings.decode_context_parallel_size)


def kv_options(r: Resolved, settings: Settings, arch: ModelArch, block_size: int | None = None,
               profile: Profile | None = None, gpu: Gpu | None = None) -> KVOptions:
    """The launch facts that shape vLLM's KV layout (layout.KVOptions); with `profile` (and `gpu`) the
    release's layout rules (profiles.kv_layout_rule, 0.33's GDN checkpoints), else 0.32's."""
    method = settings.speculative_method
    # config/vllm.py: the hybrid KV cache manager stays on unless disabled, or chunked local attention
    # meets EAGLE (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 1 in 0.32).
    hybrid = not settings.disable_hybrid_kv_cache_manager
    if arch.attention_chunk_size and method in F.EAGLE_METHODS:
        hybrid = False
    # Mamba state dtypes (MambaStateDtypeCalculator): conv = mamba_cache_dtype (auto: model dtype),
    # ssm = mamba_ssm_cache_dtype (auto: the model's default, else the conv dtype). The CPU platform
    # resets it per host ISA path (kv.cpu_host.ssm_cache_dtype).
    model_bytes = DTYPE_BYTES[r.model_dtype]
    conv = model_bytes if settings.mamba_cache_dtype == "auto" else DTYPE_BYTES[settings.mamba_cache_dtype]
    ssm_dtype = settings.mamba_ssm_cache_dtype
    if ssm_dtype == "auto" and arch.model_type == "nemotron_h" and profile is not None:
        ssm_dtype = nemotron_h_ssm_dtype(profile, arch.mamba_ssm_dtype if arch.mamba_ssm_dtype_in_config else None)
    elif ssm_dtype == "auto" and arch.mamba_ssm_dtype:
        ssm_dtype = arch.mamba_ssm_dtype
    if settings.device == "cpu":
        ssm_dtype = cpu_host.ssm_cache_dtype_for(cpu_host.from_settings(settings), arch, ssm_dtype)
    ssm = conv if ssm_dtype == "auto" else DTYPE_BYTES[ssm_dtype]
    mode = _mamba_cache_mode(arch, settings, profile)
    release: dict = {}
    if profile is not None:
        if settings.mamba_cache_dtype == "float32" and minimax_fp32_state_refused(profile.version) \
                and any(x.kind == "linear_attn" for x in arch.mamba_layers):
            raise BadInput(f"--mamba-cache-dtype float32: vLLM {profile.version} raises \"fp32 state for minimax is "
                           "not yet supported\" (model_executor/layers/mamba/mamba_utils.py)",
                           "Leave --mamba-cache-dtype at auto, or use vLLM 0.21.0 or later.")
        rule = kv_layout_rule(profile, dict(settings.vllm_env), device=settings.device)
        if rule.unify_local and profile.engine == "V1" and not arch.mamba_layers:   # V0: all_full instead;
            # mamba hybrids ran V0 on these releases (profiles.engine_for)
            hybrid = False
        release = dict(full_attention_only=rule.all_full, chunked_as_full=rule.chunked_as_full,
                       group_ratio=rule.group_ratio, hybrid_align_fixed=rule.hybrid_align_fixed,
                       mamba2_checkpoint=rule.mamba2_checkpoint_block,
                       mla_align_elems=256 // model_bytes if rule.mla_align_256 and arch.use_mla else 0)
        cc = gpu.compute_capability if gpu is not None and settings.device == "cuda" else None
        if not arch.use_mla and flashinfer_hd256_needs_32(profile, cc, device=settings.device,
                                                          env=dict(settings.vllm_env)):
            if arch.is_hybrid:
                release["hybrid_align_tokens"] = 32 if arch.head_size == 256 else 16
            elif (block_size or r.block_size) == 16 and any(
                    x.head_size == 256 for x in arch.attention_layers if x.kind not in ("mla", "indexer")):
                raise BadInput(f"vLLM {profile.version} on {gpu.name} (compute capability {cc[0]}.{cc[1]}) attends "
                               "with FlashInfer, which stops at startup for head size 256 on 16-token blocks: "
                               "\"There is a bug in FlashInfer block_size 16 head size 256 support. Please avoid "
                               "this combination by passing --block-size 32 or --block-size 64.\" "
                               "(v1/attention/backends/flashinfer.py)",
                               "Pass --block-size 32 (or 64), or use vLLM 0.18.0 or later.")
        gdn = [x for x in arch.mamba_layers if x.kind == "gdn"]
        if gdn:
            head_k = dict(gdn[0].params).get("dk")              # linear_key_head_dim
            release["gdn_checkpoint_alignment"] = gdn_checkpoint_alignment(
                profile, device=settings.device, compute_capability=cc,
                head_k_dim=head_k if isinstance(head_k, int) else None,
                all_mamba_layers_gdn=len(gdn) == len(arch.mamba_layers), mamba_cache_mode=mode)
    return KVOptions(block_size=block_size or r.block_size, kv_dtype_bytes=r.kv_dtype_bytes,
                     kv_cache_dtype=r.kv_cache_dtype, tensor_parallel_size=settings.tensor_parallel_size,
                     pipeline_parallel_size=settings.pipeline_parallel_size, hybrid_manager=hybrid,
                     disable_sliding_window=settings.disable_sliding_window,
                     kernel_block_base=cpu_host.kernel_block_base(cpu_host.from_settings(settings), use_mla=arch.use_mla)
                     if settings.device == "cpu" else 16,
                     mamba_cache_mode=mode, mamba_conv_bytes=conv,
                     mamba_ssm_bytes=ssm,
                     num_speculative_tokens=settings.num_speculative_tokens if method else 0,
                     max_model_len=r.max_model_len,
                     mtp_layers=(arch.mtp_layers or 1) if method == "mtp" else 0,
                     mamba_align_block=settings.block_size or 16, **release)


def fullest_layout(arch: ModelArch, opt: KVOptions) -> KVLayout:
    """vLLM's groups for the whole model; each pipeline stage sizes its own blocks and the fewest win
    (layout.rank_bytes_per_block; bytes_per_block is the fullest stage's)."""
    # max_model_len shapes only the mamba block size (prefix caching off): without mamba layers it is not
    # part of what is remembered
    if _memo("kinds", (arch,), (), lambda: (arch.is_attention_free, bool(arch.mamba_layers)))[1]:
        key = tuple(vars(opt).values())
    else:
        key = tuple(v for k, v in vars(opt).items() if k != "max_model_len")
    return _memo("layout", (arch,), key, lambda: build_layout(arch, opt))


# --- memory -------------------------------------------------------------------------------------

def memory_budget(model: Model, gpu: Gpu, settings: Settings, profile: Profile, r: Resolved,
                  layout: KVLayout, inv: Inventory | None = None) -> tuple[Memory, Overhead]:
    arch = model.arch
    inv = inv or model.inventory or estimate_inventory(arch)
    tp, pp = settings.tensor_parallel_size, settings.pipeline_parallel_size
    lora = LoraSpec(settings.max_loras, settings.max_lora_rank) if settings.enable_lora else None
    cuda = settings.device == "cuda"
    mx = _memo("mxfp4", (), (profile.version, gpu.compute_capability),
               lambda: mxfp4_moe_backend(profile.version, gpu.compute_capability)) if cuda else None
    moe = P.moe_share(arch, P.of(settings))        # DP / EP / PCP place the experts (memory/parallel.py)
    offload = int(settings.cpu_offload_gb * GiB)      # vLLM: int(gb * 1024**3)
    pad = mx.padding if mx else None
    wb = _memo("weights", (inv, arch), (r.model_dtype, tp, pp, lora, offload, pad, moe),
               lambda: weights_breakdown(inv, arch, r.model_dtype, tp, pp, lora=lora, cpu_offload_bytes=offload,
                                         mxfp4_padding=pad, moe=moe))
    weights = wb.total
    moe_tp = moe.moe_tp if moe is not None else None
    env = dict(settings.vllm_env)
    spec = settings.num_speculative_tokens if settings.speculative_method else 0
    cc = gpu.compute_capability if cuda else None

    def overhead() -> Overhead:
        ov = estimate_overhead(
            arch, max_num_batched_tokens=r.max_num_batched_tokens, max_num_seqs=r.max_num_seqs,
            act_bytes=DTYPE_BYTES[r.model_dtype], tp=tp, enforce_eager=settings.enforce_eager,
            cudagraph_counted=False, layers_on_rank=layout.layers_on_rank,
            memory_formula=profile.memory_formula, profile=profile, device=settings.device,
            compute_capability=cc, max_model_len=r.max_model_len, env=env, num_speculative_tokens=spec,
            offload_layer_bytes=wb.offloaded_layer_bytes, moe_tp=moe_tp,
            encoder=encoder_profile(
                model.config, profile=profile, text_hidden=arch.hidden_size,
                max_model_len=r.max_model_len, max_num_batched_tokens=r.max_num_batched_tokens,
                max_num_seqs=r.max_num_seqs, act_bytes=DTYPE_BYTES[r.model_dtype], tp=tp,
                limit_mm_per_prompt=settings.limit_mm_per_prompt,
                mm_processor_kwargs=settings.mm_processor_kwargs,
                skip_mm_profiling=settings.skip_mm_profiling,
                chunked_prefill=not arch.is_encoder_decoder, processor=model.processor,
                video_processor=model.video_processor, processor_origin=model.processor_origin))
        # CUDA graphs per release (profiles.cudagraph_rule): deducted before KV sizing only where vLLM
        # estimates and subtracts them; otherwise captured afterwards in what utilization leaves free.
        if cuda and cudagraph_rule(profile, env, enforce_eager=settings.enforce_eager).deducted:
            ov = replace(ov, cudagraph_bytes=estimate_cudagraph_bytes(
                profile, max_num_seqs=r.max_num_seqs, max_num_batched_tokens=r.max_num_batched_tokens,
                layers_on_rank=layout.layers_on_rank, num_speculative_tokens=spec))
        return ov

    # remembered per launch shape: everything the overhead reads, the model's files by identity
    ov = _memo("overhead", (arch, model.config, model.processor, model.video_processor),
               (r.max_num_batched_tokens, r.max_num_seqs, r.model_dtype, r.max_model_len, tp,
                settings.enforce_eager, settings.device, cc, layout.layers_on_rank, profile, spec,
                tuple(sorted(env.items())), wb.offloaded_layer_bytes, moe_tp, model.processor_origin,
                repr(settings.limit_mm_per_prompt), repr(settings.mm_processor_kwargs),
                settings.skip_mm_profiling), overhead)
    # V1 0.15+: ceil(total x util) (v1/worker/utils.py::request_memory); before, and in V0, the float
    # product, whose fraction never changes a block count.
    requested = (math.ceil(gpu.total_bytes * r.gpu_memory_utilization) if profile.requested_ceil
                 else int(gpu.total_bytes * r.gpu_memory_utilization))
    if settings.kv_cache_memory_bytes is not None:
        available = settings.kv_cache_memory_bytes
    else:
        available = requested - weights - ov.total
    return Memory(
        total_bytes=gpu.total_bytes, requested_bytes=requested, weights_bytes=weights,
        activation_bytes=ov.activation_bytes, cudagraph_bytes=ov.cudagraph_bytes,
        non_torch_bytes=ov.non_torch_bytes, kv_available_bytes=available, kv_cache_bytes=0,
        free_at_start_bytes=gpu.free_bytes, weights_estimated=inv.estimated,
        lora_bytes=wb.lora_bytes, cpu_offload_bytes=wb.offloaded_bytes, weights_detail=wb.detail,
        explicit_kv_budget=settings.kv_cache_memory_bytes is not None), ov


def v0_capacity(layout: KVLayout, ctx: RequestContext, available: int) -> Capacity:
    """The V0 engine (<= 0.8): blocks = available // block bytes; check L <= block_size x blocks."""
    blocks = max(0, available // layout.bytes_per_block) if layout.bytes_per_block else 1
    tokens = blocks * layout.block_size
    per_req = layout.blocks_per_request(ctx)
    fits = blocks > 0 and ctx.max_model_len <= tokens
    return Capacity(blocks, per_req, blocks / per_req if per_req else math.inf, tokens,
                    blocks * layout.bytes_per_block, fits, per_req * layout.bytes_per_block, available,
                    min(ctx.max_model_len, tokens) if blocks else 0)


# --- the check ----------------------------------------------------------------------------------

def loaded_inventory(model: Model, settings: Settings, gpu: Gpu) -> tuple[Inventory, tuple[str, ...]]:
    """The weights the launch loads: the checkpoint's, or an online --quantization of them (checked against the
    checkpoint as vLLM checks it: memory/variants.py)."""
    return _memo("inventory", (model,), (settings.quantization, settings.device, gpu.compute_capability, gpu.name),
                 lambda: _loaded_inventory(model, settings, gpu))


def _loaded_inventory(model: Model, settings: Settings, gpu: Gpu) -> tuple[Inventory, tuple[str, ...]]:
    inv = model.inventory or estimate_inventory(model.arch)
    method = check_quantization(model.arch, settings.quantization, model.id)
    if settings.quantization is None or model.arch.quantization or method is None:
        return inv, ()
    if settings.device == "cuda" and gpu.compute_capability < (8, 0):
        raise BadFlag(f"--quantization {method} needs compute capability 8.0 or newer; {gpu.name} has "
                      f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}", flag="quantization")
    q = online_quantized_inventory(model.arch, inv, method) or online_quantized(model.arch, inv, method)
    return q, (q.source.split("; ", 1)[-1],)


def evaluate(model: Model, gpu: Gpu, settings: Settings, profile: Profile) -> Result:
    """vLLM's numbers for one launch (pure; its steps are remembered, see _memo)."""
    settings = settings.validate()
    arch = model.arch
    par = P.check(arch, settings)                  # what vLLM refuses about the layout over GPUs and nodes
    r = resolve(arch, settings, gpu, profile, model.config)
    layout = fullest_layout(arch, kv_options(r, settings, arch, profile=profile, gpu=gpu))
    P.check_kv(par, layout.groups, layout.attention_block_size or layout.block_size, settings)
    inv, qnotes = loaded_inventory(model, settings, gpu)
    mem, ov = memory_budget(model, gpu, settings, profile, r, layout, inv)
    notes: list[str] = list(qnotes) + list(derived_length(arch, settings, profile, model.config)[3]) + list(ov.notes)
    if settings.max_model_len not in (None, -1) and arch.length_from_config:
        _, warning = max_len_refusal(profile, asked=settings.max_model_len, derived=derived_length(
            arch, settings, profile, model.config)[0], model_max_length=arch.model_max_length,
            env=dict(settings.vllm_env))
        if warning:
            notes.append(warning)

    ctx = request_context(r, settings, arch, profile=profile)
    rule = kv_layout_rule(profile, dict(settings.vllm_env), device=settings.device)
    if r.auto_fit and layout.groups:
        budget = mem.kv_available_bytes
        if settings.num_gpu_blocks_override is not None and layout.bytes_per_block:
            budget = settings.num_gpu_blocks_override * layout.bytes_per_block   # §4.4: replaces the budget
        fitted = auto_fit(layout, ctx, budget, null_block=rule.null_block_in_check,
                          whole_model_check=rule.pp_whole_model_check)
        if 0 < fitted < r.max_model_len:
            notes.append(f"auto-fit: vLLM reduces max_model_len from {r.max_model_len} to {fitted}")
            r = replace(r, max_model_len=fitted)
            ctx = replace(ctx, max_model_len=fitted)
    if profile.engine == "V0":
        cap = v0_capacity(layout, ctx, mem.kv_available_bytes)
    else:
        cap = capacity(layout, ctx, mem.kv_available_bytes, settings.num_gpu_blocks_override,
                       null_block=rule.null_block_in_check, whole_model_check=rule.pp_whole_model_check)
        if profile.tokens_report != "concurrency" and layout.groups:
            # the "GPU KV cache size" figure this release logs (profiles.reported_tokens)
            cap = replace(cap, kv_cache_tokens=reported_tokens(
                profile, num_blocks=cap.num_blocks, block_size=layout.block_size, num_groups=len(layout.groups),
                min_block_size=layout.block_size))
    mem = replace(mem, kv_cache_bytes=cap.kv_cache_bytes)
    if settings.device == "cuda":
        graphs = estimate_cudagraph_bytes(profile, max_num_seqs=r.max_num_seqs,
                                          max_num_batched_tokens=r.max_num_batched_tokens,
                                          layers_on_rank=layout.layers_on_rank,
                                          num_speculative_tokens=settings.num_speculative_tokens
                                          if settings.speculative_method else 0,
                                          enforce_eager=settings.enforce_eager)
        warning = cudagraph_headroom_warning(profile, total_bytes=gpu.total_bytes,
                                             gpu_memory_utilization=r.gpu_memory_utilization,
                                             cudagraph_bytes=graphs,
                                             context_bytes=cuda_context_bytes(profile, gpu.compute_capability),
                                             free_bytes=free_seen_by_vllm(gpu, profile),
                                             env=dict(settings.vllm_env), enforce_eager=settings.enforce_eager)
        if warning and settings.kv_cache_memory_bytes is None:
            notes.append(warning)

    reasons: list[str] = []
    startup_ok = True
    # vLLM's Worker.init_device runs request_memory() even with --kv-cache-memory-bytes set.
    free = free_seen_by_vllm(gpu, profile)
    if settings.device == "cuda" and free is not None and profile.startup_free_check:
        if free < mem.requested_bytes:
            startup_ok = False
            startable = max_startable_utilization(gpu, profile)
            ctx = "" if free == gpu.free_bytes else (f" once its CUDA context "
                                                     f"({(gpu.free_bytes - free) / 2**30:.2f} GiB) exists")
            reasons.append(
                f"vLLM will refuse to start: free memory{ctx} {free / 2**30:.2f} GiB is less than "
                f"{r.gpu_memory_utilization} x {gpu.total_bytes / 2**30:.2f} GiB = {mem.requested_bytes / 2**30:.2f} GiB "
                f"(other processes hold {((gpu.used_bytes or 0)) / 2**30:.2f} GiB); "
                + (f"--gpu-memory-utilization {startable:.2f} or lower would start" if startable > 0 else
                   "no utilization would start until other processes free memory"))
    if r.auto_fit and layout.groups and cap.max_model_len_fit <= 0:
        reasons.append("auto-fit fails: not enough memory for even one token of KV cache")
    elif mem.kv_available_bytes <= 0 and layout.groups:
        reasons.append("no memory is left for the KV cache after weights and vLLM's reserves")
    elif not cap.fits and profile.engine == "V0":
        reasons.append(f"the model's max seq len ({r.max_model_len:,}) is larger than the {cap.kv_cache_tokens:,} tokens "
                       f"the KV cache can store (V0: block_size x num_gpu_blocks = {layout.block_size} x "
                       f"{cap.num_blocks:,})")
    elif not cap.fits:
        reasons.append(f"one request of {r.max_model_len:,} tokens needs {cap.needed_bytes / 2**30:.2f} GiB of KV cache; "
                       f"{max(cap.check_bytes, 0) / 2**30:.2f} GiB is available")
    fits = startup_ok and cap.fits and not (r.auto_fit and cap.max_model_len_fit <= 0)
    return Result(model, gpu, profile, settings, r, layout, mem, cap, fits, tuple(reasons), startup_ok, tuple(notes),
                  inv)


def free_seen_by_vllm(gpu: Gpu, profile: Profile | None = None) -> int | None:
    """The free memory vLLM's startup check sees (v1/worker/gpu_worker.py: measured in its worker, after its
    own CUDA context exists): NVML's free, probed from kvfit's process, less that context (0.41 GiB on an idle
    A100, calibration gt-046; with `profile`, the release's: 0.33 creates cuBLAS handles there too,
    memory/overhead.py::cuda_context_bytes). A free figure from a vLLM log is already vLLM's own."""
    if gpu.free_bytes is None:
        return None
    if gpu.source.startswith("NVML"):
        return max(0, gpu.free_bytes - cuda_context_bytes(profile, gpu.compute_capability))
    return gpu.free_bytes


def max_startable_utilization(gpu: Gpu, profile: Profile | None = None) -> float:
    """The largest 2-decimal utilization vLLM's startup check accepts: ceil(total x u) <= the free memory it
    sees."""
    free = free_seen_by_vllm(gpu, profile)
    if free is None or gpu.total_bytes <= 0:
        return 1.0
    u = min(1.0, math.floor(free / gpu.total_bytes * 100) / 100)
    while u > 0 and math.ceil(gpu.total_bytes * u) > free:
        u = round(u - 0.01, 2)
    return max(0.0, u)
