"""Reading config.json as vLLM 0.32 does (spec §2): KV-head and layer aliases, head_dim, text_config,
dtype `auto`, max_model_len derivation with the rope rules. Real configs from shared/models are
copied under tests/check/data (each with its source.json).

kv.bytes_per_token = sum over layers of 2 (K, V) x KV heads x head_dim x KV dtype bytes, per GPU.
"""

from __future__ import annotations

import copy

import pytest

from _checkutil import LLAMA_A, ORPHEUS, fixture_config, fixture_dir, flat, no_traceback, write_config


def bpt(check_json, model, *args):
    return check_json(str(model), "--gpu", "A100 80GB", *args)


# --- KV-head aliases (vLLM get_total_num_kv_heads) ----------------------------------------------

def test_num_key_value_heads_llama31_8b(check_json):
    j = bpt(check_json, fixture_dir("meta-llama__Llama-3.1-8B-Instruct"))
    # 32 layers x 8 x (4096 / 32 = 128) x 2 x 2 = 131,072
    assert j["kv"]["bytes_per_token"] == 131_072
    assert j["model"]["family"] == "dense GQA"


def test_mha_llama2_7b(check_json):
    j = bpt(check_json, fixture_dir("meta-llama__Llama-2-7b-hf"))
    # num_key_value_heads 32 = heads: 32 x 32 x 128 x 2 x 2 B (fp16 config stays fp16) = 524,288
    assert j["kv"]["bytes_per_token"] == 524_288
    assert j["settings"]["dtype"] == "float16"
    assert j["model"]["family"] == "dense MHA"


def test_num_kv_heads_falcon_180b_new_decoder_architecture(check_json):
    j = bpt(check_json, fixture_dir("tiiuae__falcon-180B-chat"))
    # multi_query true BUT new_decoder_architecture true -> num_kv_heads 8 (not MQA)
    # head_dim 14848 / 232 = 64: 80 layers x 8 x 64 x 2 x 2 = 163,840
    assert j["kv"]["bytes_per_token"] == 163_840


def falcon7b(**over):
    # tiiuae/falcon-7b's shape (shared/models/INDEX.md): 32 layers, 71 heads, hidden 4544 (head_dim 64),
    # multi_query true with new_decoder_architecture false -> 1 KV head
    cfg = {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "hidden_size": 4544,
           "num_attention_heads": 71, "num_hidden_layers": 32, "multi_query": True,
           "new_decoder_architecture": False, "parallel_attn": True, "vocab_size": 65024,
           "torch_dtype": "bfloat16", "alibi": False, "bias": False}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


def test_falcon_multi_query_without_new_decoder_is_mqa(check_json, tmp_path):
    j = bpt(check_json, write_config(tmp_path / "f7", falcon7b()))
    # 1 KV head: 32 x 1 x 64 x 2 x 2 = 8,192
    assert j["kv"]["bytes_per_token"] == 8192
    assert j["model"]["family"] == "dense MQA"


def test_falcon_multi_query_ignores_num_kv_heads(check_json, tmp_path):
    # num_kv_heads present but multi_query without the new architecture wins (FalconConvertor)
    j = bpt(check_json, write_config(tmp_path / "f7b", falcon7b(num_kv_heads=71)))
    assert j["kv"]["bytes_per_token"] == 8192


def test_falcon_multi_query_false_is_mha(check_json, tmp_path):
    j = bpt(check_json, write_config(tmp_path / "f7c", falcon7b(multi_query=False)))
    # FalconConfig.num_kv_heads defaults to the 71 heads: 32 x 71 x 64 x 2 x 2 = 581,632
    assert j["kv"]["bytes_per_token"] == 581_632


def test_falcon_multi_query_absent_defaults_true(check_json, tmp_path):
    # transformers FalconConfig(multi_query=True) is the default: a config without the key is MQA
    j = bpt(check_json, write_config(tmp_path / "f7d", falcon7b(multi_query=None, new_decoder_architecture=None)))
    assert j["kv"]["bytes_per_token"] == 8192


