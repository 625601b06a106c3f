"""Bytes -> blocks -> vLLM's reported numbers (spec §4, §5), exactly as vLLM 0.32 computes them.

v1/core/kv_cache_utils.py::get_kv_cache_configs: every pipeline stage divides its memory by its
own bytes per block and the smallest count wins; the null block is held back from the check
and from auto-fit; the report is int(num_blocks / blocks_per_request * max_model_len).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import replaced

from .layout import KVLayout
from .specs import RequestContext


@dataclass(frozen=True)
class Capacity:
    num_blocks: int                  # includes vLLM's null block
    blocks_per_request: int          # at max_model_len, summed over groups
    max_concurrency: float           # num_blocks / blocks_per_request (what vLLM prints with :.2f)
    kv_cache_tokens: int             # int(max_concurrency * max_model_len), vLLM's "KV cache size"
    kv_cache_bytes: int              # num_blocks * bytes_per_block actually allocated
    fits: bool                       # one request at max_model_len fits beside the null block
    needed_bytes: int                # bytes one request at max_model_len needs
    check_bytes: int                 # available minus the null block (what vLLM compares with)
    max_model_len_fit: int           # vLLM's estimate: the longest length one request fits at (0: none)


def num_blocks(layout: KVLayout, available_bytes: int) -> int:
    """get_kv_cache_config_from_groups per stage, then the minimum over stages (1 with no KV layers:
    BlockPool's null block)."""
    sizes = [bpb for bpb in layout.ranks if bpb]
    if not layout.groups or not sizes:
        return 1
    return min(max(0, available_bytes // bpb) for bpb in sizes)


def _estimate(layout: KVLayout, ctx: RequestContext, check_bytes: int, bpb: int) -> int:
    """kv_cache_utils.py::_estimate_max_model_len_from_groups: binary search over [1, L]."""

    def fits(length: int) -> bool:
        return bpb * layout.blocks_per_request(replaced(ctx, max_model_len=length)) <= check_bytes

    left, right = 1, ctx.max_model_len
    if not fits(left):
        return 0
    result = 1
    while left <= right:
        mid = (left + right) // 2
        if fits(mid):
            result, left = mid, mid + 1
        else:
            right = mid - 1
    return result


def estimate_max_model_len(layout: KVLayout, ctx: RequestContext, check_bytes: int) -> int:
    """The estimate on the fullest stage (the one every stage's check is bounded by)."""
    return _estimate(layout, ctx, check_bytes, layout.bytes_per_block)


def _rank_budgets(layout: KVLayout, available_bytes: int, override: int | None,
                  whole_model: bool = False) -> list[tuple[int, int]]:
    """(bytes per block, available bytes) per stage holding KV layers, in stage order. `whole_model`
    (0.14-0.16 under pipeline parallelism): the check and auto-fit charge the whole model's groups
    against the smallest stage's memory (kv_cache_utils.py::get_kv_cache_configs, `min(available_memory)`
    with the global groups), one budget."""
    if whole_model and len([b for b in layout.ranks if b]) > 1 and layout.model_bytes_per_block:
        bpb = layout.model_bytes_per_block
        return [(bpb, override * max(layout.ranks) if override is not None else available_bytes)]
    out = []
    for bpb in layout.ranks:
        if not bpb:
            continue
        avail = override * bpb if override is not None else available_bytes
        out.append((bpb, avail))
    return out


def capacity(layout: KVLayout, ctx: RequestContext, available_bytes: int,
             num_gpu_blocks_override: int | None = None, null_block: bool = True,
             whole_model_check: bool = False) -> Capacity:
    """The numbers vLLM computes once it knows the bytes available for KV on every rank.

    `null_block`: the check holds back BlockPool's null block (0.29+: memory/profiles.py
    kv_layout_rule); before, the whole budget is compared with one request's need."""
    if not layout.groups or not layout.bytes_per_block:
        return Capacity(1, 0, float("inf"), 0, 0, True, 0, available_bytes, ctx.max_model_len)
    budgets = _rank_budgets(layout, available_bytes, num_gpu_blocks_override)
    blocks = min(max(0, avail // bpb) for bpb, avail in budgets)
    per_req = layout.blocks_per_request(ctx)
    if whole_model_check:
        budgets = _rank_budgets(layout, available_bytes, num_gpu_blocks_override, whole_model=True)
    # _check_enough_kv_cache_memory runs stage by stage and raises at the first that fails.
    fits, estimate = True, ctx.max_model_len
    first = budgets[0][0] if budgets else layout.bytes_per_block
    needed = first * per_req
    held = 1 if null_block else 0
    check = (budgets[0][1] if budgets else available_bytes) - held * first
    for bpb, avail in budgets:
        c = avail - held * bpb
        if c <= 0:
            fits, estimate, needed, check = False, 0, bpb * per_req, c
            break
        if bpb * per_req > c:
            fits, estimate, needed, check = False, _estimate(layout, ctx, c, bpb), bpb * per_req, c
            break
    concurrency = blocks / per_req
    return Capacity(
        num_blocks=blocks,
        blocks_per_request=per_req,
        max_concurrency=concurrency,
        kv_cache_tokens=int(concurrency * ctx.max_model_len),
        kv_cache_bytes=blocks * layout.bytes_per_block,
        fits=fits,
        needed_bytes=needed,
        check_bytes=check,
        max_model_len_fit=estimate,
    )


def auto_fit(layout: KVLayout, ctx: RequestContext, available_bytes: int,
             num_gpu_blocks_override: int | None = None, null_block: bool = True,
             whole_model_check: bool = False) -> int:
    """`--max-model-len -1`: the longest length at which exactly one request fits on every stage
    (_auto_fit_max_model_len, §5.3); 0 if none."""
    if not layout.groups or not layout.bytes_per_block:
        return ctx.max_model_len
    best = ctx.max_model_len
    for bpb, avail in _rank_budgets(layout, available_bytes, num_gpu_blocks_override, whole_model_check):
        check = avail - (bpb if null_block else 0)
        best = min(best, _estimate(layout, ctx, check, bpb) if check > 0 else 0)
    return best
