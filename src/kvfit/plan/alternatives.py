"""Ranked alternatives when a launch falls short: a table of small generators, each proposing one kind of
change, every proposal re-checked through plan.goals.judge at the policy's ceiling and headroom.

Ranking (cheapest first; those that meet the goals before those that do not, which are ordered by the
context they buy): a shorter --max-model-len (when the length is not a goal), fewer --max-num-seqs, smaller
--max-num-batched-tokens, --enforce-eager (tier 0); --kv-cache-dtype fp8 (1); tensor / pipeline parallel over
GPUs present (2); FP8 weights quantized at load (3); the cheap ones together (4); --cpu-offload-gb (5); a
4-bit checkpoint of the model (6, needs that checkpoint); more GPUs than are present, or a larger GPU of the
same class (7, needs the hardware).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any, Callable, Iterator

from ..errors import KvfitError
from ..flags import changed_flags, describe
from ..gpu.model import Gpu
from ..memory.profiles import Profile
from ..memory.variants import FOUR_BIT, four_bit_checkpoint
from ..memory.weights import FLOATING, estimate_inventory, loaded_bytes
from ..settings import Settings
from ..units import GiB
from .evaluate import Model, resolve_model_dtype
from .goals import Check, Goals, as_written, try_judge
from .policy import Policy, policy_for
from .search import least_utilization, longest_length

SEQ_STEPS = (128, 64, 32, 16, 8, 4, 2, 1)            # --max-num-seqs tried, largest first
BATCH_STEPS = (8192, 4096, 2048, 1024, 512)           # --max-num-batched-tokens tried, largest first
TP_STEPS = (2, 4, 8)
PP_STEPS = (2, 4)


@dataclass(frozen=True)
class Option:
    """One proposed launch."""

    label: str                          # the change in vLLM's flags, or "as given"
    tier: int
    check: Check                        # the launch (at its least utilization when it meets, else its best try)
    meets: bool
    changes: dict[str, Any]             # vLLM launch key -> typed value (None: removed)
    cost: str = ""
    requires: str | None = None         # hardware or a checkpoint the launch does not have
    context: int | None = None          # the longest max_model_len it allows at its utilization
    least_util: float | None = None     # the least gpu_memory_utilization at which it meets the goals
    other_model: str | None = None      # it needs another checkpoint: no command for this one

    @property
    def gpus(self) -> int:
        return self.check.gpus_used


@dataclass
class Ctx:
    model: Model
    gpu: Gpu
    settings: Settings                  # the launch as given
    base: Settings                      # at the target length, utilization free
    profile: Profile
    goals: Goals
    policy: Policy
    as_given: Check
    hard_length: bool
    gpu_count: int | None               # GPUs like `gpu` present (None: unknown)
    catalog: tuple[Gpu, ...]
    out: list[Option]

    def option(self, label: str, tier: int, s: Settings, *, cost: str = "", requires: str | None = None,
               gpu: Gpu | None = None, model: Model | None = None, other_model: str | None = None,
               record: bool = True) -> Option | None:
        """Judge candidate settings at the least utilization that meets the goals (up to the ceiling of the
        GPU it runs on); the context it buys at the launch's own utilization."""
        g, m = gpu or self.gpu, model or self.model
        pol = self.policy if gpu is None else policy_for(g, self.goals, s.device, self.profile)
        if s.kv_cache_memory_bytes is not None or s.device != "cuda":
            c = try_judge(m, g, s, self.profile, self.goals, pol.headroom_bytes)
            if c is None:
                return None
            best, at_top = (c if c.meets else None), c
        else:
            best, at_top = least_utilization(m, g, s, self.profile, self.goals, pol.headroom_bytes, pol.ceiling)
            if at_top is None:
                return None
        at = min(self.as_given.utilization, pol.ceiling)
        written = self.settings.gpu_memory_utilization if at == self.as_given.utilization else at
        ctx_s = s if s.kv_cache_memory_bytes is not None or s.device != "cuda" else \
            replace(s, gpu_memory_utilization=written)
        length, _ = longest_length(m, g, ctx_s, self.profile, self.goals, pol.headroom_bytes)
        c = best if best is not None else at_top
        if best is not None and s.kv_cache_memory_bytes is None and s.device == "cuda" \
                and best.utilization < at <= pol.ceiling:
            keep = try_judge(m, g, replace(best.settings, gpu_memory_utilization=written), self.profile,
                             self.goals, pol.headroom_bytes)
            if keep is not None and keep.meets:
                c = keep                     # the launch's own utilization still meets: more KV cache
        c = as_written(self.settings, c, self.profile.default_gpu_memory_utilization)
        ch = changed_flags(self.settings, c.settings)
        o = Option(label or describe(ch), tier, c, best is not None, ch, cost, requires, length or None,
                   best.utilization if best is not None and s.kv_cache_memory_bytes is None else None, other_model)
        if record:
            self.out.append(o)
        return o


    def option_or_shorter(self, label: str, tier: int, s: Settings, **kw) -> Option | None:
        """The option at the target length; when it falls short there and the length is not a goal, the same
        change with the longest max_model_len it allows (hardware and weight changes when nothing else fits)."""
        o = self.option(label, tier, s, record=False, **kw)
        if o is None or o.meets or self.hard_length or self.settings.max_model_len == -1 or not o.context:
            return o
        shorter = self.option(f"{label} --max-model-len {o.context}", tier, replace(s, max_model_len=o.context),
                              record=False, **kw)
        return shorter if shorter is not None and shorter.meets else o


