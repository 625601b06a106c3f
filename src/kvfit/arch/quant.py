"""quantization_config (or hf_quant_config.json) -> QuantScheme, read the way vLLM 0.32 reads it.

Where vLLM finds the scheme (model_executor/model_loader/weight_utils.py::get_quant_config and
transformers_utils/config.py): config.json's quantization_config, else the text config's (some vision
models keep it there), else compression_config, else a ModelOpt hf_quant_config.json beside config.json.
Which quantization config class reads it (model_executor/layers/quantization/__init__.py):

  quant_method          vLLM class (file)                                     what it stores per linear
  fp8                   Fp8Config (fp8.py)                                    float8_e4m3fn weight; float32
                        scale per tensor, or per weight_block_size block (weight_scale_inv)
  fbgemm_fp8            FBGEMMFp8Config (fbgemm_fp8.py)                       fp8 weight, float32 scale per row
  awq                   AutoAWQConfig (auto_awq.py)                           int32 qweight [in, out/8], int32
                        qzeros [in/g, out/8], scales [in/g, out] in the model dtype
  gptq                  AutoGPTQConfig (auto_gptq.py)                         int32 qweight [in/8, out], qzeros,
                        scales [in/g, out], int32 g_idx [in]
  compressed-tensors    CompressedTensorsConfig (compressed_tensors/*)        per config_groups scheme: W8A8 int8 /
                        fp8 (channel, tensor or block scales), WNA16 packed int, NVFP4, MXFP4
  modelopt              ModelOptFp8Config / ModelOptNvFp4Config (modelopt.py) FP8 per tensor, per channel or
                        per 128x128 block (FP8_PB_WO); NVFP4: uint8 pairs + fp8 scale per 16 + fp32 globals
  mxfp4 (gpt_oss)       GptOssMxfp4Config (mxfp4.py)                          routed experts only: uint8 pairs
                        + one uint8 (E8M0) scale per 32 values; attention and router stay unquantized
  bitsandbytes          BitsAndBytesConfig (bitsandbytes.py, releases <= 0.27.1; removed in 0.28.0)

Model quirks (which modules stay unquantized) come from the ignore lists (modules_to_not_convert,
ignored_layers, ignore, exclude_modules, llm_int8_skip_modules); memory/weights.py applies them.
Nothing here raises on an odd value: a scheme kvfit cannot read sizes the weights unquantized and
says so.
"""

from __future__ import annotations

import math
from typing import Any

from .model import QuantScheme

_IGNORE_KEYS = ("modules_to_not_convert", "ignored_layers", "ignore", "exclude_modules", "llm_int8_skip_modules")


def find_quant_config(config: dict, hf_quant_config: dict | None) -> dict | None:
    """The dict vLLM reads the weight quantization from (get_quant_config's order)."""
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        for key in ("text_config", "thinker_config", "llm_config", "language_config"):
            sub = config.get(key)
            if isinstance(sub, dict) and isinstance(sub.get("quantization_config"), dict):
                qc = sub["quantization_config"]
                break
    if not isinstance(qc, dict) and isinstance(config.get("compression_config"), dict):
        qc = config["compression_config"]
        qc = dict(qc, quant_method=qc.get("quant_method", "compressed-tensors"))
    if not isinstance(qc, dict) and isinstance(hf_quant_config, dict):
        q = hf_quant_config.get("quantization")
        if isinstance(q, dict):
            qc = dict(q, quant_method="modelopt")
    return qc if isinstance(qc, dict) else None


