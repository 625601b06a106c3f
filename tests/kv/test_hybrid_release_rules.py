"""Per-release rules for every hybrid (mamba + attention) model: whether prefix caching is on (so
mamba_cache_mode "none" / "align" / "all"), MambaMixer2's prefill checkpoint block, speculative state pages.

Inputs are real configs (tests/data/models/*/config.json): NVIDIA Nemotron-H-56B-Base-8K (mamba2,
NemotronHForCausalLM, SupportsMambaPrefixCaching), AI21-Jamba-1.5-Mini (mamba1, JambaForCausalLM,
SupportsMambaPrefixCaching) and Qwen3-Next-80B-A3B-Instruct (gated delta net, Qwen3NextForCausalLM, no
SupportsMambaPrefixCaching). Every expected number is derived by hand below from the release's code, never from
kvfit's output.

The release facts (vllm/ paths of each release's wheel, /tmp/vsrc/<release>/vllm):
- default prefix caching for a hybrid: 0.11.1-0.11.2 engine/arg_utils.py "default_prefix_caching = not
  model_config.is_hybrid"; 0.12.0-0.25.x default_prefix_caching = model_config.is_prefix_caching_supported, and
  config/model.py::is_prefix_caching_supported returns False for attn_type "hybrid" ("Hybrid models do not
  support prefix caching since the feature is still experimental"); 0.26.0-0.27.x it returns True but the default
  is "is_prefix_caching_supported and not model_config.is_hybrid"; 0.28.0+ default_prefix_caching =
  is_prefix_caching_supported: on.
- mode when on (model_executor/models/config.py::MambaModelConfig): 0.10.2-0.11.0 always disabled;
  0.12.0-0.14.x kept for a SupportsMambaPrefixCaching model with v1/kv_cache_interface.py::MambaSpec charging
  cdiv(max_model_len, block) pages ("all"), disabled otherwise; 0.15.0-0.27.x "all" if
  supports_mamba_prefix_caching else "align"; 0.28.0+ "align".
- MambaSpec.max_memory_usage_bytes: "none" 1 page, "align" 2 + num_speculative_blocks +
  num_prefill_checkpoint_blocks pages (0.15.0+); MambaMixer2.get_kv_cache_spec sets
  num_prefill_checkpoint_blocks=1 from 0.32.0 (model_executor/layers/mamba/mamba_mixer2.py; the field exists
  from 0.29.0 but only Kimi-K3's KDA sets it in 0.29-0.31). Mamba1 and GDN (before 0.33) have none.
  Before 0.15.0 MambaSpec.max_memory_usage_bytes is one page whatever num_speculative_blocks says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.kv.layout import KVOptions, layer_spec
from kvfit.memory.profiles import (kv_layout_rule, mamba_cache_mode, profile_for,
                                   supports_mamba_prefix_caching)
from kvfit_harness import invoke

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
NEMOTRON_H = MODELS / "nvidia__Nemotron-H-56B-Base-8K"
JAMBA = MODELS / "ai21labs__AI21-Jamba-1.5-Mini"
QWEN3_NEXT = MODELS / "Qwen__Qwen3-Next-80B-A3B-Instruct"


def _check(model: Path, version: str, *extra: str):
    return invoke(["check", str(model), "--gpu", "H200", "-tp", "2", "--vllm-version", version, "--json", *extra])


# --- the rule itself --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version, requested, supports, mode", [
    ("0.10.2", True, True, "none"),      # 0.10.2 MambaModelConfig: enable_prefix_caching = False, always
    ("0.11.0", True, True, "none"),
    ("0.11.2", None, True, "none"),      # default "not is_hybrid": off
    ("0.11.2", True, True, "all"),       # kept; HybridAttentionMambaModelConfig: mamba_block_size = attn block
    ("0.14.0", None, True, "none"),      # is_prefix_caching_supported: False for "hybrid"
    ("0.14.0", True, True, "all"),       # kept; MambaSpec: cdiv(max_model_len, block_size) pages
    ("0.14.0", True, False, "none"),     # "Hybrid or mamba-based model detected without support ...: disabling"
    ("0.15.0", None, True, "none"),
    ("0.15.0", True, True, "all"),
    ("0.15.0", True, False, "align"),
    ("0.25.0", None, False, "none"),
    ("0.26.0", None, True, "none"),      # "is_prefix_caching_supported and not model_config.is_hybrid"
    ("0.27.0", True, False, "align"),
    ("0.27.0", True, True, "all"),
    ("0.28.0", None, True, "align"),     # default on; MambaModelConfig: "align" (no "all" default any more)
    ("0.28.0", None, False, "align"),
    ("0.28.0", False, True, "none"),
    ("0.32.0", None, True, "align"),
])
def test_hybrid_mamba_cache_mode_by_release(version, requested, supports, mode):
    assert mamba_cache_mode(version, requested, hybrid=True, supports_prefix=supports) == mode


def test_speculative_align_for_supporting_models_0_20_to_0_21():
    # 0.20.0-0.21.x MambaModelConfig: supports_mamba_prefix_caching and speculative_config -> "align";
    # 0.22.0 drops that branch ("all" again).
    for version, mode in (("0.19.0", "all"), ("0.20.0", "align"), ("0.21.0", "align"), ("0.22.0", "all")):
        assert mamba_cache_mode(version, True, hybrid=True, supports_prefix=True, speculative=True) == mode


def test_attention_free_defaults_off_in_every_release():
    # is_prefix_caching_supported: attention_free -> False (0.12-0.34); 0.11.1-0.11.2 default on ("not
    # is_hybrid") but MambaModelConfig sets mamba_block_size = max_model_len first: one page ("none").
    for version in ("0.11.1", "0.14.0", "0.27.0", "0.28.0", "0.32.0"):
        assert mamba_cache_mode(version, None, hybrid=False, supports_prefix=True) == "none"
    assert mamba_cache_mode("0.11.1", True, hybrid=False, supports_prefix=True) == "none"
    assert mamba_cache_mode("0.12.0", True, hybrid=False, supports_prefix=True) == "all"


def test_supports_mamba_prefix_caching_by_release():
    # SupportsMambaPrefixCaching is new in 0.11.1 (no model has it in 0.11.0); bamba.py is gone from 0.24.0.
    assert not supports_mamba_prefix_caching("0.11.0", ("NemotronHForCausalLM",))
    for arch in ("NemotronHForCausalLM", "JambaForCausalLM", "GraniteMoeHybridForCausalLM", "Zamba2ForCausalLM",
                 "FalconH1ForCausalLM", "FalconMambaForCausalLM", "Mamba2ForCausalLM"):
        assert supports_mamba_prefix_caching("0.11.1", (arch,)) and supports_mamba_prefix_caching("0.27.0", (arch,))
    assert supports_mamba_prefix_caching("0.23.0", ("BambaForCausalLM",))
    assert not supports_mamba_prefix_caching("0.24.0", ("BambaForCausalLM",))
    for arch in ("Qwen3NextForCausalLM", "Lfm2ForCausalLM", "KimiLinearForCausalLM", "MiniMaxM1ForCausalLM"):
        assert not supports_mamba_prefix_caching("0.27.0", (arch,))


@pytest.mark.parametrize("version, blocks", [("0.28.0", 0), ("0.29.0", 0), ("0.31.0", 0), ("0.32.0", 1),
                                             ("0.33.0", 1)])
def test_mamba2_checkpoint_block_from_0_32(version, blocks):
    a = normalize(json.loads((NEMOTRON_H / "config.json").read_text()))
    rule = kv_layout_rule(profile_for(version))
    assert rule.mamba2_checkpoint_block is bool(blocks)
    opt = KVOptions(block_size=16, kv_dtype_bytes=2, mamba_cache_mode="align",
                    mamba2_checkpoint=rule.mamba2_checkpoint_block)
    assert layer_spec(a.mamba_layers[0], opt, 16).checkpoint_blocks == blocks


# --- end to end: Nemotron-H-56B (mamba2, supports mamba prefix caching) -----------------------------------
#
# --mamba-ssm-cache-dtype float32 pins the ssm state dtype in every release (the model's own default changed:
# NemotronHForCausalLMConfig, models/config.py, absent up to 0.12 -> auto, float16 0.13-0.19, float32 0.20+).
# TP 2: mamba2 state = conv (3, (256 x 64 + 2 x 8 x 256) / 2 = 10240) bf16 = 61,440 B + ssm (256 / 2 = 128 heads,
# 64, 256) fp32 = 8,388,608 B = 8,450,048 B; attention per token 8 / 2 = 4 KV heads x 2 x 128 x 2 B = 2,048 B.
# Block: 16 x cdiv(8,450,048, 16 x 2,048) = 16 x 258 = 4,128 tokens (HybridAttentionMambaModelConfig before 0.20,
# platforms/interface.py::_align_hybrid_block_size after, both with alignment 16).
# Layers (hybrid_override_pattern): 54 mamba ("M"), 10 attention ("*"): group size 10, cdiv(54, 10) = 6 mamba
# groups + 1 attention group. max_model_len 8192 (max_position_embeddings): attention cdiv(8192, 4128) = 2 blocks.

@pytest.mark.parametrize("version, extra, blocks", [
    ("0.14.0", (), 6 * 1 + 2),                              # prefix caching off by default: "none"
    ("0.27.0", (), 6 * 1 + 2),                              # off by default (not is_hybrid)
    ("0.28.0", (), 6 * 2 + 2),                              # on: "align", no checkpoint block yet
    ("0.28.0", ("--no-enable-prefix-caching",), 6 * 1 + 2),
    ("0.31.0", (), 6 * 2 + 2),                              # 0.29-0.31: field exists, MambaMixer2 leaves it 0
    ("0.32.0", (), 6 * 3 + 2),                              # 0.32: num_prefill_checkpoint_blocks=1
    ("0.33.0", (), 6 * 3 + 2),
])
def test_nemotron_h_blocks_per_request_by_release(version, extra, blocks):
    r = _check(NEMOTRON_H, version, "--mamba-ssm-cache-dtype", "float32", *extra)
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == 4128
    assert r.json["capacity"]["blocks_per_request"] == blocks


@pytest.mark.parametrize("version", ["0.12.0", "0.14.0", "0.15.0", "0.27.0"])
def test_nemotron_h_prefix_caching_all_mode_is_refused(version):
    # 0.12-0.14: prefix caching kept (SupportsMambaPrefixCaching), a page per block; 0.15-0.27 mamba_cache_mode
    # "all" (MambaModelConfig): kvfit does not model it and says so, exit 2.
    r = _check(NEMOTRON_H, version, "--enable-prefix-caching")
    assert r.rc == 2, r
    assert "mamba_cache_mode \"all\"" in " ".join(r.err.split())


# --- end to end: Jamba-1.5-Mini (mamba1, supports mamba prefix caching) -----------------------------------
#
# TP 2: mamba1 state = conv (3, 2 x 4096 / 2 = 4096) + ssm (4096, 16), bf16: 24,576 + 131,072 = 155,648 B;
# attention 8 / 2 = 4 KV heads x 2 x 128 x 2 B = 2,048 B per token; block 16 x cdiv(155,648, 32,768) = 80;
# 28 mamba + 4 attention layers (attn_layer_period 8, offset 4): group size 4, 7 mamba groups + 1 attention;
# one block = 4 pages of 80 x 2,048 = 655,360 B. --max-model-len 32768: attention cdiv(32768, 80) = 410 blocks.
# Mamba1 has no checkpoint block in any release.

@pytest.mark.parametrize("version, extra, blocks", [
    ("0.11.0", ("--enable-prefix-caching",), 7 * 1 + 410),  # 0.11.0 MambaModelConfig disables it
    ("0.27.0", (), 7 * 1 + 410),
    ("0.28.0", (), 7 * 2 + 410),
    ("0.32.0", (), 7 * 2 + 410),
])
def test_jamba_blocks_per_request_by_release(version, extra, blocks):
    r = _check(JAMBA, version, "--max-model-len", "32768", *extra)
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == 80 and r.json["kv"]["bytes_per_block"] == 4 * 80 * 2048
    assert r.json["capacity"]["blocks_per_request"] == blocks


def test_jamba_kv_cache_tokens_follow_the_mode_on_0_28():
    # 0.28.0 v1/core/kv_cache_utils.py::get_kv_cache_capacity: tokens = int(num_blocks / blocks per request x
    # max_model_len); the mode changes blocks per request, not the pool (same pages, same budget).
    on = _check(JAMBA, "0.28.0", "--max-model-len", "32768")
    off = _check(JAMBA, "0.28.0", "--max-model-len", "32768", "--no-enable-prefix-caching")
    assert on.rc == 0 and off.rc == 0
    nb = on.json["capacity"]["num_blocks"]
    assert off.json["capacity"]["num_blocks"] == nb
    assert on.json["capacity"]["kv_cache_tokens"] == int(nb / (7 * 2 + 410) * 32768)
    assert off.json["capacity"]["kv_cache_tokens"] == int(nb / (7 * 1 + 410) * 32768)


# --- end to end: Qwen3-Next (gated delta net, no SupportsMambaPrefixCaching) --------------------------------
#
# TP 2: GDN state = conv (3, (16 x 128 x 2 + 32 x 128) / 2 = 4096) + temporal (32 / 2 = 16, 128, 128), bf16:
# 24,576 + 524,288 = 548,864 B; attention 2 / 2 = 1 KV head x 2 x 256 x 2 B = 1,024 B per token; block
# 16 x cdiv(548,864, 16,384) = 544; 36 GDN + 12 attention layers (full_attention_interval 4): group size 12,
# 3 GDN groups + 1 attention group. --max-model-len 32768: attention cdiv(32768, 544) = 61 blocks.

@pytest.mark.parametrize("version, extra, blocks", [
    ("0.14.0", ("--enable-prefix-caching",), 3 * 1 + 61),  # no SupportsMambaPrefixCaching: disabled
    ("0.15.0", (), 3 * 1 + 61),
    ("0.15.0", ("--enable-prefix-caching",), 3 * 2 + 61),  # "align" (no interface)
    ("0.25.0", ("--enable-prefix-caching",), 3 * 2 + 61),
    ("0.27.0", (), 3 * 1 + 61),
    ("0.27.0", ("--enable-prefix-caching",), 3 * 2 + 61),
    ("0.28.0", (), 3 * 2 + 61),
    ("0.32.0", (), 3 * 2 + 61),                             # GDN: no checkpoint block before 0.33
])
def test_qwen3_next_blocks_per_request_by_release(version, extra, blocks):
    r = _check(QWEN3_NEXT, version, "--max-model-len", "32768", *extra)
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == 544 and r.json["kv"]["bytes_per_block"] == 12 * 544 * 1024
    assert r.json["capacity"]["blocks_per_request"] == blocks


@pytest.mark.parametrize("version, blocks", [
    # MTP with 2 speculative tokens: the GDN conv state widens by 2 rows (mamba_utils.py gated_delta_net_state_shape
    # conv_kernel_size - 1 + num_spec): 5 x 4096 x 2 + 524,288 = 565,248 B; block 16 x cdiv(565,248, 16,384) = 560;
    # the MTP layer is one more full-attention layer: 13 attention + 36 GDN, group size 13, cdiv(36, 13) = 3 GDN
    # groups; attention cdiv(32768, 560) = 59 blocks.
    ("0.11.0", 3 * 1 + 59),          # MambaSpec.max_memory_usage_bytes = page_size_bytes: no speculative pages
    ("0.14.0", 3 * 1 + 59),          # cdiv(max_model_len, mamba block = max_model_len) = 1 page
    ("0.15.0", 3 * (1 + 2) + 59),    # "none": page x (1 + num_speculative_blocks)
    ("0.28.0", 3 * (2 + 2) + 59),    # "align" (on by default): page x (2 + num_speculative_blocks)
])
def test_qwen3_next_speculative_mamba_pages_by_release(version, blocks):
    r = _check(QWEN3_NEXT, version, "--max-model-len", "32768",
               "--speculative-config", '{"method": "mtp", "num_speculative_tokens": 2}')
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == 560 and r.json["kv"]["bytes_per_block"] == 13 * 560 * 1024
    assert r.json["capacity"]["blocks_per_request"] == blocks


def test_align_with_speculative_decoding_refused_0_15_to_0_16():
    # 0.15.0-0.16.x MambaModelConfig asserts "Mamba cache mode 'align' is currently not compatible with
    # speculative decoding."; gone in 0.17.0.
    spec = ("--speculative-config", '{"method": "mtp", "num_speculative_tokens": 2}', "--enable-prefix-caching")
    r = _check(QWEN3_NEXT, "0.16.0", "--max-model-len", "32768", *spec)
    assert r.rc == 2 and "not compatible with speculative decoding" in " ".join(r.err.split()), r
    r = _check(QWEN3_NEXT, "0.17.0", "--max-model-len", "32768", *spec)
    assert r.rc == 0, r
    assert r.json["capacity"]["blocks_per_request"] == 3 * (2 + 2) + 59


# The ssm state dtype Nemotron-H gets without --mamba-ssm-cache-dtype (config.json has no mamba_ssm_cache_dtype):
# up to 0.12 no NemotronHForCausalLMConfig -> "auto" = the model dtype (bf16); 0.13-0.19 its
# verify_and_update_config falls back to float16; from 0.20 DEFAULT_MAMBA_SSM_CACHE_DTYPE = float32
# (model_executor/models/config.py of each release). A 2-byte state at TP 2: conv 61,440 B + ssm 128 x 64 x
# 256 x 2 = 4,194,304 B = 4,255,744 B -> block 16 x cdiv(4,255,744, 16 x 2,048) = 16 x 130 = 2,080 tokens; the
# float32 one is the 4,128 above.
@pytest.mark.parametrize("version, block", [("0.12.0", 2080), ("0.13.0", 2080), ("0.19.0", 2080),
                                            ("0.20.0", 4128), ("0.32.0", 4128)])
def test_nemotron_h_default_ssm_dtype_by_release(version, block):
    r = _check(NEMOTRON_H, version)
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == block


# --- FlashInfer, head size 256, Blackwell (flashinfer-ai/flashinfer#1993), vLLM 0.11.1-0.17.x ---------------
#
# models/config.py::HybridAttentionMambaModelConfig: kernel_block_alignment_size = 32 instead of 16 when
# is_device_capability(100) (0.11.1-0.12.x; is_device_capability_family(100) from 0.13.0), the model's head size
# is 256 and the attention backend is unset or FLASHINFER; 0.11.0 has `attn_block_size = 16 * cdiv(...)` and
# 0.18.0 drops the branch. Qwen3-Next-80B at TP 4 (config: linear_num_key_heads 16, linear_num_value_heads 32,
# key/value head dim 128, conv kernel 4, 2 KV heads, head_dim 256), bf16: GDN state = conv (3, (2 x 16 x 128 +
# 32 x 128) / 4 = 2048) x 2 B = 12,288 B + temporal (32 / 4 = 8, 128, 128) x 2 B = 262,144 B = 274,432 B;
# attention per token max(1, 2 / 4) = 1 KV head x 2 x 256 x 2 B = 1,024 B.
#   16 x cdiv(274,432, 16 x 1,024) = 16 x 17 = 272 tokens;  32 x cdiv(274,432, 32 x 1,024) = 32 x 9 = 288 tokens.

@pytest.mark.parametrize("gpu, version, env, block", [
    ("B200", "0.11.0", (), 272),
    ("B200", "0.11.1", (), 288),
    ("B200", "0.12.0", (), 288),
    ("B200", "0.15.0", (), 288),
    ("B200", "0.17.0", (), 288),
    ("B200", "0.15.0", ("VLLM_ATTENTION_BACKEND=FLASHINFER",), 288),
    ("B200", "0.15.0", ("VLLM_ATTENTION_BACKEND=FLASH_ATTN",), 272),
    ("B200", "0.18.0", (), 272),
    ("H100", "0.15.0", (), 272),
])
def test_qwen3_next_hybrid_block_on_blackwell(gpu, version, env, block):
    launch = ["--", *env, "vllm", "serve", str(QWEN3_NEXT), "-tp", "4", "--max-model-len", "32768"]
    r = invoke(["check", "--gpu", gpu, "--vllm-version", version, "--json", *launch])
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == block


def test_the_device_test_per_release():
    """0.11.1-0.12.x test compute capability 10.0 only; 0.13-0.17 any 10.x (B300 is 10.3); never 9.0 or 12.x."""
    from kvfit.memory.profiles import flashinfer_hd256_needs_32 as rule

    assert rule(profile_for("0.12.0"), (10, 0)) and not rule(profile_for("0.12.0"), (10, 3))
    assert rule(profile_for("0.13.0"), (10, 3)) and rule(profile_for("0.17.0"), (10, 3))
    assert not rule(profile_for("0.15.0"), (9, 0)) and not rule(profile_for("0.15.0"), (12, 0))
    assert not rule(profile_for("0.15.0"), (10, 0), device="cpu")
    assert not rule(profile_for("0.15.0"), (10, 0), env={"VLLM_ATTENTION_BACKEND": "TRITON_ATTN"})


# A model that is not hybrid gets no alignment: FlashInferMetadataBuilder asserts `kv_cache_spec.block_size
# != 16` for head_dim 256 on those GPUs and releases (v1/attention/backends/flashinfer.py), so vLLM stops at
# startup with its message; Gemma 3 4B has head_dim 256 on every layer.
GEMMA3 = "google/gemma-3-4b-it"


@pytest.mark.parametrize("gpu, version, extra, refused", [
    ("B200", "0.15.0", (), True),
    ("B200", "0.11.1", (), True),
    ("B200", "0.11.0", (), False),
    ("B200", "0.18.0", (), False),
    ("H100", "0.15.0", (), False),
    ("B200", "0.15.0", ("--block-size", "32"), False),
])
def test_gemma3_head_256_on_blackwell(gpu, version, extra, refused):
    r = invoke(["check", GEMMA3, "--gpu", gpu, "--vllm-version", version, "--max-model-len", "8192", "--json",
                *extra])
    assert (r.rc == 2) is refused, r
    if refused:
        assert "There is a bug in FlashInfer block_size 16 head size 256 support" in r.json["error"]["message"]
        assert "--block-size 32" in r.json["error"]["hint"]
