"""Goals in, the launch that meets them out; ranked alternatives when none does. Pure: every number comes
from plan.evaluate, and every launch it proposes is re-checked through it.

Goals (all optional):
  context      the max_model_len the deployment needs
  concurrency  N sequences of that length resident in the KV cache at once: N x blocks-per-request blocks
               beside vLLM's null block (vLLM's reported max concurrency is then >= N), and max_num_seqs >= N
  max_vram     a cap on what vLLM may take on each GPU (a shared card): ceil(total x utilization), or with
               --kv-cache-memory-bytes the weights + activation + CUDA graphs + other + the KV budget
  headroom     slack for the error in kvfit's estimate of the memory outside the KV cache (default 256 MiB):
               with a utilization, the goal must hold with `headroom` fewer bytes of KV cache than kvfit
               predicts; with an explicit KV budget, `headroom` must stay free under the limit (free memory,
               --max-vram, the GPU's total)

Ranking of the alternatives (cheapest first; those that meet the goals before those that do not, which are
ordered by the context they buy): smaller --max-model-len (when the length is not a goal), smaller
--max-num-seqs / --max-num-batched-tokens, --enforce-eager; --kv-cache-dtype fp8; tensor / pipeline
parallel over GPUs present; FP8 weights (--quantization fp8); those together; --cpu-offload-gb; a 4-bit
(AWQ/GPTQ) checkpoint; a larger GPU or more GPUs than are present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from . import evaluate as plan
from ..errors import BadInput, KvfitError
from ..gpu.model import Gpu
from ..memory.profiles import Profile
from ..memory.weights import FLOATING, Inventory, estimate_inventory, loaded_bytes
from ..settings import Settings
from ..units import GiB, MiB, parse_size

DEFAULT_HEADROOM_BYTES = 256 * MiB
# Without a probe, kvfit proposes at most 0.95: vLLM compares *free* memory with utilization x total at
# startup, and free memory is already short of the total by this process's CUDA context (and a display's).
UNPROBED_CEILING = 0.95


# --- goals ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Headroom:
    bytes: int | None = DEFAULT_HEADROOM_BYTES
    percent: float | None = None            # of the GPU's total memory

    def resolve(self, gpu_total: int) -> int:
        if self.percent is not None:
            return int(gpu_total * self.percent / 100)
        return int(self.bytes or 0)

    @property
    def text(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}% of the GPU"
        b = self.bytes or 0
        return f"{b / MiB:,.0f} MiB" if b < GiB else f"{b / GiB:,.2f} GiB"


def parse_headroom(text: str | None) -> Headroom:
    """'256MiB', '1GiB', '0', '5%' (of the GPU's total memory)."""
    if text is None:
        return Headroom()
    t = str(text).strip()
    if t.endswith("%"):
        try:
            p = float(t[:-1])
        except ValueError:
            raise BadInput(f"--headroom: cannot read {text!r}", "Use a size (512MiB) or a percentage of the GPU (5%).") from None
        if not 0 <= p < 100:
            raise BadInput(f"--headroom {text}: the percentage must be in [0, 100)")
        return Headroom(None, p)
    if t in ("0", "0B", "none"):
        return Headroom(0)
    return Headroom(parse_size(t, "--headroom"))


@dataclass(frozen=True)
class Goals:
    context: int | None = None
    concurrency: int | None = None
    max_vram_bytes: int | None = None
    headroom: Headroom = field(default_factory=Headroom)
    strict: bool = True        # False: no goal was asked; the launch as given is judged without headroom

    def validate(self) -> "Goals":
        if self.context is not None and self.context < 1:
            raise BadInput("--context must be a positive number of tokens")
        if self.concurrency is not None and self.concurrency < 1:
            raise BadInput("--concurrency must be a whole number >= 1")
        if self.max_vram_bytes is not None and self.max_vram_bytes <= 0:
            raise BadInput("--max-vram must be a positive size")
        return self

    @property
    def sequences(self) -> int:
        return self.concurrency or 1

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.context, self.concurrency, self.max_vram_bytes))

    def describe(self) -> str:
        parts = []
        if self.context:
            parts.append(f"context {self.context:,}")
        if self.concurrency:
            parts.append(f"{self.concurrency} sequences resident")
        if self.max_vram_bytes:
            parts.append(f"<= {self.max_vram_bytes / GiB:.2f} GiB ({self.max_vram_bytes / 1e9:.2f} GB) per GPU")
        parts.append(f"headroom {self.headroom.text}")
        return ", ".join(parts)


