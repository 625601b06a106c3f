"""From a ModelArch and settings to vLLM's KV cache groups (spec §1.9, §1.10, §2.3, §2.4, §4.1).

`build_layout` mirrors, in order:
  1. the hybrid block-size alignment (platforms/interface.py::_align_hybrid_block_size): the
     attention block grows until its page holds a mamba state, the mamba page is padded to it;
  2. per-layer spec construction (each module's get_kv_cache_spec), for the whole model;
  3. v1/core/kv_cache_utils.py::get_kv_cache_groups on the merged specs of every worker:
     the promotion of local layers to full attention when the hybrid manager is off,
     uniform spec, uniform type, page-size unification, bucketing with padding layers;
  4. _project_kv_cache_groups_to_worker and _get_kv_cache_bytes_per_block for every pipeline
     stage: each stage divides its memory by its own bytes per block, the minimum wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import lcm

from ..arch.model import AttentionLayer, MambaLayer, ModelArch
from ..errors import BadInput
from .specs import (MAMBA_CHECKPOINT_BLOCKS, MAMBA_SPEC_WIDENS, AttentionSpec, ChunkedLocalAttentionSpec,
                    CrossAttentionSpec, KVSpec, MambaSpec, MLAAttentionSpec, RequestContext, SlidingWindowSpec, cdiv,
                    mamba_state_bytes)

# Packed MLA formats (mla_attention.py::MLAAttention.get_kv_cache_spec, state_content_bytes).
MLA_PACKED_BYTES = {"fp8_ds_mla": 656, "nvfp4_ds_mla": 352}


@dataclass(frozen=True)
class KVOptions:
    """Everything about the launch that shapes the KV layout (not the memory budget)."""

    block_size: int                      # cache_config.block_size before the hybrid alignment
    kv_dtype_bytes: int
    kv_cache_dtype: str = "auto"         # the resolved string, for packed formats (fp8_ds_mla)
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    hybrid_manager: bool = True          # False: sliding/chunked layers allocated as full attention
    disable_sliding_window: bool = False
    kernel_block_base: int = 16          # smallest kernel block of the attention backend (CPU 32)
    mamba_cache_mode: str = "none"       # "align" when prefix caching is on
    mamba_conv_bytes: int = 2            # mamba_cache_dtype (auto: model dtype)
    mamba_ssm_bytes: int = 2             # mamba_ssm_cache_dtype
    num_speculative_tokens: int = 0      # widens mamba2/GDN conv states
    max_model_len: int = 0               # mamba block size when prefix caching is off
    mtp_layers: int = 0                  # --speculative-config method mtp: the model's MTP layers
    mamba_align_block: int = 16          # cache block size when MambaModelConfig ran (before the platform's)
    # vLLM 0.33, GDN hybrids with the FlashInfer GDN prefill kernel in align mode
    # (memory/profiles.py::gdn_checkpoint_alignment): 64, else 0. The hybrid block alignment becomes
    # lcm(alignment, 64) and each GDN MambaSpec has num_prefill_checkpoint_blocks=1.
    gdn_checkpoint_alignment: int = 0
    # The release's layout rules (memory/profiles.py::kv_layout_rule); the defaults are 0.32's.
    full_attention_only: bool = False    # V0, V1 0.8.0-0.8.2: sliding and chunked layers charged as full
    chunked_as_full: bool = False        # before 0.10.0: chunked local attention is full attention
    group_ratio: float = 1.5             # group size rule: 0 = smallest type's count (0.9.1-0.11)
    mla_align_elems: int = 0             # V0 0.7.2-0.7.3: MLA entry rounded up to this many values
    hybrid_align_fixed: bool = False     # before 0.20: hybrid alignment 16 tokens whatever --block-size says
    hybrid_align_tokens: int = 16        # that alignment: 32 for head size 256 on Blackwell with FlashInfer (0.11.1-0.17)
    mamba2_checkpoint: bool = True       # 0.32+: MambaMixer2's prefill checkpoint block (before: none)


@dataclass(frozen=True)
class Group:
    spec: KVSpec                         # representative spec (what the scheduler sees)
    layers: tuple[int, ...]              # positions in the model's KV layer list
    size: int                            # layers the group is charged for (padding included)
    specs: tuple[KVSpec, ...] = ()       # per-layer specs (their pages add up in one block)


@dataclass(frozen=True)
class KVLayout:
    groups: tuple[Group, ...]
    bytes_per_block: int                 # one block id across every group, on the fullest rank
    block_size: int                      # the smallest group block size (what vLLM reports)
    padding_layers: int
    layers_on_rank: int                  # KV layers on the fullest rank
    kv_bytes_per_token: int              # sum over attention layers of per-token bytes there (unpadded)
    uniform: bool                        # one group covering every layer
    rank_bytes_per_block: tuple[int, ...] = ()   # per pipeline stage, in stage order
    attention_block_size: int = 0        # cache_config.block_size after the hybrid alignment
    mamba_page_padding: float = 0.0      # percent vLLM logs when it pads the mamba page
    model_bytes_per_block: int = 0       # one block across every group for the whole model (all stages)

    def blocks_per_request(self, ctx: RequestContext) -> int:
        """get_max_concurrency_for_kv_cache_config: sum over groups of each group's blocks."""
        return sum(g.spec.blocks_per_request(ctx) for g in self.groups)

    def bytes_per_request(self, ctx: RequestContext) -> int:
        return self.bytes_per_block * self.blocks_per_request(ctx)

    @property
    def ranks(self) -> tuple[int, ...]:
        return self.rank_bytes_per_block or (self.bytes_per_block,)


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