def test_refinedweb_n_head_kv_falcon40b(check_json, tmp_path):
    # the original falcon-40b config (model_type RefinedWeb, vLLM's RWConfig): n_layer 60, n_head 128,
    # n_head_kv 8, hidden 8192 (RWConfig turns new_decoder_architecture on for hidden_size 8192)
    cfg = {"architectures": ["RWForCausalLM"], "model_type": "RefinedWeb", "hidden_size": 8192,
           "n_head": 128, "n_head_kv": 8, "n_layer": 60, "parallel_attn": True, "vocab_size": 65024,
           "torch_dtype": "bfloat16", "alibi": False, "bias": False}
    j = bpt(check_json, write_config(tmp_path / "f40", cfg))
    # head_dim 8192 / 128 = 64: 60 x 8 x 64 x 2 x 2 = 122,880
    assert j["kv"]["bytes_per_token"] == 122_880


def test_refinedwebmodel_falcon7b_n_layer(check_json, tmp_path):
    # the original falcon-7b config (RefinedWebModel): n_layer / n_head aliases, multi_query -> 1 KV head
    cfg = {"architectures": ["RWForCausalLM"], "model_type": "RefinedWebModel", "hidden_size": 4544,
           "n_head": 71, "n_layer": 32, "multi_query": True, "parallel_attn": True, "vocab_size": 65024,
           "torch_dtype": "bfloat16"}
    j = bpt(check_json, write_config(tmp_path / "rw7", cfg))
    assert j["kv"]["bytes_per_token"] == 32 * 1 * 64 * 2 * 2     # 8,192
    assert j["model"]["layers"] == 32


def test_multi_query_group_num_chatglm3(check_json):
    j = bpt(check_json, fixture_dir("THUDM__chatglm3-6b"))
    # num_layers 28 (no num_hidden_layers), multi_query_group_num 2, head 4096/32 = 128 (= kv_channels),
    # float16 config stays fp16 on A100: 28 x 2 x 128 x 2 x 2 = 28,672
    assert j["kv"]["bytes_per_token"] == 28_672
    assert j["model"]["layers"] == 28
    # seq_length 8192 is the length key
    assert j["model"]["derived_max_model_len"] == 8192
    assert j["model"]["derived_from"] == "seq_length"


def test_multi_query_group_num_glm4_9b(check_json):
    j = bpt(check_json, fixture_dir("THUDM__glm-4-9b-chat"))
    # 40 layers x 2 x 128 x 2 x 2 = 40,960; seq_length 131072
    assert j["kv"]["bytes_per_token"] == 40_960
    assert j["model"]["derived_max_model_len"] == 131_072


def test_chatglm_estimate_uses_padded_vocab_and_ffn_hidden_size(cli, tmp_path):
    # chatglm3-6b names its vocabulary padded_vocab_size and its MLP ffn_hidden_size; the estimate
    # without weights must use them (embedding 65024 x 4096 and untied output layer are 0.53 B params each)
    from kvfit.arch.normalize import normalize
    from kvfit.memory.weights import estimate_inventory

    arch = normalize(fixture_config("THUDM__chatglm3-6b"))
    assert arch.vocab_size == 65024
    assert arch.intermediate_size == 13696
    # published chatglm3-6b total_size 12,487,168,064 B in fp16 = 6,243,584,032 params; the Llama-style
    # estimate (q,k,v,o + gated MLP + norms + 2 x vocab x hidden) must land within 2 %
    est = estimate_inventory(arch).total_params
    assert abs(est - 6_243_584_032) / 6_243_584_032 < 0.02


def test_null_kv_heads_means_mha(check_json, tmp_path):
    cfg = dict(LLAMA_A, num_key_value_heads=None)
    j = bpt(check_json, write_config(tmp_path / "nullkv", cfg))
    # null -> attention heads (4): 3 x 4 x 64 x 2 x 2 = 3,072
    assert j["kv"]["bytes_per_token"] == 3072
    assert any("null" in x for x in j["model"]["inferred"])


def test_kv_head_alias_order(check_json, tmp_path):
    # vLLM's getattr_iter order: n_head_kv, num_kv_heads, num_key_value_heads, multi_query_group_num
    cfg = dict(LLAMA_A, num_key_value_heads=2, num_kv_heads=1)
    j = bpt(check_json, write_config(tmp_path / "order", cfg))
    assert j["kv"]["bytes_per_token"] == 3 * 1 * 64 * 2 * 2     # num_kv_heads first: 768


def test_absent_kv_heads_means_mha(check_json, tmp_path):
    cfg = {k: v for k, v in LLAMA_A.items() if k != "num_key_value_heads"}
    j = bpt(check_json, write_config(tmp_path / "mha", cfg))
    assert j["kv"]["bytes_per_token"] == 3 * 4 * 64 * 2 * 2     # 3,072


