"""One launch in, one answer out: the verdict, the launch to recommend, and ranked alternatives.

Every path (check with or without goals, --json, each --format, --svg, a pasted launch, a manifest entry,
smoke's choice of what to start) calls `plan` and renders its answer; nothing else recommends anything.

The verdict: with goals, whether the launch as given meets them (with the policy's headroom), naming the
first that fails; without goals, vLLM's own question: will it start and serve max_model_len.

The recommendation, the smallest change that meets the goals with the headroom, within the ceiling
(plan/policy.py), each candidate re-checked by plan.goals.judge:
  1. the launch as given, when it meets them;
  2. keep the length, change the memory: the least gpu_memory_utilization up to the ceiling;
  3. keep the memory, shorten the length (not when --context makes the length a goal, nor for auto-fit): the
     longest max_model_len at the launch's own utilization (within the ceiling). An explicit KV budget
     (--kv-cache-memory-bytes, the CPU backend) is the user's memory decision: kvfit keeps it and shortens
     the length first, and grows the budget only when the length is a goal;
  4. the cheapest alternative that meets them (plan/alternatives.py), saying what it needs when it needs
     more GPUs, a larger GPU or another checkpoint.
When nothing on the GPUs given meets the goals, the answer says so (nothing_fits) and never proposes a
launch it predicts fails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..flags import changed_flags, describe
from ..gpu.model import Gpu
from ..memory.profiles import Profile
from ..settings import Settings
from ..units import MiB
from .alternatives import Ctx, Option, alternatives
from .evaluate import Model, resolve
from .goals import Check, Goals, as_written, judge, remembered, try_judge, with_length
from .policy import Policy, policy_for
from .search import least_kv_budget, least_utilization, longest_length


@dataclass(frozen=True)
class WhatIf:
    """vLLM's own numbers around the launch as given (no headroom, no ceiling): for the curious, not advice."""

    longest_max_model_len: int | None         # at the launch's utilization (or KV budget)
    min_gpu_memory_utilization: float | None  # for the launch's length (None: not even 1.0, or KV pinned)