def _first_meeting(values, option_for: Callable[[Any], Option | None]):
    last = None
    for v in values:
        o = option_for(v)
        if o is None:
            continue
        last = (o, v)
        if o.meets:
            break
    return last


def shorter_context(x: Ctx) -> Iterator[None]:
    if x.hard_length or x.settings.max_model_len == -1:
        return
    at = min(x.as_given.utilization, x.policy.ceiling)
    s = replace(x.base, gpu_memory_utilization=at) if x.base.kv_cache_memory_bytes is None else x.base
    length, _ = longest_length(x.model, x.gpu, s, x.profile, x.goals, x.policy.headroom_bytes)
    if length and length < x.as_given.max_model_len:
        x.option(f"--max-model-len {length}", 0, replace(x.base, max_model_len=length),
                 cost=f"requests longer than {length:,} tokens are refused")
    yield from ()


def fewer_sequences(x: Ctx) -> Iterator[tuple[str, Settings]]:
    want, cur = x.goals.sequences, x.as_given.result.resolved.max_num_seqs
    cands = sorted({n for n in (*SEQ_STEPS, want) if want <= n < cur}, reverse=True)
    mnbt = x.base.max_num_batched_tokens
    last = _first_meeting(cands, lambda n: None if (mnbt is not None and mnbt < n) else
                          x.option(f"--max-num-seqs {n}", 0, replace(x.base, max_num_seqs=n),
                                   cost="fewer requests at once", record=False))
    if last:
        x.out.append(last[0])
        yield f"--max-num-seqs {last[1]}", replace(x.base, max_num_seqs=last[1])


def smaller_batches(x: Ctx) -> Iterator[tuple[str, Settings]]:
    r0 = x.as_given.result.resolved
    cands = [t for t in BATCH_STEPS if r0.max_num_seqs <= t < r0.max_num_batched_tokens]
    last = _first_meeting(cands, lambda t: x.option(f"--max-num-batched-tokens {t}", 0,
                                                    replace(x.base, max_num_batched_tokens=t),
                                                    cost="slower long prefills", record=False))
    if last:
        x.out.append(last[0])
        yield f"--max-num-batched-tokens {last[1]}", replace(x.base, max_num_batched_tokens=last[1])


def eager(x: Ctx) -> Iterator[tuple[str, Settings]]:
    if not x.settings.enforce_eager and x.profile.cudagraph_estimate_subtracted and x.settings.device == "cuda":
        s = replace(x.base, enforce_eager=True)
        x.option("--enforce-eager", 0, s, cost="no CUDA graphs (slower decoding)")
        yield "--enforce-eager", s


