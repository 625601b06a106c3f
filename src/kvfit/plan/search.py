"""The one search behind every recommendation: the least utilization, the longest length, the least KV
budget that meet the goals. Each probe is a full plan.goals.judge (plan.evaluate underneath), so every
answer is re-checked by construction. Used by the planner, sweep, explain and smoke alike.
"""

from __future__ import annotations

from dataclasses import replace

from ..gpu.model import Gpu
from ..memory.profiles import Profile
from ..settings import Settings, replaced
from ..units import MiB
from .evaluate import Model, derived_length
from .goals import Check, Goals, try_judge


def least_utilization(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals, headroom: int,
                      top: float) -> tuple[Check | None, Check | None]:
    """The smallest gpu_memory_utilization (0.01 steps, at most `top`) at which the launch meets the goals
    with `headroom`, and the check at `top` (None when vLLM refuses the settings there)."""
    base = replace(settings, kv_cache_memory_bytes=None)
    if top < 0.01:
        return None, None
    at_top = try_judge(model, gpu, replaced(base, gpu_memory_utilization=top), profile, goals, headroom)
    if at_top is None or not at_top.meets:
        return None, at_top
    lo, hi, best = 1, round(top * 100), at_top
    while lo < hi:
        mid = (lo + hi) // 2
        c = try_judge(model, gpu, replaced(base, gpu_memory_utilization=mid / 100), profile, goals, headroom)
        if c is not None and c.meets:
            hi, best = mid, c
        else:
            lo = mid + 1
    return best, at_top


def longest_length(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals,
                   headroom: int) -> tuple[int, Check | None]:
    """The longest max_model_len (up to the model's derived limit) at which the goal's sequences fit with
    `headroom`, exact to the token; (0, None) when not even one token does."""
    g = replace(goals, context=None)
    top = derived_length(model.arch, settings, profile, model.config)[0]

    def ok(length: int) -> Check | None:
        c = try_judge(model, gpu, replaced(settings, max_model_len=length), profile, g, headroom)
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
    return best if best is not None else (0, None)


def least_kv_budget(model: Model, gpu: Gpu, settings: Settings, profile: Profile, goals: Goals,
                    headroom: int, limit: int) -> Check | None:
    """The smallest --kv-cache-memory-bytes (whole MiB, at most `limit`) at which the launch meets the goals;
    None when even `limit` does not."""
    def ok(n_mib: int) -> Check | None:
        c = try_judge(model, gpu, replaced(settings, kv_cache_memory_bytes=n_mib * MiB), profile, goals, headroom)
        return c if c is not None and c.meets else None

    hi = limit // MiB
    if hi < 1 or ok(hi) is None:
        return None
    lo, best = 1, ok(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        c = ok(mid)
        if c is not None:
            hi, best = mid, c
        else:
            lo = mid + 1
    return best
