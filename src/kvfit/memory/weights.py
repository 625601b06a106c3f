"""Weights as vLLM holds them on one GPU: parameter counts times the load dtype, tensor by tensor.

Floating tensors are cast to the load dtype (orpheus ships float32 shards yet loads bf16);
integer / packed / fp8 tensors (AWQ, GPTQ, FP8, MXFP4 blocks) keep their storage size.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.model import ModelArch

# safetensors dtype name -> bytes per element
STORAGE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}
FLOATING = {"F64", "F32", "F16", "BF16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Inventory:
    """Parameter counts per safetensors storage dtype, and where they came from."""

    params_by_dtype: dict[str, int]
    source: str                  # "safetensors headers" | "Hub metadata" | "catalog" | "estimated from architecture"
    estimated: bool = False

    @property
    def total_params(self) -> int:
        return sum(self.params_by_dtype.values())


def loaded_bytes(inv: Inventory, load_dtype: str) -> int:
    """Bytes of all checkpoint tensors once loaded (before sharding)."""
    per = DTYPE_BYTES[load_dtype]
    total = 0.0
    for dtype, count in inv.params_by_dtype.items():
        if dtype in FLOATING:
            total += count * per
        else:
            total += count * STORAGE_BYTES.get(dtype, 1)
    return int(total)


def rotary_cache_bytes(arch: ModelArch, load_dtype: str) -> int:
    """vLLM's RotaryEmbedding cos_sin_cache buffer: [max_position, rotary_dim] in the model dtype.

    One instance is shared by all layers (get_rope caches it). Orpheus: 131072 x 128 x 2 B = 32 MiB,
    the difference between its 6.1487 GiB of bf16 parameters and the logged 6.1801 GiB.
    """
    if not arch.attention_layers:
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


def weights_per_gpu(inv: Inventory, arch: ModelArch, load_dtype: str, tp: int = 1, pp: int = 1) -> int:
    """Weights on the fullest GPU: the checkpoint split by TP and PP, plus the rotary cache buffer."""
    total = loaded_bytes(inv, load_dtype)
    return int(total / (tp * pp)) + rotary_cache_bytes(arch, load_dtype)
