"""config.json -> ModelArch, reading fields the way vLLM 0.32 does (spec §2).

vLLM reads through transformers config classes; kvfit reads the raw JSON as data and applies the
same aliases, defaults and precedence. Nothing here imports transformers or runs model code.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from . import families as F
from . import params as P
from . import quant as Q
from .model import AttentionLayer, Layer, MambaLayer, ModelArch, ParamLayout, QuantScheme

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
            rope_type = rp.get("rope_type", rp.get("type", "default"))
            if not isinstance(rope_type, str):
                raise ConfigError(f"config.json{r.where}: rope_type must be a string, got {rope_type!r}")
            if rope_type not in _ROPE_NOT_SCALED:
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
    if not math.isfinite(derived) or int(derived) < 1 or int(default) < 1:    # a rope factor of 1e-210 or 1e300
        raise ConfigError(f"config.json{r.where}: the model's maximum length works out to {derived!r} tokens "
                          f"({key} with rope scaling)", "Check max_position_embeddings and the rope factor.")
    return int(derived), key, int(default), mml


def _kv_heads(r: _Reader, model_type: str, heads: int) -> int:
    if model_type in F.FALCON_TYPES:
        # FalconConfig / vLLM's RWConfig defaults: multi_query True, new_decoder_architecture False
        # (RWConfig switches it on for hidden_size 8192, the original falcon-40b config).
        new_arch = r.cfg.get("new_decoder_architecture") or (
            model_type != "falcon" and r.cfg.get("hidden_size", r.cfg.get("n_embed")) == 8192)
        if not new_arch and r.cfg.get("multi_query", True):
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
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"config.json{r.where}: {k} must be a number, got {v!r}")
        if v is not None and v > 0:
            return r.int(k, v)
    if heads == 0:
        return 0
    return hidden // heads


def _layer_types(r: _Reader, model_type: str, n: int, window: int | None) -> list[str] | None:
    """The text config's layer_types as transformers leaves it (explicit, or built by the class)."""
    lt = r.cfg.get("layer_types")
    if isinstance(lt, list) and lt:
        if len(lt) < n:
            raise ConfigError(f"config.json{r.where}: layer_types has {len(lt)} entries for {n} layers")
        if not all(isinstance(t, str) for t in lt):
            raise ConfigError(f"config.json{r.where}: layer_types must list strings")
        return [str(t) for t in lt[:n]]
    if lt is not None and not isinstance(lt, list):
        raise ConfigError(f"config.json{r.where}: layer_types must be a list, got {lt!r}")
    if model_type in F.ALTERNATING_SLIDING or model_type in F.GPT_OSS:
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    if model_type in F.PATTERN_SLIDING:
        p = r.raw("sliding_window_pattern")
        if isinstance(p, int) and not isinstance(p, bool) and p > 0:
            return ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
    if model_type in F.LAYER_TYPES_FROM_MAX_WINDOW:
        mwl = r.raw("max_window_layers", n)
        mwl = r.int("max_window_layers", mwl, allow_zero=True) if mwl is not None else n
        return ["sliding_attention" if window is not None and i >= mwl else "full_attention" for i in range(n)]
    return None


_ATTN_TYPES = {"full_attention": "full", "attention": "full", "global_attention": "full",
               "sliding_attention": "sliding", "local_attention": "sliding", "chunked_attention": "chunked",
               "indexed_attention": "full"}


def _attention_kinds(r: _Reader, model_type: str, n: int, window: int | None) -> list[str]:
    """Per layer 'full' | 'sliding' | 'chunked', the way vLLM builds the attention modules.

    A layer slides when its model passes a per-layer window (layer_types, GPT-OSS's even layers) or,
    for every other layer, when engine/arg_utils.py sets CacheConfig.sliding_window: only when
    layer_types is absent or all "sliding_attention" (model-wide window, e.g. Mistral-7B-v0.1).
    """
    lt = _layer_types(r, model_type, n, window)
    kinds: list[str] = []
    for t in lt or ["full_attention"] * n:
        if t not in _ATTN_TYPES:
            raise ConfigError(f"config.json{r.where}: layer type {t!r} in layer_types is not an attention "
                              f"layer kvfit models for {model_type}")
        kinds.append(_ATTN_TYPES[t])
    cache_window = window is not None and (lt is None or all(t == "sliding_attention" for t in lt))
    if model_type in F.GPT_OSS:
        per_layer = ["sliding" if i % 2 == 0 and window is not None else "full" for i in range(n)]
    elif model_type in F.PER_LAYER_WINDOW:
        per_layer = [k if k != "sliding" or window is not None else "full" for k in kinds]
    else:
        if lt is not None and "sliding" in kinds and not cache_window and model_type in F.MIXED_WINDOW_REFUSED:
            raise ConfigError(f"{model_type}: layer_types mixes sliding and full layers; vLLM refuses this model "
                              "(Qwen2Model asserts max_window_layers == num_hidden_layers)")
        per_layer = ["chunked" if k == "chunked" else "full" for k in kinds]
    if model_type in F.CHUNKED_LOCAL:
        chunk = r.raw("attention_chunk_size")
        if chunk:
            nrl = r.cfg.get("no_rope_layers")
            interval = r.raw("no_rope_layer_interval", 4)
            interval = r.int("no_rope_layer_interval", interval)
            for i in range(n):
                rope = nrl[i] if isinstance(nrl, list) and i < len(nrl) else int((i + 1) % interval != 0)
                per_layer[i] = "chunked" if rope else "full"
    return ["sliding" if cache_window and k == "full" else k for k in per_layer]


