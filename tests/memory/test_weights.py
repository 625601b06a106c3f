"""Weights per GPU, computed by hand from real configs and checked against vLLM's own log lines."""

from __future__ import annotations

import pytest

from kvfit.arch.normalize import normalize
from kvfit.memory.weights import (Inventory, LoraSpec, loaded_bytes, lora_bytes_per_gpu, pad_vocab,
                                  rotary_cache_bytes, weights_breakdown, weights_per_gpu)
from kvfit.sources import catalog

GiB = 1 << 30
ROPE_131K = 131072 * 128 * 2            # cos_sin_cache [131072 positions, 128 dims] in bf16 = 32 MiB


def _model(repo_id: str):
    src = catalog.load(repo_id)
    return normalize(src.config, hf_quant_config=src.hf_quant_config), src.inventory


def test_orpheus_float32_checkpoint_loads_as_bf16_with_padded_vocab_and_rope():
    arch, inv = _model("canopylabs/orpheus-3b-0.1-ft")
    assert inv.params_by_dtype == {"F32": 3_300_867_072}
    params = 3_300_867_072 * 2                           # float32 shards cast to bf16
    padding = (156_992 - 156_940) * 3072 * 2             # vocab 156,940 padded to 64: 52 rows, tied (once)
    assert pad_vocab(156_940) == 156_992
    expected = params + padding + ROPE_131K              # 6,601,734,144 + 319,488 + 33,554,432
    assert weights_per_gpu(inv, arch, "bfloat16") == expected == 6_635_608_064
    # 6.1486 GiB of parameters + 32 MiB rope = 6.1799 GiB; vLLM logged "Loading model weights took
    # 6.1800 GB" (gt-021; the orpheus-tts log in ../shared/models says 6.1801): a few hundred KB of
    # small buffers apart
    assert round((params + padding) / GiB, 4) == 6.1486
    assert abs(expected / GiB - 6.1800) < 0.0003


def test_llama_3_1_8b_matches_the_logged_load():
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    assert inv.total_params == 8_030_261_248
    # 16,060,522,496 B of bf16 (the checkpoint's safetensors total_size) + 32 MiB rope; vocab 128256 = 64 x 2004
    expected = 8_030_261_248 * 2 + ROPE_131K
    assert weights_per_gpu(inv, arch, "bfloat16") == expected == 16_094_076_928
    assert round(expected / GiB, 4) == 14.9888           # "Loading model weights took 14.9888 GB" (gt-001, gt-027)


def test_tensor_parallel_splits_layers_embedding_and_head():
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    embed = 128_256 * 4096 * 2                           # 1,050,673,152 B each for embed_tokens and lm_head
    norm = 4096 * 2
    body = 8_030_261_248 * 2 - 2 * embed - norm          # 32 decoder layers: 13,959,168,000 B
    per_rank = body // 2 + embed // 2 + embed // 2 + norm + ROPE_131K
    assert weights_per_gpu(inv, arch, "bfloat16", tp=2) == per_rank == 8_063_819_776


def test_replicated_kv_heads_under_large_tp():
    """8 KV heads over 16 ranks: each rank holds one whole head of k_proj and v_proj, not half of one."""
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    embed, norm = 128_256 * 4096 * 2, 4096 * 2
    body = 8_030_261_248 * 2 - 2 * embed - norm
    naive = body / 16 + 2 * embed / 16 + norm + ROPE_131K
    extra = 32 * (1 - 8 / 16) * (128 + 128) * 4096 * 2   # per layer: half a head of k and of v, 4096 wide
    assert extra == 33_554_432
    assert weights_per_gpu(inv, arch, "bfloat16", tp=16) == int(naive + extra)


def test_pipeline_parallel_last_stage_holds_the_head():
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    embed, norm = 128_256 * 4096 * 2, 4096 * 2
    body = 8_030_261_248 * 2 - 2 * embed - norm
    b = weights_breakdown(inv, arch, "bfloat16", pp=2)
    assert b.pp_rank == 1                                # 16 layers + final norm + lm_head > 16 layers + embed
    assert b.total == body // 2 + norm + embed + ROPE_131K


def test_tied_embeddings_once_but_twice_under_pp():
    """Llama-3.2-3B ties lm_head to embed_tokens: one tensor on one GPU, a copy on the last PP stage."""
    arch, inv = _model("meta-llama/Llama-3.2-3B-Instruct")
    embed, norm = 128_256 * 3072 * 2, 3072 * 2
    body = 3_212_749_824 * 2 - embed - norm              # tied: the embedding is counted once
    assert weights_per_gpu(inv, arch, "bfloat16") == 3_212_749_824 * 2 + ROPE_131K
    assert abs(weights_per_gpu(inv, arch, "bfloat16") / GiB - 6.016) < 0.001  # gt-039: "took 6.016 GB"
    b = weights_breakdown(inv, arch, "bfloat16", pp=2)
    assert b.pp_rank == 1 and b.total == body // 2 + norm + embed + ROPE_131K


