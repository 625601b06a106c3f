"""Every failure the fuzz suite (and the fault tests) found, kept as an explicit test.

Each docstring says what kvfit did before the fix. Inputs are the shrunk or hand-minimised cases.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.errors import ConfigError
from kvfit.sources.model import parse_config_text

from . import nvml_fake
from .harness import assert_contract, hermetic, run_direct, run_entry
from .strategies import SEED_CONFIGS

LLAMA = SEED_CONFIGS["meta-llama__Llama-3.1-8B-Instruct"]
SCOUT = SEED_CONFIGS["meta-llama__Llama-4-Scout-17B-16E-Instruct"]


@pytest.fixture(scope="module")
def env():
    with tempfile.TemporaryDirectory(prefix="kvfit-regress-") as tmp:
        with hermetic(Path(tmp)) as (mp, guard):
            yield Path(tmp), mp, guard


def model_dir(root: Path, config, name: str = "model", extra: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for fname, content in (extra or {}).items():
        (d / fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    return d


def with_(base: dict, **changes) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg.update(changes)
    return cfg


def config_error(cfg) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        normalize(cfg)
    assert not getattr(e.value, "unexpected", False), e.value.message   # a precise message, not the net
    return e.value


# --- the config reader ---------------------------------------------------------------------------

def test_deeply_nested_json_is_a_config_error():
    """RecursionError from json.loads escaped parse_config_text (a traceback)."""
    text = '{"model_type": "llama", "nested": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_config_text(text, "config.json")


def test_deeply_nested_safetensors_header_is_a_config_error(tmp_path):
    """The same RecursionError through a safetensors header."""
    import struct

    from kvfit.sources.safetensors import read_header

    raw = b"[" * 100_000 + b"]" * 100_000
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_header(f)


@pytest.mark.parametrize("layers", [10**6, 2**40, 10**18])
def test_huge_layer_count_is_refused_fast(layers):
    """num_hidden_layers 2**40 built a per-layer list: minutes of CPU and a MemoryError."""
    t0 = time.monotonic()
    e = config_error(with_(LLAMA, num_hidden_layers=layers))
    assert "cannot be a real model" in e.message
    assert time.monotonic() - t0 < 1


def test_rope_type_of_the_wrong_type():
    """rope_scaling.rope_type a list: TypeError (unhashable type: 'list')."""
    e = config_error(with_(LLAMA, rope_scaling={"rope_type": ["yarn"], "factor": 2.0}))
    assert "rope_type" in e.message


def test_model_type_of_the_wrong_type():
    """model_type a dict: TypeError (unhashable type: 'dict')."""
    e = config_error(with_(LLAMA, model_type={"x": 1}))
    assert "model_type" in e.message


def test_attention_chunk_size_of_the_wrong_type():
    """Llama 4 attention_chunk_size a list: TypeError from int(list)."""
    cfg = json.loads(json.dumps(SCOUT))
    cfg["text_config"]["attention_chunk_size"] = [8192]
    e = config_error(cfg)
    assert "attention_chunk_size" in e.message


@pytest.mark.parametrize("factor", [2.298907454397452e-210, 1e305])
def test_rope_factor_that_makes_no_length(factor):
    """A rope factor of 1e-210 gave max_model_len 0; 1e305 made it infinite (OverflowError from int())."""
    cfg = with_(SEED_CONFIGS["mistralai__Mistral-7B-Instruct-v0.1"],
                rope_scaling={"rope_type": "linear", "factor": factor})
    e = config_error(cfg)
    assert "maximum length" in e.message


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_map", [None, [1, 2], {"w": {"nested": 1}}, "x"])
def test_malformed_safetensors_index_is_ignored(env, weight_map):
    """model.safetensors.index.json with weight_map null: AttributeError ('NoneType' has no 'values')."""
    root, _, _ = env
    d = model_dir(root, LLAMA, f"index-{type(weight_map).__name__}",
                  {"model.safetensors.index.json": json.dumps({"weight_map": weight_map}),
                   "model-00001-of-00001.safetensors": b"\x02\x00\x00\x00\x00\x00\x00\x00{}"})
    o = run_entry(["check", str(d), "--gpu", "H100", "--json"])
    assert_contract(o, json_out=True)
    assert json.loads(o.out)["model"]["source"] == "local"


def test_model_name_too_long_for_the_file_system(env):
    """A 300-character MODEL: OSError (File name too long) from Path.exists()."""
    o = run_entry(["check", "x" * 300, "--gpu", "H100"])
    assert_contract(o)
    assert o.code == 2 and "not a readable path" in o.err


def test_nvml_gpu_with_zero_memory(env):
    """NVML reporting a 0-byte GPU: ZeroDivisionError in the recommendation."""
    with pytest.MonkeyPatch.context() as m:
        nvml_fake.install(m, {"gpus": [nvml_fake.gpu("NVIDIA H100 80GB HBM3", 0, 0)]})
        o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert report["schema"] == "kvfit.check/2" and report["verdict"]["table"]   # the common-GPU table, with the reason
    assert "0 bytes" in report["gpu_probe"]


def test_pipeline_parallel_larger_than_the_model(env):
    """-pp 999999999999 built one KV layout per stage: MemoryError."""
    o = run_entry(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "-pp", "999999999999"])
    assert_contract(o)
    assert o.code == 2 and "pipeline" in o.err


def test_gpu_name_with_rich_markup(env):
    """`kvfit gpus` with an NVML name containing '[/]': rich MarkupError."""
    with pytest.MonkeyPatch.context() as m:
        nvml_fake.install(m, {"gpus": [nvml_fake.gpu("[/]weird", 24, 20)]})
        o = run_entry(["gpus"])
        assert_contract(o)
        assert "[/]weird" in o.out
        o = run_entry(["check", "Qwen/Qwen3-8B"])
        assert_contract(o)
        assert "[/]weird" in o.out


@pytest.mark.parametrize("name", ["[/x]", "[bold]m[/bold]", "a[/]b"])
def test_model_path_with_rich_markup(env, name):
    """A model directory named '[/x]': rich MarkupError in the report and in the error message."""
    root, _, _ = env
    d = model_dir(root, LLAMA, name)
    o = run_entry(["check", str(d), "--gpu", "H100"])
    assert_contract(o)
    assert name in o.out
    o = run_direct(["check", str(root / "missing" / name) + ".json", "--gpu", "H100"])
    assert_contract(o)
    assert o.code == 2 and name in o.err


@pytest.mark.parametrize("layer_bytes, budget", [(1.7e308, 10 ** 309), (1e308, 10 ** 310)])
def test_offload_split_that_overflows_is_a_config_error(layer_bytes, budget):
    """A generated config whose layer bytes sum past float range crashed with OverflowError (int(inf)) in
    _offload_split under --cpu-offload-gb; it is a ConfigError (exit 2) now."""
    from types import SimpleNamespace

    from kvfit.memory.weights import _offload_split

    arch = SimpleNamespace(hidden_size=1, attention_layers=[], num_experts=0)
    with pytest.raises(ConfigError):
        _offload_split(layer_bytes, 4, budget, arch, 1)


@pytest.mark.parametrize("method", [False, True, 0, ["fp8"], {"x": 1}])
def test_quant_method_that_is_not_a_string_is_a_config_error(env, method):
    """quantization_config.quant_method: false crashed check_quantization (AttributeError: .lower()) and put
    `"quantization": false` in the JSON; vLLM calls .lower() on it too. Exit 2 with the field named."""
    root, _, _ = env
    e = config_error(with_(LLAMA, quantization_config={"quant_method": method}))
    assert "quant_method" in e.message
    d = model_dir(root, with_(LLAMA, quantization_config={"quant_method": method}), "qm")
    o = run_entry(["check", str(d), "--gpu", "RTX 3090"])
    assert_contract(o)
    assert o.code == 2 and "quant_method" in o.err