# --- model variants: weight quantization, CPU offload ------------------------------------------------------

FP8_METHODS = {"fp8", "fbgemm_fp8", "ptpc_fp8"}
# plan.evaluate models --cpu-offload-gb itself when Settings has the field (memory/weights.py places it
# parameter by parameter, as vLLM does); otherwise kvfit takes the GiB off the inventory evenly.
OFFLOAD_IN_SETTINGS = "cpu_offload_gb" in Settings.__dataclass_fields__
FOUR_BIT_METHODS = {"awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes", "marlin"}


@dataclass(frozen=True)
class Variant:
    """What the launch changes about the weights vLLM holds: --quantization and --cpu-offload-gb."""

    quantization: str | None = None
    cpu_offload_gb: float = 0.0

    def validate(self) -> "Variant":
        if self.cpu_offload_gb < 0 or not math.isfinite(self.cpu_offload_gb):
            raise BadInput("--cpu-offload-gb must be a size in GiB >= 0")
        return self


def _prequantized(model: plan.Model, inv: Inventory) -> str | None:
    if model.arch.quantization:
        return model.arch.quantization
    odd = [d for d in inv.params_by_dtype if d not in FLOATING]
    return f"{'/'.join(sorted(odd))} tensors" if odd else None


def _unquantized_params(model: plan.Model, floating: int) -> int:
    """Parameters vLLM leaves in the model dtype under weight quantization: the embedding and LM head
    (vocabulary x hidden) and the norms (two per decoder layer and a final one, Llama layout)."""
    a = model.arch
    emb = a.vocab_size * a.hidden_size * (1 if a.tie_word_embeddings else 2)
    norms = (2 * a.num_hidden_layers + 1) * a.hidden_size
    return min(floating, emb + norms)


def quantized_inventory(model: plan.Model, inv: Inventory, method: str) -> tuple[Inventory, str]:
    """The checkpoint's floating linear weights at FP8 (1 B/param) or 4 bits (0.5 B/param plus a 16-bit
    scale and a packed zero point per group of 128, about 0.52 B/param). Embeddings and the LM head stay in
    the model dtype, as vLLM keeps them."""
    floating = sum(c for d, c in inv.params_by_dtype.items() if d in FLOATING)
    emb = _unquantized_params(model, floating)
    linear = max(0, floating - emb)
    counts = {d: c for d, c in inv.params_by_dtype.items() if d not in FLOATING}
    counts["BF16"] = counts.get("BF16", 0) + emb
    if method in FP8_METHODS:
        counts["F8_E4M3"] = counts.get("F8_E4M3", 0) + linear
        label = "FP8 weights modelled: linear layers at 1 B/param, embeddings and norms in the model dtype"
    else:
        counts["F4"] = counts.get("F4", 0) + linear
        counts["F16"] = counts.get("F16", 0) + linear // 128
        counts["I32"] = counts.get("I32", 0) + linear // 1024
        label = ("4-bit weights modelled: linear layers at ~0.52 B/param (AWQ/GPTQ, group 128), embeddings and "
                 "norms in the model dtype")
    return Inventory(counts, f"{inv.source}; {label}", inv.estimated), label


def apply_variant(model: plan.Model, variant: Variant, settings: Settings, gpu: Gpu) -> tuple[plan.Model, tuple[str, ...]]:
    """The model as the launch loads it: weights quantized at load, part of them offloaded to CPU memory."""
    if variant.quantization is None and not variant.cpu_offload_gb:
        return model, ()
    notes: list[str] = []
    inv = model.inventory or estimate_inventory(model.arch)
    q = (variant.quantization or "").lower() or None
    if q:
        pre = _prequantized(model, inv)
        if pre:
            notes.append(f"the checkpoint is already quantized ({pre}); kvfit sizes its weights as stored")
        elif q in FP8_METHODS or q in FOUR_BIT_METHODS:
            if gpu.compute_capability < (8, 0) and q in FP8_METHODS and settings.device == "cuda":
                raise BadInput(f"--quantization {q} needs compute capability 8.0 or newer; "
                               f"{gpu.name} has {gpu.compute_capability[0]}.{gpu.compute_capability[1]}")
            inv, label = quantized_inventory(model, inv, q)
            notes.append(label)
            if q in ("awq", "awq_marlin", "gptq", "gptq_marlin", "marlin"):
                notes.append(f"vLLM loads {q} weights only from a checkpoint quantized that way: "
                             f"kvfit modelled a 4-bit checkpoint of {model.id}")
        else:
            notes.append(f"--quantization {q} is not modelled: weights sized as the checkpoint stores them")
    if variant.cpu_offload_gb > 0 and OFFLOAD_IN_SETTINGS:
        notes.append(f"--cpu-offload-gb {variant.cpu_offload_gb:g}: that much of the weights per GPU lives in CPU "
                     "memory; every forward pass reads it over PCIe (much slower)")
    elif variant.cpu_offload_gb > 0:
        dtype = plan.resolve_model_dtype(model.arch, settings.dtype_canonical, gpu, settings.device)
        world = settings.tensor_parallel_size * settings.pipeline_parallel_size
        per_gpu = loaded_bytes(inv, dtype) / world
        off = min(variant.cpu_offload_gb * GiB, per_gpu)
        keep = 1 - off / per_gpu if per_gpu else 1
        inv = Inventory({d: int(c * keep) for d, c in inv.params_by_dtype.items()},
                        f"{inv.source}; {off / GiB:.2f} GiB per GPU offloaded to CPU (--cpu-offload-gb)",
                        inv.estimated)
        notes.append(f"--cpu-offload-gb {variant.cpu_offload_gb:g}: {off / GiB:.2f} GiB of weights per GPU live in "
                     "CPU memory; every forward pass reads them over PCIe (much slower)")
    return plan.Model(model.id, model.source, model.detail, model.arch, inv), tuple(notes)


