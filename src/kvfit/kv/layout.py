"""From a ModelArch and settings to vLLM's KV cache groups on one rank (spec §1.10, §2.3, §2.4, §4.1).

`build_layout` mirrors, in order: per-layer spec construction (the model's get_kv_cache_spec), the
hybrid-manager promotion of local layers to full attention, `get_kv_cache_groups` (uniform spec,
uniform type, page-size unification, bucketing with padding layers) and
`_get_kv_cache_bytes_per_block`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..arch.model import AttentionLayer, MambaLayer, ModelArch
from ..errors import BadInput
from .specs import (AttentionSpec, ChunkedLocalAttentionSpec, CrossAttentionSpec, KVSpec,
                    MambaSpec, MLAAttentionSpec, RequestContext, SlidingWindowSpec, cdiv)


@dataclass(frozen=True)
class KVOptions:
    """Everything about the launch that shapes the KV layout (not the memory budget)."""

    block_size: int                      # resolved (user value or backend default)
    kv_dtype_bytes: int
    kv_cache_dtype: str = "auto"         # the resolved string, for packed formats (fp8_ds_mla)
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    hybrid_manager: bool = True          # False: sliding/chunked layers allocated as full attention
    disable_sliding_window: bool = False


@dataclass(frozen=True)
class Group:
    spec: KVSpec                         # representative spec (what the scheduler sees)
    layers: tuple[int, ...]              # layer indices in this group, on this rank
    size: int                            # layers the group is charged for (padding included)


@dataclass(frozen=True)
class KVLayout:
    groups: tuple[Group, ...]
    bytes_per_block: int                 # one block id across every group, on this rank
    block_size: int                      # the smallest group block size (what vLLM reports)
    padding_layers: int
    layers_on_rank: int
    kv_bytes_per_token: int              # sum over layers of per-token bytes on this rank (unpadded)
    uniform: bool                        # one group covering every layer

    def blocks_per_request(self, ctx: RequestContext) -> int:
        return sum(g.spec.blocks_per_request(ctx) for g in self.groups)

    def bytes_per_request(self, ctx: RequestContext) -> int:
        return self.bytes_per_block * self.blocks_per_request(ctx)


def pp_layer_range(num_layers: int, pp_rank: int, pp_size: int) -> tuple[int, int]:
    """vllm distributed/utils.py::get_pp_indices: the remainder goes to the stages before the last."""
    per = num_layers // pp_size
    parts = [per] * pp_size
    rem = num_layers % pp_size
    for i in range(2, rem + 2):
        parts[-i] += 1
    start = sum(parts[:pp_rank])
    return start, start + parts[pp_rank]


def kv_heads_per_rank(total: int, tp: int) -> int:
    """config/model.py::get_num_kv_heads: divided, but at least one (replicated once tp > heads)."""
    if total >= tp and total % tp:
        raise BadInput(f"{total} KV heads cannot be split over tensor parallel size {tp}",
                       "vLLM asserts the KV heads divide evenly; pick a tensor parallel size that divides them.")
    if total < tp and tp % total:
        raise BadInput(f"tensor parallel size {tp} is not a multiple of the {total} KV heads",
                       "vLLM replicates KV heads only when the TP size is a multiple of them.")
    return max(1, total // tp)


def layer_spec(layer: AttentionLayer | MambaLayer, opt: KVOptions) -> KVSpec:
    if isinstance(layer, MambaLayer):
        raise BadInput("mamba layers are not modelled yet")
    bs, dt = opt.block_size, opt.kv_dtype_bytes
    if layer.kind == "mla":
        packed = {"fp8_ds_mla": 656, "nvfp4_ds_mla": 352}.get(opt.kv_cache_dtype)
        return MLAAttentionSpec(bs, 1, layer.head_size, 0, dt, state_content_bytes=packed)
    heads = kv_heads_per_rank(layer.num_kv_heads, opt.tensor_parallel_size)
    args = (bs, heads, layer.head_size, layer.head_size_v, dt)
    if layer.kind == "sliding" and not opt.disable_sliding_window:
        if not opt.hybrid_manager:
            return AttentionSpec(*args)
        return SlidingWindowSpec(*args, sliding_window=layer.window or 0)
    if layer.kind == "chunked" and opt.hybrid_manager:
        return ChunkedLocalAttentionSpec(*args, attention_chunk_size=layer.chunk or 0)
    if layer.kind == "cross":
        return CrossAttentionSpec(*args)
    return AttentionSpec(*args)


def _unify_page_size(specs: dict[int, KVSpec]) -> dict[int, KVSpec]:
    """kv_cache_utils.py::unify_kv_cache_spec_page_size."""
    pages = {s.page_size_bytes for s in specs.values()}
    if len(pages) <= 1:
        return specs
    top = max(pages)
    out: dict[int, KVSpec] = {}
    for i, s in specs.items():
        if s.page_size_bytes == top:
            out[i] = s
        elif isinstance(s, MambaSpec):
            out[i] = replace(s, page_size_padded=top)
        elif top % s.page_size_bytes == 0:
            out[i] = replace(s, block_size=s.block_size * (top // s.page_size_bytes))
        elif not isinstance(s, MLAAttentionSpec):
            out[i] = replace(s, page_size_padded=top)
        else:
            raise BadInput("vLLM cannot unify this model's KV page sizes (MLA page not a divisor)")
    return out


def build_layout(arch: ModelArch, opt: KVOptions, pp_rank: int = 0) -> KVLayout:
    start, end = pp_layer_range(arch.num_hidden_layers, pp_rank, opt.pipeline_parallel_size)
    layers = [x for x in arch.layers if start <= x.index < end]
    specs = {i: layer_spec(x, opt) for i, x in enumerate(layers)}
    per_token = sum(s.bytes_per_token for s in specs.values() if isinstance(s, AttentionSpec))
    if not specs:
        return KVLayout((), 0, opt.block_size, 0, 0, 0, True)

    values = list(specs.values())
    if all(v == values[0] for v in values):
        # is_kv_cache_spec_uniform: one group, every layer's page.
        g = Group(values[0], tuple(specs), len(specs))
        return KVLayout((g,), len(specs) * values[0].page_size_bytes, values[0].block_size, 0,
                        len(specs), per_token, True)
    keys = {v.type_key for v in values}
    if len(keys) == 1:
        # UniformTypeKVCacheSpecs: one group whose page is the sum of the per-layer pages.
        bpb = sum(v.page_size_bytes for v in values)
        g = Group(values[0], tuple(specs), len(specs))
        return KVLayout((g,), bpb, values[0].block_size, 0, len(specs), per_token, True)

    unified = _unify_page_size(specs)
    buckets: dict[KVSpec, list[int]] = {}
    for i, s in unified.items():
        buckets.setdefault(s, []).append(i)
    sizes = [len(v) for v in buckets.values()]
    group_size = min(sizes)
    if max(sizes) < min(sizes) * 1.5:
        group_size = max(sizes)
    groups: list[Group] = []
    padding = 0
    for spec, idx in buckets.items():
        n = cdiv(len(idx), group_size)
        pad = group_size - len(idx) % group_size
        if pad != group_size:
            padding += pad
        for k in range(n):
            groups.append(Group(spec, tuple(idx[k::n]), group_size))
    page = next(iter(unified.values())).page_size_bytes
    return KVLayout(tuple(groups), group_size * page, min(g.spec.block_size for g in groups),
                    padding, len(specs), per_token, False)