# --- layer-count aliases ----------------------------------------------------------------------

@pytest.mark.parametrize("key", ["num_hidden_layers", "n_layer", "num_layers", "n_layers"])
def test_layer_aliases(check_json, tmp_path, key):
    cfg = {k: v for k, v in LLAMA_A.items() if k != "num_hidden_layers"}
    cfg[key] = 5
    j = bpt(check_json, write_config(tmp_path / key, cfg))
    assert j["model"]["layers"] == 5
    assert j["kv"]["bytes_per_token"] == 5 * 2 * 64 * 2 * 2     # 2,560


def test_llama_absent_fields_take_llamaconfig_defaults(check_json, tmp_path):
    # vLLM reads through transformers' LlamaConfig: an absent num_hidden_layers is its default 32
    cfg = {k: v for k, v in LLAMA_A.items() if k != "num_hidden_layers"}
    j = bpt(check_json, write_config(tmp_path / "deflayers", cfg))
    assert j["model"]["layers"] == 32
    assert j["kv"]["bytes_per_token"] == 32 * 2 * 64 * 2 * 2     # 8,192
    assert any("num_hidden_layers=32" in x for x in j["model"]["inferred"])


# --- head size ----------------------------------------------------------------------------------

def test_head_dim_wins_over_hidden_over_heads_gemma2_9b(check_json):
    j = bpt(check_json, fixture_dir("google__gemma-2-9b-it"))
    # head_dim 256 (not 3584 / 16 = 224): 42 layers x 8 x 256 x 2 x 2 = 344,064 (224 would give 301,056)
    assert j["kv"]["bytes_per_token"] == 344_064


def test_head_dim_null_or_zero_falls_back(check_json, tmp_path):
    for v in (None, 0):
        cfg = dict(LLAMA_A, head_dim=v)
        j = bpt(check_json, write_config(tmp_path / f"hd{v}", cfg))
        # hidden 256 / 4 heads = 64: 3 x 2 x 64 x 2 x 2 = 1,536
        assert j["kv"]["bytes_per_token"] == 1536


def test_head_dim_differs_from_hidden_over_heads(check_json, tmp_path):
    cfg = dict(LLAMA_A, head_dim=96)
    j = bpt(check_json, write_config(tmp_path / "hd96", cfg))
    assert j["kv"]["bytes_per_token"] == 3 * 2 * 96 * 2 * 2     # 2,304


# --- text_config for multimodal models ------------------------------------------------------------

def test_qwen25_vl_flat_keys(check_json):
    j = bpt(check_json, fixture_dir("Qwen__Qwen2.5-VL-7B-Instruct"))
    # flat LM keys: 28 layers x 4 x (3584 / 28 = 128) x 2 x 2 = 57,344; mrope not a length factor
    assert j["kv"]["bytes_per_token"] == 57_344
    assert j["model"]["derived_max_model_len"] == 128_000


def test_llava_nested_text_config_with_llama_defaults(check_json):
    j = bpt(check_json, fixture_dir("llava-hf__llava-1.5-7b-hf"))
    # text_config gives only max_position_embeddings 4096 / vocab; LlamaConfig defaults: 32 layers,
    # 32 heads, hidden 4096, KV heads = heads -> 32 x 32 x 128 x 2 x 2 = 524,288 (fp16 config)
    assert j["kv"]["bytes_per_token"] == 524_288
    assert j["model"]["layers"] == 32
    assert j["model"]["derived_max_model_len"] == 4096
    assert j["settings"]["dtype"] == "float16"
    assert any("num_attention_heads=32" in x for x in j["model"]["inferred"])


def test_gemma3_4b_nested_text_config_with_gemma3_defaults(check_json):
    j = bpt(check_json, fixture_dir("google__gemma-3-4b-it"))
    # text_config: 34 layers; Gemma3TextConfig defaults 8 heads, 4 KV heads, head_dim 256:
    # 34 x 4 x 256 x 2 x 2 = 139,264
    assert j["kv"]["bytes_per_token"] == 139_264
    assert j["model"]["model_type"] == "gemma3_text"
    # max_position_embeddings default 131072; the linear factor 8 is NOT applied for gemma3
    assert j["model"]["derived_max_model_len"] == 131_072