def _mla_bytes_per_token(opt: KVOptions, head: int) -> int:
    packed = MLA_PACKED_BYTES.get(opt.kv_cache_dtype)
    return packed if packed is not None else head * opt.kv_dtype_bytes


def mamba_page_bytes(layer: MambaLayer, opt: KVOptions, *, model_shape: bool = False) -> int:
    """One state's bytes as the layer's get_kv_cache_spec sizes it; model_shape: as the model class's
    get_mamba_state_shape_from_config does (the hybrid alignment reads that one; LFM2's leaves the
    speculative tokens out of the short-conv state, lfm2.py / lfm2_moe.py)."""
    spec = opt.num_speculative_tokens if layer.kind in MAMBA_SPEC_WIDENS else 0
    if model_shape and layer.kind == "short_conv":
        spec = 0
    return mamba_state_bytes(layer.kind, dict(layer.params), opt.tensor_parallel_size, spec,
                             opt.mamba_conv_bytes, opt.mamba_ssm_bytes)


def align_hybrid_block_size(arch: ModelArch, opt: KVOptions) -> tuple[int, int | None, float]:
    """platforms/interface.py::_align_hybrid_block_size: (attention block size, padded mamba page, %).

    The attention page of one token uses the model-level KV heads and head size
    (ModelConfig.get_num_kv_heads / get_head_size); the mamba page is the model's state size.
    """
    if not arch.is_hybrid:
        return opt.block_size, None, 0.0
    if arch.use_mla:
        attn_1 = _mla_bytes_per_token(opt, arch.head_size)
    else:
        heads = kv_heads_per_rank(arch.num_kv_heads, opt.tensor_parallel_size)
        attn_1 = heads * 2 * arch.head_size * opt.kv_dtype_bytes
    mamba_page = max(mamba_page_bytes(x, opt, model_shape=True) for x in arch.mamba_layers)
    if opt.hybrid_align_fixed and not arch.use_mla:
        # < 0.20 (profiles.KVLayoutRule.hybrid_align_fixed): models/config.py::HybridAttentionMambaModelConfig
        # aligns to 16 tokens on every platform (32: profiles.flashinfer_hd256_needs_32); the user's
        # --block-size only wins when it is larger.
        a = opt.hybrid_align_tokens
        block = max(opt.block_size, a * cdiv(mamba_page, a * attn_1))
        attn_page = block * attn_1
        return (block, None, 0.0) if attn_page == mamba_page else \
            (block, attn_page, 100 * (attn_page - mamba_page) / mamba_page)
    align = max(opt.kernel_block_base, opt.block_size)
    if arch.use_mla:
        align = max(align, 128)
    if opt.mamba_cache_mode == "align" and opt.gdn_checkpoint_alignment:
        align = lcm(align, opt.gdn_checkpoint_alignment)      # 0.33: checkpoints land on block boundaries
    size = align * cdiv(mamba_page, align * attn_1)
    size = opt.kernel_block_base * cdiv(size, opt.kernel_block_base)
    block = max(opt.block_size, size)
    attn_page = block * attn_1
    if attn_page == mamba_page:
        return block, None, 0.0
    return block, attn_page, 100 * (attn_page - mamba_page) / mamba_page