def _sliding_window(r: _Reader, model_type: str) -> int | None:
    """ModelConfig.get_sliding_window(): the text config's window as transformers leaves it."""
    if model_type in F.USE_SLIDING_WINDOW_FLAG and not r.cfg.get("use_sliding_window", r.defaults.get(
            "use_sliding_window", False)):
        return None
    w = r.raw("sliding_window")
    if w is None or isinstance(w, bool):
        return None
    if isinstance(w, list):     # Mistral-style per-layer list: vLLM uses the value for each layer
        w = next((x for x in w if x), None)
        if w is None:
            return None
    w = r.int("sliding_window", w, allow_zero=True)
    if model_type in F.GEMMA4 and r.cfg.get("use_bidirectional_attention") == "all":
        w = w // 2 + 1          # Gemma4TextConfig.__post_init__ (exclusive bounds for flash attention)
    return w or None            # 0 means disabled (config/model.py)


def normalize(config: dict, *, hf_quant_config: dict | None = None) -> ModelArch:
    """Normalize a parsed config.json. Raises ConfigError with the field at fault.

    config.json is untrusted data: a value of a type no check above foresaw still ends as a
    ConfigError (exit 2, one message), never a traceback. The fuzz suite (tests/fuzz) treats
    reaching this net as a bug to fix with a precise message.
    """
    try:
        return _normalize(config, hf_quant_config=hf_quant_config)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError,
            RecursionError) as e:
        err = ConfigError(f"config.json has a value kvfit cannot read ({e.__class__.__name__}: {e})",
                          "Check the config's field types against the model's transformers config class.")
        err.unexpected = True
        raise err from e


def _num_layers(r: _Reader, model_type: str, where: str) -> int:
    if model_type == "nemotron_h" and isinstance(r.cfg.get("hybrid_override_pattern"), str):
        n = len(r.cfg["hybrid_override_pattern"])     # nemotron_h.py builds one layer per character
    elif model_type in F.ENCODER_DECODER_TYPES:
        n = r.req_int(("decoder_layers",), "decoder layer count")
    else:
        n = r.req_int(_LAYER_KEYS, "layer count")
    if n > 10_000:       # real models have at most a few hundred; per-layer work must stay bounded
        raise ConfigError(f"config.json{where}: {n:,} layers cannot be a real model",
                          "kvfit reads configs of up to 10,000 layers; check num_hidden_layers.")
    return n