def fp8_kv(x: Ctx) -> Iterator[tuple[str, Settings]]:
    if x.as_given.result.resolved.kv_dtype_bytes > 1:
        s = replace(x.base, kv_cache_dtype="fp8")
        x.option("--kv-cache-dtype fp8", 1, s, cost="FP8 KV cache: small accuracy cost")
        yield "--kv-cache-dtype fp8", s


def _present(x: Ctx, world: int) -> bool:
    return x.gpu_count is not None and world <= x.gpu_count


def parallel(x: Ctx) -> Iterator[None]:
    a = x.model.arch
    for key, sizes, flag in (("tensor_parallel_size", TP_STEPS, "--tensor-parallel-size"),
                             ("pipeline_parallel_size", PP_STEPS, "--pipeline-parallel-size")):
        cur = getattr(x.settings, key)
        found_present = found_missing = False
        for n in sizes:
            if n <= cur or (key == "tensor_parallel_size" and a.num_attention_heads % n) \
                    or (key == "pipeline_parallel_size" and a.num_hidden_layers < n):
                continue
            other = x.settings.pipeline_parallel_size if key == "tensor_parallel_size" else \
                x.settings.tensor_parallel_size
            world = n * other
            present = _present(x, world)
            if (present and found_present) or (not present and found_missing):
                continue
            o = x.option_or_shorter(f"{flag} {n}", 2 if present else 7, replace(x.base, **{key: n}),
                                    cost=f"{world} GPUs",
                                    requires=None if present else f"{world} x {short_name(x.gpu.name)}")
            if o is None or not o.meets:
                continue
            x.out.append(o)
            if present:
                found_present = True
                break
            found_missing = True
    yield from ()


def _unquantized(x: Ctx) -> bool:
    inv = x.model.inventory or estimate_inventory(x.model.arch)
    return not x.model.arch.quantization and all(d in FLOATING for d, n in inv.params_by_dtype.items() if n)


def fp8_weights(x: Ctx) -> Iterator[tuple[str, Settings]]:
    if _unquantized(x) and x.settings.quantization is None and x.gpu.compute_capability >= (8, 0) \
            and x.settings.device == "cuda":
        s = replace(x.base, quantization="fp8")
        o = x.option_or_shorter("--quantization fp8", 3, s, cost="FP8 weights quantized at load: small accuracy cost")
        if o is not None:
            x.out.append(o)
        yield "--quantization fp8", s


def cpu_offload(x: Ctx) -> Iterator[None]:
    if x.settings.device != "cuda":
        return
    try:
        dtype = resolve_model_dtype(x.model.arch, x.settings.dtype_canonical, x.gpu, x.settings.device)
        inv = x.model.inventory or estimate_inventory(x.model.arch)
        world = x.settings.tensor_parallel_size * x.settings.pipeline_parallel_size
        weights_gib = math.ceil(loaded_bytes(inv, dtype) / world / GiB)
    except KvfitError:
        return
    if weights_gib < 1:
        return

    def meets(n: int) -> bool:
        c = try_judge(x.model, x.gpu, replace(x.base, gpu_memory_utilization=x.policy.ceiling,
                                              cpu_offload_gb=float(n)), x.profile, x.goals, x.policy.headroom_bytes)
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
        lo = hi
    x.option(f"--cpu-offload-gb {lo}", 5, replace(x.base, cpu_offload_gb=float(lo)),
             cost="weights read over PCIe every step: much slower")
    yield from ()


def four_bit(x: Ctx) -> Iterator[None]:
    if not _unquantized(x) or x.settings.device != "cuda" or (x.settings.quantization or "") in FOUR_BIT:
        return
    inv = x.model.inventory or estimate_inventory(x.model.arch)
    variant = Model(x.model.id, x.model.source, x.model.detail,
                    replace(x.model.arch, quantization="awq"), four_bit_checkpoint(x.model.arch, inv))
    o = x.option_or_shorter("a 4-bit AWQ/GPTQ checkpoint of this model", 6, replace(x.base, quantization=None),
                            model=variant, cost="4-bit weights: accuracy cost",
                            requires=f"a 4-bit checkpoint of {x.model.id}",
                            other_model=f"a 4-bit (AWQ or GPTQ) checkpoint of {x.model.id}")
    if o is not None:
        x.out.append(o)
    yield from ()