def layer_spec(layer: AttentionLayer | MambaLayer, opt: KVOptions, block_size: int,
               mamba_block: int = 0, mamba_padded: int | None = None) -> KVSpec:
    """The spec one module's get_kv_cache_spec returns on one rank."""
    if isinstance(layer, MambaLayer):
        checkpoint = MAMBA_CHECKPOINT_BLOCKS.get(layer.kind, 0)
        if layer.kind == "mamba2" and not opt.mamba2_checkpoint:
            checkpoint = 0                                      # < 0.32 (profiles.KVLayoutRule)
        if layer.kind == "gdn" and opt.gdn_checkpoint_alignment and opt.mamba_cache_mode == "align":
            checkpoint = 1                                      # 0.33 qwen_gdn_linear_attn.py
        return MambaSpec(mamba_page_bytes(layer, opt), mamba_block, checkpoint, mamba_padded, layer.kind)
    bs, dt = block_size, opt.kv_dtype_bytes
    if layer.kind == "mla":
        packed = MLA_PACKED_BYTES.get(opt.kv_cache_dtype)
        head = layer.head_size
        if opt.mla_align_elems:         # V0 0.7.2-0.7.3 cache_engine.py: align_to_256bytes(entry, model dtype)
            head = cdiv(head, opt.mla_align_elems) * opt.mla_align_elems
        return MLAAttentionSpec(bs, 1, head, 0, dt, state_content_bytes=packed)
    if layer.kind == "indexer":     # DeepseekV32IndexerCache: uint8, no packing
        return MLAAttentionSpec(bs, 1, layer.head_size, 0, 1, role="indexer")
    heads = kv_heads_per_rank(layer.num_kv_heads, opt.tensor_parallel_size)
    args = (bs, heads, layer.head_size, layer.head_size_v, dt)
    if opt.full_attention_only and layer.kind in ("sliding", "chunked"):
        return AttentionSpec(*args)
    if layer.kind == "sliding" and not opt.disable_sliding_window:
        # attention.py: the window layer picks the largest kernel block within the primary page.
        base = opt.kernel_block_base
        sw_bs = max(base, bs // base * base)
        return SlidingWindowSpec(sw_bs, *args[1:], sliding_window=layer.window or 0)
    if layer.kind == "chunked" and not opt.chunked_as_full:
        return ChunkedLocalAttentionSpec(*args, attention_chunk_size=layer.chunk or 0)
    if layer.kind == "cross":
        return CrossAttentionSpec(*args)
    return AttentionSpec(*args)


def _promote_local(specs: dict[int, KVSpec]) -> dict[int, KVSpec]:
    """kv_cache_utils.py::_promote_local_kv_cache_specs (hybrid manager off)."""
    values = list(specs.values())
    if _uniform(values) or _uniform_type(values):
        return specs
    has_full = any(type(s) in (AttentionSpec, MLAAttentionSpec) for s in values)
    local = any(isinstance(s, (SlidingWindowSpec, ChunkedLocalAttentionSpec)) for s in values)
    full_bs = {s.block_size for s in values if type(s) in (AttentionSpec, MLAAttentionSpec)}
    out = dict(specs)
    if has_full and local:
        bs = next(iter(full_bs)) if len(full_bs) == 1 else None
        for i, s in specs.items():
            if isinstance(s, (SlidingWindowSpec, ChunkedLocalAttentionSpec)):
                out[i] = AttentionSpec(bs or s.block_size, s.num_kv_heads, s.head_size, s.head_size_v,
                                       s.dtype_bytes, s.state_content_bytes)
    if not (_uniform(list(out.values())) or _uniform_type(list(out.values()))):
        raise BadInput("with the hybrid KV cache manager disabled vLLM cannot serve this model "
                       "(\"Failed to promote local KV cache specs to one unified type\")",
                       "Hybrid mamba models need the hybrid KV cache manager.")
    return out


def _uniform(values: list[KVSpec]) -> bool:
    return all(v == values[0] for v in values)


def _uniform_type(values: list[KVSpec]) -> bool:
    return len({v.type_key for v in values}) == 1


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


def model_kv_layers(arch: ModelArch, opt: KVOptions) -> list[AttentionLayer | MambaLayer]:
    """The model's KV layers, plus its MTP module's when MTP speculative decoding is on.

    An MTP layer (DeepSeek nextn, Qwen3-Next/3.5 mtp) is a decoder layer with the model's main
    attention (full or MLA); DeepSeek-V3.2 MTP layers always build an indexer
    (models/deepseek_v32/attention.py). They register after the target's layers.
    """
    layers = list(arch.layers)
    template = next((x for x in arch.attention_layers if x.kind in ("full", "mla") and not x.draft), None)
    if opt.mtp_layers and template is not None:
        indexer = next((x for x in arch.attention_layers if x.kind == "indexer"), None)
        for k in range(opt.mtp_layers):
            index = arch.num_hidden_layers + k
            layers.append(replace(template, index=index, draft=True))
            if indexer is not None:
                layers.append(replace(indexer, index=index, draft=True))
    return layers


def _stage_of(layer: AttentionLayer | MambaLayer, arch: ModelArch, pp: int) -> int:
    if layer.draft:
        return pp - 1
    for rank in range(pp):
        start, end = pp_layer_range(arch.num_hidden_layers, rank, pp)
        if start <= layer.index < end:
            return rank
    return pp - 1


def build_layout(arch: ModelArch, opt: KVOptions) -> KVLayout:
    """vLLM's KV cache groups for the whole model and each pipeline stage's bytes per block."""
    layers = model_kv_layers(arch, opt)
    block, mamba_padded, padding_pct = align_hybrid_block_size(arch, opt)
    # models/config.py::MambaModelConfig: prefix caching on -> mamba_block_size = cache block size as
    # it is then (the user's or 16; hybrids re-align it to the attention block), off -> max_model_len.
    if opt.mamba_cache_mode == "align":
        mamba_block = block if arch.is_hybrid else opt.mamba_align_block
    else:
        mamba_block = opt.max_model_len
    if not layers:
        return KVLayout((), 0, block, 0, 0, 0, True, (0,) * opt.pipeline_parallel_size, block)
    specs: dict[int, KVSpec] = {i: layer_spec(x, opt, block, mamba_block, mamba_padded)
                                for i, x in enumerate(layers)}
    if not opt.hybrid_manager:
        specs = _promote_local(specs)
    pp = opt.pipeline_parallel_size
    stage = [_stage_of(x, arch, pp) for x in layers]

    values = list(specs.values())
    if _uniform(values) or _uniform_type(values):
        # one group: is_kv_cache_spec_uniform, or UniformTypeKVCacheSpecs (pages add up)
        groups = (Group(values[0], tuple(specs), len(specs), tuple(values)),)
        padding = 0
    else:
        unified = _unify_page_size(specs)
        buckets: dict[KVSpec, list[int]] = {}
        for i, s in unified.items():
            buckets.setdefault(s, []).append(i)
        sizes = [len(v) for v in buckets.values()]
        group_size = min(sizes)
        if opt.group_ratio and max(sizes) < min(sizes) * opt.group_ratio:
            group_size = max(sizes)
        grouped: list[Group] = []
        padding = 0
        for spec, idx in buckets.items():
            n = cdiv(len(idx), group_size)
            pad = group_size - len(idx) % group_size
            if pad != group_size:
                padding += pad
            for k in range(n):
                members = tuple(idx[k::n])
                grouped.append(Group(spec, members, group_size, tuple(spec for _ in members)))
        groups = tuple(grouped)
        specs = unified

    # _get_kv_cache_bytes_per_block per stage: the largest group's sum of its layers' pages there.
    rank_bpb = []
    for rank in range(pp):
        rank_bpb.append(max(sum(specs[i].page_size_bytes for i in g.layers if stage[i] == rank)
                            for g in groups))
    model_bpb = max(sum(specs[i].page_size_bytes for i in g.layers) for g in groups)
    fullest = max(range(pp), key=lambda r: rank_bpb[r])
    on_rank = [i for i in specs if stage[i] == fullest]
    per_token = sum(specs[i].bytes_per_token for i in on_rank if isinstance(specs[i], AttentionSpec))
    return KVLayout(
        groups=groups,
        bytes_per_block=rank_bpb[fullest],
        block_size=min(g.spec.block_size for g in groups),
        padding_layers=padding,
        layers_on_rank=len(on_rank),
        kv_bytes_per_token=per_token,
        uniform=len(groups) == 1,
        rank_bytes_per_block=tuple(rank_bpb),
        attention_block_size=block,
        mamba_page_padding=padding_pct,
        model_bytes_per_block=model_bpb,
    )