def _normalize(config: dict, *, hf_quant_config: dict | None = None) -> ModelArch:
    if not isinstance(config, dict):
        raise ConfigError("config.json must hold a JSON object")
    root_type = config.get("model_type")
    if root_type is not None and not isinstance(root_type, str):
        raise ConfigError(f"config.json: model_type must be a string, got {root_type!r}")
    cfg, where = text_config(config)
    model_type = cfg.get("model_type") or root_type
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError("config.json has no model_type", "Is this a Hugging Face transformers config.json?")
    if root_type in F.ENCODER_ONLY_TYPES or model_type in F.ENCODER_ONLY_TYPES:
        raise ConfigError(f"{model_type} is an encoder-only model: vLLM allocates no KV cache for it",
                          "kvfit sizes the KV cache of generative (decoder) models.")
    if model_type in F.NOT_MODELLED:
        raise ConfigError(f"{model_type}: {F.NOT_MODELLED[model_type]}; kvfit does not model its KV cache")
    archs = config.get("architectures")
    for a in archs if isinstance(archs, list) else []:
        if isinstance(a, str) and a in F.NOT_MODELLED_ARCHITECTURES:
            fam = F.NOT_MODELLED_ARCHITECTURES[a]
            raise ConfigError(f"{a}: {F.NOT_MODELLED[fam]}; kvfit does not model its KV cache")
    defaults = dict(F.CLASS_DEFAULTS.get(model_type, {}))
    if model_type == "gemma3" and where:
        defaults = dict(F.CLASS_DEFAULTS["gemma3_text"])
    r = _Reader(cfg, defaults, where)
    # vLLM picks the model class by architecture (model_executor/models/registry.py): a MiniMax linear-attention
    # or PLaMo2 architecture under another model_type string is still that family.
    for a in archs if isinstance(archs, list) else []:
        fam = ("minimax_text_01" if a in F.MINIMAX_LINEAR_ARCHITECTURES
               else "plamo2" if a in F.PLAMO2_ARCHITECTURES else None)
        if fam is not None and model_type not in F.MAMBA_FAMILIES:
            r.inferred.append(f"model_type {model_type!r} read as {fam}: vLLM runs {a} with that model class")
            model_type = fam
            break
    remote_code = "auto_map" in config or "auto_map" in cfg
    if remote_code:
        r.inferred.append("config.json has auto_map (custom code, trust_remote_code): kvfit read it as data "
                          "and ran none of the repository's code")

    n_layers = _num_layers(r, model_type, where)
    if model_type in F.ENCODER_DECODER_TYPES:
        hidden = r.req_int(("d_model",), "hidden size (d_model)")
        heads = r.req_int(("decoder_attention_heads",), "decoder attention heads")
    else:
        hidden = r.req_int(_HIDDEN_KEYS, "hidden size")
        heads_found = r.first(_HEAD_KEYS)
        if heads_found is None:
            if model_type not in F.MAMBA_FAMILIES:
                raise ConfigError(f"config.json{where} has no attention head count (num_attention_heads)")
            heads_found = ("num_attention_heads", 0)
        heads = r.int(heads_found[0], heads_found[1], allow_zero=True)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        raise ConfigError("config.json: architectures must be a list")
    vocab = r.raw("vocab_size") or r.raw("padded_vocab_size", 0)     # chatglm: padded_vocab_size
    vocab = r.int("vocab_size", vocab, allow_zero=True) if vocab is not None else 0
    inter = (r.raw("intermediate_size") or r.raw("block_ff_dim") or r.raw("ffn_dim") or r.raw("n_inner") or r.raw("ffn_hidden_size")
             or r.raw("decoder_ffn_dim") or 4 * hidden)
    if isinstance(inter, list) and inter:      # one size per layer (Gemma3nTextConfig, Nemotron-H)
        inter = max(r.int("intermediate_size", x) for x in inter)
    inter = r.int("intermediate_size", inter)
    tie = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", defaults.get("tie_word_embeddings", True)))
    if model_type in F.ALWAYS_TIED:
        tie = True

    use_mla = model_type in F.MLA_TYPES and cfg.get("kv_lora_rank") is not None
    window = _sliding_window(r, model_type)
    chunk = r.raw("attention_chunk_size") if model_type not in F.CHUNK_SIZE_STRIPPED else None
    chunk = r.int("attention_chunk_size", chunk) if chunk else None
    model_head = 0
    model_kv_heads = 0
    layers: list[Layer] = []
    mtp = 0
    shared_heads: tuple[tuple[int, int], ...] = ()
    if use_mla:
        layers, model_head, mtp = _mla_layers(r, model_type, n_layers)
        model_kv_heads = _kv_heads(r, model_type, heads) if heads else 0
    elif model_type in F.MAMBA_FAMILIES:
        layers, model_head, model_kv_heads = _mamba_family_layers(r, model_type, n_layers, hidden, heads, window)
    elif model_type in F.ENCODER_DECODER_TYPES:
        head = hidden // heads
        model_head, model_kv_heads = r.int("d_model", hidden) // r.req_int(("encoder_attention_heads",), "heads"), heads
        for i in range(n_layers):       # WhisperDecoderLayer: self_attn, then encoder_attn (cross)
            layers.append(AttentionLayer(i, "full", heads, head, head))
            layers.append(AttentionLayer(i, "cross", heads, head, head))
    else:
        if heads == 0:
            raise ConfigError(f"config.json{where}: num_attention_heads is 0 but the model has attention layers")
        kv_heads = _kv_heads(r, model_type, heads)
        if kv_heads == 0 or kv_heads > heads and model_type not in F.FALCON_TYPES:
            raise ConfigError(f"config.json{where}: {kv_heads} KV heads for {heads} attention heads cannot be right")
        model_head, model_kv_heads = _head_size(r, hidden, heads), kv_heads
        if remote_code:
            _note_remote_code_guesses(r, heads, model_head)
        head = hidden // heads if model_type in F.HEAD_DIM_FROM_HIDDEN else model_head
        if head <= 0:
            raise ConfigError(f"config.json{where}: head size {head} (hidden {hidden} / heads {heads}) cannot be right")
        if model_type in F.MIMO_V2:
            layers = _mimo_v2_layers(r, n_layers, kv_heads, head, window)
        elif model_type in F.KV_SHARING:
            layers, model_head, model_kv_heads, shared_heads = _kv_sharing_layers(r, model_type, n_layers, kv_heads,
                                                                                  head, window)
        elif model_type in F.BLOCK_CONFIGS and isinstance(r.cfg.get("block_configs"), list):
            layers, model_kv_heads = _block_config_layers(r, n_layers, heads, head)
        else:
            kinds = _attention_kinds(r, model_type, n_layers, window)
            for i, kind in enumerate(kinds):
                layers.append(AttentionLayer(i, kind, kv_heads, head, head,
                                             window if kind == "sliding" else None,
                                             chunk if kind == "chunked" else None))
        mtp = _mtp_layers(r)

    derived, key, default, mml = _max_len(r, config, str(root_type or model_type))
    qc = config.get("quantization_config") if isinstance(config.get("quantization_config"), dict) else None
    ssm_dtype, ssm_in_config = None, False
    if model_type in F.MAMBA_SSM_DTYPE_DEFAULT:
        k, fallback = F.MAMBA_SSM_DTYPE_DEFAULT[model_type]
        ssm_in_config = cfg.get(k) is not None
        v = cfg.get(k, fallback)
        ssm_dtype = _DTYPE_NAMES.get(str(v).lower(), str(v)) if v is not None else None
    lt = cfg.get("layer_types")
    param_layout, quant = _weights(config, cfg, defaults, model_type, n_layers=n_layers, hidden=hidden, heads=heads,
                                   vocab=vocab, inter=inter, tie=bool(tie), layers=tuple(layers),
                                   shared=shared_heads, hf_quant_config=hf_quant_config)
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
        quantization=_quant_method(qc) if qc else ("modelopt" if hf_quant_config else None),
        use_mla=use_mla,
        is_encoder_decoder=model_type in F.ENCODER_DECODER_TYPES,
        num_experts=_count(r, "num_experts", "num_local_experts", "n_routed_experts"),
        experts_per_token=_count(r, "num_experts_per_tok", "top_k_experts", "num_experts_per_token"),
        moe_intermediate_size=_count(r, "moe_intermediate_size"),
        inferred=tuple(r.inferred),
        head_size=model_head,
        num_kv_heads=model_kv_heads,
        sliding_window=window,
        attention_chunk_size=chunk,
        mamba_ssm_dtype=ssm_dtype,
        mamba_ssm_dtype_in_config=ssm_in_config,
        mtp_layers=mtp,
        gdn_layer_types=isinstance(lt, list) and "linear_attention" in lt,
        encoder_item_tokens=r.int("max_source_positions", r.raw("max_source_positions", 0), allow_zero=True)
        if model_type in F.ENCODER_DECODER_TYPES else 0,
        params=param_layout,
        quant=quant,
    )


