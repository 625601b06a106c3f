"""One small frozen class per KV kind, mirroring vllm/v1/kv_cache_interface.py (0.32).

Each spec answers two questions the way vLLM's does: how many bytes one block takes on one rank
(`page_size_bytes`) and how many blocks one request at the current settings needs
(`blocks_per_request`, vLLM's cdiv(max_memory_usage_bytes, page_size_bytes)). Nothing else in
kvfit knows these formulas. The mamba state shapes mirror
model_executor/layers/mamba/mamba_utils.py::MambaStateShapeCalculator.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..errors import BadInput


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class RequestContext:
    """The vLLM settings a per-request cost depends on."""

    max_model_len: int
    max_num_batched_tokens: int
    max_in_flight_tokens: int           # max_concurrent_batches x max_num_batched_tokens
    extra_retained_tokens: int = 0      # max(0, num_prefill_lookahead_tokens - 1) with MTP
    num_speculative_blocks: int = 0     # mamba: num_speculative_tokens
    mamba_cache_mode: str = "none"      # "align" when prefix caching is on for hybrids
    decode_context_parallel_size: int = 1   # DCP: full/MLA attention tokens sharded over this many ranks


@dataclass(frozen=True)
class AttentionSpec:
    """Full attention (vLLM FullAttentionSpec): MHA, GQA, MQA. num_kv_heads is per rank."""

    block_size: int
    num_kv_heads: int
    head_size: int
    head_size_v: int
    dtype_bytes: int
    state_content_bytes: int | None = None   # packed formats set it (fp8_ds_mla: 656)
    page_size_padded: int | None = None

    kind = "full"

    @property
    def bytes_per_token(self) -> int:
        if self.state_content_bytes is not None:
            return self.num_kv_heads * self.state_content_bytes
        return self.num_kv_heads * (self.head_size + self.head_size_v) * self.dtype_bytes

    @property
    def real_page_size_bytes(self) -> int:
        return self.block_size * self.bytes_per_token

    @property
    def page_size_bytes(self) -> int:
        return self.page_size_padded if self.page_size_padded is not None else self.real_page_size_bytes

    def blocks_per_request(self, ctx: RequestContext) -> int:
        """FullAttentionSpec.max_memory_usage_bytes: with decode context parallel (dcp_sharded) each rank
        holds cdiv(max_model_len, DCP) of a request's tokens."""
        return cdiv(cdiv(ctx.max_model_len, ctx.decode_context_parallel_size), self.block_size)

    @property
    def type_key(self) -> tuple:
        """Specs with equal type_key can share one group (vLLM's UniformTypeKVCacheSpecs):
        the registry's uniform_type_base_spec, the block size, and is_uniform_with_collection."""
        return ("full", self.block_size)


@dataclass(frozen=True)
class SlidingWindowSpec(AttentionSpec):
    sliding_window: int = 0
    kind = "sliding"

    def blocks_per_request(self, ctx: RequestContext) -> int:
        """SlidingWindowSpec.max_admission_blocks_per_request."""
        tokens = min(self.sliding_window - 1 + ctx.extra_retained_tokens + ctx.max_in_flight_tokens,
                     ctx.max_model_len)
        return cdiv(tokens, self.block_size) + 1   # the window may start mid-block

    @property
    def type_key(self) -> tuple:
        return (self.kind, self.block_size, self.sliding_window)


@dataclass(frozen=True)
class ChunkedLocalAttentionSpec(AttentionSpec):
    attention_chunk_size: int = 0
    kind = "chunked"

    def blocks_per_request(self, ctx: RequestContext) -> int:
        tokens = min(self.attention_chunk_size + ctx.max_in_flight_tokens, ctx.max_model_len)
        return cdiv(tokens, self.block_size)

    @property
    def type_key(self) -> tuple:
        return (self.kind, self.block_size, self.attention_chunk_size)


@dataclass(frozen=True)
class MLAAttentionSpec(AttentionSpec):
    """One latent vector per token per layer (head_size_v = 0), not divided by TP. The
    DeepSeek-V3.2 indexer cache is one too (role "indexer": uint8, head index_head_dim + scales)."""

    role: str = "sparse"
    kind = "mla"

    @property
    def type_key(self) -> tuple:
        return ("full", self.block_size)     # MLAAttentionSpec is a FullAttentionSpec subclass


@dataclass(frozen=True)
class CrossAttentionSpec(AttentionSpec):
    """Encoder-decoder cross attention: sized by max_num_encoder_input_tokens (= mnbt)."""

    kind = "cross"

    def blocks_per_request(self, ctx: RequestContext) -> int:
        return cdiv(ctx.max_num_batched_tokens, self.block_size)

    @property
    def type_key(self) -> tuple:
        return (self.kind, self.block_size)


@dataclass(frozen=True)
class MambaSpec:
    """Fixed-size recurrent state (vLLM MambaSpec). page = sum of state tensors, maybe padded."""

    state_bytes: int
    block_size: int
    checkpoint_blocks: int = 0          # num_prefill_checkpoint_blocks: 1 for MambaMixer2
    page_size_padded: int | None = None
    mamba_type: str = "mamba"

    kind = "mamba"

    @property
    def bytes_per_token(self) -> int:
        return 0

    @property
    def page_size_bytes(self) -> int:
        return self.page_size_padded if self.page_size_padded is not None else self.state_bytes

    def blocks_per_request(self, ctx: RequestContext) -> int:
        if ctx.mamba_cache_mode == "align":
            return 2 + ctx.num_speculative_blocks + self.checkpoint_blocks
        return 1 + ctx.num_speculative_blocks

    @property
    def type_key(self) -> tuple:
        # MambaSpec.is_uniform_with_collection: same block, checkpoint blocks and page size.
        return (self.kind, self.block_size, self.checkpoint_blocks, self.page_size_bytes)