def _int(v: Any, default: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    return int(v)


def _ignore(qc: dict) -> tuple[str, ...]:
    out: list[str] = []
    for k in _IGNORE_KEYS:
        v = qc.get(k)
        if isinstance(v, list):
            out.extend(str(x) for x in v if isinstance(x, str))
    return tuple(out)


def scheme(config: dict, hf_quant_config: dict | None) -> QuantScheme | None:
    qc = find_quant_config(config, hf_quant_config)
    if qc is None:
        return None
    method = str(qc.get("quant_method") or qc.get("quant_algo") and "modelopt" or "").lower()
    if not method:
        return QuantScheme("", None, notes=("quantization_config names no quant_method: weights sized "
                                            "unquantized",))
    try:
        return _read(method, qc)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return QuantScheme(method, None, notes=(f"quantization_config ({method}) not understood: weights "
                                                "sized unquantized",))


def _read(method: str, qc: dict) -> QuantScheme:
    ignore = _ignore(qc)
    if method == "fp8":
        block = qc.get("weight_block_size")
        static = str(qc.get("activation_scheme", "dynamic")).lower() == "static"
        if isinstance(block, list) and len(block) == 2:
            b = (_int(block[0], 128), _int(block[1], 128))
            return QuantScheme("fp8", "fp8", 8, "block", block=b, ignore=ignore,
                               label=f"FP8 block-wise {b[0]}x{b[1]}")
        return QuantScheme("fp8", "fp8", 8, "tensor", static_input=static, ignore=ignore,
                           label="FP8 per-tensor")
    if method == "fbgemm_fp8":
        return QuantScheme(method, "fp8", 8, "channel", ignore=ignore, label="FP8 per-channel (fbgemm)")
    if method in ("awq", "awq_marlin", "auto_awq"):
        bits = _int(qc.get("bits", qc.get("w_bit")), 4)
        g = _int(qc.get("group_size", qc.get("q_group_size")), 128)
        zp = bool(qc.get("zero_point", True))
        return QuantScheme("awq", "int", bits, "group" if g > 0 else "channel", group_size=max(g, 0),
                           zero_point=zp, lm_head=bool(qc.get("lm_head", False)), towers=False, ignore=ignore,
                           substring_ignore=True,
                           label=f"AWQ {bits}-bit, group {g if g > 0 else 'per-channel'}")
    if method in ("gptq", "auto_gptq", "gptq_marlin", "auto-round", "autoround", "inc"):
        bits = _int(qc.get("bits"), 4)
        g = _int(qc.get("group_size"), 128)
        desc = bool(qc.get("desc_act", False))
        name = "GPTQ" if "gptq" in method else "AutoRound"
        return QuantScheme("gptq", "int", bits, "group" if g > 0 else "channel", group_size=max(g, 0),
                           zero_point=True, desc_act=desc, lm_head=bool(qc.get("lm_head", False)), towers=False,
                           ignore=ignore, substring_ignore=True,
                           label=f"{name} {bits}-bit, group {g if g > 0 else 'per-channel'}"
                           + (", desc_act" if desc else ""))
    if method == "compressed-tensors":
        return _compressed_tensors(qc, ignore)
    if method in ("modelopt", "modelopt_fp4", "modelopt_mxfp8", "mxfp8"):
        return _modelopt(qc, ignore, method)
    if method in ("mxfp4", "gpt_oss_mxfp4"):
        return QuantScheme("mxfp4", "mxfp4", 4, "group", group_size=32, experts_only=True, ignore=ignore,
                           label="MXFP4 experts (uint8 pairs + E8M0 scale per 32)")
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return QuantScheme(method, "bnb8", 8, "channel", ignore=ignore, substring_ignore=True,
                               label="bitsandbytes 8-bit",
                               notes=_BNB_NOTE)
        dq = bool(qc.get("bnb_4bit_use_double_quant", False))
        qt = str(qc.get("bnb_4bit_quant_type", "fp4"))
        return QuantScheme(method, "bnb4", 4, "group", group_size=64, double_quant=dq, ignore=ignore,
                           substring_ignore=True,
                           label=f"bitsandbytes 4-bit {qt}" + (", double quant" if dq else ""), notes=_BNB_NOTE)
    if method in ("experts_int8",):
        return QuantScheme(method, "w8a8", 8, "channel", experts_only=True, ignore=ignore,
                           label="int8 experts (per-channel)")
    if method == "moe_wna16":
        bits = _int(qc.get("bits"), 4)
        g = _int(qc.get("group_size"), 128)
        return QuantScheme(method, "int", bits, "group", group_size=max(g, 0), zero_point=True,
                           experts_only=True, ignore=ignore, label=f"MoE WNA16 {bits}-bit, group {g}")
    return QuantScheme(method, None, ignore=ignore, notes=(f"quantization method {method!r} is not modelled: "
                                                           "weights sized unquantized",))


_BNB_NOTE = ("bitsandbytes: vLLM supports it up to 0.27.1 (model_executor/layers/quantization/bitsandbytes.py; "
             "removed in 0.28.0)",)


def _compressed_tensors(qc: dict, ignore: tuple[str, ...]) -> QuantScheme:
    """compressed_tensors.py::_quantization_scheme_map_from_config: each config_groups entry gives a
    scheme for its targets; the one for Linear layers sizes the model (experts follow it too)."""
    groups = qc.get("config_groups")
    fmt = str(qc.get("format", "")).lower()
    notes: list[str] = []
    chosen: dict | None = None
    if isinstance(groups, dict):
        cands = [g for g in groups.values() if isinstance(g, dict) and isinstance(g.get("weights"), dict)]
        for g in cands:
            targets = g.get("targets") or []
            if any(isinstance(t, str) and "Linear" in t for t in targets):
                chosen = g
                break
        if chosen is None and cands:
            chosen = cands[0]
        if len(cands) > 1:
            notes.append(f"compressed-tensors has {len(cands)} config_groups: sized with the Linear one")
        fmt = str(chosen.get("format") or fmt).lower() if chosen else fmt
    if chosen is None:          # e.g. a KV-cache-only scheme: the weights are stored unquantized
        return QuantScheme("compressed-tensors", None, ignore=ignore)
    w = chosen["weights"]
    bits = _int(w.get("num_bits"), 8)
    typ = str(w.get("type", "int")).lower()
    strategy = str(w.get("strategy", "tensor")).lower()
    g = _int(w.get("group_size"), 0)
    sym = bool(w.get("symmetric", True))
    act = chosen.get("input_activations")
    static = isinstance(act, dict) and not act.get("dynamic", True) and strategy != "block"
    if typ == "float" and bits == 4:
        if "mxfp4" in fmt or g == 32 and "nvfp4" not in fmt:
            return QuantScheme("compressed-tensors", "mxfp4", 4, "group", group_size=32, ignore=ignore,
                               label="MXFP4 (compressed-tensors)", notes=tuple(notes))
        return QuantScheme("compressed-tensors", "nvfp4", 4, "group", group_size=g or 16, ignore=ignore,
                           label=f"NVFP4 (compressed-tensors, group {g or 16})", notes=tuple(notes))
    if typ == "float" and bits == 8:
        if strategy == "block":
            bs = w.get("block_structure") or [128, 128]
            b = (_int(bs[0], 128), _int(bs[1], 128))
            return QuantScheme("compressed-tensors", "fp8", 8, "block", block=b, ignore=ignore,
                               label=f"FP8 block-wise {b[0]}x{b[1]} (compressed-tensors)", notes=tuple(notes))
        if strategy == "group" and g == 32:
            return QuantScheme("compressed-tensors", "mxfp8", 8, "group", group_size=32, ignore=ignore,
                               label="MXFP8 (compressed-tensors)", notes=tuple(notes))
        strat = "channel" if strategy == "channel" else "tensor"
        return QuantScheme("compressed-tensors", "fp8", 8, strat, static_input=static, ignore=ignore,
                           label=f"FP8 per-{strat} (compressed-tensors)", notes=tuple(notes))
    if typ == "int" and bits == 8 and ("int-quantized" in fmt or act):
        return QuantScheme("compressed-tensors", "w8a8", 8, "channel" if strategy == "channel" else "tensor",
                           static_input=static, ignore=ignore, label="W8A8 int8 (compressed-tensors)",
                           notes=tuple(notes))
    # WNA16 and friends: packed integers with per-group or per-channel scales
    strat = "group" if strategy == "group" and g > 0 else "channel"
    return QuantScheme("compressed-tensors", "int", bits, strat, group_size=g if strat == "group" else 0,
                       zero_point=not sym, ignore=ignore,
                       label=f"W{bits}A16 int (compressed-tensors, "
                             f"{'group ' + str(g) if strat == 'group' else 'per-channel'})",
                       notes=tuple(notes))


def _modelopt(qc: dict, ignore: tuple[str, ...], method: str) -> QuantScheme:
    """modelopt.py::ModelOptQuantConfigBase.from_config (LINEAR_ALGOS)."""
    algo = str(qc.get("quant_algo") or ("MXFP8" if "mxfp8" in method else "")).upper()
    g = _int(qc.get("group_size"), 0)
    if algo == "FP8":
        return QuantScheme("modelopt", "fp8", 8, "tensor", static_input=True, ignore=ignore,
                           label="FP8 per-tensor (ModelOpt)")
    if algo == "FP8_PER_CHANNEL_PER_TOKEN":
        return QuantScheme("modelopt", "fp8", 8, "channel", ignore=ignore, label="FP8 per-channel (ModelOpt)")
    if algo in ("FP8_PB_WO", "FP8_BLOCK_SCALES"):
        return QuantScheme("modelopt", "fp8", 8, "block", block=(128, 128), ignore=ignore,
                           label="FP8 block-wise 128x128 (ModelOpt)")
    if algo in ("NVFP4", "W4A16_NVFP4"):
        return QuantScheme("modelopt_fp4", "nvfp4", 4, "group", group_size=g or 16, static_input=algo == "NVFP4",
                           ignore=ignore, label=f"NVFP4 (ModelOpt, group {g or 16})")
    if algo == "MXFP8":
        return QuantScheme("modelopt_mxfp8", "mxfp8", 8, "group", group_size=32, ignore=ignore,
                           label="MXFP8 (ModelOpt)")
    return QuantScheme("modelopt", None, ignore=ignore,
                       notes=(f"ModelOpt quant_algo {algo or '(none)'} is not modelled: weights sized unquantized",))