def _weights(config: dict, cfg: dict, defaults: dict, model_type: str, *, hf_quant_config: dict | None,
             **dims) -> tuple[ParamLayout | None, QuantScheme | None]:
    """The parameter layout and quantization scheme (weights from config.json alone). They only feed
    the weight estimate, so a config they cannot read leaves them unset rather than failing the check."""
    try:
        quant = Q.scheme(config, hf_quant_config)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError):
        quant = None
    try:
        layout = P.layout(config, cfg, defaults, model_type, **dims)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError):
        layout = None
    return layout, quant


def _mtp_layers(r: _Reader) -> int:
    """Layers of the model's own MTP module (num_nextn_predict_layers; Qwen3.5: mtp_num_hidden_layers)."""
    for k in ("num_nextn_predict_layers", "mtp_num_hidden_layers"):
        v = r.cfg.get(k)
        if v:
            return r.int(k, v, allow_zero=True)
    return 0


def _mla_layers(r: _Reader, model_type: str, n: int) -> tuple[list[Layer], int, int]:
    """MLA: one latent of kv_lora_rank + qk_rope_head_dim per token (head_size_v 0), not TP-split;
    DeepSeek-V3.2 / GLM-5 (`index_topk` set) add an indexer cache on each indexed layer."""
    kv_lora = r.int("kv_lora_rank", r.cfg["kv_lora_rank"])
    rope = r.int("qk_rope_head_dim", r.raw("qk_rope_head_dim", 64))
    head = kv_lora + rope
    indexer = None
    if r.cfg.get("index_topk") is not None:
        ih = r.int("index_head_dim", r.raw("index_head_dim", 128))
        indexer = ih + ih // F.INDEXER_QUANT_BLOCK * 4
    kda = _kda_layers(r, model_type, n)
    layers: list[Layer] = []
    freq = r.int("index_topk_freq", r.raw("index_topk_freq", 1))
    offset = r.int("index_skip_topk_offset", r.raw("index_skip_topk_offset", 2), allow_zero=True)
    pattern = r.cfg.get("index_topk_pattern")
    for i in range(n):
        if kda is not None and i in kda[0]:
            layers.append(MambaLayer(i, "kda", kda[1]))
            continue
        layers.append(AttentionLayer(i, "mla", 1, head, 0))
        if indexer is not None:
            if isinstance(pattern, (str, list)):
                skip = 0 <= i < len(pattern) and pattern[i] == "S"
            else:
                skip = max(i - offset + 1, 0) % freq != 0
            if not skip:
                layers.append(AttentionLayer(i, "indexer", 1, indexer, 0))
    return layers, head, _mtp_layers(r)


def _kda_layers(r: _Reader, model_type: str, n: int) -> tuple[set[int], tuple[tuple[str, int], ...]] | None:
    """Kimi-Linear's KDA layers (0-based) and their state parameters, from linear_attn_config
    (transformers_utils/configs/kimi_linear.py::is_kda_layer: `(layer_idx + 1) in kda_layers`)."""
    if model_type not in F.KIMI_LINEAR:
        return None
    lac = r.cfg.get("linear_attn_config")
    if lac is None:
        return None
    if not isinstance(lac, dict) or not isinstance(lac.get("kda_layers"), list) \
            or not isinstance(lac.get("full_attn_layers"), list):
        raise ConfigError(f"config.json{r.where}: linear_attn_config needs kda_layers and full_attn_layers lists")
    idx = set()
    for x in lac["kda_layers"]:
        idx.add(r.int("linear_attn_config.kda_layers", x) - 1)
    g = lambda k: r.int(f"linear_attn_config.{k}", lac.get(k))      # noqa: E731
    return idx, (("heads", g("num_heads")), ("head_dim", g("head_dim")), ("kernel", g("short_conv_kernel_size")))


