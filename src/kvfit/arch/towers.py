"""Vision and audio towers (vision_config / audio_config) and their projectors, counted from their dims.

Each family below follows the vLLM 0.32 module that builds the tower (model_executor/models/<file>.py);
a tower kvfit does not recognise is counted with the CLIP-style ViT formula and said so.

  family        vLLM file                 per encoder layer
  qwen2_vl      qwen2_vl.py               LayerNorm x2, qkv+bias, proj+bias, fc1/fc2 (mlp_ratio)+bias
  qwen2_5_vl    qwen2_5_vl.py             RMSNorm x2, qkv+bias, proj+bias, gated MLP+bias
  qwen3_vl      qwen3_vl.py               LayerNorm x2, qkv+bias, proj+bias, fc1/fc2+bias; pos_embed; deepstack mergers
  clip          clip.py / llava.py        layers up to vision_feature_layer; post_layernorm only when all are used
  siglip        siglip.py / gemma3_mm.py  patch conv+bias, positions, layers as CLIP, post_layernorm, head if used
  llama4        mllama4.py                unfold linear, class/pos embeddings, layers, pixel-shuffle MLP
  intern_vit    intern_vit.py / internvl.py  qkv (bias), q/k norms, layer scales; mlp1 projector
  pixtral       pixtral.py / mistral3.py  RMSNorm, q/k/v/o, gated MLP; patch merger projector
  whisper-like  qwen2_audio.py / qwen2_5_omni_thinker.py / whisper.py: conv1, conv2, positions, layers
"""

from __future__ import annotations

import math

from .model import Linear, Tensor


def _i(c: dict, *keys: str, default: int = 0) -> int:
    for k in keys:
        v = c.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            return int(v)
    return default


class _T:
    def __init__(self, role: str):
        self.role = role
        self.linears: list[Linear] = []
        self.tensors: list[Tensor] = []

    def lin(self, out: int, inp: int, name: str, count: int = 1, bias: bool = True):
        if out > 0 and inp > 0 and count > 0:
            self.linears.append(Linear(self.role, out, inp, count, name))
            if bias:
                self.tensors.append(Tensor("bias", out * count, name + ".bias"))

    def ten(self, n: int, name: str):
        if n > 0:
            self.tensors.append(Tensor(self.role, n, name))

    @property
    def total(self) -> int:
        return sum(x.params for x in self.linears) + sum(x.params for x in self.tensors)


def _sub(config: dict, key: str) -> dict | None:
    v = config.get(key)
    if isinstance(v, dict):
        return v
    for outer in ("thinker_config",):
        o = config.get(outer)
        if isinstance(o, dict) and isinstance(o.get(key), dict):
            return o[key]
    return None


def read(config: dict, text_hidden: int, model_type: str) -> tuple[list[Linear], list[Tensor], list[str]]:
    """(linears, tensors, notes): every tower of the model with its projector into the language model."""
    linears: list[Linear] = []
    tensors: list[Tensor] = []
    notes: list[str] = []
    root = str(config.get("model_type") or model_type)
    vc = _sub(config, "vision_config")
    if vc is None and root in VISION_DEFAULTS:
        vc = dict(VISION_DEFAULTS[root])
        notes.append("no vision_config: transformers' default tower")
    if vc is not None and _i(vc, "hidden_size", "embed_dim", "width") and root not in ("gemma4",):
        t, what = _vision(vc, config, root, text_hidden)
        linears += t.linears
        tensors += t.tensors
        notes.append(f"vision tower {t.total / 1e6:,.0f}M ({what})")
    elif vc is not None:
        notes.append("vision_config not sized (kvfit does not know this tower's layout)")
    if root == "whisper":                # whisper.py: the encoder's dims sit at the top level of config.json
        t, what = _audio(config, config, root, text_hidden)
        linears += t.linears
        tensors += t.tensors
        notes.append(f"audio encoder {t.total / 1e6:,.0f}M ({what})")
    ac = _sub(config, "audio_config")
    if ac is not None and _i(ac, "d_model", "hidden_size"):
        t, what = _audio(ac, config, root, text_hidden)
        linears += t.linears
        tensors += t.tensors
        notes.append(f"audio tower {t.total / 1e6:,.0f}M ({what})")
    return linears, tensors, notes


# --- vision ---------------------------------------------------------------------------------------