# --- dtype auto (config/model.py::_resolve_auto_dtype) --------------------------------------------

@pytest.mark.parametrize("gpu, want", [
    ("A100 80GB", "bfloat16"),   # cc 8.0: float32 config -> bf16
    ("RTX 3090", "bfloat16"),    # cc 8.6
    ("H100", "bfloat16"),        # cc 9.0
    ("T4", "float16"),           # cc 7.5: no bf16 -> fp16
    ("V100 16GB", "float16"),    # cc 7.0
])
def test_float32_config_downcast(check_json, gpu, want):
    j = check_json(ORPHEUS, "--gpu", gpu, "--max-model-len", "2048")
    assert j["settings"]["dtype"] == want
    assert j["settings"]["kv_cache_dtype"] == want
    assert j["kv"]["bytes_per_token"] == 114_688     # 2 bytes either way


def test_bf16_config_on_t4_is_fp16(check_json):
    j = check_json("meta-llama/Llama-3.2-3B-Instruct", "--gpu", "T4", "--max-model-len", "2048")
    assert j["settings"]["dtype"] == "float16"


def test_gemma_on_t4_is_float32(check_json):
    j = check_json(str(fixture_dir("google__gemma-2-9b-it")), "--gpu", "T4", "--max-model-len", "2048")
    # gemma2 refuses fp16 and T4 has no bf16 -> float32; KV in float32: 42 x 8 x 256 x 2 x 4 = 688,128
    assert j["settings"]["dtype"] == "float32"
    assert j["kv"]["bytes_per_token"] == 688_128


def test_gemma_float32_config_on_a100_is_bf16(check_json, tmp_path):
    cfg = dict(fixture_config("google__gemma-2-9b-it"), torch_dtype="float32")
    j = check_json(str(write_config(tmp_path / "g", cfg)), "--gpu", "A100 80GB", "--max-model-len", "2048")
    assert j["settings"]["dtype"] == "bfloat16"


def test_no_dtype_in_config_is_treated_as_float32(check_json, tmp_path):
    cfg = {k: v for k, v in LLAMA_A.items() if k != "torch_dtype"}
    d = write_config(tmp_path / "nodtype", cfg)
    assert check_json(str(d), "--gpu", "A100 80GB")["settings"]["dtype"] == "bfloat16"
    assert check_json(str(d), "--gpu", "T4")["settings"]["dtype"] == "float16"


def test_dtype_key_transformers5(check_json, tmp_path):
    cfg = {k: v for k, v in LLAMA_A.items() if k != "torch_dtype"}
    cfg["dtype"] = "float16"
    j = check_json(str(write_config(tmp_path / "dt", cfg)), "--gpu", "A100 80GB")
    assert j["settings"]["dtype"] == "float16"


def test_explicit_dtype_flags(check_json, cli):
    j = check_json(ORPHEUS, "--gpu", "A100 80GB", "--dtype", "half", "--max-model-len", "2048")
    assert j["settings"]["dtype"] == "float16"
    j = check_json(ORPHEUS, "--gpu", "A100 80GB", "--dtype", "float32", "--max-model-len", "2048")
    # float32 KV: 28 x 8 x 128 x 2 x 4 = 229,376; weights 3,300,867,072 x 4 = 13,203,468,288 + vocab
    # padding 52 rows x 3072 x 4 = 638,976 + rotary 131,072 x 128 x 4 = 67,108,864
    assert j["kv"]["bytes_per_token"] == 229_376
    assert j["memory"]["weights_bytes"] == 13_203_468_288 + 638_976 + 67_108_864
    r = cli("check", ORPHEUS, "--gpu", "T4", "--dtype", "bfloat16")
    assert r.rc == 2 and "compute capability" in flat(r.err), r
    r = cli("check", str(fixture_dir("google__gemma-2-9b-it")), "--gpu", "A100 80GB", "--dtype", "float16")
    assert r.rc == 2 and "gemma2" in flat(r.err), r


# --- max_model_len derivation and rope rules (config/model.py::_get_and_verify_max_len) -----------

def derived(check_json, tmp_path, name, **over):
    cfg = copy.deepcopy(LLAMA_A)
    for k, v in over.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    j = check_json(str(write_config(tmp_path / name, cfg)), "--gpu", "A100 80GB")
    return j