def _block_config_layers(r: _Reader, n: int, heads: int, head: int) -> tuple[list[Layer], int]:
    """Nemotron-NAS: per-layer attention from block_configs (no_op layers own no KV); the model-level
    KV heads are the first attending block's (NemotronNasModelArchConfigConvertor)."""
    blocks = r.cfg["block_configs"]
    if len(blocks) < n:
        raise ConfigError(f"config.json{r.where}: block_configs has {len(blocks)} entries for {n} layers")
    layers: list[Layer] = []
    for i, b in enumerate(blocks[:n]):
        att = b.get("attention") if isinstance(b, dict) else None
        if not isinstance(att, dict):
            raise ConfigError(f"config.json{r.where}: block_configs[{i}] has no attention block")
        if att.get("no_op"):
            continue
        group = r.int("n_heads_in_group", att.get("n_heads_in_group"))
        if heads < group or heads % group:
            raise ConfigError(f"config.json{r.where}: block_configs[{i}] n_heads_in_group {group} does not "
                              f"divide the {heads} attention heads")
        layers.append(AttentionLayer(i, "full", heads // group, head, head))
    return layers, (layers[0].num_kv_heads if layers else 0)


def _gemma_layer_types(r: _Reader, model_type: str, n: int) -> list[str]:
    """Gemma 3n / Gemma 4 layer_types as their transformers configs leave them."""
    lt = r.cfg.get("layer_types")
    if lt is None:
        every = F.GEMMA4_FULL_EVERY if model_type in F.GEMMA4 else F.GEMMA3N_FULL_EVERY
        if model_type in F.GEMMA4:
            lt = ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(n)]
        else:
            lt = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(n)]
    if not isinstance(lt, list) or not all(isinstance(t, str) for t in lt):
        raise ConfigError(f"config.json{r.where}: layer_types must list strings")
    if len(lt) < n:
        raise ConfigError(f"config.json{r.where}: layer_types has {len(lt)} entries for {n} layers")
    lt = list(lt[:n])
    bad = sorted({t for t in lt} - {"sliding_attention", "full_attention"})
    if bad:
        raise ConfigError(f"config.json{r.where}: layer type {bad[0]!r} in layer_types is not one {model_type} has")
    if model_type in F.GEMMA4 and lt and lt[-1] != "full_attention":
        lt[-1] = "full_attention"       # Gemma4TextConfig: "Last layer must use `full_attention`"
        r.inferred.append("layer_types: the last layer made full attention (Gemma4TextConfig forces it)")
    return lt


def _gemma4_overrides(r: _Reader, lt: list[str], kv_heads: int, head: int) -> list[tuple[int, int]]:
    """(KV heads, head size) per layer: Gemma4TextConfig.per_layer_config, which vLLM reads per decoder layer
    (gemma4.py `config.per_layer_config[layer_idx]`). Full-attention layers take global_head_dim (512 when
    absent) and, when attention_k_eq_v, num_global_key_value_heads; a per_layer_config written in config.json
    replaces that rule."""
    out = [(kv_heads, head)] * len(lt)
    given = r.cfg.get("per_layer_config")
    if isinstance(given, dict):
        for k, v in given.items():
            try:
                i = int(k)
            except (TypeError, ValueError):
                raise ConfigError(f"config.json{r.where}: per_layer_config key {k!r} is not a layer index") from None
            if 0 <= i < len(lt) and isinstance(v, dict):
                kv = r.int("num_key_value_heads", v.get("num_key_value_heads", kv_heads))
                out[i] = (kv, r.int("head_dim", v.get("head_dim", head)))
        return out
    global_head = r.int("global_head_dim", r.raw("global_head_dim", 512))
    global_kv = r.cfg.get("num_global_key_value_heads")
    k_eq_v = r.raw("attention_k_eq_v", False)
    kv_full = r.int("num_global_key_value_heads", global_kv) if global_kv is not None and k_eq_v else kv_heads
    return [(kv_full, global_head) if t == "full_attention" else (kv_heads, head) for t in lt]