@dataclass(frozen=True)
class Plan:
    goals: Goals
    policy: Policy
    as_given: Check
    recommended: Option | None
    kv_pinned: Option | None          # the recommendation with its KV cache pinned (--kv-cache-memory-bytes)
    alternatives: tuple[Option, ...]
    what_if: WhatIf
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The verdict (the exit code is 0 exactly when it holds)."""
        return self.as_given.meets

    @property
    def failed(self) -> tuple[str, str] | None:
        """The first goal or check that fails, and why."""
        return self.as_given.unmet[0] if self.as_given.unmet else None

    @property
    def nothing_fits(self) -> bool:
        """No launch on the GPUs given meets the goals (the recommendation, if any, needs something else)."""
        return not self.ok and (self.recommended is None or self.recommended.requires is not None)


def _option(label: str, tier: int, given: Settings, c: Check, **kw) -> Option:
    c = as_written(given, c, c.result.profile.default_gpu_memory_utilization)
    ch = changed_flags(given, c.settings)
    return Option(label or describe(ch), tier, c, c.meets, ch, **kw)


def _settle(model: Model, gpu: Gpu, profile: Profile, goals: Goals, pol: Policy, least: Check,
            keep: float, keep_as: float | None) -> Check:
    """The launch at `keep` (its own utilization, within the ceiling) when it still meets the goals there:
    the same change with more KV cache. `keep_as` is how the launch wrote it (None: vLLM's default)."""
    if least.utilization >= keep or keep > pol.ceiling:
        return least
    c = try_judge(model, gpu, replace(least.settings, gpu_memory_utilization=keep_as), profile, goals,
                  pol.headroom_bytes)
    return c if c is not None and c.meets else least


def what_if(model: Model, gpu: Gpu, settings: Settings, profile: Profile, as_given: Check) -> WhatIf:
    g = Goals()
    longest = None
    if as_given.result.layout.groups and settings.max_model_len != -1:
        n, _ = longest_length(model, gpu, settings, profile, g, 0)
        longest = n or None
    least = None
    if settings.kv_cache_memory_bytes is None and settings.device == "cuda":
        c, _ = least_utilization(model, gpu, settings, profile, g, 0, 1.0)
        least = c.utilization if c is not None else None
    return WhatIf(longest, least)


def plan(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals, *,
         gpu_count: int | None = None, catalog: tuple[Gpu, ...] = ()) -> Plan:
    """The answer for one launch on one GPU. `gpu_count`: GPUs like `gpu` present (None: unknown);
    `catalog`: GPUs a larger-GPU alternative may name."""
    with remembered():
        return _plan(model, gpu, settings, profile, goals, gpu_count, catalog)


def _plan(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals, gpu_count: int | None,
          catalog: tuple[Gpu, ...]) -> Plan:
    goals = goals.validate()
    settings = settings.validate()
    pol = policy_for(gpu, goals, settings.device, profile)
    as_given = judge(model, gpu, settings, profile, goals, pol.headroom_bytes if goals.active else 0)
    base = with_length(goals, settings)
    if base is not settings:                      # a context goal vLLM refuses outright is bad input
        resolve(model.arch, base, gpu, profile, model.config)
    hard = goals.context is not None
    notes: list[str] = []
    rec: Option | None = None
    H = pol.headroom_bytes

    if as_given.meets:
        rec = Option("as given", -1, as_given, True, {})
    else:
        cuda = settings.device == "cuda"
        pinned = settings.kv_cache_memory_bytes is not None
        if cuda and not pinned:
            best, _ = least_utilization(model, gpu, base, profile, goals, H, pol.ceiling)
            if best is not None:
                c = _settle(model, gpu, profile, goals, pol, best, as_given.utilization, settings.gpu_memory_utilization)
                rec = _option("", -1, settings, c, least_util=best.utilization)
        elif pinned or not cuda:
            # an explicit KV budget is the user's memory decision: keep it (fix only the startup check) and
            # shorten the length; grow the budget only when the length is a goal (--context) or auto-fit
            s0 = base
            if cuda and not as_given.result.startup_ok:     # vLLM still checks free memory >= total x util
                s0 = replace(base, gpu_memory_utilization=min(as_given.utilization, pol.ceiling))
            c = try_judge(model, gpu, s0, profile, goals, H)
            if c is not None and c.meets:
                rec = _option("", -1, settings, c)
            elif not hard and settings.max_model_len != -1:
                length, c = longest_length(model, gpu, s0, profile, goals, H)
                if length and c is not None:
                    rec = _option("", -1, settings, c, context=length)
                    notes.append(f"max_model_len {as_given.max_model_len:,} does not fit the KV budget; "
                                 f"{length:,} does")
            if rec is None:
                m = as_given.result.memory
                room = min(gpu.total_bytes, gpu.free_bytes or gpu.total_bytes)
                limit = room - m.weights_bytes - m.activation_bytes - m.cudagraph_bytes - m.non_torch_bytes - H \
                    if cuda else 1 << 42
                c = least_kv_budget(model, gpu, s0, profile, goals, H, limit)
                if c is not None and c.meets:
                    rec = _option("", -1, settings, c)
        if rec is None and cuda and not pinned and not hard and settings.max_model_len != -1:
            s = base if as_given.utilization <= pol.ceiling else replace(base, gpu_memory_utilization=pol.ceiling)
            length, c = longest_length(model, gpu, s, profile, goals, H)
            if length and c is not None:
                rec = _option("", -1, settings, c, context=length)
                notes.append(f"max_model_len {as_given.max_model_len:,} does not fit; {length:,} does")
    alts: tuple[Option, ...] = ()
    if not as_given.meets:
        ctx = Ctx(model, gpu, settings, replace(base, kv_cache_memory_bytes=None) if settings.device == "cuda"
                  else base, profile, goals, pol, as_given, hard, gpu_count, catalog, [])
        alts = alternatives(ctx)
        if rec is None:
            rec = next((a for a in alts if a.meets and a.requires is None), None) or \
                next((a for a in alts if a.meets), None)
            if rec is not None and rec.changes and not rec.other_model:
                rec = replace(rec, label=describe(rec.changes))      # every flag the command changes
    kv = _kv_pinned(model, gpu, profile, goals, pol, settings, rec) if rec is not None and rec.meets else None
    return Plan(goals, pol, as_given, rec, kv, alts, what_if(model, gpu, settings, profile, as_given), tuple(notes))


def _kv_pinned(model: Model, gpu: Gpu, profile: Profile, goals: Goals, pol: Policy, given: Settings,
               rec: Option) -> Option | None:
    """The recommended launch with the KV cache pinned by --kv-cache-memory-bytes: what its utilization gives
    the KV cache less the headroom, in whole MiB. vLLM then skips KV profiling, so the size cannot drift."""
    c = rec.check
    s = c.settings
    if s.device != "cuda" or not c.result.layout.groups or rec.other_model or c.gpu is not gpu:
        return None
    if s.kv_cache_memory_bytes is not None:
        return None
    kv = (c.result.memory.kv_available_bytes - c.headroom_bytes) // MiB * MiB
    if kv <= 0 or kv < c.kv_needed_bytes:
        return None
    p = try_judge(model, gpu, replace(s, kv_cache_memory_bytes=kv), profile, goals, pol.headroom_bytes)
    if p is None or not p.meets:
        return None
    return _option("", -1, given, p, requires=rec.requires)