# --- one launch against the goals -------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    label: str
    settings: Settings
    variant: Variant
    gpu: Gpu
    result: plan.Result
    resident: int | None          # full-length sequences the KV cache holds (headroom applied); None: no KV limit
    resident_exact: int | None    # the same without the headroom
    headroom_bytes: int
    kv_needed_bytes: int          # the goal's sequences at max_model_len, plus vLLM's null block
    footprint_bytes: int          # what vLLM takes on each GPU
    meets: bool
    unmet: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def max_model_len(self) -> int:
        return self.result.resolved.max_model_len

    @property
    def utilization(self) -> float:
        return self.result.resolved.gpu_memory_utilization

    @property
    def gpus_used(self) -> int:
        return self.settings.tensor_parallel_size * self.settings.pipeline_parallel_size


def _g(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def short_name(name: str) -> str:
    """'NVIDIA GeForce RTX 3090' -> 'RTX 3090'."""
    for prefix in ("NVIDIA GeForce ", "NVIDIA ", "Tesla "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def check(model: plan.Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals,
          variant: Variant = Variant(), label: str = "as given") -> Check:
    """Evaluate one launch and hold it to the goals. Raises BadInput when vLLM would refuse the settings."""
    m, vnotes = apply_variant(model, variant, settings, gpu)
    run = settings
    if variant.cpu_offload_gb and OFFLOAD_IN_SETTINGS:
        run = replace(settings, cpu_offload_gb=float(variant.cpu_offload_gb))
    res = plan.evaluate(m, gpu, run, profile, recommend=False)
    lay, cap, mem, r = res.layout, res.capacity, res.memory, res.resolved
    want = goals.sequences
    null = 1 if (profile.null_block_reserved and lay.groups) else 0
    per_req = cap.blocks_per_request
    bpb = lay.bytes_per_block
    kv_needed = (want * per_req + null) * bpb if lay.groups and per_req else 0
    headroom = goals.headroom.resolve(gpu.total_bytes)
    pinned = settings.kv_cache_memory_bytes is not None
    non_kv = mem.weights_bytes + mem.activation_bytes + mem.cudagraph_bytes + mem.non_torch_bytes
    footprint = non_kv + settings.kv_cache_memory_bytes if pinned else mem.requested_bytes

    def seqs(avail: int) -> int | None:
        if not lay.groups or not per_req:
            return None
        return max(0, avail // bpb - null) // per_req if avail > 0 else 0

    exact = seqs(mem.kv_available_bytes)
    resident = exact if pinned else seqs(mem.kv_available_bytes - headroom)

    unmet: list[str] = []
    if not res.fits:
        unmet.append("; ".join(res.reasons) or "vLLM would not serve this launch")
    if goals.context and r.max_model_len < goals.context:
        unmet.append(f"max_model_len {r.max_model_len:,} is below the context goal {goals.context:,}")
    if resident is not None and resident < want and res.fits:
        if pinned:
            unmet.append(f"the KV budget holds {resident} sequence(s) of {r.max_model_len:,} tokens; the goal is {want}")
        else:
            extra = f" ({exact} without the headroom)" if exact is not None and exact != resident else ""
            unmet.append(f"{resident} sequence(s) of {r.max_model_len:,} tokens fit with {_g(headroom)} headroom"
                         f"{extra}; the goal is {want}")
    if goals.concurrency and r.max_num_seqs < goals.concurrency:
        unmet.append(f"max_num_seqs {r.max_num_seqs} caps the running sequences below {goals.concurrency}")
    if settings.device == "cuda":
        if goals.max_vram_bytes is not None:
            slack = headroom if pinned else 0
            if footprint + slack > goals.max_vram_bytes:
                unmet.append(f"vLLM would take {_g(footprint)}"
                             + (f" (+ {_g(headroom)} headroom)" if slack else "")
                             + f" per GPU, over the {_g(goals.max_vram_bytes)} budget")
        if pinned:
            limit = gpu.total_bytes if gpu.free_bytes is None else min(gpu.total_bytes, gpu.free_bytes)
            if footprint + headroom > limit:
                unmet.append(f"weights, activations and the {_g(settings.kv_cache_memory_bytes)} KV budget take "
                             f"{_g(footprint)}; with {_g(headroom)} headroom that is more than the "
                             + ("free memory" if gpu.free_bytes is not None else "GPU") + f" ({_g(limit)})")
            if res.startup_ok and gpu.free_bytes is not None \
                    and gpu.free_bytes < math.ceil(gpu.total_bytes * r.gpu_memory_utilization):
                unmet.append(f"vLLM still checks free memory against gpu_memory_utilization {r.gpu_memory_utilization} "
                             f"at startup ({_g(gpu.free_bytes)} free < {_g(math.ceil(gpu.total_bytes * r.gpu_memory_utilization))})")
    return Check(label, settings, variant, gpu, res, resident, exact, headroom, kv_needed, footprint,
                 not unmet, tuple(unmet), vnotes)


def try_check(*a, **k) -> Check | None:
    try:
        return check(*a, **k)
    except KvfitError:
        return None


# --- searches ---------------------------------------------------------------------------------------------

def ceiling(gpu: Gpu, goals: Goals, cap: float = 1.0) -> float:
    """The largest gpu_memory_utilization kvfit proposes: what free memory allows on a probed GPU (else
    UNPROBED_CEILING), within --max-vram, and at most `cap`."""
    c = cap if gpu.free_bytes is not None else min(cap, UNPROBED_CEILING)
    for limit in (gpu.free_bytes, goals.max_vram_bytes):
        if limit is None:
            continue
        c = min(c, math.floor(limit / gpu.total_bytes * 100) / 100)
        while c > 0 and math.ceil(gpu.total_bytes * c) > limit:
            c = round(c - 0.01, 2)
    return round(max(c, 0.0), 2)


def solve_utilization(model, gpu, settings, profile, goals, variant, top: float, label: str
                      ) -> tuple[Check | None, Check | None]:
    """The smallest utilization (in steps of 0.01, up to `top`) that meets the goals, and the check at `top`."""
    base = replace(settings, kv_cache_memory_bytes=None)
    if top < 0.01:
        return None, None
    at_top = try_check(model, gpu, replace(base, gpu_memory_utilization=top), profile, goals, variant, label)
    if at_top is None or not at_top.meets:
        return None, at_top
    lo, hi = 1, round(top * 100)
    best = at_top
    while lo < hi:
        mid = (lo + hi) // 2
        c = try_check(model, gpu, replace(base, gpu_memory_utilization=mid / 100), profile, goals, variant, label)
        if c is not None and c.meets:
            hi, best = mid, c
        else:
            lo = mid + 1
    return best, at_top


def settle(model, gpu, profile, goals, variant, least: Check, keep: float, label: str) -> Check:
    """The launch at `keep` (its own utilization, within the ceiling) when it meets the goals there: more KV
    cache than the least; else `least`."""
    if least.utilization >= keep:
        return least
    c = try_check(model, gpu, replace(least.settings, gpu_memory_utilization=keep), profile, goals, variant, label)
    return c if c is not None and c.meets else least


def _nice(length: int, block: int) -> int:
    if length >= 8192:
        return length // 1024 * 1024
    return max(block, length // block * block) if length >= block else length


def largest_length(model, gpu, settings, profile, goals, variant, label: str = "") -> tuple[int, Check | None]:
    """The longest max_model_len (up to the model's derived limit) at which the goal's sequences fit."""
    g = replace(goals, context=None)
    top = model.arch.derived_max_len

    def ok(length: int) -> Check | None:
        c = try_check(model, gpu, replace(settings, max_model_len=length), profile, g, variant, label)
        return c if c is not None and c.meets else None

    c = ok(top)
    if c is not None:
        return top, c
    lo, hi, best = 1, top - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        c = ok(mid)
        if c is not None:
            best, lo = (mid, c), mid + 1
        else:
            hi = mid - 1
    if best is None:
        return 0, None
    length, c = best
    nice = _nice(length, c.result.layout.block_size or 16)
    if nice != length:
        cn = ok(nice)
        if cn is not None:
            return nice, cn
    return length, c


# --- planning ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    label: str                    # the change, in vLLM's flags
    tier: int
    check: Check                  # the launch it proposes (meets) or its best try at the ceiling
    meets: bool
    max_len: int                  # longest max_model_len for the goal's sequences at the ceiling: the context it buys
    resident: int | None          # sequences of the target length at the ceiling
    cost: str = ""                # what it costs
    requires: str | None = None   # hardware or a checkpoint the launch does not have
    least_util: float | None = None   # the least gpu_memory_utilization at which it meets the goals

    @property
    def util(self) -> float | None:
        return self.least_util


@dataclass(frozen=True)
class Planning:
    goals: Goals
    target_len: int | None
    hard_len: bool
    ceiling: float
    as_given: Check
    recommended: Option | None
    kv_form: Check | None
    min_utilization: float | None
    alternatives: tuple[Option, ...]
    notes: tuple[str, ...] = ()

    @property
    def meets(self) -> bool:
        return self.as_given.meets


def changes(base: Settings, base_variant: Variant, s: Settings, v: Variant) -> dict[str, Any]:
    """vLLM flags (launch keys) whose value differs between two launches."""
    out: dict[str, Any] = {}
    pairs = (("max-model-len", "max_model_len"), ("gpu-memory-utilization", "gpu_memory_utilization"),
             ("kv-cache-memory-bytes", "kv_cache_memory_bytes"), ("tensor-parallel-size", "tensor_parallel_size"),
             ("pipeline-parallel-size", "pipeline_parallel_size"), ("kv-cache-dtype", "kv_cache_dtype"),
             ("max-num-seqs", "max_num_seqs"), ("max-num-batched-tokens", "max_num_batched_tokens"),
             ("enforce-eager", "enforce_eager"), ("dtype", "dtype"), ("block-size", "block_size"))
    for flag, attr in pairs:
        a, b = getattr(base, attr), getattr(s, attr)
        if a != b:
            out[flag] = b
    if base_variant.quantization != v.quantization:
        out["quantization"] = v.quantization
    if base_variant.cpu_offload_gb != v.cpu_offload_gb:
        out["cpu-offload-gb"] = v.cpu_offload_gb or None
    return out


def describe_changes(ch: dict[str, Any]) -> str:
    parts = []
    for k, v in ch.items():
        if v is True:
            parts.append(f"--{k}")
        elif v is None or v is False:
            parts.append(f"no --{k}")
        elif isinstance(v, float):
            parts.append(f"--{k} {v:g}")
        else:
            parts.append(f"--{k} {v}")
    return " ".join(parts) or "no change"


def plan_goals(model: plan.Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals,
               variant: Variant = Variant(), *, gpu_count: int | None = None,
               catalog: tuple[Gpu, ...] = (), alternatives: bool | None = None) -> Planning:
    """Check the launch against the goals; when it falls short, the smallest change that meets them and
    ranked alternatives. `gpu_count`: GPUs like `gpu` present (None: unknown). `catalog`: GPUs to suggest."""
    goals = goals.validate()
    variant = variant.validate()
    settings = settings.validate()
    notes: list[str] = []
    judge = goals if goals.strict else replace(goals, headroom=Headroom(0))
    as_given = check(model, gpu, settings, profile, judge, variant, "as given")
    top = ceiling(gpu, goals)
    given_len = settings.max_model_len if settings.max_model_len not in (None, -1) else None
    target = given_len
    if goals.context and (given_len is None or given_len < goals.context):
        target = goals.context
    base = settings if target == given_len else replace(settings, max_model_len=target)
    if target is not None:                                 # a length vLLM refuses outright is bad input
        try:
            plan.resolve(model.arch, base, gpu, profile)
        except BadInput as e:
            if target == goals.context and target != given_len:
                raise BadInput(e.message.replace(f"--max-model-len {target}", f"--context {target}"), e.hint) from None
            raise
    hard = goals.context is not None
    recommended: Option | None = None
    min_util: float | None = None

    def option(c: Check, label: str, tier: int, cost: str = "", requires: str | None = None,
               ceiling_check: Check | None = None, max_len: int | None = None) -> Option:
        at = ceiling_check or c
        return Option(label, tier, c, c.meets, max_len if max_len is not None else 0,
                      at.resident, cost, requires)

    if as_given.meets:
        recommended = Option("as given", -1, as_given, True, as_given.max_model_len, as_given.resident)
        if settings.kv_cache_memory_bytes is None and settings.device == "cuda":
            low, _ = solve_utilization(model, gpu, settings, profile, goals, variant, top, "")
            min_util = low.utilization if low else None
    elif settings.device == "cuda":
        if target is not None or base.max_model_len == -1:
            best, at_top = solve_utilization(model, gpu, base, profile, goals, variant, top, "utilization")
            if best is not None:
                min_util = best.utilization
                c = settle(model, gpu, profile, goals, variant, best, min(as_given.utilization, top), "utilization")
                ch = changes(settings, variant, c.settings, variant)
                recommended = replace(option(c, describe_changes(ch), -1, ceiling_check=at_top,
                                             max_len=c.max_model_len), least_util=min_util)
        else:
            util = min(as_given.utilization, top)
            s = replace(base, gpu_memory_utilization=util, kv_cache_memory_bytes=None)
            c = try_check(model, gpu, s, profile, goals, variant, "utilization")
            if c is None or not c.meets:
                length, c = largest_length(model, gpu, s, profile, goals, variant, "length")
                if length and c is not None:
                    notes.append(f"the model's default max_model_len ({model.arch.default_max_len:,}) does not fit; "
                                 f"{length:,} does")
            if c is not None and c.meets:
                ch = changes(settings, variant, c.settings, variant)
                recommended = option(c, describe_changes(ch), -1, max_len=c.max_model_len)
                low, _ = solve_utilization(model, gpu, c.settings, profile, goals, variant, top, "")
                min_util = low.utilization if low else None

    alts: tuple[Option, ...] = ()
    if alternatives or (alternatives is None and not as_given.meets):
        alts = tuple(_alternatives(model, gpu, settings, base, profile, goals, variant, top, hard,
                                   gpu_count, catalog, as_given))
        if recommended is None:
            recommended = next((a for a in alts if a.meets), None)
    kv_form = None
    if recommended is not None and recommended.meets:
        kv_form = pinned_form(model, gpu, recommended.check, profile, goals)
    if top < 1.0 and gpu.free_bytes is not None and goals.max_vram_bytes is None:
        notes.append(f"utilization is capped at {top:.2f}: {gpu.free_bytes / GiB:.2f} GiB of "
                     f"{gpu.total_bytes / GiB:.2f} GiB is free on {gpu.name}")
    return Planning(goals, target, hard, top, as_given, recommended, kv_form, min_util, alts, tuple(notes))


def pinned_form(model, gpu: Gpu, c: Check, profile: Profile, goals: Goals) -> Check | None:
    """The same launch with the KV cache pinned by --kv-cache-memory-bytes: what this launch's utilization
    gives the KV cache, less the headroom, in whole MiB. Deterministic: vLLM skips the KV profiling."""
    s = c.settings
    if s.device != "cuda" or not c.result.layout.groups:
        return None
    if s.kv_cache_memory_bytes is not None:
        return c
    kv = (c.result.memory.kv_available_bytes - c.headroom_bytes) // MiB * MiB
    if kv <= 0 or kv < c.kv_needed_bytes:
        return None
    pinned = try_check(model, gpu, replace(s, kv_cache_memory_bytes=kv), profile, goals, c.variant,
                       c.label + " (KV pinned)")
    return pinned if pinned is not None and pinned.meets else None



def _first_meeting(values, option_for):
    """Try the values in order: (option, value) of the first option that meets the goals, else of the last
    one that could be computed (option_for returns None for a value to skip); None if none could."""
    last = None
    for v in values:
        o = option_for(v)
        if o is None:
            continue
        last = (o, v)
        if o.meets:
            break
    return last

def _alternatives(model, gpu, settings, base, profile, goals, variant, top, hard, gpu_count, catalog,
                  as_given: Check) -> list[Option]:
    out: list[Option] = []
    util_base = replace(base, kv_cache_memory_bytes=None)
    want = goals.sequences
    r0 = as_given.result.resolved

    def evaluate_option(label, tier, s, v=variant, g=gpu, cost="", requires=None, cap=None,
                        record=True) -> Option | None:
        t = top if cap is None else cap
        best, at_top = solve_utilization(model, g, s, profile, goals, v, t, label)
        if at_top is None:
            return None
        # the context it buys: at the launch's own utilization (within the ceiling)
        at = min(as_given.utilization, t)
        length, _ = largest_length(model, g, replace(s, gpu_memory_utilization=at, kv_cache_memory_bytes=None),
                                   profile, goals, v, label)
        c = settle(model, g, profile, goals, v, best, at, label) if best is not None else at_top
        ch = changes(settings, variant, c.settings, v)
        o = Option(label if label else describe_changes(ch), tier, c, best is not None, length, c.resident,
                   cost, requires, best.utilization if best is not None else None)
        if record:
            out.append(o)
        return o

    # shorter context (only when the length is not a goal)
    if not hard and (base.max_model_len is None or base.max_model_len != -1):
        s = replace(util_base, gpu_memory_utilization=min(as_given.utilization, top))
        length, c = largest_length(model, gpu, s, profile, goals, variant, "")
        current = as_given.max_model_len
        if length and length < current:
            evaluate_option(f"--max-model-len {length}", 0, replace(util_base, max_model_len=length),
                            cost=f"requests longer than {length:,} tokens are refused")

    # fewer sequences scheduled at once (smaller sampler and activation peak)
    seq_choice = None
    if settings.max_num_seqs is None or settings.max_num_seqs > want:
        current = r0.max_num_seqs
        cands = sorted({s for s in (128, 64, 32, 16, 8, 4, 2, 1, want) if want <= s < current}, reverse=True)
        last = _first_meeting(cands, lambda n: None if (util_base.max_num_batched_tokens is not None
                                                         and util_base.max_num_batched_tokens < n) else
                              evaluate_option(f"--max-num-seqs {n}", 0, replace(util_base, max_num_seqs=n),
                                              cost="fewer requests at once", record=False))
        if last:
            out.append(last[0])
            seq_choice = last[1]

    # smaller prefill chunks (smaller activation peak)
    mnbt_choice = None
    current = r0.max_num_batched_tokens
    seqs = r0.max_num_seqs
    cands = [t for t in (8192, 4096, 2048, 1024, 512) if t < current and t >= seqs]
    last = _first_meeting(cands, lambda t: evaluate_option(
        f"--max-num-batched-tokens {t}", 0, replace(util_base, max_num_batched_tokens=t),
        cost="slower long prefills", record=False))
    if last:
        out.append(last[0])
        mnbt_choice = last[1]

    if not settings.enforce_eager and profile.cudagraph_estimate_subtracted and settings.device == "cuda":
        evaluate_option("--enforce-eager", 0, replace(util_base, enforce_eager=True),
                        cost="no CUDA graphs (slower)")

    kv_fp8 = r0.kv_dtype_bytes > 1
    if kv_fp8:
        evaluate_option("--kv-cache-dtype fp8", 1, replace(util_base, kv_cache_dtype="fp8"),
                        cost="FP8 KV: small accuracy cost")

    # parallelism over the GPUs present (or named)
    heads = model.arch.num_attention_heads
    for key, sizes, tier_label in (("tensor_parallel_size", (2, 4, 8), "--tensor-parallel-size"),
                                   ("pipeline_parallel_size", (2, 4), "--pipeline-parallel-size")):
        cur = getattr(settings, key)
        found_present = found_missing = None
        for n in sizes:
            if n <= cur:
                continue
            if key == "tensor_parallel_size" and heads % n:
                continue
            if key == "pipeline_parallel_size" and model.arch.num_hidden_layers < n:
                continue
            world = n * (settings.pipeline_parallel_size if key == "tensor_parallel_size" else settings.tensor_parallel_size)
            present = gpu_count is not None and world <= gpu_count
            if (present and found_present) or (not present and found_missing):
                continue
            o = evaluate_option(f"{tier_label} {n}", 2 if present else 7,
                                replace(util_base, **{key: n}), cost=f"{world} GPUs",
                                requires=None if present else f"{world} x {short_name(gpu.name)}", record=False)
            if o is None:
                continue
            if o.meets:
                if present:
                    found_present = o
                else:
                    found_missing = o
                out.append(o)
                if present:
                    break

    prequant = _prequantized(model, model.inventory or estimate_inventory(model.arch))
    fp8_ok = not prequant and variant.quantization is None and gpu.compute_capability >= (8, 0) \
        and settings.device == "cuda"
    if fp8_ok:
        evaluate_option("--quantization fp8", 3, util_base, v=replace(variant, quantization="fp8"),
                        cost="FP8 weights: small accuracy cost")

    # the cheap changes together, when none alone is enough: the fewest that meet the goals (cheapest first)
    if not any(o.meets for o in out if o.tier <= 3 and o.requires is None):
        steps: list[tuple[str, int, Any]] = []
        if seq_choice:
            steps.append((f"--max-num-seqs {seq_choice}", 0, lambda s, v: (replace(s, max_num_seqs=seq_choice), v)))
        if mnbt_choice:
            steps.append((f"--max-num-batched-tokens {mnbt_choice}", 0,
                          lambda s, v: (replace(s, max_num_batched_tokens=mnbt_choice), v)))
        if not settings.enforce_eager and profile.cudagraph_estimate_subtracted and settings.device == "cuda":
            steps.append(("--enforce-eager", 0, lambda s, v: (replace(s, enforce_eager=True), v)))
        if kv_fp8:
            steps.append(("--kv-cache-dtype fp8", 1, lambda s, v: (replace(s, kv_cache_dtype="fp8"), v)))
        if fp8_ok:
            steps.append(("--quantization fp8", 3, lambda s, v: (s, replace(v, quantization="fp8"))))
        from itertools import combinations

        subsets = [c for n in range(2, len(steps) + 1) for c in combinations(steps, n)]
        subsets.sort(key=lambda c: (len(c), sum(x[1] for x in c)))
        chosen = None
        for combo in subsets:
            s, v = util_base, variant
            for _, _, fn in combo:
                s, v = fn(s, v)
            c = try_check(model, gpu, replace(s, gpu_memory_utilization=top), profile, goals, v)
            if c is not None and c.meets:
                chosen = (combo, s, v)
                break
        if chosen is None and len(steps) >= 2:
            s, v = util_base, variant
            for _, _, fn in steps:
                s, v = fn(s, v)
            chosen = (tuple(steps), s, v)
        if chosen is not None:
            combo, s, v = chosen
            evaluate_option(" + ".join(x[0] for x in combo), 4, s, v=v, cost="each one's cost")

    # CPU offload: the smallest whole GiB that meets the goals
    if settings.device == "cuda":
        try:
            dtype = plan.resolve_model_dtype(model.arch, settings.dtype_canonical, gpu, settings.device)
            inv = apply_variant(model, replace(variant, cpu_offload_gb=0.0), settings, gpu)[0].inventory \
                or estimate_inventory(model.arch)
            world = settings.tensor_parallel_size * settings.pipeline_parallel_size
            weights_gib = math.ceil(loaded_bytes(inv, dtype) / world / GiB)
        except KvfitError:
            weights_gib = 0
        if weights_gib >= 1:
            def meets(n):
                c = try_check(model, gpu, replace(util_base, gpu_memory_utilization=top), profile, goals,
                              replace(variant, cpu_offload_gb=float(n)))
                return c is not None and c.meets
            lo, hi = 1, weights_gib
            if meets(hi):
                while lo < hi:
                    mid = (lo + hi) // 2
                    if meets(mid):
                        hi = mid
                    else:
                        lo = mid + 1
            else:
                lo = hi             # not enough even with every weight offloaded: show what it buys
            evaluate_option(f"--cpu-offload-gb {lo}", 5, util_base, v=replace(variant, cpu_offload_gb=float(lo)),
                            cost="weights over PCIe: much slower")

    if not prequant and (variant.quantization is None or variant.quantization.lower() in FP8_METHODS) \
            and settings.device == "cuda":
        evaluate_option("a 4-bit checkpoint (--quantization awq)", 6, util_base,
                        v=replace(variant, quantization="awq"), cost="4-bit: accuracy cost",
                        requires="an AWQ/GPTQ checkpoint")

    # a larger GPU from the catalog (a --max-vram budget is the same bytes on any card)
    if goals.max_vram_bytes is None and settings.device == "cuda":
        bigger = sorted((g for g in catalog if g.total_bytes > gpu.total_bytes), key=lambda g: g.total_bytes)
        default_util = profile.default_gpu_memory_utilization
        for g in bigger:
            o = evaluate_option(f"a larger GPU: {short_name(g.name)}", 7, util_base, g=g,
                                cap=ceiling(g, goals, default_util), cost="hardware", requires=short_name(g.name),
                                record=False)
            if o is not None and o.meets:
                out.append(o)
                break

    seen, ranked = set(), []
    for o in sorted(out, key=lambda o: (not o.meets, o.tier if o.meets else 0, -(o.max_len or 0) if not o.meets else 0,
                                        o.util or 1.0, "pipeline" in o.label)):
        if o.label in seen:
            continue
        seen.add(o.label)
        ranked.append(o)
    return ranked
