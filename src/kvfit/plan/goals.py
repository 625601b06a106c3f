"""Goals, and one launch judged against them. Pure: every number comes from plan.evaluate.

Goals (all optional):
  context      the max_model_len the deployment needs
  concurrency  N sequences of that length resident in the KV cache at once: N x blocks-per-request blocks
               beside vLLM's null block (vLLM's reported max concurrency is then >= N), and max_num_seqs >= N
  max_vram     a cap on what vLLM may take on each GPU (a shared card): ceil(total x utilization), or with
               --kv-cache-memory-bytes the weights + activation + CUDA graphs + other + the KV budget

Headroom (plan/policy.py) is slack for the error in kvfit's estimate of the memory outside the KV cache: a
launch kvfit recommends must still meet the goals with `headroom` fewer bytes of KV cache than predicted
(with an explicit KV budget: `headroom` must stay free under the limit). The launch as given is judged
with the headroom when goals are asked, and without it when none is: then the question is vLLM's own, will
it start and serve max_model_len.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from ..errors import BadFlag, KvfitError
from ..gpu.model import Gpu
from ..memory.profiles import Profile
from ..settings import Settings
from ..units import GiB, MiB, gib, parse_size
from .evaluate import Model, Result, evaluate, free_seen_by_vllm

DEFAULT_HEADROOM_BYTES = 256 * MiB


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
    """'256MiB', '1GiB', '0', '5%' (of the GPU's total memory). A bare number other than 0 is refused."""
    if text is None:
        return Headroom()
    t = str(text).strip()
    if t.endswith("%"):
        try:
            p = float(t[:-1])
        except ValueError:
            raise BadFlag(f"--headroom: cannot read {text!r}", "Use a size (512MiB) or a percentage of the GPU (5%).",
                          flag="headroom") from None
        if not (0 <= p < 100):
            raise BadFlag(f"--headroom {text}: the percentage must be in [0, 100)", flag="headroom")
        return Headroom(None, p)
    if t in ("0", "0B", "none"):
        return Headroom(0)
    if t.replace(".", "", 1).isdigit():
        raise BadFlag(f"--headroom {t}: a size needs a unit", f"Did you mean {t}MiB, {t}GiB or {t}%?", flag="headroom")
    try:
        return Headroom(parse_size(t, "--headroom"))
    except KvfitError as e:
        raise BadFlag(e.message, e.hint, flag="headroom") from None


@dataclass(frozen=True)
class Goals:
    context: int | None = None
    concurrency: int | None = None
    max_vram_bytes: int | None = None
    headroom: Headroom = field(default_factory=Headroom)

    def validate(self) -> "Goals":
        if self.context is not None and self.context < 1:
            raise BadFlag("--context must be a positive number of tokens", flag="context")
        if self.concurrency is not None and self.concurrency < 1:
            raise BadFlag("--concurrency must be a whole number >= 1", flag="concurrency")
        if self.max_vram_bytes is not None and self.max_vram_bytes <= 0:
            raise BadFlag("--max-vram must be a positive size", flag="max_vram")
        return self

    @property
    def sequences(self) -> int:
        return self.concurrency or 1

    @property
    def active(self) -> bool:
        """Whether any goal was asked (then the verdict is about the goals)."""
        return any(x is not None for x in (self.context, self.concurrency, self.max_vram_bytes))

    def describe(self) -> str:
        parts = []
        if self.context:
            parts.append(f"context {self.context:,}")
        if self.concurrency:
            parts.append(f"{self.concurrency} sequences resident")
        if self.max_vram_bytes:
            parts.append(f"<= {self.max_vram_bytes / GiB:.2f} GiB ({self.max_vram_bytes / 1e9:.2f} GB) per GPU")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Check:
    """One launch held to the goals."""

    settings: Settings
    gpu: Gpu
    model: Model
    result: Result
    resident: int | None          # full-length sequences the KV cache holds (headroom applied); None: no KV limit
    resident_exact: int | None    # the same without the headroom
    headroom_bytes: int
    kv_needed_bytes: int          # the goal's sequences at max_model_len, plus vLLM's null block
    footprint_bytes: int          # what vLLM takes on each GPU
    meets: bool
    unmet: tuple[tuple[str, str], ...]    # (which goal or check fails, why)

    @property
    def max_model_len(self) -> int:
        return self.result.resolved.max_model_len

    @property
    def utilization(self) -> float:
        return self.result.resolved.gpu_memory_utilization

    @property
    def gpus_used(self) -> int:
        s = self.settings              # every GPU of the launch: TP x PP x PCP x DP (memory/parallel.py)
        return s.tensor_parallel_size * s.pipeline_parallel_size * s.prefill_context_parallel_size \
            * s.data_parallel_size

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(why for _, why in self.unmet)


_MEMO: ContextVar[dict | None] = ContextVar("kvfit_judge_memo", default=None)


@contextmanager
def remembered():
    """Within this block, judge() answers a launch it has judged before from memory (the planner's searches
    probe the same launches many times; judge is a pure function of its arguments)."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def judge(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals, headroom: int) -> Check:
    """Evaluate one launch and hold it to the goals with `headroom` bytes of slack. Raises BadInput when vLLM
    would refuse the settings outright."""
    memo = _MEMO.get()
    if memo is None:
        return _judge(model, gpu, settings, profile, goals, headroom)
    key = (id(model), gpu, settings, profile, goals, headroom)
    if key not in memo:
        try:
            memo[key] = _judge(model, gpu, settings, profile, goals, headroom)
        except KvfitError as e:
            memo[key] = e
    hit = memo[key]
    if isinstance(hit, KvfitError):
        raise hit
    return hit


def _judge(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals, headroom: int) -> Check:
    res = evaluate(model, gpu, settings, profile)
    lay, cap, mem, r = res.layout, res.capacity, res.memory, res.resolved
    want = goals.sequences
    null = 1 if (profile.null_block_reserved and lay.groups) else 0
    per_req = cap.blocks_per_request
    bpb = lay.bytes_per_block
    # data parallel: every engine holds the KV of its own requests (memory/parallel.py), so the launch holds
    # engines x what the bottleneck engine holds, and each GPU needs the KV of its engine's share
    engines = settings.data_parallel_size
    kv_needed = (-(-want // engines) * per_req + null) * bpb if lay.groups and per_req else 0
    pinned = settings.kv_cache_memory_bytes is not None
    non_kv = mem.weights_bytes + mem.activation_bytes + mem.cudagraph_bytes + mem.non_torch_bytes
    footprint = non_kv + settings.kv_cache_memory_bytes if pinned else mem.requested_bytes

    def seqs(avail: int) -> int | None:
        if not lay.groups or not per_req:
            return None
        return engines * (max(0, avail // bpb - null) // per_req) if avail > 0 else 0

    exact = seqs(mem.kv_available_bytes)
    resident = exact if pinned else seqs(mem.kv_available_bytes - headroom)

    unmet: list[tuple[str, str]] = []
    if not res.fits:
        unmet.append(("fits", "; ".join(res.reasons) or "vLLM would not serve this launch"))
    if goals.context and r.max_model_len < goals.context:
        unmet.append(("context", f"max_model_len {r.max_model_len:,} is below the context goal {goals.context:,}"))
    if resident is not None and res.fits and resident < want:
        what = "concurrency" if goals.concurrency else "headroom"
        if pinned:
            unmet.append((what, f"the KV budget holds {resident} sequence(s) of {r.max_model_len:,} tokens; "
                                f"{want} needed"))
        else:
            extra = f" ({exact} without it)" if exact is not None and exact != resident else ""
            unmet.append((what, f"{resident} sequence(s) of {r.max_model_len:,} tokens fit with {gib(headroom)} of "
                                f"headroom{extra}; {want} needed"))
    if goals.concurrency and r.max_num_seqs * engines < goals.concurrency:
        unmet.append(("concurrency", f"max_num_seqs {r.max_num_seqs}" + (f" x {engines} engines" if engines > 1 else "")
                      + f" caps the running sequences below {goals.concurrency}"))
    if settings.device == "cuda":
        if goals.max_vram_bytes is not None:
            slack = headroom if pinned else 0
            if footprint + slack > goals.max_vram_bytes:
                unmet.append(("max_vram", f"vLLM would take {gib(footprint)}"
                              + (f" (+ {gib(headroom)} headroom)" if slack else "")
                              + f" per GPU, over the {gib(goals.max_vram_bytes)} budget"))
        if pinned:
            free = free_seen_by_vllm(gpu, profile)
            limit = gpu.total_bytes if free is None else min(gpu.total_bytes, free)
            if footprint + headroom > limit:
                unmet.append(("headroom", f"weights, activations and the {gib(settings.kv_cache_memory_bytes)} KV "
                              f"budget take {gib(footprint)}; with {gib(headroom)} headroom that is more than the "
                              + ("free memory" if gpu.free_bytes is not None else "GPU") + f" ({gib(limit)})"))
    return Check(settings, gpu, model, res, resident, exact, headroom, kv_needed, footprint, not unmet, tuple(unmet))


def try_judge(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals,
              headroom: int) -> Check | None:
    """judge(), or None when vLLM would refuse these settings outright."""
    try:
        return judge(model, gpu, settings, profile, goals, headroom)
    except KvfitError:
        return None


def with_length(goals: Goals, settings: Settings) -> Settings:
    """The settings at the goal's context when it asks for more than the launch gives."""
    if goals.context and (settings.max_model_len in (None, -1) or settings.max_model_len < goals.context):
        return replace(settings, max_model_len=goals.context)
    return settings


def as_written(given: Settings, c: Check, default_util: float) -> Check:
    """The check with its utilization written as the launch wrote it: vLLM's default left implicit."""
    if given.gpu_memory_utilization is None and c.settings.gpu_memory_utilization == default_util:
        return replace(c, settings=replace(c.settings, gpu_memory_utilization=None))
    return c
