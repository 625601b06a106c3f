"""vLLM 0.33.0 against 0.32.0: the terms that change the numbers (memory/profiles.py docstring).
Expected values are worked out from 0.33's code (file named at each test), with the model's config
values from tests/data/models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.kv.layout import KVOptions, build_layout
from kvfit.kv.specs import RequestContext
from kvfit.memory import profiles as P
from kvfit.memory.overhead import (CUDA_CONTEXT_BYTES, cublas_workspace_bytes, cuda_context_bytes,
                                   estimate_overhead, mla_kv_lora_rank)
from kvfit.memory.profiles import profile_for

MiB, GiB = 1 << 20, 1 << 30
MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
A100, H100, T4, B200 = (8, 0), (9, 0), (7, 5), (10, 0)


def arch_of(name: str):
    return normalize(json.loads((MODELS / name / "config.json").read_text()))


def test_033_profile_flags():
    p32, p33 = profile_for("0.32.0"), profile_for("0.33.0")
    assert not (p32.sampler_warmup_pass or p32.cublas_before_baseline or p32.mla_workspace_in_profile
                or p32.gdn_prefill_checkpoint or p32.kv_dtype_mismatch_refused)
    assert (p33.sampler_warmup_pass and p33.cublas_before_baseline and p33.mla_workspace_in_profile
            and p33.gdn_prefill_checkpoint and p33.kv_dtype_mismatch_refused)
    # unchanged in 0.33 (config/cache.py, engine/arg_utils.py, v1/worker/utils.py)
    assert (p33.default_gpu_memory_utilization, p33.batch_rule, p33.requested_ceil, p33.tokens_report,
            p33.cudagraph_estimate_subtracted, p33.null_block_reserved) == \
        (0.92, "v1-160", True, "concurrency", True, True)


# --- the second sampler pass ---------------------------------------------------------------------

@pytest.mark.parametrize("cc, env, device, per_logit", [
    (A100, None, "cuda", 12),     # FlashInfer sampler: fp32 copy + masked logits + probs, 4 B each
    (H100, None, "cuda", 12),
    ((12, 1), None, "cuda", 12),  # FlashInferBackend.supports_compute_capability: 8.0 .. 12.1
    (T4, None, "cuda", 4),        # below 8.0: the Triton top-k/top-p works in place on the fp32 copy
    (H100, {"VLLM_USE_FLASHINFER_SAMPLER": "0"}, "cuda", 4),
    (H100, None, "cpu", 0),       # "CPU worker ... has no warmup OOM to prevent": no second pass
])
def test_sampler_warmup_bytes(cc, env, device, per_logit):
    assert P.sampler_warmup_bytes_per_logit(profile_for("0.33.0"), device=device, compute_capability=cc,
                                            env=env) == per_logit
    assert P.sampler_warmup_bytes_per_logit(profile_for("0.32.0"), device=device, compute_capability=cc,
                                            env=env) == 0


def test_033_reserve_for_llama_8b_on_h100():
    """Llama-3.1-8B, serve defaults on an 80 GB non-A100 GPU: 8192 tokens, 1024 rows, vocab 128,256.
    0.33 adds 1024 x 128,256 x 12 B = 1,576,009,728 B (1.47 GiB) to the sampler term and takes the
    Hopper cuBLAS workspace (32 MiB) out of the charged reserve."""
    arch = arch_of("meta-llama__Llama-3.1-8B-Instruct")
    kw = dict(max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2, tp=1, enforce_eager=False,
              cudagraph_counted=True, layers_on_rank=32, compute_capability=H100, max_model_len=131072)
    o32 = estimate_overhead(arch, profile=profile_for("0.32.0"), **kw)
    o33 = estimate_overhead(arch, profile=profile_for("0.33.0"), **kw)
    assert o33.sampler_bytes - o32.sampler_bytes == 1024 * 128_256 * 12 == 1_576_009_728
    assert o33.activation_bytes - o32.activation_bytes == 1_576_009_728
    assert o32.non_torch_bytes - o33.non_torch_bytes == 32 * MiB
    assert o33.workspace_bytes == 0 and o33.cudagraph_bytes == o32.cudagraph_bytes
    # without a profile: the 0.32 numbers, as before
    legacy = estimate_overhead(arch, **{k: v for k, v in kw.items() if k not in ("compute_capability", "max_model_len")})
    assert (legacy.activation_bytes, legacy.non_torch_bytes) == (o32.activation_bytes, o32.non_torch_bytes)


def test_cublas_moves_into_the_baseline():
    assert cublas_workspace_bytes(A100) == 4096 * 1024 * 2 + 16 * 1024 * 8 == 8_519_680
    assert cublas_workspace_bytes(H100) == 32 * MiB
    assert cuda_context_bytes(profile_for("0.32.0"), H100) == CUDA_CONTEXT_BYTES
    assert cuda_context_bytes(profile_for("0.33.0"), H100) == CUDA_CONTEXT_BYTES + 32 * MiB
    assert cuda_context_bytes(profile_for("0.33.0"), H100, device="cpu") == CUDA_CONTEXT_BYTES


# --- TRITON_MLA workspace ------------------------------------------------------------------------

@pytest.mark.parametrize("cc, backend, triton", [
    (A100, None, True), ((8, 9), None, True), ((12, 0), None, True),   # Ampere, Ada, SM120: TRITON_MLA
    (H100, None, False),                                               # FLASH_ATTN_MLA
    (B200, None, False),                                               # FLASHINFER_MLA
    (H100, "TRITON_MLA", True),
])
def test_mla_backend(cc, backend, triton):
    assert P.uses_triton_mla("0.33.0", compute_capability=cc, attention_backend=backend) is triton


@pytest.mark.parametrize("max_model_len, sm_count, expected", [
    # rows 256 x heads 16 x splits x (512 + 1) x 4 B; splits = min(next_pow2(L // 512), 2 x SMs)
    (163_840, 108, 256 * 16 * 216 * 513 * 4),     # next_pow2(320) = 512, capped at 216 (A100: 108 SMs)
    (32_768, 108, 256 * 16 * 64 * 513 * 4),       # 64 splits
    (163_840, None, 256 * 16 * 512 * 513 * 4),    # SM count unknown: uncapped (an upper bound)
    (1000, 108, 256 * 16 * 1 * 513 * 4),          # 1000 // 512 = 1
])
def test_triton_mla_workspace_for_deepseek_v2_lite(max_model_len, sm_count, expected):
    """triton_mla.py::_reserve_attn_logits_workspace, rounded to 256 B (workspace.py::get_simultaneous)."""
    arch = arch_of("deepseek-ai__DeepSeek-V2-Lite")
    assert (arch.num_attention_heads, mla_kv_lora_rank(arch)) == (16, 512)
    got = P.triton_mla_workspace_bytes(max_num_seqs=256, num_heads_per_rank=16, kv_lora_rank=512,
                                       max_model_len=max_model_len, sm_count=sm_count)
    assert got == expected
    if max_model_len == 163_840 and sm_count:
        assert round(got / GiB, 2) == 1.69
    kw = dict(max_num_batched_tokens=2048, max_num_seqs=256, act_bytes=2, tp=1, enforce_eager=False,
              cudagraph_counted=True, layers_on_rank=27, max_model_len=max_model_len, sm_count=sm_count)
    o33 = estimate_overhead(arch, profile=profile_for("0.33.0"), compute_capability=A100, **kw)
    o32 = estimate_overhead(arch, profile=profile_for("0.32.0"), compute_capability=A100, **kw)
    assert o33.workspace_bytes == expected and o32.workspace_bytes == 0
    assert o33.activation_bytes - o32.activation_bytes == expected + 256 * 102_400 * 12   # + sampler pass
    on_h100 = estimate_overhead(arch, profile=profile_for("0.33.0"), compute_capability=H100, **kw)
    assert on_h100.workspace_bytes == 0


def test_triton_mla_workspace_splits_heads_over_tp_and_counts_spec_rows():
    arch = arch_of("deepseek-ai__DeepSeek-V3")            # 128 heads
    kw = dict(max_num_batched_tokens=2048, max_num_seqs=64, act_bytes=2, tp=8, enforce_eager=False,
              cudagraph_counted=True, layers_on_rank=61, max_model_len=32768, sm_count=108,
              num_speculative_tokens=1)
    o = estimate_overhead(arch, profile=profile_for("0.33.0"), compute_capability=A100, **kw)
    assert o.workspace_bytes == 64 * 2 * 16 * 64 * 513 * 4


# --- GDN prefill checkpoints ---------------------------------------------------------------------

@pytest.mark.parametrize("cc, head_k, runtime, mode, alignment", [
    (H100, 128, 13, "align", 64),        # SM90: FlashInfer, no further constraint
    (H100, 64, 12, "align", 64),
    (B200, 128, 13, "align", 64),        # SM10x with head_k_dim 128 and CUDA >= 13
    (B200, 128, 12, "align", 0),
    (B200, 64, 13, "align", 0),
    ((12, 1), 128, 13, "align", 0 + 64), # SM12x likewise
    (A100, 128, 13, "align", 0),         # Triton/FLA
    (H100, 128, 13, "none", 0),          # no prefix caching: no checkpoints
])
def test_gdn_checkpoint_alignment(cc, head_k, runtime, mode, alignment):
    """qwen_gdn_linear_attn.py::_resolve_gdn_prefill_backend and the checkpoint alignment (0.33)."""
    got = P.gdn_checkpoint_alignment(profile_for("0.33.0"), compute_capability=cc, head_k_dim=head_k,
                                     mamba_cache_mode=mode, cuda_runtime_major=runtime)
    assert got == alignment
    assert P.gdn_checkpoint_alignment(profile_for("0.32.0"), compute_capability=cc, head_k_dim=head_k,
                                      mamba_cache_mode=mode, cuda_runtime_major=runtime) == 0


def _qwen3_next_layout(alignment: int):
    arch = arch_of("Qwen__Qwen3-Next-80B-A3B-Instruct")
    opt = KVOptions(block_size=16, kv_dtype_bytes=2, mamba_cache_mode="align", mamba_conv_bytes=2,
                    mamba_ssm_bytes=2, max_model_len=32768, gdn_checkpoint_alignment=alignment)
    ctx = RequestContext(max_model_len=32768, max_num_batched_tokens=8192, max_in_flight_tokens=16384,
                         mamba_cache_mode="align")
    lay = build_layout(arch, opt)
    return lay, lay.blocks_per_request(ctx)


def test_qwen3_next_on_hopper_033():
    """Qwen3-Next-80B, TP1, bf16 on an H100 with prefix caching (align mode). Attention 2 KV heads x
    (256 + 256) x 2 B = 2,048 B/token; GDN page 1,097,728 B (tests/kv/test_kv_arithmetic.py).
    0.32: block 16 x cdiv(1,097,728, 16 x 2,048) = 544, 67 blocks per request at 32,768.
    0.33 (platforms/interface.py::_align_hybrid_block_size): alignment lcm(16, 64) = 64 ->
    block 64 x cdiv(1,097,728, 64 x 2,048) = 64 x 9 = 576; page 576 x 2,048 = 1,179,648, padding
    (1,179,648 - 1,097,728) / 1,097,728 = 7.46 %; 12 full + 36 GDN -> 4 groups of 12:
    bytes per block 12 x 1,179,648 = 14,155,776. Per request: cdiv(32,768, 576) = 57 attention
    blocks + 3 GDN groups x (2 + 0 spec + 1 checkpoint) = 66 (kv_cache_interface.py
    MambaSpec.max_memory_usage_bytes)."""
    lay32, per32 = _qwen3_next_layout(0)
    assert (lay32.attention_block_size, per32) == (544, 67)
    lay, per = _qwen3_next_layout(64)
    assert lay.attention_block_size == 576 and round(lay.mamba_page_padding, 2) == 7.46
    assert (len(lay.groups), lay.bytes_per_block, per) == (4, 14_155_776, 66)
    gdn = [g.spec for g in lay.groups if g.spec.kind == "mamba"]
    assert gdn and all(s.checkpoint_blocks == 1 for s in gdn)


def test_gdn_alignment_only_in_align_mode():
    arch = arch_of("Qwen__Qwen3-Next-80B-A3B-Instruct")
    opt = KVOptions(block_size=16, kv_dtype_bytes=2, mamba_cache_mode="none", max_model_len=32768,
                    gdn_checkpoint_alignment=64)
    lay = build_layout(arch, opt)
    assert lay.attention_block_size == 544
    assert all(g.spec.checkpoint_blocks == 0 for g in lay.groups if g.spec.kind == "mamba")


def test_cudagraph_estimate_for_any_release():
    """The 0.31 per-graph cost (gt-046: 0.23 GiB for 51 graphs x 32 layers) over each release's sizes."""
    from kvfit.memory.overhead import estimate_cudagraph_bytes

    kw = dict(max_num_seqs=256, max_num_batched_tokens=2048, layers_on_rank=32)
    assert abs(estimate_cudagraph_bytes(profile_for("0.31.0"), **kw) - 0.23 * GiB) < 1024      # 51 sizes
    assert estimate_cudagraph_bytes(profile_for("0.9.2"), **kw) == int(67 * 32 * 0.23 * GiB / (51 * 32))
    assert estimate_cudagraph_bytes(profile_for("0.6.6"), **kw) == int(35 * 32 * 0.23 * GiB / (51 * 32))
    assert estimate_cudagraph_bytes(profile_for("0.9.2"), enforce_eager=True, **kw) == 0