def _kv_sharing_layers(r: _Reader, model_type: str, n: int, kv_heads: int, head: int,
                       window: int | None) -> tuple[list[Layer], int, int, tuple[tuple[int, int], ...]]:
    """Gemma 3n / Gemma 4 (gemma3n.py, gemma4.py): sliding / full layers from layer_types, Gemma 4's per-layer
    heads, and the KV-shared last num_kv_shared_layers layers, which own no KV cache (their Attention reads
    another layer's: gpu_model_runner.get_kv_cache_spec skips them). Returns the KV-owning layers and the
    model-level head size and KV heads ModelConfig reports (ModelArchitectureConfig.from_layers: the maximum
    over the layers), and (index, head size) of each KV-shared layer (it still projects queries)."""
    lt = _gemma_layer_types(r, model_type, n)
    per_layer = _gemma4_overrides(r, lt, kv_heads, head) if model_type in F.GEMMA4 else [(kv_heads, head)] * n
    shared = r.int("num_kv_shared_layers", r.raw("num_kv_shared_layers", 0), allow_zero=True)
    first_shared = n - shared
    layers: list[Layer] = []
    sharing: list[tuple[int, int]] = []
    for i, t in enumerate(lt):
        if shared > 0 and i >= first_shared:
            if model_type in F.GEMMA4 and t not in lt[:first_shared]:
                raise ConfigError(f"config.json{r.where}: KV-shared layer {i} ({t}) has no earlier {t} layer to "
                                  "share with; vLLM's Gemma4Attention fails on it")
            target = first_shared - (2 if t == "sliding_attention" else 1)
            if model_type in F.GEMMA4 or target >= 0:      # reads an earlier layer's cache (gemma3n.py: `target`)
                sharing.append((i, per_layer[i][1]))      # and projects only queries (q_proj, q_norm)
                continue
        kv, hs = per_layer[i]
        sliding = t == "sliding_attention" and window is not None
        layers.append(AttentionLayer(i, "sliding" if sliding else "full", kv, hs, hs, window if sliding else None))
    return layers, max(h for _, h in per_layer), max(k for k, _ in per_layer), tuple(sharing)


def _mimo_v2_layers(r: _Reader, n: int, kv_heads: int, head: int, window: int | None) -> list[Layer]:
    """MiMo-V2 (model_executor/models/mimo_v2.py): hybrid_layer_pattern 1 = sliding layer with its own
    heads (swa_num_key_value_heads, swa_head_dim, swa_v_head_dim, window sliding_window_size)."""
    pattern = r.cfg.get("hybrid_layer_pattern") or [0] * n
    v_head = r.int("v_head_dim", r.raw("v_head_dim", head))
    swa_kv = r.int("swa_num_key_value_heads", r.raw("swa_num_key_value_heads", kv_heads))
    swa_head = r.int("swa_head_dim", r.raw("swa_head_dim", head))
    swa_v = r.int("swa_v_head_dim", r.raw("swa_v_head_dim", swa_head))
    swa_window = r.raw("sliding_window_size", window)
    swa_window = r.int("sliding_window_size", swa_window, positive=False) if swa_window is not None else -1
    if not isinstance(pattern, list):
        raise ConfigError(f"config.json{r.where}: hybrid_layer_pattern must be a list")
    layers: list[Layer] = []
    for i in range(n):
        if i < len(pattern) and pattern[i] == 1 and swa_window > 0:     # -1: normal attention (mimo_v2.py)
            layers.append(AttentionLayer(i, "sliding", swa_kv, swa_head, swa_v, swa_window))
        else:
            layers.append(AttentionLayer(i, "full", kv_heads, head, v_head))
    return layers