def test_fp8_checkpoint_keeps_fp8_and_float32_scales():
    arch, inv = _model("nvidia/Llama-3.1-70B-Instruct-FP8")
    assert inv.params_by_dtype == {"F8_E4M3": 68_451_041_280, "BF16": 2_102_665_216, "F32": 1280}
    # fp8 weights 1 B, bf16 embedding/head/norms 2 B, the 1,280 float32 scales stay 4 B
    assert loaded_bytes(inv, "bfloat16") == 68_451_041_280 + 2_102_665_216 * 2 + 1280 * 4
    # in an unquantized checkpoint float32 tensors are cast to the model dtype instead
    assert loaded_bytes(Inventory({"F32": 1280}, "t"), "bfloat16") == 1280 * 2


def test_mxfp4_checkpoint_keeps_packed_blocks():
    arch, inv = _model("openai/gpt-oss-20b")
    assert loaded_bytes(inv, "bfloat16") == 1_804_459_584 * 2 + 10_152_345_600 * 1   # U8 blocks + scales


@pytest.mark.parametrize("counts, expected", [
    # AWQ 4-bit, group 128, one 4096x4096 linear: qweight int32 [4096, 512], qzeros int32 [32, 512],
    # scales fp16 [32, 4096]; 16.9 MB instead of 33.6 MB of bf16
    ({"I32": 4096 * 512 + 32 * 512, "F16": 32 * 4096}, (4096 * 512 + 32 * 512) * 4 + 32 * 4096 * 2),
    # GPTQ adds g_idx int32 [4096]
    ({"I32": 4096 * 512 + 32 * 512 + 4096, "F16": 32 * 4096}, (4096 * 512 + 32 * 512 + 4096) * 4 + 32 * 4096 * 2),
    # bitsandbytes nf4 pre-quantized: uint8 packs (2 values per byte) + float32 absmax per 64 values
    ({"U8": 4096 * 4096 // 2, "F32": 4096 * 4096 // 64}, 4096 * 4096 // 2 + 4096 * 4096 // 64 * 4),
    # compressed-tensors w8a8 int8 + float32 per-channel scales
    ({"I8": 4096 * 4096, "F32": 4096}, 4096 * 4096 + 4096 * 4),
])
def test_quantized_storage_sizes(counts, expected):
    assert loaded_bytes(Inventory(counts, "hand"), "bfloat16") == expected


def test_cpu_offload_moves_whole_parameters_in_layer_order():
    """uva.py offloads parameter after parameter until the running total reaches the budget."""
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    qkv, o = 4096 * 6144 * 2, 4096 * 4096 * 2
    gate_up, down, norms = 2 * 4096 * 14336 * 2, 14336 * 4096 * 2, 2 * 4096 * 2
    layer = qkv + o + gate_up + down + norms             # 436,224,000 B
    budget = 4 * GiB
    moved = 9 * layer + qkv + o + gate_up                # 4,244,783,104 < 4 GiB: one more parameter
    moved += down                                        # 4,362,223,616 >= 4 GiB: stop
    b = weights_breakdown(inv, arch, "bfloat16", cpu_offload_bytes=budget)
    assert b.offloaded_bytes == moved == 4_362_223_616
    assert b.total == 16_094_076_928 - moved


def test_lora_slots_for_llama_8b():
    """max_loras 1, rank 16: A [16, in] and B [out, 16] per slice of qkv (3), o, gate_up (2), down."""
    arch, inv = _model("meta-llama/Llama-3.1-8B-Instruct")
    r, h, q, kv, i = 16, 4096, 4096, 1024, 14336
    per_layer = (3 * r * h + r * (q + 2 * kv)            # qkv_proj: A full input, B per slice
                 + r * q + h * r                         # o_proj
                 + 2 * (r * h + i * r)                   # gate_up_proj
                 + r * i + h * r)                        # down_proj
    assert per_layer == 1_310_720
    expected = per_layer * 32 * 2                        # 32 layers, bf16
    assert lora_bytes_per_gpu(arch, LoraSpec(1, 16), 2, 1, 32) == expected == 83_886_080
    assert weights_per_gpu(inv, arch, "bfloat16", lora=LoraSpec(4, 16)) == 16_094_076_928 + 4 * expected


def test_rope_buffer_only_for_rotary_models():
    arch, _ = _model("meta-llama/Llama-3.1-8B-Instruct")
    assert rotary_cache_bytes(arch, "bfloat16") == ROPE_131K
    opt = normalize({"model_type": "opt", "architectures": ["OPTForCausalLM"], "hidden_size": 768,
                     "num_hidden_layers": 12, "num_attention_heads": 12, "ffn_dim": 3072, "vocab_size": 50272,
                     "max_position_embeddings": 2048, "torch_dtype": "float16"})
    assert rotary_cache_bytes(opt, "float16") == 0          # learned positions
