"""Weights from config.json alone (memory/weights.py::estimate_inventory), checked against real counts.

Ground truth: the bundled catalog's per-dtype parameter counts (src/kvfit/sources/data/models, each with
its provenance), the published safetensors total_size of configs in tests/data/models (../shared/models
source.json), and the figures of the first-use review (D7). Quantized storage is derived by hand from the
config and vLLM 0.32's create_weights (file named per test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.memory import profiles
from kvfit.memory.weights import (Inventory, estimate_inventory, loaded_bytes, mla_dequant_bytes,
                                  mxfp4_padding_bytes, online_quantized_inventory, weights_breakdown,
                                  weights_per_gpu)
from kvfit.sources import catalog

GiB = 1 << 30
DATA = Path(__file__).resolve().parents[1] / "data" / "models"


def config(name: str) -> dict:
    return json.loads((DATA / name / "config.json").read_text())


def arch_of(cfg: dict, hf_quant: dict | None = None):
    return normalize(cfg, hf_quant_config=hf_quant)


# --- every catalog entry with real counts: config only vs the real count ----------------------------

CATALOG = [e for e in catalog.entries() if e.get("params")]
# Families and the worst relative error of the config-only estimate against the catalog's real counts:
# every dense (Llama, Qwen2/2.5/3, Mistral, Phi-3/4, Gemma 2/3 with their SigLIP towers), MoE (Mixtral,
# Qwen3-MoE, DeepSeek-V2/V3/R1 with MLA and block FP8, gpt-oss with MXFP4) and mamba (falcon-mamba) entry
# is exact. The one exception is nvidia/Llama-3.1-70B-Instruct-FP8, whose catalog F32 count is itself an
# estimate (16 scale scalars a layer, "not verified"): vLLM creates weight_scale + input_scale per linear
# (14 a layer) and four KV-cache scales per attention (bf16): 160 more in all. The catalog's DeepSeek-V2-Lite
# configs are trimmed copies without the published `"q_lora_rank": null`; read as vLLM reads them
# (transformers' DeepseekV2Config default 1536) each layer has q_a_proj 1536x2048, q_a_layernorm and
# q_b_proj 3072x1536 instead of q_proj 3072x2048: 1,574,400 more a layer, 42,508,800 over 27 layers.
INEXACT = {"nvidia/Llama-3.1-70B-Instruct-FP8": 160}
BYTES_SLACK = {"nvidia/Llama-3.1-70B-Instruct-FP8": 0}


@pytest.mark.parametrize("entry", CATALOG, ids=[e["id"] for e in CATALOG])
def test_config_only_estimate_matches_the_catalog(entry):
    arch = arch_of(entry["config"], entry.get("hf_quant_config"))
    est = estimate_inventory(arch)
    real = sum(entry["params"].values())
    assert est.estimated
    assert abs(est.total_params - real) == INEXACT.get(entry["id"], 0), (est.params_by_dtype, entry["params"])
    # the bytes vLLM loads agree too (quantized storage kept, floating tensors in bf16)
    quant = arch.quant is not None and arch.quant.weight is not None
    real_bytes = loaded_bytes(Inventory(entry["params"], "catalog"), "bfloat16", quant or None)
    slack = BYTES_SLACK.get(entry["id"], 2 * INEXACT.get(entry["id"], 0))
    assert abs(loaded_bytes(est, "bfloat16", quant or None) - real_bytes) <= slack


@pytest.mark.parametrize("repo", ["deepseek-ai/DeepSeek-V3", "openai/gpt-oss-120b", "openai/gpt-oss-20b"])
def test_quantized_catalog_entries_match_dtype_by_dtype(repo):
    """Block FP8 (weight_scale_inv per 128x128 block, the router's float32 e_score_correction_bias) and
    MXFP4 (uint8 blocks and E8M0 scales, bf16 attention and expert biases): the same split as the
    checkpoint's tensors."""
    src = catalog.load(repo)
    assert estimate_inventory(arch_of(src.config)).params_by_dtype == src.inventory.params_by_dtype


# --- real configs with published sizes ---------------------------------------------------------------

def test_falcon_180b_is_the_published_size_without_the_tied_head_copy():
    # model.safetensors.index.json total_size 359,045,130,240 B of bf16 = 179,522,565,120 params. The
    # checkpoint also stores lm_head.weight (65,024 x 14,848 = 965,476,352), which falcon.py ties to
    # word_embeddings and does not load: vLLM holds 178,557,088,768.
    est = estimate_inventory(arch_of(config("tiiuae__falcon-180B-chat")))
    assert est.total_params == 359_045_130_240 // 2 - 65_024 * 14_848 == 178_557_088_768


def test_chatglm3_is_the_published_size():
    # pytorch_model.bin.index.json total_size 12,487,168,064 B of fp16 = 6,243,584,032 values; the 32 of
    # them kvfit does not count are the rotary inv_freq buffer (kv_channels / 4 = 32 floats)
    est = estimate_inventory(arch_of(config("THUDM__chatglm3-6b")))
    assert est.total_params == 12_487_168_064 // 2 - 32


def test_qwen2_5_vl_counts_its_vision_tower():
    # ../shared/models/param-counts.json: 8,292,166,656 ("read from a public copy of the model's files").
    # LM 7,615,616,512 (as Qwen2.5-7B) + ViT: patch_embed 1280 x 3 x 2 x 14 x 14 = 1,505,280; 32 blocks of
    # RMSNorm x2, qkv 1280->3840 + bias, proj + bias, gated MLP 1280<->3420 + biases = 19,702,200 each;
    # merger ln_q 1280, 5120->5120 + bias, 5120->3584 + bias = 44,574,464 -> 676,550,144
    est = estimate_inventory(arch_of(config("Qwen__Qwen2.5-VL-7B-Instruct")))
    assert est.total_params == 7_615_616_512 + 1_505_280 + 32 * 19_702_200 + 44_574_464 == 8_292_166_656
    assert "vision tower 677M (Qwen2.5-VL ViT)" in est.source


@pytest.mark.parametrize("name, gpu_gib, before_gib, tp", [
    # first-use review D7: real parameters and what the checkpoint takes in bf16, against kvfit's old estimate
    ("nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", 59, 187, 1),   # "real 31.6B params ... about 59 GiB"
    ("ai21labs__AI21-Jamba-1.5-Mini", 96 / 2, 169 / 2, 2),         # "about 96 GiB (48 GiB per GPU)" at TP 2
    ("nvidia__Nemotron-H-56B-Base-8K", 104, 184, 1),               # "184 GiB against about 104 GiB"
    ("Qwen__Qwen2.5-VL-7B-Instruct", 15.4, 14.2, 1),                # "14.2 against 15.4 GiB"
    ("llava-hf__llava-1.5-7b-hf", 13.2, 12.6, 1),                   # "12.6 against 13.2 GiB"
])
def test_first_use_review_d7_cases_within_two_percent(name, gpu_gib, before_gib, tp):
    arch = arch_of(config(name))
    w = weights_per_gpu(estimate_inventory(arch), arch, "bfloat16", tp=tp) / GiB
    assert abs(w - gpu_gib) / gpu_gib < 0.02, w
    assert abs(w - before_gib) / gpu_gib > 0.04                     # far from the old estimate


def test_hybrid_layer_kinds_are_read_per_layer():
    # Nemotron-3-Nano: hybrid_override_pattern M(23) E(23) *(6); E = 128 non-gated relu2 experts of 1856
    # plus a shared expert of 3712 (moe_shared_expert_intermediate_size x n_shared_experts, nemotron_h.py)
    nano = estimate_inventory(arch_of(config("nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")))
    assert "52 layers (23 mamba2, 23 MoE-only, 6 attention), 23 MoE layers x 128 experts (non-gated 1856) " \
           "+ shared 3712" in nano.source
    # Jamba: attention on layer % 8 == 4, experts on layer % 2 == 1 (expert_layer_period/offset)
    jamba = estimate_inventory(arch_of(config("ai21labs__AI21-Jamba-1.5-Mini")))
    assert "32 layers (28 mamba1, 4 attention), 16 MoE layers x 16 experts (gated 14336), 16 dense MLPs" \
           in jamba.source
    # Nemotron-H-56B: "-" layers are non-gated relu2 MLPs of 32768 (up + down only)
    h56 = arch_of(config("nvidia__Nemotron-H-56B-Base-8K"))
    mlp = [x for x in h56.params.linears if x.role == "mlp"]
    assert {x.name.rsplit(".", 1)[1] for x in mlp} == {"up_proj", "down_proj"} and len(mlp) == 2 * 54
    # DeepSeek-V3: first_k_dense_replace 3 -> 3 dense layers, 58 MoE layers with one shared expert
    v3 = estimate_inventory(arch_of(config("deepseek-ai__DeepSeek-V3")))
    assert "58 MoE layers x 256 experts (gated 2048) + shared 2048, 3 dense MLPs" in v3.source


# --- quantization schemes, bytes by hand ---------------------------------------------------------------
# Llama-3.1-8B dims: hidden 4096, 32 layers, q 4096, k/v 1024, MLP 14336, vocab 128256 untied.
# Per layer the 7 linears hold 2 x 4096^2 + 2 x 1024 x 4096 + 3 x 14336 x 4096 = 218,103,808 values,
# 6,979,321,856 in all; out-features per layer 4096 + 1024 + 1024 + 4096 + 3 x ... = 43,008.
# Unquantized: embed + lm_head 2 x 525,336,576, norms 32 x 8192 + 4096 -> 1,050,939,392 bf16.
# fp8 and ModelOpt also give each attention a KV-cache method that registers four bf16 scalars (k_scale,
# v_scale, q_scale, prob_scale; quantization/kv_cache.py): 32 x 4 = 128 more; compressed-tensors' registers
# float32 k/v/q scales and bf16 k/v/q zero points: 96 of each.
LINEAR = 6_979_321_856
FLOAT = 1_050_939_392
KV = 32 * 4
CT_KV = 32 * 3
ROWS = 32 * (4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096)          # 1,376,256


def llama8b(qc: dict) -> Inventory:
    return estimate_inventory(arch_of(dict(config("meta-llama__Llama-3.1-8B-Instruct"), quantization_config=qc)))


def test_compressed_tensors_w4a16_group_128():
    """compressed_tensors_wNa16.py: int32 weight_packed [out, in/8], weight_scale [out, in/128] in the model
    dtype, int64 weight_shape [2] per fused module (qkv_proj, o_proj, gate_up_proj, down_proj); symmetric,
    so no zero points. Scales per layer: 32 groups x (4096 + 1024 + 1024 + 4096 + 14336 + 14336) + 112
    groups x 4096 = 1,703,936."""
    inv = llama8b({"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
                   "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                       "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}})
    scales = 32 * 1_703_936
    assert inv.params_by_dtype == {"I32": LINEAR // 8, "BF16": FLOAT + scales + CT_KV, "I64": 2 * 4 * 32,
                                   "F32": CT_KV}
    expected = LINEAR // 8 * 4 + (FLOAT + scales + CT_KV) * 2 + 256 * 8 + CT_KV * 4
    assert loaded_bytes(inv, "bfloat16") == expected == 5_700_594_240