def _mamba_params(r: _Reader, model_type: str, mixer: str, hidden: int) -> tuple[tuple[str, int], ...]:
    """The config values each model's get_mamba_state_shape_from_config passes to vLLM's
    MambaStateShapeCalculator (model totals; kv.specs divides them by TP)."""
    g = lambda k, d=None: r.int(k, r.raw(k, d))     # noqa: E731
    if mixer == "mamba1":
        if model_type == "jamba":       # jamba.py: intermediate = mamba_expand * hidden
            return (("d_inner", g("mamba_expand") * hidden), ("d_state", g("mamba_d_state")),
                    ("d_conv", g("mamba_d_conv")))
        return (("d_inner", g("intermediate_size")), ("d_state", g("state_size")), ("d_conv", g("conv_kernel")))
    if mixer == "mamba2":
        if model_type == "nemotron_h":
            return (("intermediate", g("mamba_num_heads") * g("mamba_head_dim")), ("n_groups", g("n_groups")),
                    ("heads", g("mamba_num_heads")), ("head_dim", g("mamba_head_dim")),
                    ("d_state", g("ssm_state_size")), ("d_conv", g("conv_kernel")))
        if model_type == "mamba2":
            return (("intermediate", g("expand") * hidden), ("n_groups", g("n_groups")),
                    ("heads", g("num_heads")), ("head_dim", g("head_dim")),
                    ("d_state", g("state_size")), ("d_conv", g("conv_kernel")))
        if model_type == "falcon_h1":
            d_ssm = r.cfg.get("mamba_d_ssm")
            if d_ssm is not None:
                inter = r.int("mamba_d_ssm", d_ssm)
            else:
                expand = r.raw("mamba_expand")
                if isinstance(expand, bool) or not isinstance(expand, (int, float)) or not math.isfinite(expand) \
                        or expand <= 0:
                    raise ConfigError(f"config.json{r.where}: mamba_expand must be a positive number, got {expand!r}")
                inter = int(expand * hidden)
        elif model_type in F.ZAMBA2:    # zamba2.py: head_dim intermediate // n_mamba_heads (Zamba2Config)
            inter = g("mamba_expand") * hidden
            heads = g("n_mamba_heads")
            return (("intermediate", inter), ("n_groups", g("mamba_ngroups")), ("heads", heads),
                    ("head_dim", inter // heads), ("d_state", g("mamba_d_state")), ("d_conv", g("mamba_d_conv")))
        else:                       # granitemoehybrid, bamba: mamba_expand * hidden
            inter = g("mamba_expand") * hidden
        return (("intermediate", inter), ("n_groups", g("mamba_n_groups")), ("heads", g("mamba_n_heads")),
                ("head_dim", g("mamba_d_head")), ("d_state", g("mamba_d_state")), ("d_conv", g("mamba_d_conv")))
    if mixer == "linear_attn":      # minimax_text_01.py: (num_attention_heads, head_dim or hidden // heads)
        heads = g("num_attention_heads")
        return (("heads", heads), ("head_dim", _head_size(r, hidden, heads)))
    if mixer == "plamo2_mamba":     # plamo2.py::get_mamba_state_shape_from_config: mamba2 shape, n_groups 0
        heads, head_dim = g("mamba_num_heads"), g("hidden_size_per_head")
        return (("intermediate", heads * head_dim), ("n_groups", 0), ("heads", heads), ("head_dim", head_dim),
                ("d_state", g("mamba_d_state")), ("d_conv", g("mamba_d_conv")))
    if mixer == "short_conv":       # lfm2.py: conv_dim; lfm2_moe.py: hidden_size
        dim = hidden if model_type == "lfm2_moe" else g("conv_dim", hidden)
        return (("dim", dim), ("kernel", g("conv_L_cache")))
    # gdn: qwen3_next.py / qwen3_5.py
    return (("nk", g("linear_num_key_heads")), ("nv", g("linear_num_value_heads")),
            ("dk", g("linear_key_head_dim")), ("dv", g("linear_value_head_dim")),
            ("kernel", g("linear_conv_kernel_dim")))


def _mamba_family_layers(r: _Reader, model_type: str, n: int, hidden: int, heads: int,
                         window: int | None) -> tuple[list[Layer], int, int]:
    """Layers of mamba / linear-attention models (families.MAMBA_FAMILIES), in vLLM's layer order."""
    fam = F.MAMBA_FAMILIES[model_type]
    mixer, layout = fam["mixer"], fam["layout"]
    params = _mamba_params(r, model_type, mixer, hidden)
    if layout == "all":
        # ModelConfig.get_head_size(): MambaModelArchConfigConvertor says 0 for mamba / falcon_mamba;
        # other attention-free types go through the base convertor (head_dim, attention heads).
        if model_type in F.MAMBA_CONVERTOR_TYPES:
            return [MambaLayer(i, mixer, params) for i in range(n)], 0, 0
        attn_heads = r.cfg.get("num_attention_heads") or 0     # Mamba2Config has no attention heads
        attn_heads = r.int("num_attention_heads", attn_heads, allow_zero=True)
        return [MambaLayer(i, mixer, params) for i in range(n)], _head_size(r, hidden, attn_heads), attn_heads
    kv_heads = _kv_heads(r, model_type, heads)
    head = _head_size(r, hidden, heads)
    if model_type in F.LFM2 and heads:       # Lfm2Attention: hidden_size // num_attention_heads
        head = hidden // heads
    if model_type in F.ZAMBA2 and heads:     # Zamba2Config: attention_head_dim = 2 * hidden // heads, MHA
        head, kv_heads = 2 * hidden // heads, heads
        nkv = r.cfg.get("num_key_value_heads")
        if nkv is not None and nkv != heads:
            r.inferred.append(f"num_key_value_heads={nkv} is not read: Zamba2's attention keeps one KV head per "
                              f"query head ({heads}, zamba2.py)")
    if heads == 0 or kv_heads == 0 or head <= 0:
        raise ConfigError(f"config.json{r.where}: {model_type} needs attention heads for its attention layers")
    attn_window = window if model_type in F.WINDOW_ON_EVERY_ATTENTION else None
    if layout == "jamba":
        period = r.int("attn_layer_period", r.raw("attn_layer_period", 8))
        offset = r.int("attn_layer_offset", r.raw("attn_layer_offset", 4), allow_zero=True)
        is_attn = [i % period == offset for i in range(n)]
    elif layout == "pattern":
        pattern = r.cfg.get("hybrid_override_pattern")
        if not isinstance(pattern, str) or len(pattern) < n:
            raise ConfigError(f"config.json{r.where}: nemotron_h needs hybrid_override_pattern (M, *, -, E per layer)")
        bad = set(pattern) - set("M*-E")
        if bad:
            raise ConfigError(f"config.json{r.where}: hybrid_override_pattern has unknown layer kinds {sorted(bad)}")
        is_attn = [c == "*" for c in pattern[:n]]
        is_mamba = [c == "M" for c in pattern[:n]]
    elif layout == "attn_indices":
        idx = r.cfg.get("attn_layer_indices") or []
        is_attn = [i in idx for i in range(n)]
    elif layout == "parallel":
        is_attn = [True] * n
    elif layout == "zamba2":
        kinds = r.cfg.get("layers_block_type") or r.cfg.get("layer_types")
        if not isinstance(kinds, list) or not kinds:        # Zamba2Config's default pattern
            kinds = (["m"] + (["m"] * 5 + ["hybrid"]) * 7 + ["m"] * 4 + ["hybrid"] + ["m"] * 3 + ["hybrid"]
                     + ["m"] * 2)
        if len(kinds) < n:
            raise ConfigError(f"config.json{r.where}: layers_block_type has {len(kinds)} entries for {n} layers")
        is_attn = [k == "hybrid" for k in kinds[:n]]
        # zamba2.py builds every shared block's Attention modules before the layers' mamba mixers
        attn = [AttentionLayer(i, "full", kv_heads, head, head) for i in range(n) if is_attn[i]]
        return attn + [MambaLayer(i, mixer, params) for i in range(n)], head, kv_heads
    elif layout == "minimax":
        is_attn = _minimax_attention_types(r, n)
    elif layout == "plamo2":
        step = r.int("mamba_step", r.raw("mamba_step"))
        if step <= 1:       # plamo2.py::is_mamba asserts mamba_step > 1
            raise ConfigError(f"config.json{r.where}: mamba_step must be above 1 (plamo2.py asserts it), got {step}")
        if n <= step // 2:  # "use attention in last layer"
            is_attn = [i == n - 1 for i in range(n)]
        else:
            is_attn = [i % step == step // 2 for i in range(n)]
    else:   # layer_types
        lt = r.cfg.get("layer_types")
        if not isinstance(lt, list) or not lt:
            interval = r.int("full_attention_interval", r.raw("full_attention_interval", 4))
            lt = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(n)]
        if len(lt) < n:
            raise ConfigError(f"config.json{r.where}: layer_types has {len(lt)} entries for {n} layers")
        for t in lt[:n]:
            if t not in ("full_attention", "attention", "linear_attention", "mamba", "conv"):
                raise ConfigError(f"config.json{r.where}: layer type {t!r} in layer_types is not one kvfit "
                                  f"models for {model_type}")
        is_attn = [t in ("full_attention", "attention") for t in lt[:n]]
    layers: list[Layer] = []
    for i in range(n):
        if layout == "parallel":        # falcon_h1.py: the attention module registers before the mixer
            layers.append(AttentionLayer(i, "full", kv_heads, head, head))
            layers.append(MambaLayer(i, mixer, params))
        elif is_attn[i]:
            kind = "sliding" if attn_window else "full"
            layers.append(AttentionLayer(i, kind, kv_heads, head, head, attn_window))
        elif layout != "pattern" or is_mamba[i]:
            layers.append(MambaLayer(i, mixer, params))
    return layers, head, kv_heads


def _minimax_attention_types(r: _Reader, n: int) -> list[bool]:
    """minimax_text_01.py::MiniMaxText01Model (0.10.1-0.23.0): decoder_attention_types is attn_type_list, else
    decoder_attention_types (the first truthy one), else layer_types mapped (linear_attention 0, full_attention 1,
    anything else a ValueError), else every layer full (1). True: full attention."""
    types = r.cfg.get("attn_type_list") or r.cfg.get("decoder_attention_types")
    if not types and r.cfg.get("layer_types") is not None:
        lt = r.cfg["layer_types"]
        if not isinstance(lt, list):
            raise ConfigError(f"config.json{r.where}: layer_types must be a list")
        types = []
        for t in lt:
            if t not in ("linear_attention", "full_attention"):
                raise ConfigError(f"config.json{r.where}: layer type {t!r} is not one vLLM's MiniMax model reads "
                                  "(\"Unsupported layer type\", minimax_text_01.py)")
            types.append(0 if t == "linear_attention" else 1)
    if not types:
        return [True] * n
    if not isinstance(types, list) or len(types) < n:
        raise ConfigError(f"config.json{r.where}: attn_type_list needs one entry (0 linear, 1 full) for each of "
                          f"the {n} layers")
    out = []
    for t in types[:n]:
        if isinstance(t, bool) or t not in (0, 1):
            raise ConfigError(f"config.json{r.where}: attn_type_list entries must be 0 (linear) or 1 (full), got {t!r}")
        out.append(t == 1)
    return out


def _note_remote_code_guesses(r: _Reader, heads: int, head: int) -> None:
    """With custom config code not run, say which attention numbers are kvfit's reading, not the config's."""
    if not any(k in r.cfg for k in _KV_HEAD_KEYS) and "num_key_value_heads" not in r.defaults:
        r.inferred.append(f"KV heads = attention heads ({heads}): config.json names no KV head count")
    if not any(r.has(k) for k in ("head_dim", "hidden_size_per_head")) and "head_dim" not in r.defaults:
        r.inferred.append(f"head size = hidden_size / num_attention_heads = {head}: config.json has no head_dim")


def _count(r: _Reader, *keys: str) -> int:
    """The first of `keys` set to a non-zero value, as a whole number (0 when none is set)."""
    for k in keys:
        v = r.cfg.get(k)
        if v is not None and v is not False and v != 0:
            return r.int(k, v, allow_zero=True)
    return 0


def _quant_method(qc: dict) -> str | None:
    """quantization_config.quant_method as vLLM reads it (a string: it calls .lower() on it)."""
    method = qc.get("quant_method")
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"config.json: quantization_config.quant_method must be a string, got {method!r}")
    return method


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
