"""MiniMax lightning linear attention (MiniMax-Text-01 / MiniMax-M1 / MiniMax-VL-01) and PLaMo2, in the vLLM
releases that served them: layer kinds, state sizes, pages, groups, and the refusals outside those releases.

Expected numbers are derived by hand from each release's code (file and release cited per case), never from
kvfit's output. No CPU-engine case is possible: the installed vLLM (0.32.0, CPU build) no longer has either
family (model_executor/models/registry.py::_PREVIOUSLY_SUPPORTED_MODELS: MiniMax until 0.23.0, PLaMo2 until
0.26.0; `vllm serve` raises "was supported in vLLM until v0.23.0, and is not supported anymore").

Inputs: the real MiniMax-M1 config.json (tests/data/models/MiniMax-AI__MiniMax-M1, source.json says where it was
copied from). No real PLaMo2 config.json was found in a public repository or package reachable here, so the
PLaMo2 cases use small hand-made configs, TEST INPUTS ONLY (not a real model; not in the catalog).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.kv.layout import KVOptions, build_layout, layer_spec
from kvfit.kv.specs import MambaSpec, RequestContext
from kvfit.memory.profiles import (engine_for, mamba_cache_mode, minimax_fp32_state_refused, served_release_error,
                                   supports_mamba_prefix_caching)
from kvfit_harness import invoke

M1_DIR = Path(__file__).resolve().parents[1] / "data" / "models" / "MiniMax-AI__MiniMax-M1"
M1 = json.loads((M1_DIR / "config.json").read_text())

# TEST INPUT (hand-made, not a real model): the keys plamo2.py reads.
PLAMO2_TINY = {"model_type": "plamo2", "architectures": ["Plamo2ForCausalLM"], "hidden_size": 256,
               "num_attention_heads": 4, "num_key_value_heads": 1, "hidden_size_per_head": 64,
               "num_hidden_layers": 8, "mamba_step": 2, "mamba_num_heads": 8, "mamba_d_state": 64,
               "mamba_d_conv": 4, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 2048,
               "torch_dtype": "bfloat16"}


# --- MiniMax-M1 (real config) ------------------------------------------------------------------------------

def test_minimax_m1_layer_kinds_follow_attn_type_list():
    # minimax_text_01.py (0.10.1-0.23.0): decoder_attention_types = config.attn_type_list; 0 linear, 1 full.
    a = normalize(M1)
    full = [i for i, t in enumerate(M1["attn_type_list"]) if t == 1]
    assert full == [7, 15, 23, 31, 39, 47, 55, 63, 71, 79]
    assert [x.index for x in a.attention_layers] == full
    assert {x.kind for x in a.attention_layers} == {"full"}          # no per-layer window, sliding_window null
    assert len(a.mamba_layers) == 70 and {x.kind for x in a.mamba_layers} == {"linear_attn"}
    # MiniMaxText01Attention: num_key_value_heads 8 KV heads of head_dim 128
    assert {(x.num_kv_heads, x.head_size, x.head_size_v) for x in a.attention_layers} == {(8, 128, 128)}


@pytest.mark.parametrize("tp, state, attn_token", [
    # 0.23.0 mamba_utils.py::linear_attention_state_shape: (num_attention_heads // tp, head_dim, head_dim) in
    # mamba_cache_dtype (auto = bfloat16): 64 x 128 x 128 x 2 B at TP 1, 8 x 128 x 128 x 2 at TP 8.
    # FullAttentionSpec page of one token: K and V, KV heads per rank x 128 x 2 B.
    (1, 64 * 128 * 128 * 2, 8 * 2 * 128 * 2),
    (8, 8 * 128 * 128 * 2, 1 * 2 * 128 * 2),
])
def test_minimax_m1_state_page_and_groups(tp, state, attn_token):
    a = normalize(M1)
    opt = KVOptions(block_size=16, kv_dtype_bytes=2, tensor_parallel_size=tp, max_model_len=32768,
                    mamba_cache_mode="align")
    assert state == {1: 2_097_152, 8: 262_144}[tp]
    spec = layer_spec(a.mamba_layers[0], opt, 16)
    assert isinstance(spec, MambaSpec) and spec.state_bytes == state and spec.checkpoint_blocks == 0
    lay = build_layout(a, opt)
    # 0.23.0 platforms/interface.py::_align_hybrid_block_size (mamba_cache_mode != "all"): kernel alignment
    # max(16, block_size 16) = 16; attn_block_size = 16 * cdiv(state, 16 * attn_token) = 16 * 32 = 512 at both
    # TP sizes, and 512 * attn_token == state: no mamba padding.
    assert -(-state // (16 * attn_token)) * 16 == 512
    assert lay.attention_block_size == 512 and lay.mamba_page_padding == 0.0
    # 0.23.0 v1/core/kv_cache_utils.py: 70 linear layers, 10 full; group size 10 (70 >= 1.5 x 10) -> 7 mamba
    # groups + 1 attention group; one block = 10 pages of 512 x attn_token == state bytes.
    assert len(lay.groups) == 8
    assert lay.bytes_per_block == 10 * state
    assert lay.kv_bytes_per_token == 10 * attn_token
    # MambaSpec.max_memory_usage_bytes (0.23.0 v1/kv_cache_interface.py), mamba_cache_mode "align": 2 pages per
    # linear layer; full attention cdiv(32768, 512) = 64 blocks -> 7 x 2 + 64 per request.
    ctx = RequestContext(max_model_len=32768, max_num_batched_tokens=8192, max_in_flight_tokens=8192,
                         mamba_cache_mode="align")
    assert lay.blocks_per_request(ctx) == 7 * 2 + 64


def test_minimax_m1_check_on_0_23_end_to_end():
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8", "--vllm-version", "0.23.0",
                "--max-model-len", "32768", "--enable-prefix-caching", "--json"])
    assert r.rc == 0, r
    kv = r.json["kv"]
    assert kv["bytes_per_block"] == 10 * 8 * 128 * 128 * 2      # as in the TP 8 case above
    assert kv["attention_block_size"] == 512
    assert kv["bytes_per_token"] == 10 * 2 * 128 * 2
    # 0.15.0-0.27.x: asked for, prefix caching stays on and MambaModelConfig picks "align" (no
    # SupportsMambaPrefixCaching): 2 pages per linear-attention group
    assert r.json["capacity"]["blocks_per_request"] == 7 * 2 + 64
    # Not asked for: off (0.23.0 config/model.py::is_prefix_caching_supported is False for attn_type "hybrid",
    # engine/arg_utils.py default_prefix_caching = is_prefix_caching_supported): one page, mamba_cache_mode "none"
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8", "--vllm-version", "0.23.0",
                "--max-model-len", "32768", "--json"])
    assert r.rc == 0, r
    assert r.json["capacity"]["blocks_per_request"] == 7 * 1 + 64


def test_minimax_prefix_caching_off_before_0_15():
    # 0.12.0 models/config.py::MambaModelConfig: a model without supports_mamba_prefix_caching -> prefix caching
    # disabled; 0.12.0 MambaSpec.max_memory_usage_bytes: one page per request -> 7 x 1 + 64.
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8", "--vllm-version", "0.12.0",
                "--max-model-len", "32768", "--json"])
    assert r.rc == 0, r
    assert r.json["capacity"]["blocks_per_request"] == 7 * 1 + 64


@pytest.mark.parametrize("version, requested, on", [
    ("0.10.2", True, False),    # 0.10.2 models/config.py: enable_prefix_caching = False ("not yet supported")
    ("0.11.0", None, False),
    ("0.14.0", True, False),    # 0.14.0 MambaModelConfig: no supports_mamba_prefix_caching -> disabled
    ("0.15.0", None, False),    # 0.15.0 config/model.py::is_prefix_caching_supported: False for "hybrid"
    ("0.15.0", True, True),     # 0.15.0 MambaModelConfig: "align" without SupportsMambaPrefixCaching
    ("0.23.0", False, False),
    ("0.26.0", None, False),    # 0.26.0 arg_utils.py: "is_prefix_caching_supported and not model_config.is_hybrid"
    ("0.26.0", True, True),
])
def test_hybrid_prefix_caching_by_release(version, requested, on):
    for arch in ("MiniMaxM1ForCausalLM", "Plamo2ForCausalLM"):
        assert not supports_mamba_prefix_caching(version, (arch,))
        mode = mamba_cache_mode(version, requested, hybrid=True, supports_prefix=False)
        assert mode == ("align" if on else "none")


def test_minimax_fp32_state():
    # mamba_utils.py::linear_attention_state_dtype raises "fp32 state for minimax is not yet supported" in
    # 0.10.1-0.20.0; 0.21.0 returns get_kv_cache_torch_dtype(mamba_cache_dtype, ...) for float32 too.
    assert minimax_fp32_state_refused("0.20.0") and not minimax_fp32_state_refused("0.21.0")
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8", "--vllm-version", "0.20.0",
                "--mamba-cache-dtype", "float32"])
    assert r.rc == 2 and "fp32 state for minimax is not yet supported" in " ".join(r.err.split()), r
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8", "--vllm-version", "0.23.0",
                "--mamba-cache-dtype", "float32", "--max-model-len", "32768", "--json"])
    assert r.rc == 0, r
    # float32 state: 8 x 128 x 128 x 4 B at TP 8; the attention page (512 B per token, bf16 KV) grows to
    # 16 * cdiv(524288, 16 * 512) = 1024 tokens.
    assert r.json["kv"]["attention_block_size"] == 1024
    assert r.json["kv"]["bytes_per_block"] == 10 * 8 * 128 * 128 * 4


# --- refusals outside the served releases ------------------------------------------------------------------

VLLM_REMOVED = ("Model architecture {a} was supported in vLLM until v{v}, and is not supported anymore. "
                "Please use an older version of vLLM if you want to use this model architecture.")


@pytest.mark.parametrize("arch, version, last", [
    # registry.py::_PREVIOUSLY_SUPPORTED_MODELS from 0.24.0 (MiniMax) / 0.27.0 (PLaMo2), text as in 0.33.0.
    ("MiniMaxText01ForCausalLM", "0.24.0", "0.23.0"),
    ("MiniMaxM1ForCausalLM", "0.33.0", "0.23.0"),
    ("MiniMaxVL01ForConditionalGeneration", "0.32.0", "0.23.0"),
    ("MiniMaxForCausalLM", "0.26.0", "0.23.0"),
    ("Plamo2ForCausalLM", "0.27.0", "0.26.0"),
])
def test_removed_releases_refuse_with_vllms_message(arch, version, last):
    why = served_release_error(version, (arch,), "V1")
    assert why.startswith(VLLM_REMOVED.format(a=arch, v=last))
    assert f"--vllm-version {last}" in why
    assert engine_for(version, architectures=(arch,), has_inner_state=True).error == why


@pytest.mark.parametrize("arch, version", [
    ("MiniMaxM1ForCausalLM", "0.23.0"), ("MiniMaxText01ForCausalLM", "0.10.2"), ("Plamo2ForCausalLM", "0.26.0"),
    ("Plamo2ForCausalLM", "0.10.2"),
])
def test_served_v1_releases_are_modelled(arch, version):
    assert engine_for(version, architectures=(arch,), has_inner_state=True).error is None


def test_v0_and_unreleased():
    # 0.10.0: MiniMaxText01ForCausalLM is SupportsV0Only; 0.10.1: V1 only with VLLM_USE_V1=1 (has_inner_state
    # is experimental there, engine/arg_utils.py); Plamo2ForCausalLM SupportsV0Only up to 0.10.1.
    for arch, version in (("MiniMaxText01ForCausalLM", "0.10.0"), ("MiniMaxText01ForCausalLM", "0.10.1"),
                          ("Plamo2ForCausalLM", "0.10.1")):
        c = engine_for(version, architectures=(arch,), has_inner_state=True)
        assert c.engine == "V0" and "V1 engine only" in c.error
    c = engine_for("0.10.1", {"VLLM_USE_V1": "1"}, architectures=("MiniMaxText01ForCausalLM",), has_inner_state=True)
    assert c.engine == "V1" and c.error is None
    # registry.py: MiniMaxM1ForCausalLM first listed in 0.9.2
    assert "does not serve" in served_release_error("0.9.1", ("MiniMaxM1ForCausalLM",), "V1")


def test_default_release_refuses_minimax_with_exit_2():
    r = invoke(["check", str(M1_DIR), "--gpu", "H200", "-tp", "8"])
    assert r.rc == 2, r
    err = " ".join(r.err.split())
    assert "was supported in vLLM until v0.23.0, and is not supported anymore" in err
    assert "--vllm-version 0.23.0" in err


# --- PLaMo2 (hand-made TEST INPUTS) ------------------------------------------------------------------------

def test_plamo2_layers_follow_mamba_step():
    # plamo2.py::is_mamba (0.10.2-0.26.0): i % mamba_step != mamba_step // 2 -> mamba; step 2: odd layers attend.
    a = normalize(PLAMO2_TINY)
    assert [x.index for x in a.attention_layers] == [1, 3, 5, 7]
    assert [x.index for x in a.mamba_layers] == [0, 2, 4, 6]
    # Plamo2AttentionMixer: num_key_value_heads KV heads of hidden_size_per_head
    assert {(x.num_kv_heads, x.head_size) for x in a.attention_layers} == {(1, 64)}
    # num_hidden_layers <= mamba_step // 2: every layer mamba but the last
    short = normalize({**PLAMO2_TINY, "num_hidden_layers": 2, "mamba_step": 4})
    assert [x.kind for x in short.layers] == ["plamo2_mamba", "full"]


def test_plamo2_state_pages_and_padding():
    a = normalize(PLAMO2_TINY)
    opt = KVOptions(block_size=16, kv_dtype_bytes=2, max_model_len=2048)
    # 0.26.0 plamo2.py::get_mamba_state_shape_from_config -> mamba2_state_shape(intermediate = 8 x 64 = 512,
    # n_groups=0, heads 8, head_dim 64, state 64, conv 4): conv (3, 512), ssm (8, 64, 64), bf16.
    state = 3 * 512 * 2 + 8 * 64 * 64 * 2
    assert state == 68_608
    spec = layer_spec(a.mamba_layers[0], opt, 16)
    # MambaBase.get_kv_cache_spec (0.26.0 layers/mamba/abstract.py): no prefill checkpoint block
    assert spec.state_bytes == state and spec.checkpoint_blocks == 0
    lay = build_layout(a, opt)
    # _align_hybrid_block_size: 1 KV head x 2 x 64 x 2 B = 256 B per token; 16 * cdiv(68608, 16 * 256) = 272
    # tokens; attention page 272 x 256 = 69,632 B; mamba padded by (69632 - 68608) / 68608 = 1.49 %.
    assert lay.attention_block_size == 272
    assert round(lay.mamba_page_padding, 2) == 1.49
    # 4 mamba + 4 attention layers: two groups of 4; one block = 4 pages of 69,632 B.
    assert len(lay.groups) == 2 and lay.bytes_per_block == 4 * 69_632
    # TP 2: conv (3, 256), ssm (4, 64, 64); 1 KV head replicated
    spec2 = layer_spec(a.mamba_layers[0], KVOptions(block_size=16, kv_dtype_bytes=2, tensor_parallel_size=2), 16)
    assert spec2.state_bytes == 3 * 256 * 2 + 4 * 64 * 64 * 2


def test_plamo2_check_on_0_26_and_refusal_on_0_27(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(PLAMO2_TINY))
    r = invoke(["check", str(tmp_path), "--gpu", "H100", "--vllm-version", "0.26.0", "--json"])
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == 272 and r.json["kv"]["bytes_per_block"] == 4 * 69_632
    r = invoke(["check", str(tmp_path), "--gpu", "H100", "--vllm-version", "0.27.0"])
    assert r.rc == 2 and "was supported in vLLM until v0.26.0" in " ".join(r.err.split()), r


def test_plamo2_needs_mamba_step_above_one():
    from kvfit.errors import ConfigError
    with pytest.raises(ConfigError, match="mamba_step"):
        normalize({**PLAMO2_TINY, "mamba_step": 1})


@pytest.mark.parametrize("version, block", [
    # --block-size 32 on the PLaMo2 test input (68,608 B state, 256 B per attention token):
    # 0.11.0 models/config.py::HybridAttentionMambaModelConfig: attn_block_size = 16 * cdiv(68608, 16 * 256) = 272
    # > 32, so 272; 0.19.0: kernel_block_alignment_size = 16, the same 272;
    # 0.20.0 platforms/interface.py::_align_hybrid_block_size: alignment max(16, 32) = 32 ->
    # 32 * cdiv(68608, 32 * 256) = 288.
    ("0.11.0", 272), ("0.19.0", 272), ("0.20.0", 288), ("0.26.0", 288),
])
def test_plamo2_hybrid_alignment_with_a_user_block_size(tmp_path, version, block):
    (tmp_path / "config.json").write_text(json.dumps(PLAMO2_TINY))
    r = invoke(["check", str(tmp_path), "--gpu", "H100", "--vllm-version", version, "--block-size", "32", "--json"])
    assert r.rc == 0, r
    assert r.json["kv"]["attention_block_size"] == block
    # mamba page padded to block x 256 B; 4 mamba + 4 attention layers per group pair
    assert r.json["kv"]["bytes_per_block"] == 4 * block * 256