_DATACENTER = ("A10", "A30", "A40", "A100", "A800", "H100", "H200", "H800", "H20", "B200", "B300", "GB200", "L4",
               "L40", "L20", "T4", "V100", "P100", "RTX PRO", "RTX 6000", "RTX A6000", "RTX 5000", "RTX A5000")


def gpu_class(gpu: Gpu) -> str:
    """'datacenter' or 'consumer' (GeForce): a larger GPU is proposed from the same class."""
    name = gpu.name.upper()
    if "GEFORCE" in name or (" RTX " in f" {name} " and not any(k in name for k in ("RTX PRO", "RTX 6000", "RTX A",
                                                                                     "RTX 5000 ADA"))):
        return "consumer"
    return "datacenter"


def larger_gpu(x: Ctx) -> Iterator[None]:
    if x.goals.max_vram_bytes is not None or x.settings.device != "cuda":
        return
    cls = gpu_class(x.gpu)
    bigger = sorted((g for g in x.catalog if g.total_bytes > x.gpu.total_bytes * 1.02 and gpu_class(g) == cls),
                    key=lambda g: g.total_bytes)
    world = x.settings.tensor_parallel_size * x.settings.pipeline_parallel_size
    for g in bigger:
        o = x.option_or_shorter(f"a larger GPU: {short_name(g.name)}", 7, x.base, gpu=g, cost="hardware",
                                requires=f"{world} x {short_name(g.name)}" if world > 1 else short_name(g.name))
        if o is not None and o.meets:
            x.out.append(o)
            break
    yield from ()


def together(x: Ctx, steps: list[tuple[str, Settings]]) -> None:
    """The cheap changes together, when none alone is enough: the fewest that meet the goals."""
    if any(o.meets for o in x.out if o.tier <= 3 and o.requires is None) or len(steps) < 2:
        return
    fields = []
    for label, s in steps:
        diff = {k: getattr(s, k) for k in Settings.__dataclass_fields__ if getattr(s, k) != getattr(x.base, k)}
        fields.append((label, diff))
    subsets = [c for n in range(2, len(fields) + 1) for c in combinations(fields, n)]
    chosen = None
    for combo in subsets:
        s = x.base
        for _, diff in combo:
            s = replace(s, **diff)
        c = try_judge(x.model, x.gpu, replace(s, gpu_memory_utilization=x.policy.ceiling), x.profile, x.goals,
                      x.policy.headroom_bytes)
        if c is not None and c.meets:
            chosen = (combo, s)
            break
    if chosen is None:
        s = x.base
        for _, diff in fields:
            s = replace(s, **diff)
        chosen = (tuple(fields), s)
    combo, s = chosen
    x.option(" + ".join(label for label, _ in combo), 4, s,
             cost="; ".join(o.cost for o in x.out if o.label in {lab for lab, _ in combo} and o.cost))


GENERATORS = (shorter_context, fewer_sequences, smaller_batches, eager, fp8_kv, parallel, fp8_weights)
LATE = (cpu_offload, four_bit, larger_gpu)


def alternatives(x: Ctx) -> tuple[Option, ...]:
    steps: list[tuple[str, Settings]] = []
    for gen in GENERATORS:
        steps.extend(s for s in gen(x) if s is not None)
    together(x, steps)
    for gen in LATE:
        for _ in gen(x):
            pass
    seen, ranked = set(), []
    for o in sorted(x.out, key=lambda o: (not o.meets, o.tier if o.meets else 0,
                                          -(o.context or 0) if not o.meets else 0, o.least_util or 1.0,
                                          "pipeline" in o.label)):
        if o.label in seen:
            continue
        seen.add(o.label)
        ranked.append(o)
    return tuple(ranked)


def short_name(name: str) -> str:
    """'NVIDIA GeForce RTX 3090' -> 'RTX 3090'."""
    for prefix in ("NVIDIA GeForce ", "NVIDIA ", "Tesla "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
