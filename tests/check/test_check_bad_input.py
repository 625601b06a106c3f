"""Exit codes (0 fits, 1 does not fit, 2 bad input) and bad input without a traceback.

These run the real CLI in a subprocess (`python -m kvfit`) and assert that stderr holds one clear
message and no "Traceback".
"""

from __future__ import annotations

import json

import pytest

from _checkutil import LLAMA_A, ORPHEUS, flat, no_traceback, write_config


def test_exit_0_fits(kvfit):
    r = kvfit("check", ORPHEUS, "--gpu", "A100 80GB", "--max-model-len", "8192")
    assert r.rc == 0, r
    no_traceback(r)


def test_exit_1_does_not_fit(kvfit):
    # 1 GiB of KV = 585 orpheus blocks; 131072 tokens need 8192 + 1
    r = kvfit("check", ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "131072")
    assert r.rc == 1, r
    no_traceback(r)
    assert "DOES NOT FIT" in r.out


def expect_bad(r, *words):
    assert r.rc == 2, r
    no_traceback(r)
    msg = flat(r.err)
    assert msg.startswith("kvfit:"), msg
    for w in words:
        assert w in msg, msg


# --- models and config.json ---------------------------------------------------------------------

def test_unknown_model_id(kvfit):
    expect_bad(kvfit("check", "acme/no-such-model", "--gpu", "RTX 3090"), "acme/no-such-model")


def test_unknown_model_id_with_offline_flag(kvfit):
    expect_bad(kvfit("check", "acme/no-such-model", "--offline", "--gpu", "RTX 3090", env={"HF_HUB_OFFLINE": None}),
               "--offline")


@pytest.mark.parametrize("ref", ["./missing-dir", "/nonexistent/model", "~/definitely-not-here-kvfit",
                                 "missing.json", "a/b/c"])
def test_missing_paths(kvfit, ref):
    expect_bad(kvfit("check", ref, "--gpu", "RTX 3090"))


def test_directory_without_config(kvfit, tmp_path):
    (tmp_path / "empty").mkdir()
    expect_bad(kvfit("check", str(tmp_path / "empty"), "--gpu", "RTX 3090"), "no config.json")


@pytest.mark.parametrize("text, words", [
    ("{not json", ["not valid JSON"]),
    ("", ["not valid JSON"]),
    ("[1, 2, 3]", ["JSON object"]),
    ('"llama"', ["JSON object"]),
])
def test_malformed_config(kvfit, tmp_path, text, words):
    d = write_config(tmp_path / "bad", text)
    expect_bad(kvfit("check", str(d), "--gpu", "RTX 3090"), *words)


def test_config_not_utf8(kvfit, tmp_path):
    d = tmp_path / "latin1"
    d.mkdir()
    (d / "config.json").write_bytes(b'{"model_type": "llama\xff"}')
    expect_bad(kvfit("check", str(d), "--gpu", "RTX 3090"), "UTF-8")


def _cfg(**over):
    cfg = dict(LLAMA_A)
    for k, v in over.items():
        if v is ...:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


BAD_CONFIGS = [
    ("no model_type", _cfg(model_type=...), "model_type"),
    # (model_type llama would take LlamaConfig's defaults for these, as vLLM does; an unknown type cannot)
    ("no layers", _cfg(model_type="acme_lm", num_hidden_layers=...), "layer count"),
    ("no hidden", _cfg(model_type="acme_lm", hidden_size=...), "hidden size"),
    ("no heads", _cfg(model_type="acme_lm", num_attention_heads=...), "num_attention_heads"),
    ("layers NaN", _cfg(num_hidden_layers=float("nan")), "num_hidden_layers"),
    ("layers string", _cfg(num_hidden_layers="many"), "num_hidden_layers"),
    ("layers zero", _cfg(num_hidden_layers=0), "num_hidden_layers"),
    ("layers negative", _cfg(num_hidden_layers=-3), "num_hidden_layers"),
    ("layers fractional", _cfg(num_hidden_layers=2.5), "num_hidden_layers"),
    ("layers bool", _cfg(num_hidden_layers=True), "num_hidden_layers"),
    ("hidden Infinity", _cfg(hidden_size=float("inf")), "hidden_size"),
    ("heads zero", _cfg(num_attention_heads=0), "num_attention_heads"),
    ("kv heads zero", _cfg(num_key_value_heads=0), "num_key_value_heads"),
    ("kv heads > heads", _cfg(num_key_value_heads=8), "KV heads"),
    ("kv heads NaN", _cfg(num_key_value_heads=float("nan")), "num_key_value_heads"),
    ("kv heads string", _cfg(num_key_value_heads="2"), "num_key_value_heads"),
    ("head_dim string", _cfg(head_dim="64"), "head_dim"),
    ("max pos negative", _cfg(max_position_embeddings=-1), "max_position_embeddings"),
    ("max pos NaN", _cfg(max_position_embeddings=float("nan")), "max_position_embeddings"),
    ("max pos string", _cfg(max_position_embeddings="4k"), "max_position_embeddings"),
    ("rope factor string", _cfg(rope_scaling={"rope_type": "linear", "factor": "x"}), "rope factor"),
    ("rope factor negative", _cfg(rope_scaling={"rope_type": "linear", "factor": -2}), "rope factor"),
    ("rope factor NaN", _cfg(rope_scaling={"rope_type": "linear", "factor": float("nan")}), "rope factor"),
    ("vocab string", _cfg(vocab_size="big"), "vocab_size"),
    ("intermediate NaN", _cfg(intermediate_size=float("nan")), "intermediate_size"),
    ("num_experts string", _cfg(num_experts="eight"), "num_experts"),
    ("num_experts NaN", _cfg(num_local_experts=float("nan")), "num_local_experts"),
    ("experts per token string", _cfg(num_experts=8, num_experts_per_tok="two"), "num_experts_per_tok"),
    ("moe size list", _cfg(num_experts=8, moe_intermediate_size=[1, 2]), "moe_intermediate_size"),
    ("layer_types short", _cfg(layer_types=["full_attention"]), "layer_types"),
    ("layer_types unknown", _cfg(layer_types=["weird"] * 3), "layer type"),
    ("architectures not a list", _cfg(architectures="LlamaForCausalLM"), "architectures"),
    ("text_config defaults only", {"model_type": "llava", "text_config": {"model_type": "mystery"}}, "layer count"),
    ("encoder-only", {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768,
                      "num_attention_heads": 12}, "encoder-only"),
]


