"""memory/profiles.py against the installed vLLM (0.32.0, CPU build): its ModelConfig decides the
derived max_model_len and refuses a long --max-model-len; its CacheDType lists the KV dtypes. No
engine is started (as tests/engine/test_config_reader.py does)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from tests.needs_vllm import require_vllm, require_vllm_032

from kvfit.memory import profiles as P



@pytest.fixture(autouse=True)
def _vllm_here():
    """vLLM's code is the oracle: skip without it, fail under CI (tests/needs_vllm.py)."""
    require_vllm()

MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
# text models whose architecture the CPU build imports, with every kind of rope dict kvfit bundles
TEXT_MODELS = ["Qwen__Qwen3-8B", "Qwen__Qwen3-32B-AWQ", "microsoft__Phi-3-mini-128k-instruct",
               "deepseek-ai__DeepSeek-V2-Lite", "meta-llama__Llama-3.1-8B-Instruct", "openai__gpt-oss-20b",
               "moonshotai__Kimi-K2-Instruct", "canopylabs__orpheus-3b-0.1-ft", "THUDM__chatglm3-6b",
               "google__gemma-3-1b-it", "tiiuae__falcon-mamba-7b", "zai-org__GLM-5"]


@pytest.fixture(scope="module")
def installed():
    require_vllm_032()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return P.installed_vllm_version()


def _model_config(d: Path, **kw):
    from vllm.config import ModelConfig

    return ModelConfig(model=str(d), tokenizer=str(d), skip_tokenizer_init=True, **kw)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_derived_length_matches_model_config(installed, name):
    d = MODELS / name
    got = P.rope_scaled_max_len(installed, json.loads((d / "config.json").read_text()))
    assert got.error is None
    assert _model_config(d).max_model_len == got.default_len


def _qwen3(tmp_path) -> Path:
    d = tmp_path / "qwen3-8b"
    d.mkdir()
    (d / "config.json").write_text((MODELS / "Qwen__Qwen3-8B" / "config.json").read_text())
    return d


@pytest.mark.parametrize("overrides, asked, env, starts", [
    ({"rope_scaling": YARN}, None, None, True),
    ({"rope_scaling": YARN}, 131072, None, False),          # yarn is not scaled in 0.32: 40960 stays the limit
    ({"rope_parameters": dict(YARN, rope_theta=1000000)}, 131072, None, False),
    ({"rope_scaling": YARN, "max_position_embeddings": 131072}, 131072, None, True),
    ({}, 131072, {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}, True),
    ({"rope_scaling": YARN}, 40960, None, True),
])
def test_qwen3_yarn_launch_on_installed_vllm(installed, tmp_path, monkeypatch, overrides, asked, env, starts):
    """Qwen's documented `--hf-overrides '{"rope_scaling": {...yarn...}}' --max-model-len 131072`."""
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    d = _qwen3(tmp_path)
    kw = {"hf_overrides": overrides} if overrides else {}
    if asked:
        kw["max_model_len"] = asked
    try:
        mc = _model_config(d, **kw)
        vllm_starts, vllm_len = True, mc.max_model_len
    except Exception as e:                       # noqa: BLE001 - vLLM's refusal is the data
        assert "max_model_len" in str(e)
        vllm_starts, vllm_len = False, None
    assert vllm_starts is starts
    r = P.rope_scaled_max_len(installed, json.loads((d / "config.json").read_text()),
                              hf_overrides=overrides or None)
    err, _ = P.max_len_refusal(installed, asked=asked or r.default_len, derived=r, env=env)
    assert (err is None) is starts
    if starts:
        assert vllm_len == (asked or r.default_len)


def test_kv_cache_dtypes_match_cache_dtype(installed):
    from typing import get_args

    from vllm.config.cache import CacheDType

    assert P.kv_cache_dtypes(installed) == set(get_args(CacheDType))


def test_v0_only_architectures_are_gone(installed):
    """0.11.1+ has no SupportsV0Only model: nothing falls back (vllm/model_executor/models/interfaces.py)."""
    import vllm.model_executor.models.interfaces as itf

    assert not hasattr(itf, "SupportsV0Only")
    assert P.v0_only_architectures(installed) == frozenset()
