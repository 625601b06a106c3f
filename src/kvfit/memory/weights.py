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

import math
from dataclasses import dataclass
from functools import lru_cache

from ..arch.model import AttentionLayer, Linear, ModelArch, ParamLayout, QuantScheme

# safetensors dtype name -> bytes per element
STORAGE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}
FLOATING = {"F64", "F32", "F16", "BF16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
GIB = 1 << 30
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
    """The checkpoint's tensors as vLLM loads them, from config.json alone (no safetensors metadata).

    arch.params lists every weight the model's vLLM class creates (arch/params.py, arch/towers.py);
    arch.quant says how the checkpoint stores the quantized ones (arch/quant.py). Each linear weight
    becomes the storage vLLM creates for it (linear_storage below); everything else (embeddings, norms,
    biases, routers, SSM parameters) stays floating. Inventory.source says it is an estimate and what
    it was read from.
    """
    lay = arch.params
    if lay is None:
        return _llama_style_estimate(arch)
    floating = _floating_name(arch)
    q = arch.quant if arch.quant is not None and arch.quant.weight else None
    ratio = lay.declared_total / lay.total if lay.declared_total and lay.total else 1.0
    counts, kept = _layout_counts(lay, q, floating, ratio)
    parts = [f"estimated from the architecture in config.json: {lay.summary}"]
    if q is not None:
        parts.append(q.label + (f" ({', '.join(sorted(kept))} unquantized)" if kept else ""))
    if lay.declared_total:
        parts.append(f"scaled to config.json's declared {lay.declared_total:,} parameters")
    notes = list(lay.notes) + list(arch.quant.notes if arch.quant is not None else ())
    parts.extend(n for n in notes if n not in lay.summary)
    return Inventory({d: int(round(n)) for d, n in counts.items() if n > 0}, "; ".join(parts), estimated=True)


def _layout_counts(lay: ParamLayout, q: QuantScheme | None, floating: str, ratio: float = 1.0
                   ) -> tuple[dict[str, float], set[str]]:
    """Elements per storage dtype of a parameter layout under a quantization scheme, and the roles of
    linears the scheme leaves unquantized."""
    counts: dict[str, float] = {}
    kept: set[str] = set()

    def add(dtype: str, n: float) -> None:
        counts[dtype] = counts.get(dtype, 0.0) + n * ratio

    gated = {lin.name[: -len("gate_proj")] for lin in lay.linears if lin.name.endswith("gate_proj")}
    for lin in lay.linears:
        if q is not None and quantizes(q, lin):
            for dtype, n in linear_storage(q, lin, floating).items():
                if dtype == "I64" and (lin.name.endswith((".k_proj", ".v_proj"))
                                       or lin.name.endswith("up_proj") and lin.name[: -len("up_proj")] in gated):
                    continue             # weight_shape is per fused module (qkv_proj, gate_up_proj)
                add(dtype, n)
        else:
            if q is not None and lin.role != "lm_head":
                kept.add(lin.role)
            add(floating, lin.params)
        if (q is not None and q.method == "gptq" and lin.role == "experts" and lin.name.endswith("down_proj")
                and quantizes(q, lin)):
            add(floating, lin.count * (2 * lin.inp + lin.out))    # auto_gptq.py: zero w13_bias / w2_bias
    for t in lay.tensors:
        add(t.dtype if (t.dtype == "F32" and q is not None) else floating, t.params)
    if q is not None and q.method in KV_SCALE_METHODS:
        add(floating, 4 * lay.attention_modules)                    # k/v/q/prob scales of each Attention
    elif q is not None and q.method == "compressed-tensors":
        add("F32", 3 * lay.attention_modules)                       # k/v/q scales, float32
        add(floating, 3 * lay.attention_modules)                    # k/v/q zero points
    return counts, kept


# Quantization configs whose get_quant_method gives each Attention a KV-cache method, which registers
# k_scale, v_scale, q_scale and prob_scale in the model dtype (quantization/kv_cache.py::BaseKVCacheMethod);
# compressed-tensors' own KV-cache method registers float32 k/v/q scales and k/v/q zero points instead.
KV_SCALE_METHODS = {"fp8", "modelopt", "modelopt_fp4", "modelopt_mxfp8"}


# --quantization for a checkpoint stored unquantized: what vLLM 0.32 creates (model_executor/layers/
# quantization/online/*.py; `--quantization fp8` is the deprecated alias of fp8_per_tensor,
# model_loader/weight_utils.py::get_quant_config). Linear layers and routed experts are quantized;
# ParallelLMHead, embeddings, norms and routers keep the model dtype.
ONLINE_SCHEMES: dict[str, QuantScheme] = {
    "fp8": QuantScheme("online", "fp8", 8, "tensor", label="FP8 per-tensor (online; --quantization fp8 is "
                                                          "fp8_per_tensor)"),
    "fp8_per_tensor": QuantScheme("online", "fp8", 8, "tensor", label="FP8 per-tensor (online)"),
    "fp8_per_block": QuantScheme("online", "fp8", 8, "block", block=(128, 128),
                                 label="FP8 block-wise 128x128 (online)"),
    "fp8_per_channel": QuantScheme("online", "fp8", 8, "channel", label="FP8 per-channel (online)"),
    "int8_per_channel_weight_only": QuantScheme("online", "w8a8", 8, "channel", experts_only=True,
                                                label="int8 experts, per-channel (online)"),
    "mxfp8": QuantScheme("online", "mxfp8", 8, "group", group_size=32, label="MXFP8 (online)"),
    "mxfp4": QuantScheme("online", "mxfp4", 4, "group", group_size=32, label="MXFP4 (online)"),
    "nvfp4_per_token": QuantScheme("online", "nvfp4", 4, "group", group_size=16, label="NVFP4 (online)"),
}


def online_quantized_inventory(arch: ModelArch, inv: Inventory, method: str) -> Inventory | None:
    """The weights of an unquantized checkpoint that `--quantization METHOD` quantizes while loading,
    linear by linear from arch.params (so routers, embeddings, the LM head and norms stay in the model
    dtype, and block/channel scales are counted per matrix), scaled to the inventory's own count.
    None when kvfit does not model METHOD online, the checkpoint is already quantized, or the
    architecture has no parameter layout (callers keep their own sizing then)."""
    q = ONLINE_SCHEMES.get(method.lower())
    lay = arch.params
    if q is None or lay is None or not lay.total or is_quantized(inv, arch):
        return None
    floating = _floating_name(arch)
    floating = "BF16" if floating == "F32" else floating     # F32 would read as scales next to fp8 weights
    counts, _ = _layout_counts(lay, q, floating, sum(inv.params_by_dtype.values()) / lay.total)
    return Inventory({d: int(round(n)) for d, n in counts.items() if n > 0}, f"{inv.source}; {q.label}",
                     inv.estimated)


def inventory_for(inv: Inventory | None, arch: ModelArch) -> Inventory:
    """The inventory the weights are sized from: the checkpoint's when known, else the estimate."""
    return inv if inv is not None else estimate_inventory(arch)


def _floating_name(arch: ModelArch) -> str:
    """The safetensors name of the checkpoint's floating dtype (config torch_dtype; bf16 when unknown).
    A quantized checkpoint never reports F32 for its floating tensors: F32 there marks scales."""
    name = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(arch.config_dtype or "", "BF16")
    if name == "F32" and arch.quant is not None and arch.quant.weight:
        return "BF16"
    return name


def _canon(name: str) -> str:
    """A module name without the wrappers checkpoints and vLLM put in front of it (model., thinker.,
    language_model., backbone., transformer.), so ignore lists match whichever naming they use."""
    parts = name.split(".")
    while parts and parts[0] in ("model", "thinker", "language_model", "backbone", "transformer", "llm"):
        parts = parts[1:]
    return ".".join(parts)


@lru_cache(maxsize=64)
def _ignore_matcher(entries: tuple[str, ...], substring: bool):
    """An ignore list compiled once: (regexes matched at the start, plain names). "re:" entries and "*"/"?"
    wildcards become regexes; plain names are substrings of the module path (`substring`) or whole segment
    runs of it (see _ignored)."""
    import fnmatch
    import re

    rx: list[str] = []
    plain: list[str] = []
    for e in entries:
        if e.startswith("re:"):
            try:
                re.compile(e[3:])
            except re.error:
                continue
            rx.append(f"(?:{e[3:]})")
        elif "*" in e or "?" in e:
            rx += [fnmatch.translate(e), fnmatch.translate(e + ".*")]
        elif substring:
            if e:
                plain.append(e)
        elif _canon(e):
            plain.append(_canon(e))
    try:
        one = [re.compile("|".join(rx))] if rx else []
    except re.error:              # patterns that cannot share one regex (clashing group names)
        one = [re.compile(x) for x in rx]
    if substring:
        return one, (re.compile("|".join(re.escape(e) for e in plain)) if plain else None)
    return one, frozenset(plain)


def _ignored(entries: tuple[str, ...], name: str, substring: bool = False) -> bool:
    """quantization ignore lists (quantization/utils/quant_utils.py::is_layer_skipped and each config's
    own rule): "re:" regexes (compressed-tensors), "*" wildcards (gpt-oss, ModelOpt), plain names as a
    substring of the module path (`substring`: AWQ, GPTQ, bitsandbytes) or as whole name segments
    (Fp8Config's exact module names, and ancestors of them)."""
    if not entries:
        return False
    regexes, plain = _ignore_matcher(entries, substring)
    canon = _canon(name)
    probes = (name, canon, "model." + canon, "model.language_model." + canon, "language_model.model." + canon)
    if any(r.match(p) for r in regexes for p in probes):
        return True
    if substring:
        return plain is not None and any(plain.search(p) for p in probes)
    segs = canon.split(".")
    return any(".".join(segs[i:j]) in plain for i in range(len(segs)) for j in range(i + 1, len(segs) + 1))


def quantizes(q: QuantScheme, lin: Linear) -> bool:
    """Whether vLLM creates quantized storage for this linear (the config's get_quant_method)."""
    if lin.role == "lm_head":
        return q.lm_head and not _ignored(q.ignore, lin.name, q.substring_ignore)   # only AWQ/GPTQ lm_head
    if q.experts_only and lin.role != "experts":
        return False                                                  # mxfp4.py: linears unquantized
    if lin.role in ("vision", "audio", "projector") and not q.towers:
        return False                                                  # AWQ/GPTQ quantize the decoder only
    return not _ignored(q.ignore, lin.name, q.substring_ignore)


def linear_storage(q: QuantScheme, lin: Linear, floating: str = "BF16") -> dict[str, float]:
    """Elements per safetensors dtype for `lin.count` quantized [out, inp] weights, as vLLM 0.32 creates
    them (bytes follow from STORAGE_BYTES; floating scales load in the model dtype).

      fp8 tensor   fp8.py Fp8LinearMethod: weight fp8 [out, in]; float32 weight_scale per tensor
                   (+ input_scale when activation_scheme is static)
      fp8 block    BlockQuantScaleParameter float32 [ceil(out/bn), ceil(in/bk)] (weight_scale_inv)
      fp8 channel  ChannelQuantScaleParameter float32 [out, 1] (fbgemm_fp8.py, compressed-tensors, ModelOpt)
      mxfp8        fp8 weight + one uint8 (E8M0) scale per 32 inputs (modelopt.py ModelOptMxFp8LinearMethod)
      w8a8         compressed_tensors_w8a8_int8.py: int8 weight, float32 scale per row (or per tensor)
      int (AWQ)    auto_awq.py: int32 qweight in*out/(32/bits), int32 qzeros groups*out/(32/bits),
                   scales [groups, out] in the model dtype
      int (GPTQ)   auto_gptq.py: the same layout transposed (qweight [in/(32/bits), out]); vLLM 0.32 creates
                   no g_idx, and gives GPTQ experts zero biases [E, 2*I] and [E, H] in the model dtype
      int (CT)     compressed_tensors_wNa16.py: int32 weight_packed, scales [out, groups], int64 weight_shape
                   [2] per fused module, int32 zero points only when asymmetric
      nvfp4        modelopt.py / compressed_tensors_w4a4_nvfp4.py: uint8 weight [out, in/2], fp8 weight_scale
                   [out, in/16], float32 global scales
      mxfp4        mxfp4.py: uint8 blocks [out, in/2] + uint8 (E8M0) scales [out, in/32]
      bnb4 / bnb8  bitsandbytes.py (<= 0.27.1): uint8 [out*in/2] + absmax per 64 (float32, or uint8 plus a
                   float32 per 256 blocks with double quantization); int8 weight + float32 SCB per row
    """
    out, inp, c = lin.out, lin.inp, lin.count
    n = float(out * inp * c)
    w = q.weight
    if w in ("fp8", "mxfp8"):
        d = {"F8_E4M3": n}
        if w == "mxfp8":
            d["U8"] = n / 32
        elif q.strategy == "block" and q.block:
            bn, bk = q.block
            d["F32"] = float(-(-out // bn) * -(-inp // bk) * c)
        elif q.strategy == "channel":
            d["F32"] = float(out * c)
        else:
            d["F32"] = float(c * (2 if q.static_input else 1))
        return d
    if w == "w8a8":
        return {"I8": n, "F32": float((out if q.strategy == "channel" else 1) * c + (c if q.static_input else 0))}
    if w == "int":
        bits = q.bits if q.bits in (2, 3, 4, 8) else 4
        groups = max(1, inp // q.group_size) if q.group_size > 0 else 1
        d = {"I32": n * bits / 32, floating: float(out * groups * c)}
        if q.method == "awq" or q.method == "gptq" or q.zero_point:
            d["I32"] += out * groups * c * bits / 32                  # qzeros
        if q.method == "compressed-tensors":
            d["I64"] = float(2 * c)                                   # weight_shape
        return d
    if w == "nvfp4":
        g = q.group_size or 16
        return {"U8": n / 2, "F8_E4M3": n / g, "F32": float(2 * c)}
    if w == "mxfp4":
        return {"U8": n / 2 + n / 32}
    if w == "bnb4":
        if q.double_quant:
            return {"U8": n / 2 + n / 64, "F32": n / (64 * 256)}
        return {"U8": n / 2, "F32": n / 64}
    if w == "bnb8":
        return {"I8": n, "F32": float(out * c)}
    return {floating: n}


def _llama_style_estimate(arch: ModelArch) -> Inventory:
    """Llama-style count for an arch built without a parameter layout (hand-made ModelArch objects)."""
    h, v = arch.hidden_size, arch.vocab_size
    params = v * h + h
    if not arch.tie_word_embeddings:
        params += v * h
    for layer in range(arch.num_hidden_layers):
        attn = [x for x in arch.attention_layers if x.index == layer]
        if attn:
            a = attn[0]
            if a.kind == "mla":
                params += 4 * h * h
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
    return Inventory({"BF16": params}, "estimated from the architecture (Llama-style formula)", estimated=True)


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
    offloaded_layer_bytes: int = 0   # one decoder layer's offloaded bytes on this rank (V0 copies it back per forward)
    stage_bytes: tuple[int, ...] = ()   # checkpoint tensors on each PP stage's rank (offload not removed)

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
    params = [layer_bytes * s / total for s in sizes] if math.isfinite(total) and total > 0 else [math.inf]
    if not (math.isfinite(layer_bytes) and all(math.isfinite(p) for p in params)):
        from ..errors import ConfigError

        raise ConfigError("config.json's sizes give weights too large to place (--cpu-offload-gb)")
    moved = 0.0
    for _ in range(layers):
        for p in params:
            if moved >= budget:
                break
            moved += p
        if moved >= budget:
            break
    if not (math.isfinite(moved) and all(math.isfinite(p) for p in params)):
        from ..errors import ConfigError

        raise ConfigError("config.json's sizes give weights too large to place (--cpu-offload-gb)")
    return int(moved)


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a if a > 1 else x


def mxfp4_padding_bytes(arch: ModelArch, tp: int, padding: tuple[int, int], experts: int | None = None
                        ) -> float:
    """Bytes one TP rank holds beyond its even share of an MXFP4 checkpoint's routed experts, when the
    MoE backend pads them (padding = (hidden multiple, per-rank intermediate multiple), from
    profiles.mxfp4_moe_backend). mxfp4.py create_weights allocates w13 [E, 2*I', H'/2] and
    w2 [E, H', I'/2] uint8 with one uint8 scale per 32 values, and bf16 biases [E, 2*I'] and [E, H'],
    where I' = round_up(I / tp, intermediate multiple) and H' = round_up(H, hidden multiple).

    gpt-oss-120b on the Marlin path (H 2880 -> 3072, I 2880 -> 2944): 1,844,969,472 B of expert
    weights per layer instead of 1,692,057,600, 5.1 GiB more over 36 layers.
    """
    q = arch.quant
    if q is None or q.weight != "mxfp4" or arch.params is None:
        return 0.0
    h_align, i_align = padding
    extra = 0.0
    for lin in arch.params.linears:
        if lin.role != "experts" or not lin.name.endswith("down_proj"):
            continue
        e, hidden, inter = lin.count, lin.out, lin.inp            # down_proj is [H, I] per expert
        per_value = 0.5 + 1 / 32
        if experts is not None:                                   # expert parallel: whole local experts
            e, tp = experts, 1
        share = e * 3 * inter * hidden * per_value / tp + e * (2 * inter + hidden) * 2 / tp
        ip, hp = _round_up(-(-inter // tp), i_align), _round_up(hidden, h_align)
        padded = e * 3 * ip * hp * per_value + e * (2 * ip + hp) * 2
        extra += padded - share
    return extra


_MOE_BYTES: dict[tuple[int, int, str], tuple[object, object, float, float]] = {}


def moe_bytes(inv: Inventory, arch: ModelArch, load_dtype: str) -> tuple[float, float]:
    """(routed-expert bytes, shared-expert bytes) of the loaded checkpoint, all layers: the expert linears
    (and expert biases) of arch.params in the storage the checkpoint's quantization gives them, scaled to
    the inventory as weights_breakdown scales every layer. Remembered per (inventory, arch, dtype)."""
    key = (id(inv), id(arch), load_dtype)
    hit = _MOE_BYTES.get(key)
    if hit is not None and hit[0] is inv and hit[1] is arch:
        return hit[2], hit[3]
    lay = arch.params
    routed = shared = 0.0
    if lay is not None and arch.num_experts:
        q = arch.quant if arch.quant is not None and arch.quant.weight else None
        floating = _floating_name(arch)
        quantized = is_quantized(inv, arch)

        def part(linears, tensors, modules: int = 0) -> float:
            counts, _ = _layout_counts(ParamLayout(tuple(linears), tuple(tensors), "", attention_modules=modules),
                                       q, floating)
            return float(loaded_bytes(Inventory({d: int(round(n)) for d, n in counts.items()}, ""), load_dtype,
                                      quantized))

        whole = part(lay.linears, lay.tensors, lay.attention_modules)
        scale = loaded_bytes(inv, load_dtype, quantized) / whole if whole else 0.0
        routed = scale * part([x for x in lay.linears if x.role == "experts"],
                              [t for t in lay.tensors if ".experts." in t.name])
        shared = scale * part([x for x in lay.linears if x.role == "shared"], [])
    if len(_MOE_BYTES) > 256:
        _MOE_BYTES.clear()
    _MOE_BYTES[key] = (inv, arch, routed, shared)
    return routed, shared


def mla_dequant_bytes(arch: ModelArch, tp: int, dtype_bytes: int) -> float:
    """MLA with a quantized kv_b_proj: layers/attention/mla_attention.py process_weights_after_loading
    dequantizes it (split_kv_b_proj -> get_and_maybe_dequant_weights) and keeps W_UV [N, L, V] and
    W_UK_T [N, P, L] as new parameters in the activation dtype, beside the quantized kv_b_proj: per layer
    and rank heads/tp x kv_lora_rank x (qk_nope_head_dim + v_head_dim) values. (An unquantized kv_b_proj
    yields views of its own weight: nothing extra.) DeepSeek-V3 at TP 8: 16 x 512 x 256 x 2 B = 4 MiB
    per layer, 61 layers = 244 MiB per GPU."""
    q = arch.quant
    if not arch.use_mla or arch.params is None or q is None or not q.weight:
        return 0.0
    return sum(lin.out * lin.inp * lin.count / tp * dtype_bytes for lin in arch.params.linears
               if lin.name.endswith("kv_b_proj") and quantizes(q, lin))


def weights_breakdown(inv: Inventory, arch: ModelArch, load_dtype: str, tp: int = 1, pp: int = 1, *,
                      cpu_offload_bytes: int = 0, lora: LoraSpec | None = None,
                      mxfp4_padding: tuple[int, int] | None = None, moe=None) -> WeightBreakdown:
    """Weights on the fullest GPU, split tensor group by tensor group as vLLM places them.

    mxfp4_padding: (hidden, intermediate) multiples the MXFP4 MoE backend pads experts to on this GPU
    and release (profiles.mxfp4_moe_backend); None charges the checkpoint's bytes as stored.
    moe: a memory.parallel.MoEShare when data / expert / prefill-context parallelism places the experts
    otherwise than / TP (routed experts: `routed` of each on the rank; shared experts: / shared_tp)."""
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
    moe_extra = 0.0                   # per layer, beyond layer_bytes / tp, that the MoE placement adds
    if moe is not None:
        routed, shared = moe_bytes(inv, arch, load_dtype)
        moe_extra = (routed * (moe.routed - 1 / tp) + shared * (1 / moe.shared_tp - 1 / tp)) / layers_total
    padded = pad_vocab(v)
    embed_rank = padded * h * per / tp if embed else 0
    head_rank = padded * h * per / tp if embed else 0   # the LM head (or the tied copy) on the last stage
    kv_extra = _kv_replication_extra(arch, tp, per) if tp > 1 and not quantized else 0.0
    pad_extra = mxfp4_padding_bytes(arch, moe.moe_tp if moe is not None else tp, mxfp4_padding,
                                    moe.experts if moe is not None else None) if mxfp4_padding else 0.0
    mla_extra = mla_dequant_bytes(arch, tp, per)
    best: tuple[float, int, float, int] | None = None
    stages: list[int] = []
    for rank, n_layers in enumerate(pp_layer_counts(layers_total, pp)):
        b = layer_bytes * n_layers / tp + (kv_extra + pad_extra + mla_extra) * n_layers / layers_total
        b += moe_extra * n_layers
        if rank == 0:
            b += embed_rank
        if rank == pp - 1:
            b += norm
            if not arch.tie_word_embeddings or pp > 1:   # tied + PP: the last stage holds its own copy
                b += head_rank
        layer_part = layer_bytes * n_layers / tp + moe_extra * n_layers
        stages.append(int(b))
        if best is None or b > best[0]:
            best = (b, rank, layer_part, n_layers)
    assert best is not None
    params_rank, rank, layer_part, n_layers = best
    offloaded = min(int(layer_part), _offload_split(layer_bytes / tp, n_layers, cpu_offload_bytes, arch, tp))
    lora_b = lora_bytes_per_gpu(arch, lora, per, tp, n_layers) if lora else 0
    detail = (f"{inv.total_params:,} params ({'quantized storage kept' if quantized else load_dtype}), "
              f"vocab {v:,} padded to {padded:,}" + (f", TP {tp}" if tp > 1 else "")
              + (f", PP stage {rank} of {pp}" if pp > 1 else "")
              + (f", MXFP4 experts padded to multiples of {mxfp4_padding[0]}/{mxfp4_padding[1]} "
                 f"(+{pad_extra / GIB:.2f} GiB)" if pad_extra else "")
              + (f", MLA W_UV/W_UK_T dequantized from kv_b_proj (+{mla_extra / GIB:.2f} GiB)" if mla_extra else "")
              + ((f", {moe.experts} of {arch.num_experts} experts whole (expert parallel)" if moe.experts is not None
                  else f", experts sliced over {moe.moe_tp} ranks")
                 + (", shared experts whole (sequence-parallel MoE)" if moe.shared_tp == 1 and tp > 1 else "")
                 if moe is not None else ""))
    one_layer = int(min(offloaded, layer_bytes / tp)) if offloaded else 0
    return WeightBreakdown(int(params_rank) - offloaded, rotary, lora_b, offloaded, rank, detail,
                           offloaded_layer_bytes=one_layer, stage_bytes=tuple(stages))


def weights_per_gpu(inv: Inventory, arch: ModelArch, load_dtype: str, tp: int = 1, pp: int = 1, *,
                    cpu_offload_bytes: int = 0, lora: LoraSpec | None = None) -> int:
    """Weights on the fullest GPU: parameters (padded, sharded, offload removed) + rotary cache + LoRA slots."""
    return weights_breakdown(inv, arch, load_dtype, tp, pp, cpu_offload_bytes=cpu_offload_bytes,
                             lora=lora).total