@pytest.mark.parametrize("name, cfg, word", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_nonsensical_config_fields(kvfit, tmp_path, name, cfg, word):
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))      # NaN / Infinity written as JSON tokens
    expect_bad(kvfit("check", str(d), "--gpu", "RTX 3090"), word)


# --- flags ------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "-0.5"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "nan"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "inf"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "ninety"], "--gpu-memory-utilization"),
    (["--tensor-parallel-size", "0"], "--tensor-parallel-size"),
    (["-tp", "-2"], "--tensor-parallel-size"),
    (["--pipeline-parallel-size", "0"], "--pipeline-parallel-size"),
    (["--block-size", "7"], "--block-size"),
    (["--block-size", "0"], "--block-size"),
    (["--block-size", "-16"], "--block-size"),
    (["--max-num-seqs", "0"], "--max-num-seqs"),
    (["--max-num-batched-tokens", "0"], "--max-num-batched-tokens"),
    (["--max-num-batched-tokens", "lots"], "--max-num-batched-tokens"),
    (["--max-num-batched-tokens", "100", "--max-num-seqs", "200"], "--max-num-seqs"),
    (["--kv-cache-memory-bytes", "-1GiB"], "--kv-cache-memory-bytes"),
    (["--kv-cache-memory-bytes", "0"], "--kv-cache-memory-bytes"),
    (["--kv-cache-memory-bytes", "4 parsecs"], "--kv-cache-memory-bytes"),
    (["--gpu-memory", "-24GB"], "--gpu-memory"),
    (["--gpu-memory", "0"], "--gpu-memory"),
    (["--gpu-memory", "lots"], "--gpu-memory"),
    (["--max-model-len", "0"], "--max-model-len"),
    (["--max-model-len", "-5"], "--max-model-len"),
    (["--max-model-len", "abc"], "--max-model-len"),
    (["--max-model-len", "1.5K"], "--max-model-len"),
    (["--max-model-len", "12.5"], "--max-model-len"),
    (["--dtype", "int8"], "--dtype"),
    (["--kv-cache-dtype", "int4"], "--kv-cache-dtype"),
    (["--kv-cache-dtype", "fp8_ds_mla"], "MLA"),
    (["--vllm-version", "latest"], "--vllm-version"),
    (["--device", "tpu"], "--device"),
    (["--entrypoint", "grpc"], "--entrypoint"),
]


@pytest.mark.parametrize("flags, word", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_impossible_flags(kvfit, flags, word):
    expect_bad(kvfit("check", ORPHEUS, "--gpu", "RTX 3090", *flags), word)


def test_typer_usage_errors_have_no_traceback(kvfit):
    # non-integers for int options are rejected by the parser (exit 2, usage message)
    for flags in (["-tp", "two"], ["--block-size", "16.5"], ["--no-such-flag"]):
        r = kvfit("check", ORPHEUS, "--gpu", "RTX 3090", *flags)
        assert r.rc == 2, r
        no_traceback(r)


def test_cpu_device_needs_a_budget(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--device", "cpu"), "--kv-cache-memory-bytes")


def test_cpu_kvcache_space_env_bad(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--device", "cpu", env={"VLLM_CPU_KVCACHE_SPACE": "lots"}),
               "VLLM_CPU_KVCACHE_SPACE")


def test_unknown_gpu(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--gpu", "Quadro XYZ 9000"), "unknown GPU", "kvfit gpus")


def test_ambiguous_gpu(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--gpu", "A100"), "several GPUs")


def test_empty_gpu_name(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--gpu", " "), "--gpu")


def test_tp_not_dividing_kv_heads(kvfit):
    expect_bad(kvfit("check", ORPHEUS, "--gpu", "H100", "-tp", "3"), "tensor parallel")


def test_attention_free_or_unmodelled_family_has_no_traceback(kvfit):
    # falcon-mamba (attention-free) is bundled; whatever kvfit says, it says it without a traceback
    r = kvfit("check", "tiiuae/falcon-mamba-7b", "--gpu", "H100")
    assert r.rc in (0, 1, 2), r
    no_traceback(r)


def test_no_args_shows_help(kvfit):
    r = kvfit()
    no_traceback(r)
    assert "check" in r.out + r.err
