"""Weights as vLLM holds them on one GPU: parameter counts times the load dtype, tensor by tensor.

What vLLM does when it loads a checkpoint, and what this module reproduces:

* Floating tensors are cast to the load dtype (orpheus ships float32 shards yet loads bf16).
  Integer / packed / fp8 tensors (AWQ and GPTQ int32 packs, FP8, MXFP4 and bitsandbytes uint8 blocks,
  compressed-tensors int8) keep their storage size. In a quantized checkpoint the float32 tensors are
  scales (FP8 `weight_scale`, `weight_scale_inv`, `input_scale`): vLLM creates those parameters as
  float32, so they stay 4 bytes (PerTensorScaleParameter / BlockQuantScaleParameter).
* The embedding and the LM head are VocabParallelEmbedding / ParallelLMHead
  (model_executor/layers/vocab_parallel_embedding.py): the vocabulary is padded to a multiple of 64
  (DEFAULT_VOCAB_PADDING_SIZE) and split evenly over the TP ranks. Tied embeddings are one tensor.
* Decoder layers are split over TP (column/row parallel); KV heads are replicated once TP exceeds
  them, so each rank then holds one whole KV head of k_proj and v_proj. Norms are replicated.
* Under PP each stage holds its layers (distributed/utils.py::get_pp_indices); the first stage holds
  the embedding, the last the final norm and LM head, and with tied embeddings the last stage holds
  its own copy of the embedding to tie to.
* The rotary cos_sin_cache buffer ([max_position, rotary_dim] in the model dtype, one per distinct
  rope, shared by all layers through get_rope's cache) is allocated during load and counted in
  "Model loading took X GiB": orpheus 6.1486 GiB of bf16 parameters (vocab padding included) + 32 MiB
  rope = 6.1799 GiB; vLLM logged 6.1800 (calibration gt-021).
* `--cpu-offload-gb` moves parameters to CPU one at a time, in layer order, until the budget is
  reached (model_executor/offloader/uva.py::_maybe_offload_to_cpu): the GPU keeps the rest.
* LoRA (`--enable-lora`): every LoRA-wrapped linear preallocates `max_loras` slots of A [rank, in]
  and B [out, rank] per output slice in the model dtype (lora/layers/base_linear.py::create_lora_weights);
  column-parallel layers keep A whole and shard B, row-parallel layers shard A and keep B whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.model import AttentionLayer, ModelArch

# safetensors dtype name -> bytes per element
STORAGE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}
FLOATING = {"F64", "F32", "F16", "BF16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
VOCAB_PADDING = 64                     # vocab_parallel_embedding.py::DEFAULT_VOCAB_PADDING_SIZE
# Learned or ALiBi positions: no rotary buffer (vLLM's OPT, GPT-2, BLOOM, MPT, GPTBigCode models).
NO_ROPE = {"opt", "gpt2", "bloom", "mpt", "gpt_bigcode"}
QUANTIZED_STORAGE = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "I32", "I16", "I8", "U8", "U16", "U32", "F4",
                     "F6_E2M3", "F6_E3M2"}


@dataclass(frozen=True)
class Inventory:
    """Parameter counts per safetensors storage dtype, and where they came from."""

    params_by_dtype: dict[str, int]
    source: str                  # "safetensors headers" | "Hub metadata" | "catalog" | "estimated from architecture"
    estimated: bool = False

    @property
    def total_params(self) -> int:
        return sum(self.params_by_dtype.values())


def is_quantized(inv: Inventory, arch: ModelArch | None = None) -> bool:
    """A checkpoint whose weights keep a quantized storage format (then float32 tensors are scales)."""
    if arch is not None and arch.quantization:
        return True
    return any(d in QUANTIZED_STORAGE and n > 0 for d, n in inv.params_by_dtype.items())


def loaded_bytes(inv: Inventory, load_dtype: str, quantized: bool | None = None) -> int:
    """Bytes of all checkpoint tensors once loaded (before sharding or padding)."""
    per = DTYPE_BYTES[load_dtype]
    if quantized is None:
        quantized = is_quantized(inv)
    total = 0.0
    for dtype, count in inv.params_by_dtype.items():
        if dtype == "F32" and quantized:
            total += count * 4                       # scales stay float32
        elif dtype in FLOATING:
            total += count * per
        else:
            total += count * STORAGE_BYTES.get(dtype, 1)
    return int(total)


def pad_vocab(vocab: int, pad_to: int = VOCAB_PADDING) -> int:
    """vocab_parallel_embedding.py::pad_vocab_size."""
    return ((vocab + pad_to - 1) // pad_to) * pad_to


def rotary_cache_bytes(arch: ModelArch, load_dtype: str) -> int:
    """vLLM's RotaryEmbedding cos_sin_cache buffer: [max_position, rotary_dim] in the model dtype.

    One instance is shared by all layers (get_rope caches it). Orpheus: 131072 x 128 x 2 B = 32 MiB,
    the difference between its 6.1486 GiB of bf16 parameters and the logged 6.1800 GiB (calibration
    gt-021); Llama-3.1-8B: 14.9575 + 0.0313 = 14.9888 GiB, exactly "Loading model weights took
    14.9888 GB" (gt-001, gt-027).
    """
    if not arch.attention_layers or arch.model_type in NO_ROPE:
        return 0
    head = arch.attention_layers[0].head_size if not arch.use_mla else 64
    return arch.derived_max_len * head * DTYPE_BYTES[load_dtype]


def estimate_inventory(arch: ModelArch) -> Inventory:
    """Parameter count from the architecture when no checkpoint metadata exists (Llama-style layout).

    embedding + per layer (q, k, v, o projections, gated MLP or experts, two norms) + final norm
    + LM head unless tied. Said in the output as an estimate.
    """
    h, v = arch.hidden_size, arch.vocab_size
    params = v * h + h
    if not arch.tie_word_embeddings:
        params += v * h
    for layer in range(arch.num_hidden_layers):
        attn = [x for x in arch.attention_layers if x.index == layer]
        if attn:
            a = attn[0]
            if a.kind == "mla":
                params += 4 * h * h         # rough: latent projections of MLA are about 4 h^2
            else:
                q = arch.num_attention_heads * a.head_size
                kv = a.num_kv_heads * a.head_size
                params += h * q + 2 * h * kv + q * h
        if arch.num_experts:
            inter = arch.moe_intermediate_size or arch.intermediate_size
            params += arch.num_experts * 3 * h * inter + h * arch.num_experts
        else:
            params += 3 * h * arch.intermediate_size
        params += 2 * h
    return Inventory({"BF16": params}, "estimated from architecture", estimated=True)


# --- per-rank placement -------------------------------------------------------------------------

@dataclass(frozen=True)
class LoraSpec:
    max_loras: int = 1
    max_lora_rank: int = 16


@dataclass(frozen=True)
class WeightBreakdown:
    """Bytes on the fullest GPU (the PP stage and TP rank holding the most)."""

    params_bytes: int            # checkpoint tensors on this rank (padding included, offload excluded)
    rotary_bytes: int
    lora_bytes: int
    offloaded_bytes: int         # moved to CPU by --cpu-offload-gb
    pp_rank: int
    detail: str

    @property
    def total(self) -> int:
        return self.params_bytes + self.rotary_bytes + self.lora_bytes


def pp_layer_counts(num_layers: int, pp: int) -> list[int]:
    """distributed/utils.py::get_pp_indices: the remainder goes to the stages before the last."""
    per = num_layers // pp
    parts = [per] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def _kv_replication_extra(arch: ModelArch, tp: int, per: float) -> float:
    """Bytes per rank added by replicated KV heads (tp > kv heads): k_proj and v_proj rows beyond 1/tp."""
    extra = 0.0
    for a in arch.attention_layers:
        if not isinstance(a, AttentionLayer) or a.kind == "mla" or a.num_kv_heads >= tp:
            continue
        per_rank_heads = 1
        exact = a.num_kv_heads / tp
        extra += (per_rank_heads - exact) * (a.head_size + a.head_size_v) * arch.hidden_size * per
    return extra


def lora_bytes_per_gpu(arch: ModelArch, lora: LoraSpec, dtype_bytes: int, tp: int, layers: int) -> int:
    """Preallocated LoRA slots on one rank for `layers` decoder layers (base_linear.py::create_lora_weights).

    Per slot and per output slice: A [rank, input_size] + B [output_size, rank]. Column-parallel
    layers (qkv, gate_up) see the full input and their output shard; row-parallel layers (o, down)
    see their input shard and the full output. MoE experts get the same per expert (w1, w3, w2).
    """
    h, r = arch.hidden_size, lora.max_lora_rank
    attn = arch.attention_layers[0] if arch.attention_layers else None
    elems = 0.0
    if attn is not None and attn.kind != "mla":
        q_rank = arch.num_attention_heads * attn.head_size / tp
        if attn.num_kv_heads >= tp:
            kv_rank = attn.num_kv_heads * attn.head_size / tp
        else:
            kv_rank = attn.head_size                              # one replicated KV head per rank
        elems += 3 * r * h + r * (q_rank + 2 * kv_rank)           # qkv_proj: 3 slices (column parallel)
        elems += r * q_rank + h * r                               # o_proj (row parallel)
    elif attn is not None:
        elems += 4 * r * h                                        # MLA projections, roughly
    if arch.num_experts:
        inter = (arch.moe_intermediate_size or arch.intermediate_size) / tp
        elems += arch.num_experts * (2 * (r * h + inter * r) + (r * inter + h * r))
    else:
        inter = arch.intermediate_size / tp
        elems += 2 * (r * h + inter * r)                          # gate_up: 2 slices
        elems += r * inter + h * r                                # down_proj (row parallel)
    return int(elems * layers * lora.max_loras * dtype_bytes)


def _offload_split(layer_bytes: float, layers: int, budget: int, arch: ModelArch, tp: int) -> int:
    """Bytes --cpu-offload-gb moves off this rank: parameters one by one, layer by layer, until the
    running total reaches the budget (uva.py): the last parameter moved may overshoot it."""
    if budget <= 0 or layers <= 0 or layer_bytes <= 0:
        return 0
    # The parameters of one decoder layer in registration order (LlamaDecoderLayer: self_attn.qkv_proj,
    # self_attn.o_proj, mlp.gate_up_proj, mlp.down_proj, input_layernorm, post_attention_layernorm);
    # other layouts fall back to four equal parts. Scaled to the layer's bytes on this rank.
    h = arch.hidden_size
    attn = arch.attention_layers[0] if arch.attention_layers else None
    if attn is not None and attn.kind != "mla" and not arch.num_experts:
        q = arch.num_attention_heads * attn.head_size
        kv = attn.num_kv_heads * attn.head_size
        sizes = [h * (q + 2 * kv) / tp, q * h / tp, 2 * h * arch.intermediate_size / tp,
                 arch.intermediate_size * h / tp, h, h]
    else:
        sizes = [1, 1, 1, 1]
    total = sum(sizes)
    params = [layer_bytes * s / total for s in sizes]
    moved = 0.0
    for _ in range(layers):
        for p in params:
            if moved >= budget:
                return int(moved)
            moved += p
    return int(moved)


def weights_breakdown(inv: Inventory, arch: ModelArch, load_dtype: str, tp: int = 1, pp: int = 1, *,
                      cpu_offload_bytes: int = 0, lora: LoraSpec | None = None) -> WeightBreakdown:
    """Weights on the fullest GPU, split tensor group by tensor group as vLLM places them."""
    per = DTYPE_BYTES[load_dtype]
    quantized = is_quantized(inv, arch)
    total = loaded_bytes(inv, load_dtype, quantized)
    h, v = arch.hidden_size, arch.vocab_size
    floating = sum(n for d, n in inv.params_by_dtype.items() if d in FLOATING)
    vocab_tensors = 1 if arch.tie_word_embeddings else 2
    rotary = rotary_cache_bytes(arch, load_dtype)
    layers_total = max(1, arch.num_hidden_layers)
    if floating < vocab_tensors * v * h + h:
        # The counts do not hold the embedding as floating tensors (an unusual checkpoint): split evenly.
        body, embed, head, norm = total, 0, 0, 0
    else:
        embed = v * h * per
        head = 0 if arch.tie_word_embeddings else v * h * per
        norm = h * per
        body = total - embed - head - norm
    layer_bytes = body / layers_total
    padded = pad_vocab(v)
    embed_rank = padded * h * per / tp if embed else 0
    head_rank = padded * h * per / tp if embed else 0   # the LM head (or the tied copy) on the last stage
    kv_extra = _kv_replication_extra(arch, tp, per) if tp > 1 and not quantized else 0.0
    best: tuple[float, int, float, int] | None = None
    for rank, n_layers in enumerate(pp_layer_counts(layers_total, pp)):
        b = layer_bytes * n_layers / tp + kv_extra * n_layers / layers_total
        if rank == 0:
            b += embed_rank
        if rank == pp - 1:
            b += norm
            if not arch.tie_word_embeddings or pp > 1:   # tied + PP: the last stage holds its own copy
                b += head_rank
        layer_part = layer_bytes * n_layers / tp
        if best is None or b > best[0]:
            best = (b, rank, layer_part, n_layers)
    assert best is not None
    params_rank, rank, layer_part, n_layers = best
    offloaded = min(int(layer_part), _offload_split(layer_bytes / tp, n_layers, cpu_offload_bytes, arch, tp))
    lora_b = lora_bytes_per_gpu(arch, lora, per, tp, n_layers) if lora else 0
    detail = (f"{inv.total_params:,} params ({'quantized storage kept' if quantized else load_dtype}), "
              f"vocab {v:,} padded to {padded:,}" + (f", TP {tp}" if tp > 1 else "")
              + (f", PP stage {rank} of {pp}" if pp > 1 else ""))
    return WeightBreakdown(int(params_rank) - offloaded, rotary, lora_b, offloaded, rank, detail)


def weights_per_gpu(inv: Inventory, arch: ModelArch, load_dtype: str, tp: int = 1, pp: int = 1, *,
                    cpu_offload_bytes: int = 0, lora: LoraSpec | None = None) -> int:
    """Weights on the fullest GPU: parameters (padded, sharded, offload removed) + rotary cache + LoRA slots."""
    return weights_breakdown(inv, arch, load_dtype, tp, pp, cpu_offload_bytes=cpu_offload_bytes,
                             lora=lora).total