def test_llama3_rope_not_scaled(check_json):
    j = check_json(ORPHEUS, "--gpu", "A100 80GB")
    # llama3 rope factor 32 is not multiplied: max_position_embeddings 131072
    assert j["model"]["derived_max_model_len"] == 131_072
    assert j["settings"]["max_model_len"] == 131_072


@pytest.mark.parametrize("rope, want", [
    ({"rope_type": "linear", "factor": 4.0}, 4096 * 4),                 # multiplied: 16,384
    ({"type": "linear", "factor": 2.0}, 4096 * 2),                      # old key name: 8,192
    ({"rope_type": "dynamic", "factor": 2.0}, 4096 * 2),                # dynamic NTK: 8,192
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}, 4096),   # not scaled
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, 4096),                 # not scaled
    ({"rope_type": "default"}, 4096),                                  # no factor
    ({"rope_type": "linear", "factor": None}, 4096),                    # null factor -> 1.0
])
def test_rope_scaling_rules(check_json, tmp_path, rope, want):
    j = derived(check_json, tmp_path, "rope", rope_scaling=rope)
    assert j["model"]["derived_max_model_len"] == want
    assert j["settings"]["max_model_len"] == want


def test_rope_parameters_transformers5(check_json, tmp_path):
    j = derived(check_json, tmp_path, "rp", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4})
    assert j["model"]["derived_max_model_len"] == 8192


def test_longrope_defaults_to_original_phi3_128k(check_json, cli):
    d = fixture_dir("microsoft__Phi-3-mini-128k-instruct")
    j = check_json(str(d), "--gpu", "A100 80GB")
    # longrope: derived 131072 (not scaled) but the default max_model_len is
    # original_max_position_embeddings = 4096
    assert j["model"]["derived_max_model_len"] == 131_072
    assert j["settings"]["max_model_len"] == 4096
    # asking for the full length is allowed
    j = check_json(str(d), "--gpu", "A100 80GB", "--max-model-len", "131072")
    assert j["settings"]["max_model_len"] == 131_072


def test_model_max_length_overrides(check_json, tmp_path):
    # derived = min(keys) = 4096, then model_max_length (truthy) overrides: 16,384
    j = derived(check_json, tmp_path, "mml", model_max_length=16384)
    assert j["model"]["derived_max_model_len"] == 16_384
    assert j["model"]["derived_from"] == "model_max_length"


def test_smallest_length_key_wins(check_json, tmp_path):
    j = derived(check_json, tmp_path, "min", seq_length=2048, n_positions=3000)
    assert j["model"]["derived_max_model_len"] == 2048
    assert j["model"]["derived_from"] == "seq_length"


def test_no_length_key_means_2048(check_json, tmp_path):
    j = derived(check_json, tmp_path, "nokey", max_position_embeddings=None)
    assert j["model"]["derived_max_model_len"] == 2048
    assert j["settings"]["max_model_len"] == 2048
    assert any("2048" in x for x in j["model"]["inferred"])


def test_max_model_len_above_derived_is_exit_2(kvfit):
    r = kvfit("check", ORPHEUS, "--gpu", "RTX 3090", "--max-model-len", "131073")
    assert r.rc == 2, r
    no_traceback(r)
    msg = flat(r.err)
    # vLLM: "User-specified max_model_len (131073) is greater than the derived max_model_len
    # (max_position_embeddings=131072 ...)"
    assert "131073" in msg and "max_position_embeddings=131072" in msg
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in msg


def test_max_model_len_above_derived_after_rope_scaling(check_json, cli, tmp_path):
    d = write_config(tmp_path / "lin", dict(LLAMA_A, rope_scaling={"rope_type": "linear", "factor": 2.0}))
    # derived 4096 x 2 = 8192: 8192 is allowed, 8193 is not
    assert check_json(str(d), "--gpu", "A100 80GB", "--max-model-len", "8192")["settings"]["max_model_len"] == 8192
    r = cli("check", str(d), "--gpu", "A100 80GB", "--max-model-len", "8193")
    assert r.rc == 2, r


def test_max_model_len_below_derived(check_json):
    j = check_json(ORPHEUS, "--gpu", "RTX 3090", "--max-model-len", "4096")
    assert j["settings"]["max_model_len"] == 4096
    assert j["capacity"]["blocks_per_request"] == 256     # cdiv(4096, 16)
