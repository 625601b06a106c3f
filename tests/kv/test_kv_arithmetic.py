"""Arithmetic only: KV accounting the CPU engine cannot show, against values computed by hand.

These launches need a GPU backend (block sizes 16/32/64, async scheduling, FlashMLA formats) or a
model the CPU backend cannot build here. Each expected number is worked out in the comment above
it from the spec (../shared/docs/vllm-kv-accounting.md) and vLLM 0.32's code, with the config
values read from tests/data/models. The README's support table marks these "arithmetic only".
Budgets are explicit (--kv-cache-memory-bytes), so no memory estimate enters the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.plan import evaluate as plan
from kvfit.arch.normalize import normalize
from kvfit.errors import BadInput
from kvfit.gpu.model import Gpu
from kvfit.gpu.catalog import lookup
from kvfit.memory.profiles import profile_for
from kvfit.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "data"
GiB = 1 << 30
H100 = lookup("H100")                    # compute capability 9.0: FLASH_ATTN / FLASH_ATTN_MLA, block 16
B200 = Gpu("NVIDIA B200", 190 * GiB, (10, 0), source="test")
CPU = Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu")


def arch_of(name: str, folder: str = "models"):
    d = DATA / folder / name
    hq = d / "hf_quant_config.json"
    return normalize(json.loads((d / "config.json").read_text()),
                     hf_quant_config=json.loads(hq.read_text()) if hq.exists() else None)


def run(arch, gpu=H100, **kw) -> plan.Result:
    kw.setdefault("kv_cache_memory_bytes", 10 * GiB)
    model = plan.Model("test", "local", "", arch, None)
    return plan.evaluate(model, gpu, Settings(**kw), profile_for("0.32.0"))


# --- MLA ----------------------------------------------------------------------------------------

def test_deepseek_v3_mla_not_split_by_tp():
    # 61 MLA layers, one latent of kv_lora_rank 512 + qk_rope_head_dim 64 = 576, bf16:
    # 576 x 2 = 1152 B/token/layer on EVERY rank (num_kv_heads 1, max_tp_shards 1) -> 70,272 B/token.
    # FLASH_ATTN_MLA on Hopper: block 16 -> page 16 x 1152 = 18,432; one uniform group: bpb 61 x 18,432
    # = 1,124,352. 10 GiB = 10,737,418,240 B -> floor(/1,124,352) = 9,549 blocks (9,550 x 1,124,352 =
    # 10,737,561,600 is too much). L 32,768: cdiv(32,768, 16) = 2,048 blocks per request;
    # 9,549 / 2,048 = 4.6625977 -> int(x 32,768) = 152,784 tokens.
    r = run(arch_of("deepseek-ai__DeepSeek-V3"), tensor_parallel_size=8, max_model_len=32768)
    assert r.layout.kv_bytes_per_token == 70272
    assert r.layout.bytes_per_block == 1_124_352
    assert (r.capacity.num_blocks, r.capacity.blocks_per_request, r.capacity.kv_cache_tokens) == (9549, 2048, 152784)


@pytest.mark.parametrize("kv_dtype, per_token", [("fp8", 61 * 576), ("fp8_ds_mla", 61 * 656),
                                                 ("nvfp4_ds_mla", 61 * 352)])
def test_mla_quantized_formats(kv_dtype, per_token):
    # dense fp8: 576 x 1 B; fp8_ds_mla packs 656 B per token (FlashMLA sparse), nvfp4_ds_mla 352 B.
    r = run(arch_of("deepseek-ai__DeepSeek-V3"), max_model_len=32768, kv_cache_dtype=kv_dtype)
    assert r.layout.kv_bytes_per_token == per_token


def test_deepseek_v32_indexer():
    # V3.2: every layer adds a DeepseekV32IndexerCache of 128 + 128 // 128 * 4 = 132 uint8 per token.
    # MLA and indexer are both FullAttentionSpec-family with one block size -> ONE group whose page is
    # the sum. fp8_ds_mla: 61 x (656 + 132) = 48,068 B/token; bf16: 61 x (1152 + 132) = 78,324.
    # FLASHMLA_SPARSE block 64: bpb (fp8_ds_mla) = 64 x 48,068 = 3,076,352.
    a = arch_of("deepseek-ai__DeepSeek-V3.2")
    assert sum(x.kind == "indexer" for x in a.layers) == 61
    r = run(a, max_model_len=32768, kv_cache_dtype="fp8_ds_mla")
    assert r.layout.kv_bytes_per_token == 48068
    assert (r.layout.block_size, r.layout.bytes_per_block, len(r.layout.groups)) == (64, 3_076_352, 1)
    assert run(a, max_model_len=32768).layout.kv_bytes_per_token == 78324


def test_mla_blackwell_block_32():
    # FLASHINFER_MLA (SM 10.x dense MLA) prefers 32-token blocks: page 32 x 1152.
    r = run(arch_of("moonshotai__Kimi-K2-Instruct"), gpu=B200, max_model_len=32768)
    assert r.layout.block_size == 32
    assert r.layout.bytes_per_block == 61 * 32 * 1152


def test_deepseek_mtp_adds_one_mla_layer():
    # --speculative-config '{"method": "mtp", "num_speculative_tokens": 1}': the MTP module
    # (num_nextn_predict_layers 1) is one more MLA layer: 62 x 1152 = 71,424 B/token at TP8.
    r = run(arch_of("deepseek-ai__DeepSeek-V3"), tensor_parallel_size=8, max_model_len=32768,
            speculative_method="mtp", num_speculative_tokens=1)
    assert r.layout.kv_bytes_per_token == 62 * 1152


def test_cpu_amx_mla_keeps_block_128_and_chunked_prefill():
    # On an AMX host vLLM uses the AMX MLA path: no forced block 16, chunked prefill stays on.
    # tiny deepseek_v2 (2 layers, 576 x 2 = 1152 B/token/layer): page 128 x 1152 = 147,456,
    # bpb 294,912. 1 GiB / 294,912 = 3,640.9 -> 3,640 blocks. L 2048: 16 blocks per request
    # -> 3,640 / 16 = 227.5 -> 465,920 tokens. mnbt: LLM default 4096, capped at 256 x 2048 -> 4096.
    a = arch_of("deepseek_v2_mla", "engine")
    r = run(a, gpu=CPU, device="cpu", entrypoint="llm", cpu_amx=True, kv_cache_memory_bytes=GiB,
            max_model_len=2048)
    assert (r.layout.block_size, r.capacity.num_blocks, r.capacity.kv_cache_tokens) == (128, 3640, 465920)
    assert r.resolved.max_num_batched_tokens == 4096


# --- mamba hybrids --------------------------------------------------------------------------------

def test_qwen3_next_80b_block_544_and_padding():
    # Qwen3-Next-80B, TP1, bf16 on H100. Attention: 2 KV heads x (256 + 256) x 2 B = 2,048 B/token.
    # GDN: conv_dim = 128 x 16 x 2 + 128 x 32 = 8,192 -> conv (3, 8,192) x 2 B = 49,152;
    # ssm (32, 128, 128) x 2 B = 1,048,576 -> mamba page 1,097,728.
    # block = 16 x cdiv(1,097,728, 16 x 2,048) = 16 x 34 = 544; page 544 x 2,048 = 1,114,112,
    # padding (1,114,112 - 1,097,728) / 1,097,728 = 1.49 %. 12 full + 36 GDN -> 4 groups of 12:
    # bpb = 12 x 1,114,112 = 13,369,344. L 32,768 (align mode): cdiv(32,768, 544) = 61 + 3 x 2 = 67.
    r = run(arch_of("Qwen__Qwen3-Next-80B-A3B-Instruct"), max_model_len=32768)
    lay = r.layout
    assert lay.attention_block_size == 544 and round(lay.mamba_page_padding, 2) == 1.49
    assert (len(lay.groups), lay.bytes_per_block, r.capacity.blocks_per_request) == (4, 13_369_344, 67)


def test_qwen3_next_without_prefix_caching_needs_one_state_block():
    # --no-enable-prefix-caching: mamba_cache_mode "none" -> 1 block per GDN group: 61 + 3 = 64.
    r = run(arch_of("Qwen__Qwen3-Next-80B-A3B-Instruct"), max_model_len=32768, enable_prefix_caching=False)
    assert r.capacity.blocks_per_request == 64


def test_qwen35_ssm_state_dtype_from_config():
    # Qwen3.5-35B-A3B text_config: 30 GDN + 10 full, mamba_ssm_dtype "float32" (the CPU backend
    # cannot import this architecture without torchvision). nk 16, nv 32, dk = dv = 128, kernel 4:
    # conv (3, 128x16x2 + 128x32 = 8,192) x 2 B = 49,152; ssm (32, 128, 128) x 4 B = 2,097,152
    # -> 2,146,304. Attention 2 x (256+256) x 2 = 2,048 B/token: block 16 x cdiv(2,146,304, 32,768)
    # = 16 x 66 = 1,056 (65.5 rounds up).
    r = run(arch_of("Qwen__Qwen3.5-35B-A3B"), max_model_len=32768)
    assert r.layout.attention_block_size == 1056


def test_nemotron_h_56b_layer_kinds_and_fp32_state():
    # hybrid_override_pattern: 54 'M' (mamba2), 10 '*' (attention), 54 '-' (MLP, no KV).
    # mamba2: mamba_num_heads 256 x mamba_head_dim 64 = 16,384, n_groups 8, state 256, conv 4:
    # conv_dim 16,384 + 2 x 8 x 256 = 20,480 -> conv (3, 20,480) x 2 B = 122,880;
    # ssm (256, 64, 256) x 4 B (float32 default) = 16,777,216 -> 16,900,096.
    # Attention: 8 KV heads x head 8,192 / 64 = 128: 8 x 256 x 2 = 4,096 B/token -> block
    # 16 x cdiv(16,900,096, 16 x 4,096) = 16 x 258 = 4,128.
    a = arch_of("nvidia__Nemotron-H-56B-Base-8K")
    assert (len(a.mamba_layers), len(a.attention_layers)) == (54, 10)
    r = run(a, max_model_len=8192)
    assert r.layout.groups[0].spec.state_bytes == 16_900_096
    assert r.layout.attention_block_size == 4128


def test_jamba_layer_pattern():
    # attn_layer_period 8, offset 4: layers 4, 12, 20, 28 attend; the other 28 are mamba1.
    a = arch_of("ai21labs__AI21-Jamba-1.5-Mini")
    assert [x.index for x in a.attention_layers] == [4, 12, 20, 28] and len(a.mamba_layers) == 28


def test_cpu_avx512_bf16_host_keeps_ssm_state_fp32():
    # Spec run F (an AVX512-BF16 host): tiny Qwen3-Next, mamba page = 3 x 256 x 2 (bf16 conv)
    # + 4 x 32 x 32 x 4 (fp32 ssm) = 17,920, padded to the 128 x 512 = 65,536 attention page;
    # 4 groups of 1 -> 16,384 blocks in 1 GiB; L 4096: 32 + 3 x 2 = 38 per request
    # -> int(16,384 / 38 x 4,096) = 1,766,022 tokens.
    a = arch_of("qwen3_next_hybrid", "engine")
    r = run(a, gpu=CPU, device="cpu", entrypoint="llm", cpu_avx512_bf16=True, kv_cache_memory_bytes=GiB,
            max_model_len=4096)
    assert (r.capacity.num_blocks, r.capacity.kv_cache_tokens) == (16384, 1_766_022)
    assert round(r.layout.mamba_page_padding, 2) == 265.71


def test_hybrid_mamba_needs_the_hybrid_manager():
    # --disable-hybrid-kv-cache-manager: full + mamba specs cannot become one type -> vLLM raises.
    with pytest.raises(BadInput, match="hybrid KV cache manager"):
        run(arch_of("Qwen__Qwen3-Next-80B-A3B-Instruct"), max_model_len=32768, disable_hybrid_kv_cache_manager=True)


# --- sliding window, chunked local attention --------------------------------------------------------

def test_gemma3_27b_padding_layers():
    # medgemma-27b-it (Gemma-3-27B shape): 52 sliding (window 1024) + 10 full, 16 KV heads x 128.
    # 16 x 256 x 2 = 8,192 B/token/layer, page 16 x 8,192 = 131,072. group_size = 10 (52 >= 1.5 x 10):
    # 6 sliding groups (8 padding layers) + 1 full = 7 groups; bpb = 10 x 131,072 = 1,310,720.
    # GPU async: in flight 2 x 8,192. L 32,768: sliding min(1,023 + 16,384, 32,768) = 17,407
    # -> cdiv(17,407, 16) + 1 = 1,089 per group x 6 = 6,534; full 2,048 -> 8,582 per request.
    r = run(arch_of("google__medgemma-27b-it"), max_model_len=32768, max_num_batched_tokens=8192)
    lay = r.layout
    assert (len(lay.groups), lay.padding_layers, lay.bytes_per_block) == (7, 8, 1_310_720)
    assert r.capacity.blocks_per_request == 8582


def test_gpt_oss_20b_gpu_async_and_cpu():
    # 12 sliding (window 128) + 12 full, 8 KV heads x 64: 8 x 128 x 2 = 2,048 B/token.
    # GPU: block 16, 2 groups of 12, bpb 12 x 32,768 = 393,216. L 32,768, mnbt 8,192, async x2:
    # sliding min(127 + 16,384, 32,768) = 16,511 -> 1,032 + 1 = 1,033; full 2,048 -> 3,081.
    a = arch_of("openai__gpt-oss-20b")
    g = run(a, max_model_len=32768, max_num_batched_tokens=8192)
    assert (g.layout.bytes_per_block, g.capacity.blocks_per_request) == (393_216, 3081)
    # CPU: block 128, no async scheduling: min(127 + 8,192, 32,768) = 8,319 -> 65 + 1 = 66; full 256.
    c = run(a, gpu=CPU, device="cpu", entrypoint="llm", max_model_len=32768, max_num_batched_tokens=8192)
    assert c.capacity.blocks_per_request == 66 + 256
    # ngram speculative decoding turns async scheduling off on GPU: min(127 + 8,192, L) = 8,319
    # -> cdiv(8,319, 16) = 520, + 1 = 521 (instead of 1,033); full 2,048.
    n = run(a, max_model_len=32768, max_num_batched_tokens=8192, speculative_method="ngram",
            num_speculative_tokens=3)
    assert n.capacity.blocks_per_request == 521 + 2048


def test_llama4_scout_chunked_keeps_hma_unless_eagle():
    # 48 layers: no_rope_layers default -> every 4th layer global: 36 chunked (8,192) + 12 full.
    # 8 KV heads x 128 -> 4,096 B/token, page 65,536. 0.32 keeps the hybrid manager on
    # (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 1): 3 chunked groups + 1 full,
    # bpb 12 x 65,536 = 786,432; L 131,072, in flight 2 x 8,192: chunked min(8,192 + 16,384, L)
    # = 24,576 -> 1,536 x 3 + full 8,192 = 12,800 blocks per request.
    a = arch_of("meta-llama__Llama-4-Scout-17B-16E-Instruct")
    r = run(a, max_model_len=131072, max_num_batched_tokens=8192)
    assert (r.layout.bytes_per_block, r.capacity.blocks_per_request) == (786_432, 12800)
    # EAGLE with chunked local attention disables the hybrid manager: 48 full layers, one group.
    e = run(a, max_model_len=131072, max_num_batched_tokens=8192, speculative_method="eagle",
            num_speculative_tokens=3)
    assert (e.layout.bytes_per_block, e.capacity.blocks_per_request) == (48 * 65536, 8192)


def test_disable_sliding_window_caps_length():
    # Mistral-7B-v0.1: window 4096 < 32,768 derived -> --disable-sliding-window caps max_model_len to
    # 4096 and every layer is full attention.
    r = run(arch_of("mistralai__Mistral-7B-Instruct-v0.1"), disable_sliding_window=True)
    assert r.resolved.max_model_len == 4096
    assert {type(g.spec).__name__ for g in r.layout.groups} == {"AttentionSpec"}
    with pytest.raises(BadInput):
        run(arch_of("mistralai__Mistral-7B-Instruct-v0.1"), disable_sliding_window=True, max_model_len=8192)


def test_qwen_use_sliding_window_false_trap():
    # Qwen2.5-7B-Instruct: sliding_window 131072 with use_sliding_window false -> no window at all.
    a = arch_of("Qwen__Qwen2.5-7B-Instruct")
    assert a.sliding_window is None and {x.kind for x in a.layers} == {"full"}


# --- parallelism, drafts, cross attention ----------------------------------------------------------

def test_pipeline_parallel_fullest_stage():
    # Llama-3.1-8B, 32 layers over PP 3: 10 each, the remainder (2) to the stages before the last
    # -> [11, 11, 10]. 8 KV heads x 128 bf16: page 16 x 4,096 = 65,536; the fullest stage holds 11
    # layers: 720,896 B per block.
    r = run(arch_of("meta-llama__Llama-3.1-8B-Instruct"), pipeline_parallel_size=3, max_model_len=8192)
    assert r.layout.rank_bytes_per_block == (720_896, 720_896, 655_360)


def test_tp_beyond_kv_heads_replicates():
    # Llama-3.1-70B has 8 KV heads: at TP 16 each rank keeps one head: 80 x 1 x 256 x 2 = 40,960 B/token.
    r = run(arch_of("meta-llama__Llama-3.1-70B-Instruct"), tensor_parallel_size=16, max_model_len=8192)
    assert r.layout.kv_bytes_per_token == 40960


def test_draft_model_layers_are_kv_layers():
    # Llama-3.1-8B target (32 layers) + Llama-3.2-3B draft (28 layers), both 8 KV heads x 128:
    # 60 identical full-attention layers, one group: bpb 60 x 65,536 = 3,932,160.
    a = arch_of("meta-llama__Llama-3.1-8B-Instruct").with_draft(arch_of("meta-llama__Llama-3.2-3B-Instruct").layers)
    r = run(a, max_model_len=8192, speculative_method="draft_model", num_speculative_tokens=3)
    assert r.layout.bytes_per_block == 3_932_160


def test_whisper_cross_attention_on_gpu():
    # tiny Whisper (2 decoder layers, 4 heads x 64, float32 config -> bf16): 4 x 128 x 2 = 1,024
    # B/token, page 16 x 1,024 = 16,384; self + cross buckets of 2 -> 2 groups, bpb 32,768.
    # Encoder-decoder: no chunked prefill -> mnbt = max(448, 8,192) = 8,192 (H100 serve default);
    # cross attention: cdiv(8,192, 16) = 512; decoder self attention cdiv(448, 16) = 28 -> 540.
    r = run(arch_of("whisper_cross", "engine"))
    assert (r.layout.bytes_per_block, r.capacity.blocks_per_request) == (32_768, 540)


def test_modelopt_fp8_kv_scheme():
    # nvidia/Llama-3.1-70B-Instruct-FP8: hf_quant_config.json kv_cache_quant_algo FP8 turns kv
    # dtype auto into fp8: 80 x 8 x 256 x 1 = 163,840 B/token at TP1.
    r = run(arch_of("nvidia__Llama-3.1-70B-Instruct-FP8"), max_model_len=8192)
    assert r.resolved.kv_cache_dtype == "fp8" and r.layout.kv_bytes_per_token == 163840


def test_nemotron_super_block_configs():
    # Llama-3.3-Nemotron-Super-49B (vLLM needs trust_remote_code for its config): 80 block_configs,
    # 31 with attention.no_op (no KV), 49 with n_heads_in_group 8 -> 64 // 8 = 8 KV heads x 128.
    # 49 x 8 x 256 x 2 = 200,704 B/token at TP1 (the old reader counted 80 layers x 64 heads).
    r = run(arch_of("nvidia__Llama-3_3-Nemotron-Super-49B-v1"), max_model_len=8192)
    assert r.layout.kv_bytes_per_token == 200_704


def test_multi_module_mtp_retains_extra_window_tokens():
    # A sliding-window model with 3 MTP modules (num_nextn_predict_layers 3) and
    # num_speculative_tokens 3: use_multi_module_mtp -> num_prefill_lookahead_tokens = 3, so every
    # sliding layer retains 3 - 1 = 2 more tokens (get_kv_cache_configs). GPU, mnbt 2,048, async x2:
    # min(1,023 + 2 + 4,096, 8,192) = 5,121 -> cdiv(5,121, 16) = 321, + 1 = 322 (321 without MTP:
    # 5,119 -> 320 + 1). The 3 MTP layers are full attention (the model's main kind).
    cfg = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 64, "num_hidden_layers": 4, "max_position_embeddings": 8192, "sliding_window": 1024,
           "layer_types": ["sliding_attention", "full_attention"] * 2, "num_nextn_predict_layers": 3,
           "torch_dtype": "bfloat16"}
    a = normalize(cfg)
    base = run(a, max_model_len=8192, max_num_batched_tokens=2048)
    mtp = run(a, max_model_len=8192, max_num_batched_tokens=2048, speculative_method="mtp",
              num_speculative_tokens=3)
    sliding = [g.spec.blocks_per_request(plan.request_context(r.resolved, r.settings, a))
               for r in (base, mtp) for g in r.layout.groups if g.spec.kind == "sliding"]
    assert sliding == [321, 322]
    assert mtp.layout.layers_on_rank == 4 + 3
