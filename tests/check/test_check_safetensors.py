"""Weights from safetensors headers written by hand (8-byte little-endian length + JSON header + zeros).

Weights on the GPU = floating params x the load dtype + other tensors at their storage size, plus
vLLM's rotary cos/sin cache (max_position x head_dim x load dtype).
"""

from __future__ import annotations

import json
import struct

import pytest

from _checkutil import flat, no_traceback, write_config, write_safetensors

# A tiny Llama: head_dim 256 / 4 = 64, max_position 4096, float32 config (loads as bf16 on cc >= 8.0).
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 3,
        "vocab_size": 1024, "max_position_embeddings": 4096, "torch_dtype": "float32",
        "tie_word_embeddings": False}

SHARD1 = {"model.embed_tokens.weight": ("F32", [1024, 256]),      # 262,144 F32
          "model.layers.0.self_attn.q_proj.weight": ("BF16", [256, 256])}   # 65,536 BF16
SHARD2 = {"model.layers.0.mlp.down_proj.weight": ("F16", [256, 64])}         # 16,384 F16
# A GPTQ-like quantized checkpoint: packed int32 weights, uint8 zero points, float32 scales.
QUANT = {"model.embed_tokens.weight": ("BF16", [1024, 256]),      # 262,144 BF16
         "model.layers.0.mlp.qweight": ("I32", [64, 32]),         # 2,048 I32 (8 int4 values each)
         "model.layers.0.mlp.qzeros": ("U8", [100]),              # 100 U8
         "model.layers.0.mlp.scales": ("F32", [16])}              # 16 F32


def _index(directory, shards: dict[str, dict]):
    weight_map = {t: f for f, tensors in shards.items() for t in tensors}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture
def sharded(tmp_path):
    d = write_config(tmp_path / "tiny", TINY)
    write_safetensors(d / "model-00001-of-00002.safetensors", SHARD1, metadata={"format": "pt"})
    write_safetensors(d / "model-00002-of-00002.safetensors", SHARD2)
    _index(d, {"model-00001-of-00002.safetensors": SHARD1, "model-00002-of-00002.safetensors": SHARD2})
    return d


def test_header_parsing_counts_params_per_dtype(sharded, tmp_path):
    from kvfit.sources.safetensors import inventory_of_files, read_header

    h = read_header(sharded / "model-00001-of-00002.safetensors")
    assert h["__metadata__"] == {"format": "pt"}
    counts = inventory_of_files(sorted(sharded.glob("*.safetensors")))
    # 1024 x 256 = 262,144 F32; 256 x 256 = 65,536 BF16; 256 x 64 = 16,384 F16
    assert counts == {"F32": 262_144, "BF16": 65_536, "F16": 16_384}
    q = write_safetensors(tmp_path / "q.safetensors", QUANT)
    # 262,144 BF16; 64 x 32 = 2,048 I32; 100 U8; 16 F32
    assert inventory_of_files([q]) == {"BF16": 262_144, "I32": 2_048, "U8": 100, "F32": 16}


# These tiny checkpoints hold fewer floating elements than the 2 x 1024 x 256 embedding + LM head
# the config describes, so kvfit spreads them evenly (no vocab padding term); the rotary cos/sin
# cache is max_position 4096 x head_dim (256 / 4 = 64) x the load dtype.

def test_weights_bytes_from_headers_bf16(check_json, sharded):
    j = check_json(str(sharded), "--gpu", "A100 80GB")
    assert j["settings"]["dtype"] == "bfloat16"          # float32 config, cc 8.0 -> bf16
    assert j["memory"]["weights_estimated"] is False
    # every floating tensor loads as bf16: (262,144 + 65,536 + 16,384) x 2 B = 688,128
    # + rotary 4096 x 64 x 2 B = 524,288 -> 1,212,416
    assert j["memory"]["weights_bytes"] == 1_212_416


def test_weights_bytes_from_headers_float32(check_json, sharded):
    j = check_json(str(sharded), "--gpu", "A100 80GB", "--dtype", "float32")
    # 344,064 x 4 = 1,376,256 + rotary 4096 x 64 x 4 = 1,048,576 -> 2,424,832
    assert j["memory"]["weights_bytes"] == 2_424_832


def test_weights_bytes_from_headers_fp16_on_t4(check_json, sharded):
    j = check_json(str(sharded), "--gpu", "T4")
    assert j["settings"]["dtype"] == "float16"           # float32 config, cc 7.5 -> fp16
    assert j["memory"]["weights_bytes"] == 1_212_416     # same byte count as bf16


