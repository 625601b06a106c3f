"""Layer kinds the normalizer derives, on small configs, against vLLM 0.32's rules (cited per case).

The engine suite checks these rules on the real CPU engine for the families it can build; these
cases pin the branches it cannot reach (refusals, per-layer patterns of bigger models).
"""

from __future__ import annotations

import pytest

from kvfit.arch.normalize import normalize
from kvfit.errors import ConfigError

LLAMA = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "num_hidden_layers": 4, "max_position_embeddings": 4096}


def kinds(cfg: dict) -> list[str]:
    return [x.kind for x in normalize(cfg).layers]


def test_model_wide_window_without_layer_types():
    # engine/arg_utils.py: CacheConfig.sliding_window is set when layer_types is None -> every layer.
    assert kinds({**LLAMA, "sliding_window": 512}) == ["sliding"] * 4


def test_mixed_layer_types_give_per_layer_windows():
    # llama.py passes per_layer_sliding_window from layer_types; no model-wide window when mixed.
    lt = ["sliding_attention", "full_attention"] * 2
    assert kinds({**LLAMA, "sliding_window": 512, "layer_types": lt}) == ["sliding", "full"] * 2


def test_qwen2_max_window_layers():
    q = {**LLAMA, "model_type": "qwen2", "sliding_window": 512, "use_sliding_window": True}
    # transformers Qwen2Config: sliding from layer max_window_layers on; all -> model-wide window.
    assert kinds({**q, "max_window_layers": 0}) == ["sliding"] * 4
    # i >= max_window_layers for none of the layers: all full, no window anywhere.
    assert kinds({**q, "max_window_layers": 4}) == ["full"] * 4
    # mixed: vLLM's Qwen2Model asserts max_window_layers == num_hidden_layers.
    with pytest.raises(ConfigError, match="refuses"):
        normalize({**q, "max_window_layers": 2})


def test_qwen2_head_size_ignores_head_dim():
    # qwen2.py::Qwen2Attention: head_dim = hidden_size // num_attention_heads (a head_dim key is not read),
    # while ModelConfig.get_head_size() reports the key.
    a = normalize({**LLAMA, "model_type": "qwen2", "head_dim": 32})
    assert {x.head_size for x in a.layers} == {64} and a.head_size == 32


def test_llama4_no_rope_layers():
    # llama4.py: ChunkedLocalAttention where no_rope_layers[i] != 0 (default: every 4th layer global).
    cfg = {**LLAMA, "model_type": "llama4_text", "num_hidden_layers": 8, "attention_chunk_size": 1024}
    assert kinds(cfg) == ["chunked", "chunked", "chunked", "full"] * 2
    assert kinds({**cfg, "no_rope_layers": [0, 1] * 4}) == ["full", "chunked"] * 4


def test_gemma3_pattern_and_gpt_oss():
    g = {**LLAMA, "model_type": "gemma3_text", "num_hidden_layers": 6, "sliding_window": 512,
         "sliding_window_pattern": 3}
    assert kinds(g) == ["sliding", "sliding", "full"] * 2
    o = {**LLAMA, "model_type": "gpt_oss", "sliding_window": 128}
    assert kinds(o) == ["sliding", "full"] * 2      # gpt_oss.py: layer_idx % 2 == 0 slides


def test_nemotron_h_pattern():
    cfg = {**LLAMA, "model_type": "nemotron_h", "hybrid_override_pattern": "M*-E", "num_hidden_layers": 4,
           "mamba_num_heads": 8, "mamba_head_dim": 32, "n_groups": 1, "ssm_state_size": 16, "conv_kernel": 4}
    a = normalize(cfg)
    assert [(x.index, x.kind) for x in a.layers] == [(0, "mamba2"), (1, "full")]
    assert a.mamba_ssm_dtype == "float32"       # NemotronHForCausalLMConfig default
    with pytest.raises(ConfigError, match="hybrid_override_pattern"):
        normalize({**cfg, "hybrid_override_pattern": "M*X-"})


def test_falcon_h1_attention_then_mamba_in_every_layer():
    cfg = {**LLAMA, "model_type": "falcon_h1", "num_hidden_layers": 2, "mamba_d_ssm": 256, "mamba_n_heads": 8,
           "mamba_d_head": 32, "mamba_n_groups": 1, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2}
    assert kinds(cfg) == ["full", "mamba2", "full", "mamba2"]


def test_mla_indexer_skip_pattern():
    # models/deepseek_v32/attention.py: skip = max(i - offset + 1, 0) % index_topk_freq != 0 (offset 2),
    # freq 2: i=0 -> 0 % 2 = 0 keep; 1 -> 0 keep; 2 -> 1 skip; 3 -> 2 keep; 4 -> 3 skip; 5 -> 4 keep.
    cfg = {"model_type": "deepseek_v32", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 6,
           "kv_lora_rank": 512, "qk_rope_head_dim": 64, "index_topk": 64, "index_head_dim": 128,
           "index_topk_freq": 2, "max_position_embeddings": 4096}
    a = normalize(cfg)
    assert [x.index for x in a.layers if x.kind == "indexer"] == [0, 1, 3, 5]
    assert {x.head_size for x in a.layers if x.kind == "indexer"} == {132}


@pytest.mark.parametrize("cfg, kind", [
    # vLLM picks the class by architecture (model_executor/models/registry.py, 0.23.0 / 0.26.0): MiniMax lightning
    # linear attention (minimax_text_01.py: no attn_type_list / layer_types -> every layer full attention) and
    # PLaMo2 (plamo2.py::is_mamba) are modelled whatever model_type says. Which releases serve them:
    # tests/kv/test_minimax_plamo2.py.
    ({**LLAMA, "model_type": "MiniMaxText01", "architectures": ["MiniMaxText01ForCausalLM"],
      "attn_type_list": [0, 1, 0, 1]}, ["linear_attn", "full"] * 2),
    ({**LLAMA, "model_type": "minimax", "architectures": ["MiniMaxForCausalLM"]}, ["full"] * 4),
    ({**LLAMA, "model_type": "minimax", "layer_types": ["linear_attention"] * 3 + ["full_attention"]},
     ["linear_attn"] * 3 + ["full"]),
    ({**LLAMA, "model_type": "plamo_2", "architectures": ["Plamo2ForCausalLM"], "mamba_step": 4,
      "mamba_num_heads": 8, "hidden_size_per_head": 64, "mamba_d_state": 16, "mamba_d_conv": 4},
     ["plamo2_mamba"] * 2 + ["full", "plamo2_mamba"]),
])
def test_minimax_and_plamo2_families_by_architecture(cfg, kind):
    assert kinds(cfg) == kind


def test_kv_shared_layers_own_no_kv():
    # gemma3n.py: 10 layers, num_kv_shared_layers 4 -> first_shared 6; a shared layer reads layer
    # first_shared - 1 = 5 (full) or first_shared - 2 = 4 (sliding): both >= 0, so layers 6..9 get no KV spec.
    cfg = {**LLAMA, "model_type": "gemma3n_text", "num_hidden_layers": 10, "num_kv_shared_layers": 4,
           "head_dim": 64, "sliding_window": 128}
    a = normalize(cfg)
    assert [x.index for x in a.layers] == list(range(6))
    # Gemma3nTextConfig layer_types default: full on every 5th layer
    assert [x.kind for x in a.layers] == ["sliding"] * 4 + ["full", "sliding"]