# Multimodal configs without vision_config get the transformers class's default tower, and vLLM builds it
# (Llama4ForConditionalGeneration with Llama4VisionConfig()).
VISION_DEFAULTS = {
    "llama4": {"model_type": "llama4_vision_model", "hidden_size": 768, "num_hidden_layers": 34,
               "num_channels": 3, "intermediate_size": 5632, "vision_output_dim": 7680, "image_size": 448,
               "patch_size": 14, "projector_input_dim": 4096, "projector_output_dim": 4096,
               "multi_modal_projector_bias": False},
}

def _vision(vc: dict, config: dict, root: str, text_h: int) -> tuple[_T, str]:
    vmt = str(vc.get("model_type") or "")
    t = _T("vision")
    if root == "qwen2_vl" or vmt == "qwen2_vl":
        return _qwen2_vl(t, vc, text_h), "Qwen2-VL ViT"
    if root in ("qwen2_5_vl", "qwen2_5_omni", "qwen2_5_omni_thinker") or "qwen2_5" in vmt:
        return _qwen2_5_vl(t, vc, text_h), "Qwen2.5-VL ViT"
    if root.startswith(("qwen3_vl", "qwen3_5", "qwen3_omni")) or vmt.startswith(("qwen3", )):
        return _qwen3_vl(t, vc, text_h), "Qwen3-VL ViT"
    if "llama4" in vmt or root == "llama4":
        return _llama4(t, vc, text_h), "Llama 4 ViT"
    if "intern" in vmt or root in ("internvl_chat", "internvl"):
        return _intern_vit(t, vc, config, text_h), "InternViT"
    if "pixtral" in vmt or root in ("mistral3", "pixtral"):
        return _pixtral(t, vc, config, text_h), "Pixtral ViT"
    if "siglip" in vmt or root in ("gemma3", "paligemma", "idefics3", "smolvlm"):
        return _siglip(t, vc, config, root, text_h), "SigLIP ViT"
    if "clip" in vmt or root in ("llava", "llava_next", "llava_next_video", "llava_onevision"):
        return _clip(t, vc, config, text_h), "CLIP ViT"
    _clip(t, vc, config, text_h)
    return t, "generic ViT formula, layout not known to kvfit"


def _vit_layers(t: _T, d: int, inter: int, n: int, prefix: str, *, norm: int = 2, gated: bool = False,
                bias: bool = True, qkv_fused: bool = False):
    """n encoder layers: attention (q, k, v, o), two norms of `norm` params per channel, MLP."""
    if qkv_fused:
        t.lin(3 * d, d, prefix + ".attn.qkv", n, bias)
        t.lin(d, d, prefix + ".attn.proj", n, bias)
    else:
        for x in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t.lin(d, d, f"{prefix}.self_attn.{x}", n, bias)
    t.ten(2 * norm * d * n, prefix + ".norms")
    if gated:
        t.lin(inter, d, prefix + ".mlp.gate_proj", n, bias)
    t.lin(inter, d, prefix + ".mlp.fc1", n, bias)
    t.lin(d, inter, prefix + ".mlp.fc2", n, bias)


def _qwen2_vl(t: _T, vc: dict, text_h: int) -> _T:
    d = _i(vc, "embed_dim", default=1280)
    depth = _i(vc, "depth", "num_hidden_layers", default=32)
    inter = int(d * float(vc.get("mlp_ratio", 4) or 4))
    p, tp, ch, m = _i(vc, "patch_size", default=14), _i(vc, "temporal_patch_size", default=2), \
        _i(vc, "in_chans", "in_channels", default=3), _i(vc, "spatial_merge_size", default=2)
    out = _i(vc, "hidden_size", default=text_h)
    t.ten(d * ch * tp * p * p, "visual.patch_embed.proj")
    _vit_layers(t, d, inter, depth, "visual.blocks.0", qkv_fused=True)
    t.ten(2 * d, "visual.merger.ln_q")
    t.lin(d * m * m, d * m * m, "visual.merger.mlp.0")
    t.lin(out, d * m * m, "visual.merger.mlp.2")
    return t