def test_weights_split_by_tp(check_json, sharded):
    j = check_json(str(sharded), "--gpu", "A100 80GB", "-tp", "2")
    # 688,128 / 2 = 344,064 + rotary 524,288 (one per GPU) = 868,352
    assert j["memory"]["weights_bytes"] == 868_352


def test_quantized_storage_is_kept(check_json, tmp_path):
    d = write_config(tmp_path / "gptq", TINY)
    write_safetensors(d / "model.safetensors", QUANT)
    for gpu in ("A100 80GB", "T4"):
        j = check_json(str(d), "--gpu", gpu)
        # BF16 262,144 x 2 = 524,288 (load dtype); I32 2,048 x 4 = 8,192 and U8 100 x 1 = 100 at storage
        # size; the F32 scales stay float32 in a quantized model: 16 x 4 = 64 -> 532,644
        # + rotary 524,288 -> 1,056,932
        assert j["memory"]["weights_bytes"] == 1_056_932, gpu


def test_partial_shards_fall_back_to_estimate(check_json, cli, tmp_path):
    d = write_config(tmp_path / "partial", TINY)
    write_safetensors(d / "model-00001-of-00002.safetensors", SHARD1)
    _index(d, {"model-00001-of-00002.safetensors": SHARD1, "model-00002-of-00002.safetensors": SHARD2})
    j = check_json(str(d), "--gpu", "A100 80GB")
    assert j["memory"]["weights_estimated"] is True
    r = cli("check", str(d), "--gpu", "A100 80GB")
    assert "weights estimated from config.json" in flat(r.out)


def test_shards_outside_the_index_are_not_counted(check_json, sharded):
    # Mistral repos ship consolidated.safetensors beside the indexed shards; vLLM loads only the
    # files the index names (filter_duplicate_safetensors_files), so the extra file must not count.
    write_safetensors(sharded / "consolidated.safetensors", {**SHARD1, **SHARD2})
    j = check_json(str(sharded), "--gpu", "A100 80GB")
    assert j["memory"]["weights_bytes"] == 1_212_416


def test_single_file_without_index(check_json, tmp_path):
    d = write_config(tmp_path / "single", TINY)
    write_safetensors(d / "model.safetensors", {"a": ("BF16", [10, 10]), "b": ("F32", [5]), "c": ("F16", [7])})
    j = check_json(str(d), "--gpu", "A100 80GB")
    # (100 + 5 + 7) x 2 = 224 floating; rotary 524,288 -> 524,512
    assert j["memory"]["weights_bytes"] == 524_512


def test_estimate_when_no_weights_is_said(check_json, tmp_path):
    d = write_config(tmp_path / "bare", TINY)
    j = check_json(str(d), "--gpu", "A100 80GB")
    assert j["memory"]["weights_estimated"] is True


def _h(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("raw, words", [
    (b"\x01\x02", "shorter than 8 bytes"),
    (struct.pack("<Q", 1 << 40) + b"{}", "not credible"),
    (struct.pack("<Q", 100) + b"{}", "truncated"),
    (struct.pack("<Q", 5) + b"nope!", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (_h(b'{"t": {"dtype": "F32"}}'), "no dtype/shape"),
    (_h(b'{"t": {"dtype": "F32", "shape": [-1, 2]}}'), "bad shape"),
    (_h(b'{"t": {"dtype": "F32", "shape": [2.5]}}'), "bad shape"),
])
def test_corrupt_safetensors_is_bad_input(kvfit, tmp_path, raw, words):
    d = write_config(tmp_path / "corrupt", TINY)
    (d / "model.safetensors").write_bytes(raw)
    r = kvfit("check", str(d), "--gpu", "A100 80GB")
    assert r.rc == 2, r
    no_traceback(r)
    assert words in flat(r.err)


def test_estimate_matches_llama_layout_exactly(check_json):
    from _checkutil import fixture_dir

    j = check_json(str(fixture_dir("meta-llama__Llama-3.1-8B-Instruct")), "--gpu", "H100", "--max-model-len", "8192")
    assert j["memory"]["weights_estimated"] is True
    # Llama layout: embed 128,256 x 4096 = 525,336,576, untied lm_head the same, final norm 4096;
    # per layer q 4096^2 + k,v 2 x 4096 x 1024 + o 4096^2 = 41,943,040, MLP 3 x 4096 x 14,336 =
    # 176,160,768, norms 8192 -> 218,112,000 x 32 = 6,979,584,000; total 8,030,261,248 params
    # (= the published 16,060,522,496 B / 2); x 2 B + rotary 131,072 x 128 x 2 = 33,554,432
    assert j["memory"]["weights_bytes"] == 8_030_261_248 * 2 + 33_554_432
