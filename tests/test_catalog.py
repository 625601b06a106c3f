"""The bundled catalog (src/kvfit/sources/data/models) holds real config.json files (issue 13, item 7).

Each entry names the real copy its `config` is (`config_source`: a shared/models folder, whose config.json
tests/data/models copies, or a repository + commit + path), no field is filled from a transformers class
default where the real file has it, and `params` is what the README's counting rules give for that config
(re-derived here by hand, layer by layer, independently of kvfit's own weight estimate).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize, text_config
from kvfit.sources.catalog import entries

DATA = Path(__file__).resolve().parent / "data"
ENTRIES = entries()
IDS = [e["id"] for e in ENTRIES]
BY_ID = dict(zip(IDS, ENTRIES))

LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
               "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")


# --- where each config comes from --------------------------------------------------------------------------

@pytest.mark.parametrize("e", ENTRIES, ids=IDS)
def test_config_is_the_real_copy_it_names(e):
    src = e["config_source"]
    assert not re.search(r"(?i)from knowledge|reconstructed|written from|from memory", e["config_provenance"])
    if "shared" in src:
        folder = DATA / "models" / src["shared"].removeprefix("shared/models/")
        assert json.loads((folder / "config.json").read_text()) == e["config"]
        quant = folder / "hf_quant_config.json"
        assert e["hf_quant_config"] == (json.loads(quant.read_text()) if quant.exists() else None)
        assert src["upstream"]                       # as shared/models/<folder>/source.json records it
    else:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", src["repo"]) and src["path"], src
        assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]), src
        assert e["hf_quant_config"] is None
    assert e["params_source"] and e["params"]


def test_only_orpheus_is_a_partial_copy():
    # No full copy of canopylabs/orpheus-3b-0.1-ft's config.json was found; the bundled one is the mlx-audio
    # test-suite dict (every shape field, no architectures/torch_dtype/bos/eos), not filled in from memory.
    assert [e["id"] for e in ENTRIES if e["config_source"].get("partial")] == ["canopylabs/orpheus-3b-0.1-ft"]
    cfg = BY_ID["canopylabs/orpheus-3b-0.1-ft"]["config"]
    assert "torch_dtype" not in cfg and "architectures" not in cfg
    assert (cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"]) == (28, 8, 128, 156940)


# --- nothing filled from a class default where the real file has the field ------------------------------

CLASS_DEFAULT = re.compile(r"^(\w+)=.* \(transformers class default\)$")
# gemma-3-4b-it's published text_config names only hidden_size, intermediate_size, model_type,
# num_hidden_layers, rope_scaling and sliding_window: the KV fields below are truly absent from the file
# (vLLM, like kvfit, takes Gemma3TextConfig's defaults for them).
GEMMA3_4B_ABSENT = {"num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                    "sliding_window_pattern", "max_position_embeddings"}


@pytest.mark.parametrize("e", ENTRIES, ids=IDS)
def test_no_field_is_inferred_that_the_real_file_has(e):
    arch = normalize(e["config"], hf_quant_config=e["hf_quant_config"])
    text, _ = text_config(e["config"])
    defaulted = set()
    for note in arch.inferred:
        m = CLASS_DEFAULT.match(note)
        if m:
            assert m.group(1) not in text, f"{e['id']}: {note}, but the file has {m.group(1)}"
            defaulted.add(m.group(1))
        elif "config.json has no head_dim" in note:
            assert "head_dim" not in text
        elif "config.json has no length key" in note:
            assert not any(k in text for k in LENGTH_KEYS)
        elif note.startswith("config.json has auto_map"):
            assert "auto_map" in e["config"]
        else:
            pytest.fail(f"{e['id']}: unexpected inference {note!r}")
    assert defaulted == (GEMMA3_4B_ABSENT if e["id"] == "google/gemma-3-4b-it" else set()), e["id"]


def test_gemma3_4b_it_text_config_is_the_minimal_published_one():
    text = BY_ID["google/gemma-3-4b-it"]["config"]["text_config"]
    assert set(text) == {"hidden_size", "intermediate_size", "model_type", "num_hidden_layers", "rope_scaling",
                         "sliding_window"}


# --- params agree with the config (README: rules used for params) ---------------------------------------

def _head_dim(t):
    return t.get("head_dim") or t["hidden_size"] // t["num_attention_heads"]


def _attention(t, kind):
    """q, k, v, o weights (+ Qwen2's q/k/v biases, + Qwen3/Gemma-3's q_norm and k_norm)."""
    h, q = t["hidden_size"], t["num_attention_heads"] * _head_dim(t)
    kv = t.get("num_key_value_heads", t["num_attention_heads"]) * _head_dim(t)
    n = h * q + 2 * h * kv + q * h
    if kind == "qwen2":
        n += q + 2 * kv
    if kind in ("qwen3", "gemma3"):
        n += 2 * _head_dim(t)
    return n


def _dense(t, kind, tied):
    """embed + layers (attention, gate/up/down, 2 RMSNorms; Gemma: 4) + final norm + lm_head unless tied."""
    h, v = t["hidden_size"], t["vocab_size"]
    norms = 4 if kind in ("gemma2", "gemma3") else 2
    layer = _attention(t, kind) + 3 * h * t["intermediate_size"] + norms * h
    return v * h + t["num_hidden_layers"] * layer + h + (0 if tied else v * h)


def _siglip(vis, text_hidden):
    """Gemma-3's SigLIP tower (patch conv + bias, position embeddings, per layer q/k/v/o with biases, fc1/fc2 with
    biases, 2 LayerNorms with biases; post LayerNorm) + the projector (weight + soft-embedding norm)."""
    h, i, p = vis["hidden_size"], vis["intermediate_size"], vis["patch_size"]
    emb = 3 * p * p * h + h + (vis["image_size"] // p) ** 2 * h
    layer = 4 * (h * h + h) + 2 * h * i + i + h + 2 * 2 * h
    return emb + vis["num_hidden_layers"] * layer + 2 * h + h * text_hidden + h


def _deepseek(c, block=128):
    """DeepSeek-V2/V3 (and Kimi-K2) MLA + MoE; FP8 checkpoints: linears F8_E4M3, one F32 scale per 128x128 block,
    F32 e_score_correction_bias per MoE layer with noaux_tc; MTP layers not counted (vLLM does not load them)."""
    h, nh = c["hidden_size"], c["num_attention_heads"]
    qk, kvr, rope = c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["kv_lora_rank"], c["qk_rope_head_dim"]
    lin, rest, f32 = [], 2 * c["vocab_size"] * h + h, 0
    for i in range(c["num_hidden_layers"]):
        lin += [(c["q_lora_rank"], h), (nh * qk, c["q_lora_rank"])] if c.get("q_lora_rank") else [(nh * qk, h)]
        rest += (c["q_lora_rank"] or 0) + kvr + 2 * h          # q_a / kv_a layernorms, 2 RMSNorms
        lin += [(kvr + rope, h), (nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), kvr), (h, nh * c["v_head_dim"])]
        if i < c["first_k_dense_replace"]:
            lin += [(c["intermediate_size"], h)] * 2 + [(h, c["intermediate_size"])]
        else:
            e, mi, s = c["n_routed_experts"], c["moe_intermediate_size"], c.get("n_shared_experts") or 0
            lin += ([(mi, h)] * 2 + [(h, mi)]) * e + ([(mi * s, h)] * 2 + [(h, mi * s)] if s else [])
            rest += e * h                                         # router
            f32 += e if c.get("topk_method") == "noaux_tc" else 0
    weights = sum(a * b for a, b in lin)
    if (c.get("quantization_config") or {}).get("quant_method") != "fp8":
        return {"BF16": weights + rest}
    f32 += sum(math.ceil(a / block) * math.ceil(b / block) for a, b in lin)
    return {"F8_E4M3": weights, "BF16": rest, "F32": f32}


def expected_params(e) -> dict:
    c = e["config"]
    t, _ = text_config(c)
    mt, dtype = c["model_type"], next(iter(e["params"]))
    if mt in ("llama", "mistral", "phi3", "qwen2", "qwen3", "gemma2", "gemma3_text"):
        kind = {"mistral": "llama", "phi3": "llama", "gemma3_text": "gemma3"}.get(mt, mt)
        tied = c.get("tie_word_embeddings", kind in ("gemma2", "gemma3"))
        total = _dense(c, kind, tied)
        if e["hf_quant_config"]:                  # ModelOpt FP8 (per tensor): the 7 linears of each layer
            h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
            f8 = L * (_attention(c, "llama") + 3 * h * i)
            # F32: weight_scale + input_scale of the 7 linears, k_scale, v_scale = 16 scalars per layer
            return {"F8_E4M3": f8, "BF16": total - f8, "F32": 16 * L}
        return {dtype: total}
    if mt == "gemma3":                            # multimodal: Gemma3TextConfig defaults where the file has none
        text = {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208, **t}
        return {dtype: _dense(text, "gemma3", True) + _siglip(c["vision_config"], t["hidden_size"])}
    if mt == "mixtral":
        h, e_ = c["hidden_size"], c["num_local_experts"]
        layer = _attention(c, "llama") + h * e_ + e_ * 3 * h * c["intermediate_size"] + 2 * h
        return {dtype: 2 * c["vocab_size"] * h + c["num_hidden_layers"] * layer + h}
    if mt == "qwen3_moe":
        h, e_ = c["hidden_size"], c["num_experts"]
        layer = _attention(c, "qwen3") + h * e_ + e_ * 3 * h * c["moe_intermediate_size"] + 2 * h
        return {dtype: 2 * c["vocab_size"] * h + c["num_hidden_layers"] * layer + h}
    if mt in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        return _deepseek(c)
    if mt == "gpt_oss":                           # MXFP4 experts: U8 blocks (2 values/byte) + scales (1 byte/32)
        h, q, kv, e_, i = c["hidden_size"], 64 * c["head_dim"], c["num_key_value_heads"] * c["head_dim"], \
            c["num_local_experts"], c["intermediate_size"]
        layer = h * q + q + 2 * (h * kv + kv) + q * h + h + c["num_attention_heads"] + 2 * h + h * e_ + e_ \
            + e_ * 2 * i + e_ * h
        values = c["num_hidden_layers"] * (e_ * 2 * i * h + e_ * h * i)
        return {"BF16": 2 * c["vocab_size"] * h + h + c["num_hidden_layers"] * layer, "U8": values // 2 + values // 32}
    if mt == "falcon_mamba":                      # Mamba-1 mixer per layer
        h, d, n, r, k = c["hidden_size"], c["intermediate_size"], c["state_size"], c["time_step_rank"], c["conv_kernel"]
        layer = h + h * 2 * d + d * k + d + d * (r + 2 * n) + r * d + d + d * n + d + d * h
        return {dtype: 2 * c["vocab_size"] * h + c["num_hidden_layers"] * layer + h}
    if mt == "falcon":                            # new_decoder_architecture, no biases, lm_head tied (vLLM default)
        h, nh, kvh = c["hidden_size"], c["num_attention_heads"], c["num_kv_heads"]
        layer = 2 * 2 * h + h * (nh + 2 * kvh) * (h // nh) + h * h + 2 * 4 * h * h
        return {dtype: c["vocab_size"] * h + c["num_hidden_layers"] * layer + 2 * h}
    if mt == "chatglm":
        h, i, kvc = c["hidden_size"], c["ffn_hidden_size"], c["kv_channels"]
        qkv = c["num_attention_heads"] * kvc + 2 * c["multi_query_group_num"] * kvc
        layer = h + h * qkv + qkv + c["num_attention_heads"] * kvc * h + h + h * 2 * i + i * h
        return {dtype: 2 * c["padded_vocab_size"] * h + c["num_layers"] * layer + h}
    raise AssertionError(f"no counting rule for {mt}")


COUNTED = [e for e in ENTRIES if e["params_source"] != "param-counts.json"]


@pytest.mark.parametrize("e", COUNTED, ids=[e["id"] for e in COUNTED])
def test_params_follow_the_config(e):
    assert e["params"] == expected_params(e)


def test_params_against_real_checkpoint_sizes():
    def total_size(folder):       # model.safetensors.index.json / pytorch_model.bin.index.json metadata.total_size
        return json.loads((DATA.parent / "check" / "data" / folder / "source.json").read_text())["safetensors_total_size"]

    # bf16: 2 bytes per element
    assert BY_ID["meta-llama/Llama-3.1-8B-Instruct"]["params"] == {"BF16": total_size("meta-llama__Llama-3.1-8B-Instruct") // 2}
    # medgemma-27b-it: shared/models/google__medgemma-27b-it/source.json safetensors_total_size 54,864,813,280 B
    assert BY_ID["google/medgemma-27b-it"]["params"] == {"BF16": 54_864_813_280 // 2}
    # falcon-180B-chat stores lm_head.weight too; vLLM ties it to word_embeddings (no tie_word_embeddings key)
    assert BY_ID["tiiuae/falcon-180B-chat"]["params"] == {"BF16": total_size("tiiuae__falcon-180B-chat") // 2 - 65024 * 14848}
    # chatglm3-6b (fp16 .bin): all but transformer.rotary_pos_emb.inv_freq (kv_channels / 4 = 32 values)
    assert BY_ID["THUDM/chatglm3-6b"]["params"] == {"F16": total_size("THUDM__chatglm3-6b") // 2 - 128 // 4}


def test_counts_of_new_entries_by_hand():
    # Llama-3.1-405B: embed + lm_head 2 x 128256 x 16384; 126 layers x (q 16384^2 + k,v 2 x 16384 x 1024
    # + o 16384^2 + 3 x 16384 x 53248 + 2 x 16384); final norm 16384
    per = 16384 * 16384 * 2 + 2 * 16384 * 1024 + 3 * 16384 * 53248 + 2 * 16384
    assert BY_ID["meta-llama/Meta-Llama-3.1-405B"]["params"] == {"BF16": 2 * 128256 * 16384 + 126 * per + 16384}
    assert 2 * 128256 * 16384 + 126 * per + 16384 == 405_853_388_800
    # Qwen3-235B-A22B: 94 layers x (q 4096x8192, k,v 4096x512, o 8192x4096, q/k norm 2x128, router 4096x128,
    # 128 experts x 3 x 4096 x 1536, 2 norms); embed + lm_head 2 x 151936 x 4096; final norm
    per = 4096 * 8192 * 2 + 2 * 4096 * 512 + 2 * 128 + 4096 * 128 + 128 * 3 * 4096 * 1536 + 2 * 4096
    assert BY_ID["Qwen/Qwen3-235B-A22B"]["params"] == {"BF16": 2 * 151936 * 4096 + 94 * per + 4096}
    assert 2 * 151936 * 4096 + 94 * per + 4096 == 235_093_634_560
