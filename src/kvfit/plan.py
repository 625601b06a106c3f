"""The pure core: a model, a GPU and a launch in; vLLM's numbers, a verdict and the flags that fit out.

No files, network, GPU or printing here. cli.py gathers the inputs; render/ prints the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .arch.model import ModelArch
from .arch import families as F
from .errors import BadInput
from .gpu.catalog import Gpu
from .kv.capacity import Capacity, auto_fit, capacity, estimate_max_model_len
from .kv.layout import KVLayout, KVOptions, build_layout
from .kv.specs import RequestContext
from .memory.overhead import Overhead, estimate_overhead
from .memory.profiles import Profile, batch_defaults, resolve_batch
from .memory.weights import DTYPE_BYTES, Inventory, estimate_inventory, weights_per_gpu
from .settings import KV_CACHE_DTYPES, Settings


@dataclass(frozen=True)
class Model:
    id: str
    source: str
    detail: str
    arch: ModelArch
    inventory: Inventory | None


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
class Recommendation:
    max_model_len: int | None                 # largest that fits at the chosen utilization
    gpu_memory_utilization: float | None      # smallest that fits the asked length
    utilization_reason: str | None
    serve_flags: str


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
    recommendation: Recommendation
    notes: tuple[str, ...] = field(default=())


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


def default_block_size(arch: ModelArch, settings: Settings) -> int:
    """CacheConfig.DEFAULT_BLOCK_SIZE 16, CPU 128, CPU MLA 16 (spec §1.12)."""
    if settings.block_size:
        return settings.block_size
    if settings.device == "cpu":
        return 16 if arch.use_mla else 128
    return 16


def resolve(arch: ModelArch, settings: Settings, gpu: Gpu, profile: Profile) -> Resolved:
    model_dtype = resolve_model_dtype(arch, settings.dtype_canonical, gpu, settings.device)
    kv_str, kv_bytes = resolve_kv_dtype(arch, settings, model_dtype)
    asked = settings.max_model_len
    if asked is None or asked == -1:
        length = arch.default_max_len
    else:
        length = asked
        limit = max(arch.derived_max_len, arch.model_max_length or 0)
        if length > limit:
            raise BadInput(
                f"--max-model-len {length} is greater than the model's derived max_model_len "
                f"({arch.derived_max_len_key}={arch.derived_max_len}); vLLM refuses this at startup",
                f"Use --max-model-len {arch.derived_max_len} or less (vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 "
                "overrides it, at the risk of wrong outputs).")
    util = settings.gpu_memory_utilization or profile.default_gpu_memory_utilization
    world = settings.tensor_parallel_size * settings.pipeline_parallel_size
    defaults = batch_defaults(device=settings.device, total_bytes=gpu.total_bytes, gpu_name=gpu.name,
                              entrypoint=settings.entrypoint, world_size=world)
    chunked = not (settings.device == "cpu" and arch.use_mla)
    if profile.engine == "V0":
        chunked = length > 32768
        defaults = replace(defaults, max_num_batched_tokens=512 if chunked else length, max_num_seqs=256)
    mnbt, seqs = resolve_batch(defaults, max_num_batched_tokens=settings.max_num_batched_tokens,
                               max_num_seqs=settings.max_num_seqs, max_model_len=length,
                               chunked_prefill=chunked)
    if not chunked and settings.max_num_batched_tokens is not None and settings.max_num_batched_tokens < length:
        raise BadInput(f"--max-num-batched-tokens ({settings.max_num_batched_tokens}) is smaller than "
                       f"max_model_len ({length}) and chunked prefill is off; vLLM refuses that")
    return Resolved(length, asked == -1, util, mnbt, seqs, default_block_size(arch, settings),
                    model_dtype, kv_str, kv_bytes)


def request_context(r: Resolved, settings: Settings, arch: ModelArch, length: int | None = None) -> RequestContext:
    """max_in_flight = max_concurrent_batches x mnbt (config/vllm.py): 2 with async scheduling on GPU."""
    concurrent = settings.pipeline_parallel_size
    if settings.device == "cuda":
        concurrent = settings.pipeline_parallel_size + 1 if settings.pipeline_parallel_size > 1 else 2
    return RequestContext(max_model_len=length or r.max_model_len, max_num_batched_tokens=r.max_num_batched_tokens,
                          max_in_flight_tokens=concurrent * r.max_num_batched_tokens)


def kv_options(r: Resolved, settings: Settings, arch: ModelArch, block_size: int | None = None) -> KVOptions:
    hybrid = not any(x.kind == "chunked" for x in arch.layers)   # vLLM disables HMA for chunked-local models
    return KVOptions(block_size=block_size or r.block_size, kv_dtype_bytes=r.kv_dtype_bytes,
                     kv_cache_dtype=r.kv_cache_dtype, tensor_parallel_size=settings.tensor_parallel_size,
                     pipeline_parallel_size=settings.pipeline_parallel_size, hybrid_manager=hybrid,
                     disable_sliding_window=settings.disable_sliding_window)


def fullest_layout(arch: ModelArch, opt: KVOptions) -> KVLayout:
    """Under PP every stage sizes its own blocks and the minimum wins: the heaviest stage decides."""
    layouts = [build_layout(arch, opt, rank) for rank in range(opt.pipeline_parallel_size)]
    return max(layouts, key=lambda x: x.bytes_per_block)


# --- memory -------------------------------------------------------------------------------------

def memory_budget(model: Model, gpu: Gpu, settings: Settings, profile: Profile, r: Resolved,
                  layout: KVLayout) -> tuple[Memory, Overhead]:
    arch = model.arch
    inv = model.inventory or estimate_inventory(arch)
    tp, pp = settings.tensor_parallel_size, settings.pipeline_parallel_size
    weights = weights_per_gpu(inv, arch, r.model_dtype, tp, pp)
    ov = estimate_overhead(arch, max_num_batched_tokens=r.max_num_batched_tokens, max_num_seqs=r.max_num_seqs,
                           act_bytes=DTYPE_BYTES[r.model_dtype], tp=tp, enforce_eager=settings.enforce_eager,
                           cudagraph_counted=profile.cudagraph_estimate_subtracted,
                           layers_on_rank=layout.layers_on_rank)
    requested = math.ceil(gpu.total_bytes * r.gpu_memory_utilization)
    if settings.kv_cache_memory_bytes is not None:
        available = settings.kv_cache_memory_bytes
    else:
        available = requested - weights - ov.total
    return Memory(
        total_bytes=gpu.total_bytes, requested_bytes=requested, weights_bytes=weights,
        activation_bytes=ov.activation_bytes, cudagraph_bytes=ov.cudagraph_bytes,
        non_torch_bytes=ov.non_torch_bytes, kv_available_bytes=available, kv_cache_bytes=0,
        free_at_start_bytes=gpu.free_bytes, weights_estimated=inv.estimated,
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

def evaluate(model: Model, gpu: Gpu, settings: Settings, profile: Profile, *, recommend: bool = True) -> Result:
    settings = settings.validate()
    arch = model.arch
    r = resolve(arch, settings, gpu, profile)
    layout = fullest_layout(arch, kv_options(r, settings, arch))
    mem, _ = memory_budget(model, gpu, settings, profile, r, layout)
    notes: list[str] = []

    ctx = request_context(r, settings, arch)
    if r.auto_fit and layout.groups:
        fitted = auto_fit(layout, ctx, mem.kv_available_bytes)
        if 0 < fitted < r.max_model_len:
            notes.append(f"auto-fit: vLLM reduces max_model_len from {r.max_model_len} to {fitted}")
            r = replace(r, max_model_len=fitted)
            ctx = replace(ctx, max_model_len=fitted)
    if profile.engine == "V0":
        cap = v0_capacity(layout, ctx, mem.kv_available_bytes)
    else:
        cap = capacity(layout, ctx, mem.kv_available_bytes, settings.num_gpu_blocks_override)
    mem = replace(mem, kv_cache_bytes=cap.kv_cache_bytes)

    reasons: list[str] = []
    startup_ok = True
    if settings.device == "cuda" and gpu.free_bytes is not None and settings.kv_cache_memory_bytes is None:
        if gpu.free_bytes < mem.requested_bytes:
            startup_ok = False
            reasons.append(
                f"vLLM will refuse to start: free memory {gpu.free_bytes / 2**30:.2f} GiB is less than "
                f"{r.gpu_memory_utilization} x {gpu.total_bytes / 2**30:.2f} GiB = {mem.requested_bytes / 2**30:.2f} GiB "
                f"(other processes hold {((gpu.used_bytes or 0)) / 2**30:.2f} GiB)")
    if r.auto_fit and layout.groups and cap.max_model_len_fit <= 0:
        reasons.append("auto-fit fails: not enough memory for even one token of KV cache")
    elif mem.kv_available_bytes <= 0 and layout.groups:
        reasons.append("no memory is left for the KV cache after weights and vLLM's reserves")
    elif not cap.fits:
        reasons.append(f"one request of {r.max_model_len:,} tokens needs {cap.needed_bytes / 2**30:.2f} GiB of KV cache; "
                       f"{max(cap.check_bytes, 0) / 2**30:.2f} GiB is available")
    fits = startup_ok and cap.fits and not (r.auto_fit and cap.max_model_len_fit <= 0)

    rec = recommend_flags(model, gpu, settings, profile, r, layout, mem, cap) if recommend else \
        Recommendation(None, None, None, "")
    return Result(model, gpu, profile, settings, r, layout, mem, cap, fits, tuple(reasons), startup_ok, rec, tuple(notes))


def _ceil2(x: float) -> float:
    return math.ceil(x * 100 - 1e-9) / 100


def _fits(model: Model, gpu: Gpu, settings: Settings, profile: Profile) -> bool:
    try:
        return evaluate(model, gpu, settings, profile, recommend=False).fits
    except BadInput:
        return False


def serve_command(model_id: str, settings: Settings, length: int | None, util: float | None) -> str:
    parts = [f"vllm serve {model_id}"]
    if length:
        parts.append(f"--max-model-len {length}")
    if settings.kv_cache_memory_bytes is not None:
        parts.append(f"--kv-cache-memory-bytes {settings.kv_cache_memory_bytes}")
    elif util is not None:
        parts.append(f"--gpu-memory-utilization {util:g}")
    for flag, value, default in (
            ("--tensor-parallel-size", settings.tensor_parallel_size, 1),
            ("--pipeline-parallel-size", settings.pipeline_parallel_size, 1),
            ("--dtype", settings.dtype, "auto"), ("--kv-cache-dtype", settings.kv_cache_dtype, "auto"),
            ("--block-size", settings.block_size, None), ("--max-num-seqs", settings.max_num_seqs, None),
            ("--max-num-batched-tokens", settings.max_num_batched_tokens, None)):
        if value != default:
            parts.append(f"{flag} {value}")
    if settings.enforce_eager:
        parts.append("--enforce-eager")
    return " ".join(parts)


def recommend_flags(model: Model, gpu: Gpu, settings: Settings, profile: Profile, r: Resolved,
                    layout: KVLayout, mem: Memory, cap: Capacity) -> Recommendation:
    """Both answers people need, each re-checked through evaluate(): the longest max_model_len at the
    chosen utilization, and the smallest utilization that serves the asked length."""
    arch = model.arch
    if not layout.groups:
        return Recommendation(r.max_model_len, r.gpu_memory_utilization, None,
                              serve_command(model.id, settings, r.max_model_len, r.gpu_memory_utilization))
    top = max(arch.derived_max_len, r.max_model_len)
    full = request_context(r, settings, arch, length=top)
    check = mem.kv_available_bytes - layout.bytes_per_block
    if profile.engine == "V0":
        best = min(top, max(0, mem.kv_available_bytes // layout.bytes_per_block) * layout.block_size)
    else:
        best = estimate_max_model_len(layout, full, check) if check > 0 else 0
    at_util = replace(settings, gpu_memory_utilization=r.gpu_memory_utilization)
    while best > 0 and not _fits(model, gpu, replace(at_util, max_model_len=best), profile):
        best -= layout.block_size       # batch defaults shrink with the length; re-check each step

    util: float | None = None
    reason = None
    if settings.kv_cache_memory_bytes is not None:
        reason = "--kv-cache-memory-bytes sets the KV budget directly; utilization does not apply"
    else:
        need = mem.weights_bytes + mem.activation_bytes + mem.cudagraph_bytes + mem.non_torch_bytes \
            + cap.needed_bytes + (0 if profile.engine == "V0" else layout.bytes_per_block)
        util = _ceil2(need / gpu.total_bytes)
        ceiling = 1.0
        if gpu.free_bytes is not None:
            ceiling = math.floor(gpu.free_bytes / gpu.total_bytes * 100) / 100
        fixed = replace(settings, max_model_len=r.max_model_len if not r.auto_fit else -1)
        while util <= ceiling and not _fits(model, gpu, replace(fixed, gpu_memory_utilization=util), profile):
            util = round(util + 0.01, 2)
        if util > ceiling:
            reason = (f"serving {r.max_model_len:,} tokens needs gpu_memory_utilization {util:.2f}, more than "
                      + ("the GPU's free memory allows" if gpu.free_bytes is not None else "the whole GPU")
                      + f" ({ceiling:.2f})")
            util = None
    if cap.fits and r.gpu_memory_utilization is not None:
        flags = serve_command(model.id, settings, r.max_model_len, r.gpu_memory_utilization)
    elif util is not None:
        flags = serve_command(model.id, settings, r.max_model_len, util)
    else:
        flags = serve_command(model.id, settings, best or None, r.gpu_memory_utilization)
    return Recommendation(best or None, util, reason, flags)
