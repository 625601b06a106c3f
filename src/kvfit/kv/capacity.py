"""Bytes -> blocks -> vLLM's reported numbers (spec §4, §5), exactly as vLLM 0.32 computes them."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    if layout.bytes_per_block == 0:
        return 1                      # attention-free models: vLLM keeps one block, skips checks
    return max(0, available_bytes // layout.bytes_per_block)


def estimate_max_model_len(layout: KVLayout, ctx: RequestContext, check_bytes: int) -> int:
    """kv_cache_utils.py::_estimate_max_model_len_from_groups: binary search over [1, L]."""

    def fits(length: int) -> bool:
        return layout.bytes_per_request(replace(ctx, max_model_len=length)) <= check_bytes

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


def capacity(layout: KVLayout, ctx: RequestContext, available_bytes: int,
             num_gpu_blocks_override: int | None = None) -> Capacity:
    """The numbers vLLM computes once it knows the bytes available for KV on the fullest rank."""
    if num_gpu_blocks_override is not None and layout.bytes_per_block:
        available_bytes = num_gpu_blocks_override * layout.bytes_per_block
    blocks = num_blocks(layout, available_bytes)
    if not layout.groups:
        return Capacity(blocks, 0, float("inf"), 0, 0, True, 0, available_bytes, ctx.max_model_len)
    per_req = layout.blocks_per_request(ctx)
    check = available_bytes - layout.bytes_per_block          # the null block
    needed = layout.bytes_per_block * per_req
    fits = available_bytes > 0 and check > 0 and needed <= check
    estimate = ctx.max_model_len if fits else (estimate_max_model_len(layout, ctx, check) if check > 0 else 0)
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


def auto_fit(layout: KVLayout, ctx: RequestContext, available_bytes: int) -> int:
    """`--max-model-len -1`: the longest length at which exactly one request fits (§5.3); 0 if none."""
    check = available_bytes - layout.bytes_per_block
    if not layout.groups:
        return ctx.max_model_len
    if check <= 0:
        return 0
    return estimate_max_model_len(layout, ctx, check)