def test_compressed_tensors_w8a8_int8_and_fp8_channel():
    """compressed_tensors_w8a8_int8.py / _w8a8_fp8.py: one-byte weights, float32 scale per output row."""
    int8 = llama8b({"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups": {"g": {
        "targets": ["Linear"], "input_activations": {"num_bits": 8, "type": "int", "dynamic": True},
        "weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}}}})
    assert int8.params_by_dtype == {"I8": LINEAR, "F32": ROWS + CT_KV, "BF16": FLOAT + CT_KV}
    fp8 = llama8b({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"g": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}})
    assert fp8.params_by_dtype == {"F8_E4M3": LINEAR, "F32": ROWS + CT_KV, "BF16": FLOAT + CT_KV}
    assert loaded_bytes(fp8, "bfloat16") == LINEAR + (ROWS + CT_KV) * 4 + (FLOAT + CT_KV) * 2 == 9_086_706_240


def test_nvfp4_compressed_tensors_and_modelopt():
    """NVFP4 (compressed_tensors_w4a4_nvfp4.py; modelopt.py ModelOptNvFp4LinearMethod): uint8 pairs
    [out, in/2], fp8 scale per 16 values, float32 global scales (2 a linear)."""
    ct = llama8b({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {"g": {
        "targets": ["Linear"], "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group",
                                           "group_size": 16}}}})
    expected = {"U8": LINEAR // 2, "F8_E4M3": LINEAR // 16, "F32": 2 * 7 * 32 + CT_KV, "BF16": FLOAT + CT_KV}
    assert ct.params_by_dtype == expected
    nvfp4_bytes = LINEAR // 2 + LINEAR // 16 + (448 + CT_KV) * 4 + (FLOAT + CT_KV) * 2
    assert loaded_bytes(ct, "bfloat16") == nvfp4_bytes == 6_027_749_696
    expected = {"U8": LINEAR // 2, "F8_E4M3": LINEAR // 16, "F32": 2 * 7 * 32, "BF16": FLOAT + KV}
    mo = estimate_inventory(arch_of(config("meta-llama__Llama-3.1-8B-Instruct"), {
        "producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                           "exclude_modules": ["lm_head"]}}))
    assert mo.params_by_dtype == expected


def test_fp8_per_tensor_block_and_ignored_layers():
    """fp8.py: float8 weight; float32 weight_scale per tensor, or weight_scale_inv per 128x128 block
    (per layer 32x32 + 8x32 + 8x32 + 32x32 + 2 x 112x32 + 32x112 = 13,312 blocks); modules_to_not_convert
    keeps the named modules in bf16 (layer 0's attention: 2 x 4096^2 + 2 x 1024 x 4096 = 41,943,040)."""
    tensor = llama8b({"quant_method": "fp8", "activation_scheme": "dynamic"})
    assert tensor.params_by_dtype == {"F8_E4M3": LINEAR, "F32": 7 * 32, "BF16": FLOAT + KV}
    block = llama8b({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    assert block.params_by_dtype == {"F8_E4M3": LINEAR, "F32": 32 * 13_312, "BF16": FLOAT + KV}
    attn0 = [f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    skip = llama8b({"quant_method": "fp8", "activation_scheme": "dynamic", "modules_to_not_convert": attn0})
    assert skip.params_by_dtype == {"F8_E4M3": LINEAR - 41_943_040, "F32": 7 * 32 - 4,
                                    "BF16": FLOAT + KV + 41_943_040}
    assert "FP8 per-tensor (attn unquantized)" in skip.source


def test_bitsandbytes_4bit_and_8bit():
    """bitsandbytes.py (vLLM <= 0.27.1): uint8 [out*in/2]; absmax per 64 values, float32, or uint8 plus a
    float32 per 256 blocks with double quantization; 8-bit: int8 weight + float32 SCB per row."""
    nf4 = llama8b({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    assert nf4.params_by_dtype == {"U8": LINEAR // 2, "F32": LINEAR // 64, "BF16": FLOAT}
    dq = llama8b({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": True})
    assert dq.params_by_dtype == {"U8": LINEAR // 2 + LINEAR // 64, "F32": LINEAR // 16384, "BF16": FLOAT}
    assert loaded_bytes(dq, "bfloat16") == 3_598_712_832 + 425_984 * 4 + FLOAT * 2 == 5_702_295_552
    b8 = llama8b({"quant_method": "bitsandbytes", "load_in_8bit": True})
    assert b8.params_by_dtype == {"I8": LINEAR, "F32": ROWS, "BF16": FLOAT}
    assert "0.28.0" in b8.source                                    # said: gone from vLLM 0.28.0 on


def test_awq_qwen3_32b_real_config():
    """auto_awq.py: int32 qweight [in, out/8], int32 qzeros [in/128, out/8], scales [in/128, out] (model
    dtype). Qwen3-32B: 64 layers of q 5120->8192, k/v 5120->1024, o 8192->5120, gate/up 5120->25600, down
    25600->5120 = 487,587,840 values a layer, 31,205,621,760 in all; scale groups a layer 40 x (8192 + 2 x
    1024 + 2 x 25600) + 64 x 5120 + 200 x 5120 = 3,809,280."""
    inv = estimate_inventory(arch_of(config("Qwen__Qwen3-32B-AWQ")))
    n, groups = 64 * 487_587_840, 64 * 3_809_280
    unquantized = 2 * 151_936 * 5120 + 64 * (2 * 5120 + 2 * 128) + 5120      # embed, lm_head, norms
    assert inv.params_by_dtype == {"I32": n // 8 + groups // 8, "F16": groups + unquantized}
    # 19,325,298,688 B = 18.00 GiB: the report that copied this config lists "4 safetensors files,
    # total 18.00 GB (GiB as printed)" (../shared/models/Qwen__Qwen3-32B-AWQ/source.json)
    assert round(loaded_bytes(inv, "bfloat16") / GiB, 2) == 18.00


def test_gptq_moe_real_config():
    """auto_gptq.py (0.32): int32 qweight [in/8, out], qzeros [in/128, out/8], scales [in/128, out], no g_idx;
    GPTQ experts also get zero biases w13 [E, 2 x 768] and w2 [E, 2048] in the model dtype. qwen3_moe.py
    builds its router (mlp.gate, 2048 -> 128) with quant_config, so GPTQ quantizes it too. Qwen3-30B-A3B:
    48 layers of q 2048->4096, k/v 2048->512, o 4096->2048, router 2048->128 and 128 experts of gate/up
    2048->768, down 768->2048 = 623,116,288 values a layer."""
    inv = estimate_inventory(arch_of(config("Qwen__Qwen3-30B-A3B-GPTQ-Int4")))
    n = 48 * 623_116_288
    groups = 48 * (16 * 4096 + 2 * 16 * 512 + 32 * 2048 + 16 * 128 + 128 * 3 * 12_288)   # 233,668,608
    biases = 48 * 128 * (2 * 768 + 2048)                                               # 22,020,096
    unquantized = 2 * 151_936 * 2048 + 48 * (2 * 2048 + 2 * 128) + 2048                 # 622,540,800
    assert inv.params_by_dtype == {"I32": n // 8 + groups // 8, "F16": groups + biases + unquantized}
    # the same split vLLM 0.32 creates for this config.json (tests/engine/test_weights_vllm.py)
    assert inv.params_by_dtype == {"I32": 3_767_906_304, "F16": 878_229_504}


def test_block_fp8_qwen3_moe_real_config():
    """Qwen3-30B-A3B-FP8 (weight_block_size [128, 128]): scale blocks a layer q 32x16, k/v 4x16, o 16x32 and
    128 experts x 3 x 6x16 = 38,016; lm_head and routers stay bf16. Before this estimate kvfit sized the
    checkpoint as bf16 (56.87 GiB) and called launches that ran "does not fit"."""
    inv = estimate_inventory(arch_of(config("Qwen__Qwen3-30B-A3B-FP8")))
    # bf16: embed + lm_head 2 x 151936 x 2048, per layer router 128 x 2048 (modules_to_not_convert names
    # every mlp.gate), norms 2 x 2048 + q/k norms 2 x 128 and 4 KV-cache scales, final norm
    bf16 = 2 * 151_936 * 2048 + 48 * (128 * 2048 + 2 * 2048 + 2 * 128 + 4) + 2048
    assert bf16 == 635_123_904
    assert inv.params_by_dtype == {"F8_E4M3": 48 * 622_854_144, "F32": 48 * 38_016, "BF16": bf16}
    assert loaded_bytes(inv, "bfloat16") == 29_896_998_912 + 1_824_768 * 4 + 635_123_904 * 2
    assert "48 MoE layers x 128 experts (gated 768); FP8 block-wise 128x128" in inv.source


def test_modelopt_fp8_from_hf_quant_config():
    """modelopt.py FP8 (static): fp8 weight with float32 weight_scale and input_scale; lm_head excluded.
    The catalog's checkpoint count of the linears is the same 68,451,041,280."""
    hq = json.loads((DATA / "nvidia__Llama-3.1-70B-Instruct-FP8" / "hf_quant_config.json").read_text())
    inv = estimate_inventory(arch_of(config("nvidia__Llama-3.1-70B-Instruct-FP8"), hq))
    assert inv.params_by_dtype["F8_E4M3"] == 68_451_041_280 and inv.params_by_dtype["F32"] == 80 * 7 * 2


def test_vision_tower_follows_the_ignore_list():
    """A compressed-tensors recipe that ignores the tower keeps it bf16; AWQ never quantizes towers
    (AutoAWQ quantizes the decoder layers only)."""
    base = config("Qwen__Qwen2.5-VL-7B-Instruct")
    w8 = {"num_bits": 8, "type": "int", "strategy": "channel"}
    kept = estimate_inventory(arch_of(dict(base, quantization_config={
        "quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head", "re:visual.*"],
        "config_groups": {"g": {"targets": ["Linear"], "weights": w8, "input_activations": {"dynamic": True}}}})))
    quantized = estimate_inventory(arch_of(dict(base, quantization_config={
        "quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head"],
        "config_groups": {"g": {"targets": ["Linear"], "weights": w8, "input_activations": {"dynamic": True}}}})))
    assert "(vision unquantized)" in kept.source
    assert kept.params_by_dtype["I8"] < quantized.params_by_dtype["I8"]
    awq = estimate_inventory(arch_of(dict(base, quantization_config={
        "quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True})))
    assert "(vision unquantized)" in awq.source
    # the tower's 676,550,144 values (its merger included) are what the recipe kept bf16
    assert quantized.params_by_dtype["I8"] - kept.params_by_dtype["I8"] == 676_550_144 - 1_505_280 - 32 * (
        2 * 1280 + 3 * 1280 + 1280 + 2 * 3420 + 1280) - 1280 - 5120 - 3584


def test_declared_total_scales_the_estimate():
    cfg = dict(config("meta-llama__Llama-3.1-8B-Instruct"), total_params=8_000_000_000)
    inv = estimate_inventory(arch_of(cfg))
    assert abs(inv.total_params - 8_000_000_000) <= 2
    assert "declared 8,000,000,000 parameters" in inv.source


def test_unknown_quantization_method_is_said():
    inv = llama8b({"quant_method": "hqq", "nbits": 4})
    assert inv.params_by_dtype == {"BF16": LINEAR + FLOAT}
    assert "quantization method 'hqq' is not modelled" in inv.source


# --- what vLLM holds beyond the checkpoint --------------------------------------------------------------

def test_mxfp4_marlin_padding_on_hopper_before_0_12():
    """mxfp4.py (0.10.1-0.11.x wheels without triton_kernels): Marlin pads hidden 2880 -> 3072 and the
    intermediate 2880 -> 2944. Per layer w13 128 x 5888 x 1536 + scales 128 x 5888 x 96, w2 128 x 3072 x
    1472 + scales 128 x 3072 x 92 = 1,844,969,472 B against 1,692,057,600 as stored, and bf16 biases
    128 x (2 x 2944 + 3072) x 2 against 128 x (2 x 2880 + 2880) x 2: +152,993,792 B a layer."""
    src = catalog.load("openai/gpt-oss-120b")
    arch = arch_of(src.config)
    old, new = profiles.mxfp4_moe_backend("0.11.0", (9, 0)), profiles.mxfp4_moe_backend("0.32.0", (9, 0))
    assert old.name == "Marlin" and old.padding == (256, 128)
    assert new.name == "OAI Triton" and new.padding == (1, 64)
    assert mxfp4_padding_bytes(arch, 1, old.padding) == 36 * 152_993_792
    assert mxfp4_padding_bytes(arch, 1, new.padding) == 0                  # 2880 is a multiple of 64
    plain = weights_per_gpu(src.inventory, arch, "bfloat16")
    marlin = weights_breakdown(src.inventory, arch, "bfloat16", mxfp4_padding=old.padding)
    assert marlin.total - plain == 36 * 152_993_792                         # 5.13 GiB more on Hopper Marlin
    assert "MXFP4 experts padded" in marlin.detail
    assert profiles.mxfp4_moe_backend("0.32.0", (7, 5)) is None            # vLLM needs SM80 for MXFP4


def test_mla_keeps_dequantized_absorbed_weights():
    """mla_attention.py: a quantized kv_b_proj is dequantized into W_UV and W_UK_T (bf16) kept beside it:
    DeepSeek-V3 at TP 8, 128/8 heads x 512 x (128 + 128) x 2 B = 4 MiB a layer, 61 layers."""
    src = catalog.load("deepseek-ai/DeepSeek-V3")
    arch = arch_of(src.config)
    assert mla_dequant_bytes(arch, 8, 2) == 61 * 16 * 512 * 256 * 2
    assert mla_dequant_bytes(arch_of(catalog.load("deepseek-ai/DeepSeek-V2-Lite-Chat").config), 1, 2) == 0


def test_online_fp8_of_an_unquantized_checkpoint():
    """--quantization fp8 (= fp8_per_tensor, online/fp8.py): every linear fp8 with a float32 scale; the
    embedding, LM head and norms stay bf16."""
    src = catalog.load("meta-llama/Llama-3.1-8B-Instruct")
    inv = online_quantized_inventory(arch_of(src.config), src.inventory, "fp8")
    assert inv.params_by_dtype == {"F8_E4M3": LINEAR, "F32": 7 * 32, "BF16": FLOAT}
    assert loaded_bytes(inv, "bfloat16") == LINEAR + 224 * 4 + FLOAT * 2
    assert online_quantized_inventory(arch_of(src.config), src.inventory, "awq") is None