KVSpec = AttentionSpec | MambaSpec


# --- mamba state sizes (MambaStateShapeCalculator) ----------------------------------------------

def _divide(a: int, b: int, what: str) -> int:
    """vllm.distributed.divide: asserts the split is exact."""
    if a % b:
        raise BadInput(f"{what} ({a}) does not split over tensor parallel size {b}",
                       "vLLM asserts the mamba state divides evenly across TP ranks.")
    return a // b


# Which state tensors each mixer keeps, and which dtype each uses: "conv" (mamba_cache_dtype), "ssm"
# (mamba_ssm_cache_dtype) or "f32" (always float32); MambaStateDtypeCalculator.{mamba1,mamba2,
# gated_delta_net,short_conv,kda}_state_dtype. Kimi-Linear's KDA layer calls kda_state_dtype without the ssm
# dtype (model_executor/layers/mamba/gdn/kimi_gdn_linear_attn.py), so its recurrent state is float32.
# MiniMax's lightning linear attention keeps one state in mamba_cache_dtype
# (MambaStateDtypeCalculator.linear_attention_state_dtype, 0.10.1-0.23.0); PLaMo2's mixer takes mamba2_state_dtype.
MAMBA_STATE_DTYPES = {"mamba1": ("conv", "ssm"), "mamba2": ("conv", "ssm"), "gdn": ("conv", "ssm"),
                      "short_conv": ("conv",), "kda": ("conv", "f32"), "linear_attn": ("conv",),
                      "plamo2_mamba": ("conv", "ssm")}
# num_prefill_checkpoint_blocks of each mixer's MambaSpec (MambaMixer2.get_kv_cache_spec: 1 from 0.32.0,
# KVOptions.mamba2_checkpoint). MiniMax's and
# PLaMo2's mixers build their MambaSpec in MambaBase.get_kv_cache_spec (model_executor/layers/mamba/abstract.py,
# 0.15.0-0.26.0), which has no checkpoint blocks.
MAMBA_CHECKPOINT_BLOCKS = {"mamba1": 0, "mamba2": 1, "gdn": 0, "short_conv": 0, "kda": 0, "linear_attn": 0,
                           "plamo2_mamba": 0}
# Mixers whose conv state widens with speculative tokens (num_spec in the shape calculator).
MAMBA_SPEC_WIDENS = {"mamba2", "gdn", "short_conv", "kda"}


def mamba_state_shapes(kind: str, p: dict[str, int], tp: int, num_spec: int) -> tuple[tuple[int, ...], ...]:
    """The state tensors' shapes on one TP rank (conv state first); the conv state in vLLM's default "SD"
    orientation (state_len, dim) (get_conv_state_layout; the orientation does not change the bytes)."""
    if kind == "mamba1":
        d = _divide(p["d_inner"], tp, "mamba d_inner")
        return (p["d_conv"] - 1, d), (d, p["d_state"])
    if kind == "mamba2":
        groups = p["n_groups"] + (0 if p["n_groups"] % tp == 0 else tp - p["n_groups"])
        conv_dim = p["intermediate"] + 2 * groups * p["d_state"]
        return ((p["d_conv"] - 1 + num_spec, _divide(conv_dim, tp, "mamba2 conv dim")),
                (_divide(p["heads"], tp, "mamba2 heads"), p["head_dim"], p["d_state"]))
    if kind == "gdn":
        conv_dim = p["dk"] * p["nk"] * 2 + p["dv"] * p["nv"]
        return ((p["kernel"] - 1 + num_spec, _divide(conv_dim, tp, "GatedDeltaNet conv dim")),
                (_divide(p["nv"], tp, "GatedDeltaNet value heads"), p["dv"], p["dk"]))
    if kind == "short_conv":        # MambaStateShapeCalculator.short_conv_state_shape
        return ((p["kernel"] - 1 + num_spec, _divide(p["dim"], tp, "short conv dim")),)
    if kind == "linear_attn":       # MambaStateShapeCalculator.linear_attention_state_shape (MiniMax)
        return ((_divide(p["heads"], tp, "linear attention heads"), p["head_dim"], p["head_dim"]),)
    if kind == "plamo2_mamba":      # plamo2.py: mamba2_state_shape(n_groups=0), no num_spec passed
        return mamba_state_shapes("mamba2", p, tp, 0)
    if kind == "kda":               # MambaStateShapeCalculator.kda_state_shape (k heads = heads)
        conv_dim = 3 * p["heads"] * p["head_dim"]
        return ((p["kernel"] - 1 + num_spec, _divide(conv_dim, tp, "KDA conv dim")),
                (_divide(p["heads"], tp, "KDA heads"), p["head_dim"], p["head_dim"]))
    raise BadInput(f"mamba layer kind {kind!r} is not modelled")


def mamba_state_bytes(kind: str, p: dict[str, int], tp: int, num_spec: int, conv_bytes: int,
                      ssm_bytes: int) -> int:
    size = {"conv": conv_bytes, "ssm": ssm_bytes, "f32": 4}
    shapes = mamba_state_shapes(kind, p, tp, num_spec)
    return sum(prod(shape) * size[role] for shape, role in zip(shapes, MAMBA_STATE_DTYPES[kind]))