def _qwen2_5_vl(t: _T, vc: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", "embed_dim", default=1280)
    depth = _i(vc, "depth", "num_hidden_layers", default=32)
    inter = _i(vc, "intermediate_size", default=3420)
    p, tp, ch, m = _i(vc, "patch_size", default=14), _i(vc, "temporal_patch_size", default=2), \
        _i(vc, "in_chans", "in_channels", default=3), _i(vc, "spatial_merge_size", default=2)
    out = _i(vc, "out_hidden_size", "output_dim", default=text_h)
    t.ten(d * ch * tp * p * p, "visual.patch_embed.proj")
    _vit_layers(t, d, inter, depth, "visual.blocks.0", norm=1, gated=True, qkv_fused=True)
    t.ten(d, "visual.merger.ln_q")
    t.lin(d * m * m, d * m * m, "visual.merger.mlp.0")
    t.lin(out, d * m * m, "visual.merger.mlp.2")
    return t


def _qwen3_vl(t: _T, vc: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", default=1152)
    depth = _i(vc, "depth", "num_hidden_layers", default=27)
    inter = _i(vc, "intermediate_size", default=4304)
    p, tp, ch, m = _i(vc, "patch_size", default=16), _i(vc, "temporal_patch_size", default=2), \
        _i(vc, "in_channels", "in_chans", default=3), _i(vc, "spatial_merge_size", default=2)
    out = _i(vc, "out_hidden_size", default=text_h)
    t.ten(d * ch * tp * p * p + d, "visual.patch_embed.proj")
    t.ten(_i(vc, "num_position_embeddings", default=2304) * d, "visual.pos_embed")
    _vit_layers(t, d, inter, depth, "visual.blocks.0", qkv_fused=True)
    mergers = 1 + len(vc.get("deepstack_visual_indexes") or [])
    t.ten(2 * d + (mergers - 1) * 2 * d * m * m, "visual.merger.norm")       # deepstack: post-shuffle norm
    t.lin(d * m * m, d * m * m, "visual.merger.linear_fc1", mergers)
    t.lin(out, d * m * m, "visual.merger.linear_fc2", mergers)
    return t


def feature_layers(n: int, config) -> int:
    """llava.py::_get_num_hidden_layers: of a tower's `n` layers, those up to vision_feature_layer."""
    fl = config.get("vision_feature_layer", -1)
    if isinstance(fl, list) and fl and all(isinstance(x, int) for x in fl):
        used = max(x if x >= 0 else n + x + 1 for x in fl)
    elif isinstance(fl, int) and not isinstance(fl, bool):
        used = fl if fl >= 0 else n + fl + 1
    else:
        used = n
    return max(1, min(n, used))


def _used_layers(vc: dict, config: dict) -> tuple[int, bool]:
    """The layers built, and whether post_layernorm is (only when all are used)."""
    n = _i(vc, "num_hidden_layers", "depth", default=24)
    used = feature_layers(n, config)
    return used, used == n


def _clip(t: _T, vc: dict, config: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", "embed_dim", "width", default=1024)
    inter = _i(vc, "intermediate_size", default=int(d * float(vc.get("mlp_ratio", 4) or 4)))
    p, s, ch = _i(vc, "patch_size", default=14), _i(vc, "image_size", default=336), _i(vc, "num_channels", default=3)
    used, post = _used_layers(vc, config)
    t.ten(d + d * ch * p * p + ((s // p) ** 2 + 1) * d + 2 * d, "vision_tower.vision_model.embeddings")
    _vit_layers(t, d, inter, used, "vision_tower.vision_model.encoder.layers.0")
    if post:
        t.ten(2 * d, "vision_tower.vision_model.post_layernorm")
    # llava.py LlavaMultiModalProjector: linear_1 [text, vision] + bias, GELU, linear_2 [text, text] + bias
    bias = config.get("multimodal_projector_bias", True) is not False
    t2 = _T("projector")
    t2.lin(text_h, d, "multi_modal_projector.linear_1", bias=bias)
    t2.lin(text_h, text_h, "multi_modal_projector.linear_2", bias=bias)
    if str(config.get("model_type", "")).startswith("llava_next"):
        t2.ten(text_h, "image_newline")
    t.linears += t2.linears
    t.tensors += t2.tensors
    return t


def _siglip(t: _T, vc: dict, config: dict, root: str, text_h: int) -> _T:
    d = _i(vc, "hidden_size", default=1152)
    inter = _i(vc, "intermediate_size", default=4304)
    n = _i(vc, "num_hidden_layers", default=27)
    p, s, ch = _i(vc, "patch_size", default=14), _i(vc, "image_size", default=224), _i(vc, "num_channels", default=3)
    used, post = _used_layers(vc, config) if "vision_feature_layer" in config else (n, True)
    t.ten(d * ch * p * p + d + (s // p) ** 2 * d, "vision_tower.vision_model.embeddings")
    _vit_layers(t, d, inter, used, "vision_tower.vision_model.encoder.layers.0")
    if post:
        t.ten(2 * d, "vision_tower.vision_model.post_layernorm")
    if vc.get("vision_use_head", root not in ("gemma3", "paligemma", "idefics3", "smolvlm")) is True:
        # SiglipMultiheadAttentionPoolingHead: probe, attention in/out projections, LayerNorm, MLP
        t.ten(d + 4 * d * d + 4 * d + 2 * d + 2 * d * inter + inter + d, "vision_tower.vision_model.head")
    t2 = _T("projector")
    if root == "gemma3":          # gemma3_mm.py Gemma3MultiModalProjector
        t2.ten(d * text_h + d, "multi_modal_projector.mm_input_projection_weight")
    elif root in ("idefics3", "smolvlm"):
        sf = _i(config, "scale_factor", default=2)
        t2.lin(text_h, d * sf * sf, "model.connector.modality_projection.proj", bias=False)
    else:                         # paligemma.py: one linear with bias
        t2.lin(text_h, d, "multi_modal_projector.linear")
    t.linears += t2.linears
    t.tensors += t2.tensors
    return t


def _llama4(t: _T, vc: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", default=1408)
    inter = _i(vc, "intermediate_size", default=5632)
    n = _i(vc, "num_hidden_layers", default=34)
    p, s, ch = _i(vc, "patch_size", default=14), _i(vc, "image_size", default=336), _i(vc, "num_channels", default=3)
    t.lin(d, ch * p * p, "vision_model.patch_embedding.linear", bias=False)
    t.ten(d + ((s // p) ** 2 + 1) * d + 4 * d, "vision_model.embeddings")
    _vit_layers(t, d, inter, n, "vision_model.model.layers.0", qkv_fused=True)
    pin, pout = _i(vc, "projector_input_dim", default=4096), _i(vc, "projector_output_dim", default=4096)
    bias = bool(vc.get("multi_modal_projector_bias", False))
    t.lin(pin, inter, "vision_model.vision_adapter.mlp.fc1", bias=bias)
    t.lin(pout, pin, "vision_model.vision_adapter.mlp.fc2", bias=bias)
    t2 = _T("projector")
    t2.lin(text_h, _i(vc, "vision_output_dim", default=pout), "multi_modal_projector.linear_1", bias=False)
    t.linears += t2.linears
    return t


def _intern_vit(t: _T, vc: dict, config: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", default=1024)
    inter = _i(vc, "intermediate_size", default=4 * d)
    n = _i(vc, "num_hidden_layers", default=24)
    p, s, ch = _i(vc, "patch_size", default=14), _i(vc, "image_size", default=448), _i(vc, "num_channels", default=3)
    sel = config.get("select_layer", -1)
    used = n + sel + 1 if isinstance(sel, int) and not isinstance(sel, bool) and sel < 0 else n
    used = max(1, min(n, used))
    norm = 1 if vc.get("norm_type") == "rms_norm" else 2
    t.ten(d + d * ch * p * p + d + ((s // p) ** 2 + 1) * d, "vision_model.embeddings")
    t.lin(3 * d, d, "vision_model.encoder.layers.0.attn.qkv", used, bias=bool(vc.get("qkv_bias", True)))
    t.lin(d, d, "vision_model.encoder.layers.0.attn.proj", used)
    if vc.get("qk_normalization"):
        t.ten(2 * norm * d * used, "vision_model.encoder.layers.0.attn.qk_norm")
    t.ten((2 * norm + 2) * d * used, "vision_model.encoder.layers.0.norms")      # norm1, norm2, ls1, ls2
    t.lin(inter, d, "vision_model.encoder.layers.0.mlp.fc1", used)
    t.lin(d, inter, "vision_model.encoder.layers.0.mlp.fc2", used)
    r = float(config.get("downsample_ratio", 0.5) or 0.5)
    din = int(d * round(1 / r) ** 2)
    t2 = _T("projector")      # internvl.py mlp1: LayerNorm, Linear, GELU, Linear
    t2.ten(2 * din, "mlp1.0")
    t2.lin(text_h, din, "mlp1.1")
    t2.lin(text_h, text_h, "mlp1.3")
    t.linears += t2.linears
    t.tensors += t2.tensors
    return t


def _pixtral(t: _T, vc: dict, config: dict, text_h: int) -> _T:
    d = _i(vc, "hidden_size", default=1024)
    inter = _i(vc, "intermediate_size", default=4096)
    n = _i(vc, "num_hidden_layers", default=24)
    p, ch = _i(vc, "patch_size", default=16), _i(vc, "num_channels", default=3)
    used, _ = _used_layers(vc, config) if "vision_feature_layer" in config else (n, True)
    t.ten(d * ch * p * p + d, "vision_tower.patch_conv")
    for x in ("wq", "wk", "wv", "wo"):
        t.lin(d, d, f"vision_tower.transformer.layers.0.attention.{x}", used, bias=False)
    t.ten(2 * d * used, "vision_tower.transformer.layers.0.norms")
    t.lin(inter, d, "vision_tower.transformer.layers.0.feed_forward.w1", used, bias=False)
    t.lin(inter, d, "vision_tower.transformer.layers.0.feed_forward.w3", used, bias=False)
    t.lin(d, inter, "vision_tower.transformer.layers.0.feed_forward.w2", used, bias=False)
    ms = _i(config, "spatial_merge_size", default=2)
    bias = config.get("multimodal_projector_bias", False) is True
    t2 = _T("projector")      # mistral3.py Mistral3MultiModalProjector
    t2.ten(d, "multi_modal_projector.norm")
    t2.lin(d, d * ms * ms, "multi_modal_projector.patch_merger.merging_layer", bias=False)
    t2.lin(text_h, d, "multi_modal_projector.linear_1", bias=bias)
    t2.lin(text_h, text_h, "multi_modal_projector.linear_2", bias=bias)
    t.linears += t2.linears
    t.tensors += t2.tensors
    return t


# --- audio ----------------------------------------------------------------------------------------

def _audio(ac: dict, config: dict, root: str, text_h: int) -> tuple[_T, str]:
    """Whisper-style encoders (qwen2_audio.py, qwen2_5_omni_thinker.py, whisper.py): conv1, conv2,
    positions, layers (k_proj without bias), final LayerNorm, then the projector into the LM."""
    amt = str(ac.get("model_type") or "")
    t = _T("audio")
    d = _i(ac, "d_model", "hidden_size", default=1280)
    n = _i(ac, "encoder_layers", "num_hidden_layers", default=32)
    ffn = _i(ac, "encoder_ffn_dim", "intermediate_size", default=4 * d)
    mel = _i(ac, "num_mel_bins", default=128)
    positions = _i(ac, "max_source_positions", default=1500)
    t.ten(d * mel * 3 + d + d * d * 3 + d, "audio_tower.conv")
    omni = "omni" in amt or "omni" in root
    whisper = root == "whisper"
    if not omni:                 # Qwen2-Audio / Whisper keep learned positions; Omni computes sinusoids
        t.ten(positions * d, "audio_tower.embed_positions")
    p = "model.encoder.layers.0" if whisper else "audio_tower.layers.0"
    # whisper.py fuses q/k/v with one bias (k's part zero-filled); the others have no k bias
    for x, bias in (("q_proj", True), ("k_proj", whisper), ("v_proj", True), ("out_proj", True)):
        t.lin(d, d, f"{p}.self_attn.{x}", n, bias)
    t.ten(4 * d * n, p + ".norms")
    t.lin(ffn, d, p + ".fc1", n)
    t.lin(d, ffn, p + ".fc2", n)
    t.ten(2 * d, "audio_tower.layer_norm")
    if whisper:
        return t, "Whisper encoder"
    t2 = _T("projector")
    if omni:                     # Qwen2_5OmniAudioEncoder: ln_post + proj to output_dim
        t2.lin(_i(ac, "output_dim", default=text_h), d, "audio_tower.proj")
        what = "Qwen2.5-Omni audio encoder"
    else:                        # qwen2_audio.py Qwen2AudioMultiModalProjector
        t2.lin(text_h, d, "multi_modal_projector.linear")
        what = "Whisper-style audio encoder" if "qwen2_audio" in amt or "whisper" in amt else \
            "Whisper-style formula, layout not known to kvfit"
    t.linears += t2.linears
    t.tensors += t2.tensors
    return t, what
