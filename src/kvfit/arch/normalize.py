"""config.json -> ModelArch, reading fields the way vLLM 0.32 does (spec §2).

vLLM reads through transformers config classes; kvfit reads the raw JSON as data and applies the
same aliases, defaults and precedence. Nothing here imports transformers or runs model code.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from . import families as F
from .model import AttentionLayer, Layer, MambaLayer, ModelArch

_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads", "num_heads")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim", "model_dim")
_KV_HEAD_KEYS = ("n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num",
                 "num_attention_groups")
# config/model.py::derive_max_model_len_and_key, in vLLM's order.
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                 "model_max_length", "max_target_positions", "max_sequence_length",
                 "max_seq_length", "seq_len")
# rope types whose factor vLLM 0.32 does not multiply into the derived length (§2.6 step 5).
_ROPE_NOT_SCALED = {"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling"}

_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


class _Reader:
    """Reads keys from the text config with class defaults, recording what it had to infer."""

    def __init__(self, cfg: dict, defaults: dict, where: str):
        self.cfg, self.defaults, self.where = cfg, defaults, where
        self.inferred: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.cfg and self.cfg[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        if self.has(key):
            return self.cfg[key]
        if key in self.defaults and key not in self.cfg:   # an explicit null stays null
            self.inferred.append(f"{key}={self.defaults[key]} (transformers class default)")
            return self.defaults[key]
        return default

    def first(self, keys: tuple[str, ...]) -> tuple[str, Any] | None:
        for k in keys:
            if self.has(k):
                return k, self.cfg[k]
        for k in keys:
            if k in self.defaults:
                self.inferred.append(f"{k}={self.defaults[k]} (transformers class default)")
                return k, self.defaults[k]
        return None

    def int(self, key: str, value: Any, *, positive: bool = True, allow_zero: bool = False) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config.json{self.where}: {key} must be a number, got {value!r}")
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise ConfigError(f"config.json{self.where}: {key} must be a whole number, got {value!r}")
        v = int(value)
        if positive and (v < 0 or (v == 0 and not allow_zero)):
            raise ConfigError(f"config.json{self.where}: {key} must be positive, got {value!r}")
        return v

    def req_int(self, keys: tuple[str, ...], what: str) -> int:
        found = self.first(keys)
        if found is None:
            raise ConfigError(f"config.json{self.where} has no {what} (looked for {', '.join(keys)})",
                              "kvfit needs it to size the KV cache; is this a decoder model's config.json?")
        return self.int(found[0], found[1])


def text_config(config: dict) -> tuple[dict, str]:
    """vLLM's get_hf_text_config: the language model's sub-config for multimodal models."""
    for key in ("text_config", "decoder", "language_config", "llm_config", "thinker_config"):
        sub = config.get(key)
        if isinstance(sub, dict):
            if key == "thinker_config" and isinstance(sub.get("text_config"), dict):
                return sub["text_config"], ".thinker_config.text_config"
            return sub, f".{key}"
    return config, ""


def _dtype_of(cfg: dict) -> str | None:
    for key in ("dtype", "torch_dtype"):
        v = cfg.get(key)
        if isinstance(v, str):
            return _DTYPE_NAMES.get(v.replace("torch.", "").lower(), v.replace("torch.", "").lower())
    return None


def config_dtype(config: dict) -> str | None:
    """The dtype source order of config/model.py::_get_and_verify_dtype: root, text, vision, encoder."""
    root = _dtype_of(config)
    if root:
        return root
    for key in ("text_config", "vision_config", "encoder_config"):
        sub = config.get(key)
        if isinstance(sub, dict) and _dtype_of(sub):
            return _dtype_of(sub)
    return None


def _rope_dicts(cfg: dict) -> list[dict]:
    out = []
    for key in ("rope_parameters", "rope_scaling"):
        rp = cfg.get(key)
        if isinstance(rp, dict):
            if any(isinstance(v, dict) for v in rp.values()):   # per-layer-type dicts
                out.extend(v for v in rp.values() if isinstance(v, dict))
            else:
                out.append(rp)
            break
    return out


def _max_len(r: _Reader, root: dict, root_type: str) -> tuple[int, str, int, int | None]:
    """(derived, key, default-when-user-gives-none, model_max_length), config/model.py::_get_and_verify_max_len."""
    found: list[tuple[int, str]] = []
    for k in _MAX_LEN_KEYS:
        v = r.cfg.get(k)
        if v is None and k in r.defaults and k not in r.cfg:
            v = r.raw(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"config.json{r.where}: {k} must be a number, got {v!r}")
        if v <= 0:
            raise ConfigError(f"config.json{r.where}: {k} must be positive, got {v!r}")
        found.append((int(v), k))
    mml = r.cfg.get("model_max_length")
    mml = int(mml) if isinstance(mml, (int, float)) and not isinstance(mml, bool) and mml > 0 and math.isfinite(mml) else None
    if found:
        derived, key = min(found)
    else:
        derived, key = 2048, "default (no length key in config.json)"
        r.inferred.append("max_model_len=2048 (config.json has no length key; vLLM assumes 2048)")
    if mml:
        derived, key = mml, "model_max_length"
    # Rope scaling (config/model.py::_get_and_verify_max_len): one factor, the last one given by a
    # rope dict whose type is not already length-scaled, multiplied once; skipped for gemma3.
    ropes = _rope_dicts(root) or _rope_dicts(r.cfg)
    if ropes and "gemma3" not in root_type:
        factor = 1.0
        for rp in ropes:
            if rp.get("rope_type", rp.get("type", "default")) not in _ROPE_NOT_SCALED:
                factor = rp.get("factor", factor)
        if factor is None:
            factor = 1.0
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ConfigError(f"config.json{r.where}: rope factor must be a positive number, got {factor!r}")
        derived = derived * factor
    default = derived
    if any(rp.get("rope_type", rp.get("type")) in ("longrope", "su") for rp in ropes):
        orig = root.get("original_max_position_embeddings", r.cfg.get("original_max_position_embeddings"))
        if isinstance(orig, int) and not isinstance(orig, bool) and orig > 0:
            default = orig
    return int(derived), key, int(default), mml


def _kv_heads(r: _Reader, model_type: str, heads: int) -> int:
    if model_type in F.FALCON_TYPES:
        if not r.cfg.get("new_decoder_architecture") and r.cfg.get("multi_query"):
            return 1
    # getattr_iter: the first attribute that exists wins (a None value means "use the heads").
    for k in _KV_HEAD_KEYS:
        if k in r.cfg:
            v = r.cfg[k]
            if v is None:
                r.inferred.append(f"{k} is null: KV heads = attention heads ({heads})")
                return heads
            return r.int(k, v)
    if "num_key_value_heads" in r.defaults:
        return r.int("num_key_value_heads", r.raw("num_key_value_heads"))
    return heads


def _head_size(r: _Reader, hidden: int, heads: int) -> int:
    for k in ("head_dim", "hidden_size_per_head"):
        v = r.raw(k)
        if v is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0:
            return r.int(k, v)
    if heads == 0:
        return 0
    return hidden // heads


def _layer_kinds(r: _Reader, model_type: str, n: int) -> list[str]:
    """Per layer: 'full' | 'sliding' | 'chunked' | 'linear' | 'mamba'."""
    lt = r.cfg.get("layer_types")
    if isinstance(lt, list) and lt:
        if len(lt) < n:
            raise ConfigError(f"config.json{r.where}: layer_types has {len(lt)} entries for {n} layers")
        kinds = []
        for t in lt[:n]:
            if t in ("full_attention", "attention", "global_attention"):
                kinds.append("full")
            elif t in ("sliding_attention", "local_attention"):
                kinds.append("sliding")
            elif t in ("chunked_attention",):
                kinds.append("chunked")
            elif t in ("linear_attention",):
                kinds.append("linear")
            elif t in ("mamba", "mamba2"):
                kinds.append("mamba")
            else:
                raise ConfigError(f"config.json{r.where}: unknown layer type {t!r} in layer_types")
        return kinds
    if model_type in F.ALTERNATING_SLIDING:
        return ["sliding" if (i + 1) % 2 else "full" for i in range(n)]
    if model_type in F.PATTERN_SLIDING:
        p = r.raw("sliding_window_pattern")
        if isinstance(p, int) and p > 0:
            return ["sliding" if (i + 1) % p else "full" for i in range(n)]
    if model_type in F.GPT_OSS:
        return ["sliding" if i % 2 == 0 else "full" for i in range(n)]
    return ["full"] * n


def _sliding_window(r: _Reader, model_type: str) -> int | None:
    if model_type in F.USE_SLIDING_WINDOW_FLAG and not r.cfg.get("use_sliding_window", False):
        return None
    w = r.raw("sliding_window")
    if w is None or isinstance(w, bool):
        return None
    if isinstance(w, list):     # Mistral-style per-layer list: vLLM uses the value for each layer
        w = next((x for x in w if x), None)
        if w is None:
            return None
    w = r.int("sliding_window", w, allow_zero=True)
    return w or None            # 0 means disabled (config/model.py)


def normalize(config: dict, *, hf_quant_config: dict | None = None) -> ModelArch:
    """Normalize a parsed config.json. Raises ConfigError with the field at fault."""
    if not isinstance(config, dict):
        raise ConfigError("config.json must hold a JSON object")
    root_type = config.get("model_type")
    cfg, where = text_config(config)
    model_type = cfg.get("model_type") or root_type
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError("config.json has no model_type", "Is this a Hugging Face transformers config.json?")
    if root_type in F.ENCODER_ONLY_TYPES or model_type in F.ENCODER_ONLY_TYPES:
        raise ConfigError(f"{model_type} is an encoder-only model: vLLM allocates no KV cache for it",
                          "kvfit sizes the KV cache of generative (decoder) models.")
    defaults = dict(F.CLASS_DEFAULTS.get(model_type, {}))
    if model_type == "gemma3" and where:
        defaults = dict(F.CLASS_DEFAULTS["gemma3_text"])
    r = _Reader(cfg, defaults, where)

    n_layers = r.req_int(_LAYER_KEYS, "layer count")
    hidden = r.req_int(_HIDDEN_KEYS, "hidden size")
    heads_found = r.first(_HEAD_KEYS)
    if heads_found is None:
        raise ConfigError(f"config.json{where} has no attention head count (num_attention_heads)")
    heads = r.int(heads_found[0], heads_found[1], allow_zero=True)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        raise ConfigError("config.json: architectures must be a list")
    vocab = r.raw("vocab_size", 0)
    vocab = r.int("vocab_size", vocab, allow_zero=True) if vocab is not None else 0
    inter = r.raw("intermediate_size") or r.raw("ffn_dim") or r.raw("n_inner") or 4 * hidden
    inter = r.int("intermediate_size", inter)
    tie = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", defaults.get("tie_word_embeddings", True)))

    use_mla = model_type in F.MLA_TYPES and cfg.get("kv_lora_rank") is not None
    layers: list[Layer] = []
    if use_mla:
        kv_lora = r.int("kv_lora_rank", cfg["kv_lora_rank"])
        rope = r.int("qk_rope_head_dim", r.raw("qk_rope_head_dim", 64))
        for i in range(n_layers):
            layers.append(AttentionLayer(i, "mla", 1, kv_lora + rope, 0))
    else:
        if heads == 0:
            raise ConfigError(f"config.json{where}: num_attention_heads is 0 but the model has attention layers")
        kv_heads = _kv_heads(r, model_type, heads)
        if kv_heads == 0 or kv_heads > heads and model_type not in F.FALCON_TYPES:
            raise ConfigError(f"config.json{where}: {kv_heads} KV heads for {heads} attention heads cannot be right")
        head = _head_size(r, hidden, heads)
        if head <= 0:
            raise ConfigError(f"config.json{where}: head size {head} (hidden {hidden} / heads {heads}) cannot be right")
        kinds = _layer_kinds(r, model_type, n_layers)
        window = _sliding_window(r, model_type)
        if window is not None and "sliding" not in kinds and r.cfg.get("layer_types") is None \
                and model_type not in F.ALTERNATING_SLIDING | F.PATTERN_SLIDING | F.GPT_OSS:
            kinds = ["sliding"] * n_layers      # model-wide window (engine/arg_utils.py), e.g. Mistral-7B-v0.1
        chunk = r.raw("attention_chunk_size")
        for i, kind in enumerate(kinds):
            if kind == "sliding":
                if window is None:
                    kind = "full"
                layers.append(AttentionLayer(i, kind, kv_heads, head, head, window if kind == "sliding" else None))
            elif kind == "chunked" or (kind == "full" and chunk and model_type == "llama4_text"
                                        and _llama4_chunked(cfg, i)):
                layers.append(AttentionLayer(i, "chunked", kv_heads, head, head, None, int(chunk)))
            elif kind in ("linear", "mamba"):
                raise ConfigError(f"{model_type}: mamba / linear-attention layers are not modelled yet",
                                  "kvfit currently sizes attention-only models.")
            else:
                layers.append(AttentionLayer(i, "full", kv_heads, head, head))

    derived, key, default, mml = _max_len(r, config, str(root_type or model_type))
    qc = config.get("quantization_config") if isinstance(config.get("quantization_config"), dict) else None
    return ModelArch(
        model_type=model_type,
        architectures=tuple(str(a) for a in architectures),
        num_hidden_layers=n_layers,
        layers=tuple(layers),
        hidden_size=hidden,
        intermediate_size=inter,
        num_attention_heads=heads,
        vocab_size=vocab,
        tie_word_embeddings=bool(tie),
        config_dtype=config_dtype(config),
        derived_max_len=derived,
        derived_max_len_key=key,
        default_max_len=default,
        model_max_length=mml,
        kv_scheme=_kv_scheme(qc, hf_quant_config),
        quantization=(qc or {}).get("quant_method") if qc else (
            "modelopt" if hf_quant_config else None),
        use_mla=use_mla,
        num_experts=int(cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0),
        experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
        moe_intermediate_size=int(cfg.get("moe_intermediate_size") or 0),
        inferred=tuple(r.inferred),
    )


def _llama4_chunked(cfg: dict, i: int) -> bool:
    """Llama 4: layers with RoPE use chunked local attention; every no_rope_layers==0 layer is global."""
    nrl = cfg.get("no_rope_layers")
    if isinstance(nrl, list) and i < len(nrl):
        return bool(nrl[i])
    interval = cfg.get("no_rope_layer_interval", 4)
    return (i + 1) % interval != 0


def _kv_scheme(qc: dict | None, hf_quant: dict | None) -> str | None:
    """Checkpoint KV quantization (utils/torch_utils.py::resolve_kv_cache_dtype_string, §1.11)."""
    algo = None
    if hf_quant and isinstance(hf_quant.get("quantization"), dict):
        algo = hf_quant["quantization"].get("kv_cache_quant_algo")
    if qc:
        algo = algo or qc.get("kv_cache_quant_algo")
        if isinstance(qc.get("kv_cache_scheme"), dict) and qc["kv_cache_scheme"]:
            scheme = qc["kv_cache_scheme"]
            if scheme.get("type") == "float" and scheme.get("num_bits") == 4:
                return "nvfp4"
            return "fp8"
    if isinstance(algo, str):
        a = algo.upper()
        if "FP8" in a:
            return "fp8"
        if "FP4" in a:
            return "nvfp4"
    return None
