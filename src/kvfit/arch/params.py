"""config.json -> ParamLayout: every weight vLLM loads for a model, from the dimensions alone.

Used when no tensor inventory (safetensors headers, Hub metadata, bundled counts) is known.
Per decoder layer it charges the mixer (attention, MLA, mamba1, mamba2, Gated DeltaNet) and the
MLP the model's vLLM class builds for that layer: dense (gated or not), routed experts with
shared experts and router, or none; then the embedding, the LM head unless tied, and the vision
and audio towers. The layer rules mirror vLLM 0.32's model files (cited per rule below and in
families.py); MTP / next-token-prediction layers are left out (vLLM loads them only for
speculative decoding).

Never raises: a value it cannot read falls back to the Llama-style reading and adds a note.
"""

from __future__ import annotations

import math
from typing import Any

from . import families as F
from . import towers
from .model import AttentionLayer, Layer, Linear, MambaLayer, ParamLayout, Tensor


class _Get:
    """Reads config values as positive ints (or the default), never raising."""

    def __init__(self, cfg: dict, defaults: dict):
        self.cfg, self.defaults = cfg, defaults

    def raw(self, key: str, default: Any = None) -> Any:
        """The config's value; an absent key is the transformers class default, an explicit null stays null."""
        if key in self.cfg:
            v = self.cfg[key]
            return default if v is None and key not in self.defaults else v
        return self.defaults.get(key, default)

    def int(self, key: str, default: int = 0) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            return default
        return int(v)

    def first(self, keys: tuple[str, ...], default: int = 0) -> int:
        for k in keys:
            v = self.int(k, -1)
            if v > 0:
                return v
        return default

    def flag(self, key: str, default: bool = False) -> bool:
        v = self.raw(key, default)
        return bool(v) if isinstance(v, (bool, int)) else default


def layout(config: dict, cfg: dict, defaults: dict, model_type: str, *, n_layers: int, hidden: int,
           heads: int, vocab: int, inter: int, tie: bool, layers: tuple[Layer, ...],
           shared: tuple[tuple[int, int], ...] = ()) -> ParamLayout:
    g = _Get(cfg, defaults)
    b = _Builder(g, model_type, hidden, heads, inter)
    b.first_shared = min((i for i, _ in shared), default=n_layers)
    shared_heads = dict(shared)
    notes: list[str] = []
    by_index: dict[int, list[Layer]] = {}
    for x in layers:
        by_index.setdefault(x.index, []).append(x)

    moe = _moe_layers(g, model_type, n_layers, b.num_experts)
    mlp_kinds = _mlp_kinds(g, model_type, n_layers, moe)
    for i in range(n_layers):
        here = by_index.get(i, [])
        for x in here:
            if isinstance(x, AttentionLayer):
                if x.kind == "mla":
                    b.mla(i)
                elif x.kind == "indexer":
                    b.indexer(i)
                elif model_type not in F.ZAMBA2:    # Zamba2: the shared blocks' (zamba2_shared_blocks)
                    b.attention(i, x)          # full / sliding / chunked, and whisper's cross attention
            elif isinstance(x, MambaLayer):
                b.mamba(i, x)
        if i in shared_heads:                # KV-shared layer: queries only (gemma3n.py / gemma4.py)
            b.query_only_attention(i, shared_heads[i])
        if model_type in F.ZAMBA2 and any(isinstance(x, AttentionLayer) for x in here):
            b.lin("mlp", hidden, hidden, f"model.layers.{i}.linear")     # Zamba2HybridLayer.linear
        if model_type in F.GEMMA4:
            b.gemma4_extras(i)
        if model_type in F.GEMMA3N:
            b.gemma3n_extras(i)
        if model_type in F.BLOCK_CONFIGS and isinstance(cfg.get("block_configs"), list):
            b.nas_block(i, cfg["block_configs"][i] if i < len(cfg["block_configs"]) else {})
            continue
        kind = mlp_kinds[i]
        if kind == "moe":
            b.moe(i)
        elif kind == "dense":
            b.dense(i, b.dense_inter(i))
        b.norms(i, bool(here), kind != "none")

    if model_type in F.ZAMBA2:
        b.zamba2_shared_blocks(sum(1 for x in layers if isinstance(x, AttentionLayer)))
    if model_type in F.GEMMA3N:      # gemma3n.py: AltUp projections in and out of the extra streams
        for k in range(1, g.int("altup_num_inputs", 4)):
            b.lin("mlp", hidden, hidden, f"model.altup_projections.{k - 1}")
            b.lin("mlp", hidden, hidden, f"model.altup_unembed_projections.{k - 1}")
    if model_type in F.GEMMA4 or model_type in F.GEMMA3N:
        ple = g.int("hidden_size_per_layer_input", 0)
        if ple:                      # gemma4.py / gemma3n.py: per-layer embeddings and their projection
            b.ten("embed", g.int("vocab_size_per_layer_input", vocab) * n_layers * ple, "model.embed_tokens_per_layer")
            b.lin("mlp", n_layers * ple, hidden, "model.per_layer_model_projection")
            b.ten("norm", ple, "model.per_layer_projection_norm")
    # embedding, final norm, LM head, learned positions
    b.tensors.append(Tensor("embed", vocab * hidden, "model.embed_tokens"))
    b.tensors.append(Tensor("norm", hidden * (2 if model_type in F.LAYERNORM_BIAS else 1), "model.norm"))
    if not tie:
        b.linears.append(Linear("lm_head", vocab, hidden, 1, "lm_head"))
    positions = F.LEARNED_POSITIONS.get(model_type)
    if positions:
        key, extra = positions
        b.tensors.append(Tensor("embed", (g.int(key, 0) + extra) * hidden, "model.embed_positions"))

    tower_linears, tower_tensors, tower_notes = towers.read(config, hidden, model_type)
    b.linears.extend(tower_linears)
    b.tensors.extend(tower_tensors)
    notes.extend(tower_notes)
    notes.extend(b.notes)

    summary = _summary(model_type, n_layers, by_index, mlp_kinds, b, tower_notes, tie)
    return ParamLayout(tuple(b.linears), tuple(b.tensors), summary, _declared_total(config, cfg), tuple(notes),
                       attention_modules=b.attention_modules)


def _declared_total(config: dict, cfg: dict) -> int | None:
    for c in (config, cfg):
        for k in F.DECLARED_TOTAL_KEYS:
            v = c.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
                return int(v)
    return None


def _moe_layers(g: _Get, model_type: str, n: int, experts: int) -> list[bool]:
    """Which decoder layers build routed experts, as each vLLM model file decides."""
    if experts <= 0:
        return [False] * n
    if model_type == "nemotron_h":                       # nemotron_h.py: one block per pattern character
        p = g.raw("hybrid_override_pattern")
        return [isinstance(p, str) and i < len(p) and p[i] == "E" for i in range(n)]
    if model_type == "jamba":                            # JambaConfig.layers_num_experts; jamba.py: MoE if > 1
        period, offset = g.int("expert_layer_period", 2) or 1, g.int("expert_layer_offset", 1)
        return [experts > 1 and i % period == offset for i in range(n)]
    freq = g.raw("moe_layer_freq")
    if isinstance(freq, list):                           # mimo_v2.py: moe_layer_freq[layer_idx]
        return [i < len(freq) and bool(freq[i]) for i in range(n)]
    if g.cfg.get("first_k_dense_replace") is not None or g.cfg.get("moe_layer_freq") is not None:
        k = g.int("first_k_dense_replace", 0)            # deepseek_v2.py: layer >= k and layer % freq == 0
        f = g.int("moe_layer_freq", 1) or 1
        return [i >= k and i % f == 0 for i in range(n)]
    if g.cfg.get("decoder_sparse_step") is not None or g.cfg.get("mlp_only_layers") is not None:
        only = g.raw("mlp_only_layers") or []            # qwen2_moe.py / qwen3_moe.py / qwen3_next.py
        only = only if isinstance(only, list) else []
        step = g.int("decoder_sparse_step", 1) or 1
        return [i not in only and (i + 1) % step == 0 for i in range(n)]
    if model_type in F.LLAMA4:
        layers = g.raw("moe_layers")
        if isinstance(layers, list) and layers:
            return [i in layers for i in range(n)]
        step = g.int("interleave_moe_layer_step", 1)     # llama4.py: (layer_idx + 1) % step == 0
        return [step > 0 and (i + 1) % step == 0 for i in range(n)]
    if g.cfg.get("moe_layer_interval") is not None:      # ernie45_moe.py
        start, end = g.int("moe_layer_start_index", 0), g.int("moe_layer_end_index", n - 1)
        interval = g.int("moe_layer_interval", 1) or 1
        return [(i + 1) % interval == 0 and start <= i <= end for i in range(n)]
    return [True] * n


def _mlp_kinds(g: _Get, model_type: str, n: int, moe: list[bool]) -> list[str]:
    """'moe' | 'dense' | 'none' per layer."""
    if model_type == "nemotron_h":
        p = g.raw("hybrid_override_pattern")
        return ["moe" if moe[i] else "dense" if isinstance(p, str) and i < len(p) and p[i] == "-" else "none"
                for i in range(n)]
    if model_type in F.NO_MLP or model_type in F.ZAMBA2:     # Zamba2: the MLP lives in the shared blocks
        return ["none"] * n
    if model_type == "lfm2_moe":                             # lfm2_moe.py: dense below num_dense_layers
        k = g.int("num_dense_layers", 2)
        return ["dense" if i < k else "moe" for i in range(n)]
    return ["moe" if m else "dense" for m in moe]


class _Builder:
    def __init__(self, g: _Get, model_type: str, hidden: int, heads: int, inter: int):
        self.g, self.mt, self.h, self.heads, self.inter = g, model_type, hidden, heads, inter
        self.linears: list[Linear] = []
        self.tensors: list[Tensor] = []
        self.notes: list[str] = []
        self.attention_modules = 0
        self.first_shared = 0
        self.num_experts = g.first(("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts"))
        self.gated = model_type not in F.NON_GATED_MLP and g.raw("mlp_hidden_act") not in ("relu2",)
        self.layernorm_bias = model_type in F.LAYERNORM_BIAS
        any_bias = model_type in F.ALL_BIAS or g.flag("use_bias") or g.flag("bias") and model_type in F.FALCON_TYPES
        self.qkv_bias = (model_type in F.QKV_BIAS or any_bias or g.flag("attention_bias")
                         or g.flag("add_qkv_bias") or g.flag("qkv_bias"))
        self.o_bias = any_bias or g.flag("attention_bias") and model_type not in F.QKV_BIAS_ONLY
        self.mlp_bias = any_bias or g.flag("mlp_bias")

    # -- helpers
    def lin(self, role: str, out: int, inp: int, name: str, count: int = 1, bias: bool = False):
        if out > 0 and inp > 0 and count > 0:
            self.linears.append(Linear(role, out, inp, count, name))
            if bias:
                self.tensors.append(Tensor("bias", out * count, name + ".bias"))

    def ten(self, role: str, n: int, name: str, dtype: str = ""):
        if n > 0:
            self.tensors.append(Tensor(role, n, name, dtype))

    def norms(self, i: int, has_mixer: bool, has_mlp: bool):
        per = F.NORMS_PER_LAYER.get(self.mt)
        if per is None:
            per = int(has_mixer) + int(has_mlp)
        self.ten("norm", per * self.h * (2 if self.layernorm_bias else 1), f"model.layers.{i}.input_layernorm")

    # -- mixers
    def query_only_attention(self, i: int, head: int):
        """A KV-shared layer's attention: q_proj, o_proj and q_norm (gemma3n.py / gemma4.py)."""
        p, q = f"model.layers.{i}.self_attn", self.heads * head
        self.lin("attn", q, self.h, p + ".q_proj", bias=self.qkv_bias)
        self.lin("attn", self.h, q, p + ".o_proj", bias=self.o_bias)
        self.ten("norm", head, p + ".q_norm")

    def gemma4_extras(self, i: int):
        """gemma4.py Gemma4DecoderLayer beside attention and MLP: the MoE block (router norm scale,
        per-expert scale, proj; experts; three more norms) and the per-layer-embedding gate/projection/norm."""
        g, h, p = self.g, self.h, f"model.layers.{i}"
        e = self.num_experts
        if e:
            mi = g.first(("moe_intermediate_size", "expert_intermediate_size"), self.inter)
            self.ten("router", e * h, p + ".router.proj")
            self.ten("router", h + e, p + ".router.scale")
            self.lin("experts", mi, h, p + ".experts.gate_proj", count=e)
            self.lin("experts", mi, h, p + ".experts.up_proj", count=e)
            self.lin("experts", h, mi, p + ".experts.down_proj", count=e)
            self.ten("norm", 3 * h, p + ".post_feedforward_layernorm_1")
        ple = g.int("hidden_size_per_layer_input", 0)
        if ple:
            self.lin("mlp", ple, h, p + ".per_layer_input_gate")
            self.lin("mlp", h, ple, p + ".per_layer_projection")
            self.ten("norm", h, p + ".post_per_layer_input_norm")

    def gemma3n_extras(self, i: int):
        """gemma3n.py Gemma3nDecoderLayer beside attention and MLP: AltUp (correction and prediction
        coefficients, modality router, router norm, float32 output scale), LAuReL (low-rank left/right, norm)
        and the per-layer-embedding gate/projection/norm."""
        g, h, p = self.g, self.h, f"model.layers.{i}"
        n, rank, ple = g.int("altup_num_inputs", 4), g.int("laurel_rank", 64), g.int("hidden_size_per_layer_input", 0)
        self.ten("mlp", n * n + n ** 3, p + ".altup.prediction_coefs")
        self.lin("mlp", n, h, p + ".altup.modality_router")
        self.ten("norm", h, p + ".altup.router_norm")
        self.ten("norm", h, p + ".altup.correct_output_scale", "F32")
        self.lin("mlp", rank, h, p + ".laurel.linear_left")
        self.lin("mlp", h, rank, p + ".laurel.linear_right")
        self.ten("norm", h, p + ".laurel.post_laurel_norm")
        if ple:
            self.lin("mlp", ple, h, p + ".per_layer_input_gate")
            self.lin("mlp", h, ple, p + ".per_layer_projection")
            self.ten("norm", h, p + ".post_per_layer_input_norm")

    def zamba2_shared_blocks(self, hybrid_layers: int):
        """zamba2.py: num_mem_blocks shared transformer blocks (attention over 2 x hidden, gated MLP, two
        norms), an MLP LoRA adapter per hybrid layer, and q/k/v adapters when use_shared_attention_adapter."""
        g, h = self.g, self.h
        ah, inter, rank = 2 * h, self.inter, g.int("adapter_rank", 128)
        for k in range(g.int("num_mem_blocks", 1)):
            p = f"model.blocks.{k}"
            self.lin("attn", 3 * ah, ah, p + ".self_attn.qkv_proj")
            self.lin("attn", h, ah, p + ".self_attn.o_proj")
            self.lin("mlp", 2 * inter, h, p + ".feed_forward.gate_up_proj")
            self.lin("mlp", h, inter, p + ".feed_forward.down_proj")
            self.ten("norm", ah + h, p + ".input_layernorm")
            self.attention_modules += 1
        for j in range(hybrid_layers):
            p = f"model.blocks.adapters.{j}"
            self.lin("mlp", rank, h, p + ".gate_up_proj_adapter.A")
            self.lin("mlp", 2 * inter, rank, p + ".gate_up_proj_adapter.B")
            if g.flag("use_shared_attention_adapter"):
                for x in "qkv":
                    self.lin("attn", rank, ah, p + f".linear_{x}_adapter.A")
                    self.lin("attn", ah, rank, p + f".linear_{x}_adapter.B")

    def attention(self, i: int, a: AttentionLayer):
        h, p = self.h, f"model.layers.{i}.self_attn"
        q_heads = self.heads
        if self.mt in F.MIMO_V2 and a.kind == "sliding":
            q_heads = self.g.int("swa_num_attention_heads", q_heads)
        q = q_heads * a.head_size
        kv_k, kv_v = a.num_kv_heads * a.head_size, a.num_kv_heads * a.head_size_v
        gate = 2 if self.g.flag("attn_output_gate", self.mt in F.ATTN_OUTPUT_GATE) else 1
        self.lin("attn", q * gate, h, p + ".q_proj", bias=self.qkv_bias)
        self.lin("attn", kv_k, h, p + ".k_proj", bias=self.qkv_bias)
        self.lin("attn", kv_v, h, p + ".v_proj", bias=self.qkv_bias)
        self.lin("attn", h, q_heads * a.head_size_v, p + ".o_proj", bias=self.o_bias)
        if (self.mt in F.QK_NORM or self.g.flag("use_qk_norm")) and self.mt not in F.QK_NORM_NO_WEIGHTS:
            full = self.mt in F.QK_NORM_FULL or self.g.raw("qk_norm_type") == "per_layer"
            self.ten("norm", (q + kv_k) if full else 2 * a.head_size, p + ".q_norm")
        if self.mt in F.GPT_OSS or self.mt in F.MIMO_V2 and self.g.flag(
                "add_swa_attention_sink_bias" if a.kind == "sliding" else "add_full_attention_sink_bias"):
            self.ten("attn", q_heads, p + ".sinks")                  # gpt_oss.py, mimo_v2.py attention sinks
        self.attention_modules += 1

    def mla(self, i: int):
        g, h, p = self.g, self.h, f"model.layers.{i}.self_attn"
        n = self.heads
        q_lora, kv_lora = g.int("q_lora_rank", 0), g.int("kv_lora_rank", 512)
        nope, rope = g.int("qk_nope_head_dim", 128), g.int("qk_rope_head_dim", 64)
        v = g.int("v_head_dim", nope)
        if q_lora:
            self.lin("mla", q_lora, h, p + ".q_a_proj")
            self.ten("norm", q_lora, p + ".q_a_layernorm")
            self.lin("mla", n * (nope + rope), q_lora, p + ".q_b_proj")
        else:
            self.lin("mla", n * (nope + rope), h, p + ".q_proj")
        self.lin("mla", kv_lora + rope, h, p + ".kv_a_proj_with_mqa")
        self.ten("norm", kv_lora, p + ".kv_a_layernorm")
        self.lin("mla", n * (nope + v), kv_lora, p + ".kv_b_proj")
        self.lin("mla", h, n * v, p + ".o_proj")

    def indexer(self, i: int):
        """DeepSeek-V3.2 / GLM-5 lightning indexer (deepseek_v2.py Indexer): wq_b, wk, k_norm, weights_proj."""
        g, h, p = self.g, self.h, f"model.layers.{i}.self_attn.indexer"
        ih, nh = g.int("index_head_dim", 128), g.int("index_n_heads", 64)
        q_lora = g.int("q_lora_rank", 0) or h
        self.lin("indexer", nh * ih, q_lora, p + ".wq_b")
        self.lin("indexer", ih, h, p + ".wk")
        self.ten("norm", 2 * ih, p + ".k_norm")
        self.ten("indexer", nh * h, p + ".weights_proj")

    def mamba(self, i: int, m: MambaLayer):
        g, h = self.g, self.h
        d = dict(m.params)
        proj_bias = g.flag("mamba_proj_bias") or g.flag("use_bias") and self.mt != "falcon_mamba"
        conv_bias = g.flag("use_conv_bias", True) and g.flag("mamba_conv_bias", True)
        if m.kind == "mamba1":                       # mamba_mixer.py::MambaMixer
            p = f"model.layers.{i}.mamba"
            di, ds, dc = d["d_inner"], d["d_state"], d["d_conv"]
            rank = g.first(("mamba_dt_rank", "time_step_rank"), math.ceil(h / 16))
            self.lin("mamba", 2 * di, h, p + ".in_proj", bias=proj_bias)
            self.ten("mamba", di * dc + (di if conv_bias else 0), p + ".conv1d")
            self.lin("mamba", rank + 2 * ds, di, p + ".x_proj")
            self.lin("mamba", di, rank, p + ".dt_proj", bias=True)
            self.ten("mamba", di * ds + di, p + ".A_log")
            self.lin("mamba", h, di, p + ".out_proj", bias=proj_bias)
            if self.mt == "jamba":                   # jamba.py: dt / B / C layernorms
                self.ten("norm", rank + 2 * ds, p + ".dt_layernorm")
        elif m.kind == "mamba2":                     # mamba_mixer2.py::MambaMixer2
            p = f"model.layers.{i}.mixer"
            di, ng, nh, ds, dc = d["intermediate"], d["n_groups"], d["heads"], d["d_state"], d["d_conv"]
            conv = di + 2 * ng * ds
            self.lin("mamba", 2 * di + 2 * ng * ds + nh, h, p + ".in_proj", bias=proj_bias)
            self.ten("mamba", conv * dc + (conv if conv_bias else 0), p + ".conv1d")
            norm = di if self.mt != "falcon_h1" or g.flag("mamba_rms_norm") else 0
            self.ten("mamba", 3 * nh + norm, p + ".A_log")   # dt_bias, A_log, D, gated norm
            self.lin("mamba", h, di, p + ".out_proj", bias=proj_bias)
        elif m.kind == "short_conv":                 # short_conv.py::ShortConv
            p, dim, kern = f"model.layers.{i}.short_conv", d["dim"], d["kernel"]
            bias = g.flag("conv_bias")
            self.ten("mamba", dim * kern, p + ".conv1d")
            self.lin("mamba", 3 * dim, dim, p + ".in_proj", bias=bias)
            self.lin("mamba", dim, dim, p + ".out_proj", bias=bias)
        elif m.kind == "linear_attn":                # 0.23.0 layers/mamba/linear/minimax_linear_attn.py (no bias)
            p, inner = f"model.layers.{i}.self_attn", d["heads"] * d["head_dim"]
            self.lin("mamba", 3 * inner, h, p + ".qkv_proj")
            self.lin("mamba", inner, h, p + ".output_gate")
            self.lin("mamba", h, inner, p + ".out_proj")
            self.ten("norm", inner, p + ".norm")
        elif m.kind == "plamo2_mamba":               # 0.26.0 plamo2.py::Plamo2MambaMixer (no bias)
            p, di, nh, ds, dc = f"model.layers.{i}.mixer", d["intermediate"], d["heads"], d["d_state"], d["d_conv"]
            rank = max(64, h // 16)                  # time_step_rank
            self.ten("mamba", di * dc, p + ".conv1d")
            self.lin("mamba", 2 * di, h, p + ".in_proj")
            self.lin("mamba", rank + 2 * ds, di, p + ".bcdt_proj")
            self.lin("mamba", nh, rank, p + ".dt_proj")
            self.ten("mamba", nh, p + ".A", "F32")
            self.ten("mamba", 2 * nh, p + ".D")     # D, dt_bias
            self.lin("mamba", h, di, p + ".out_proj")
            self.ten("norm", rank + 2 * ds, p + ".dt_norm")   # dt_norm, B_norm, C_norm
        elif m.kind == "kda":                        # kimi_gdn_linear_attn.py (not built on CPU: not checked)
            p, nh, hd, kern = f"model.layers.{i}.self_attn", d["heads"], d["head_dim"], d["kernel"]
            proj = nh * hd
            self.lin("gdn", 3 * proj + nh + hd, h, p + ".in_proj_qkvgfab")
            self.lin("gdn", proj, hd, p + ".f_b_proj")
            self.ten("gdn", proj + nh + kern * 3 * proj, p + ".A_log", "F32")
            self.lin("gdn", hd, h, p + ".g_a_proj")
            self.lin("gdn", proj, hd, p + ".g_b_proj")
            self.ten("norm", hd, p + ".o_norm")
            self.lin("gdn", h, proj, p + ".o_proj")
        else:                                        # gdn: qwen3_next.py::Qwen3NextGatedDeltaNet
            p = f"model.layers.{i}.linear_attn"
            nk, nv, dk, dv, kern = d["nk"], d["nv"], d["dk"], d["dv"], d["kernel"]
            self.lin("gdn", 2 * nk * dk + 2 * nv * dv, h, p + ".in_proj_qkvz")
            self.lin("gdn", 2 * nv, h, p + ".in_proj_ba")
            self.ten("gdn", (2 * nk * dk + nv * dv) * kern, p + ".conv1d")
            self.ten("gdn", 2 * nv + dv, p + ".A_log")
            self.lin("gdn", h, nv * dv, p + ".out_proj")

    # -- MLPs
    def dense_inter(self, i: int) -> int:
        g = self.g
        if self.mt == "lfm2" and g.flag("block_auto_adjust_ff_dim", True):     # lfm2.py Lfm2MLP
            mult = g.raw("block_ffn_dim_multiplier", 1.0)
            of = g.int("block_multiple_of", 256) or 1
            inter = int(2 * self.inter / 3)
            if isinstance(mult, (int, float)) and not isinstance(mult, bool):
                inter = int(mult * inter)
            return of * ((inter + of - 1) // of)
        if self.mt in F.GEMMA4 and g.flag("use_double_wide_mlp") and 0 < self.first_shared <= i:
            return 2 * self.inter                  # gemma4.py: KV-shared layers' MLP doubles
        if self.num_experts:
            v = g.raw("intermediate_size_mlp") if self.mt in F.LLAMA4 else None
            if isinstance(v, int) and v > 0:
                return v
        v = g.raw("intermediate_size")
        if isinstance(v, list) and v and self.mt in F.GEMMA3N:      # gemma3n.py: intermediate_size[layer]
            w = v[i] if i < len(v) else v[0]
            return int(w) if isinstance(w, (int, float)) else self.inter
        if isinstance(v, list) and v:                # nemotron_h.py: a list indexed by MLP layer
            n_mlp = sum(1 for c in str(g.raw("hybrid_override_pattern") or "")[: i + 1] if c == "-") - 1
            w = v[n_mlp] if 0 <= n_mlp < len(v) else v[0]
            return int(w) if isinstance(w, (int, float)) else self.inter
        return self.inter

    def dense(self, i: int, inter: int, prefix: str = "", role: str = "mlp", gated: bool | None = None):
        h, p = self.h, prefix or f"model.layers.{i}.mlp"
        gated = self.gated if gated is None else gated
        if gated:
            self.lin(role, inter, h, p + ".gate_proj", bias=self.mlp_bias)
        self.lin(role, inter, h, p + ".up_proj", bias=self.mlp_bias)
        self.lin(role, h, inter, p + ".down_proj", bias=self.mlp_bias)

    def moe(self, i: int):
        g, h, p = self.g, self.h, f"model.layers.{i}.mlp"
        e = self.num_experts
        mi = g.first(("moe_intermediate_size", "expert_intermediate_size"), self.inter)
        eh = g.int("moe_latent_size", 0) or h                        # nemotron_h.py latent MoE
        if eh != h:
            self.lin("mlp", eh, h, p + ".fc1_latent_proj")
            self.lin("mlp", h, eh, p + ".fc2_latent_proj")
        if self.mt in F.ROUTER_QUANTIZED:
            self.lin("router", e, h, p + ".gate")
        else:
            fp32 = self.mt in F.ROUTER_FP32 and str(g.raw("moe_router_dtype", "float32")) == "float32"
            self.ten("router", e * h, p + ".gate", "F32" if fp32 else "")
        if self.mt in F.GPT_OSS or g.flag("router_bias"):
            self.ten("router", e, p + ".gate.bias")
        if g.raw("topk_method") == "noaux_tc" or self.mt in F.ROUTER_CORRECTION_BIAS or g.flag("use_routing_bias") \
                or self.mt == "lfm2_moe" and g.flag("use_expert_bias", True):      # lfm2_moe.py
            self.ten("router", e, p + ".gate.e_score_correction_bias", "F32")
        gated = self.gated
        if gated:
            self.lin("experts", mi, eh, p + ".experts.gate_proj", count=e)
        self.lin("experts", mi, eh, p + ".experts.up_proj", count=e)
        self.lin("experts", eh, mi, p + ".experts.down_proj", count=e)
        if self.mt in F.GPT_OSS or g.flag("expert_bias"):
            self.ten("bias", e * ((2 if gated else 1) * mi + eh), p + ".experts.bias")
        shared = self.shared_inter(mi)
        if shared:
            self.dense(i, shared, p + ".shared_experts", "shared")
            if self.mt in F.SHARED_EXPERT_GATE:
                self.ten("router", h, p + ".shared_expert_gate")

    def shared_inter(self, mi: int) -> int:
        g = self.g
        if self.mt in F.LLAMA4:               # llama4.py Llama4MoE.shared_expert: intermediate_size
            return self.inter
        direct = g.first(("shared_expert_intermediate_size", "shared_intermediate_size"))
        if direct:
            return direct
        n = g.int("n_shared_experts", 0) or g.int("num_shared_experts", 0)
        if not n:
            return 0
        # deepseek_v2.py: moe_intermediate_size x n_shared_experts; nemotron_h.py: its own size x n
        return (g.int("moe_shared_expert_intermediate_size", 0) or mi) * n

    def nas_block(self, i: int, block: Any):
        """nemotron_nas.py: per-layer attention (no_op / replace_with_linear / n_heads_in_group) and FFN
        (no_op / replace_with_linear / ffn_mult -> _ffn_mult_to_intermediate_size)."""
        h = self.h
        block = block if isinstance(block, dict) else {}
        att = block.get("attention") if isinstance(block.get("attention"), dict) else {}
        ffn = block.get("ffn") if isinstance(block.get("ffn"), dict) else {}
        has_att = not att.get("no_op")
        if has_att and att.get("replace_with_linear"):
            self.lin("attn", h, h, f"model.layers.{i}.self_attn.linear_attn")
        if not ffn.get("no_op"):
            if ffn.get("replace_with_linear"):
                self.lin("mlp", h, h, f"model.layers.{i}.mlp.linear_mlp")
            else:
                mult = ffn.get("ffn_mult")
                if isinstance(mult, (int, float)) and not isinstance(mult, bool) and mult > 0:
                    inter = int(2 * mult * h / 3)
                    inter = -(-inter // 256) * 256
                else:
                    inter = self.inter
                self.dense(i, inter)
        self.ten("norm", h * (int(has_att) + int(not ffn.get("no_op"))), f"model.layers.{i}.input_layernorm")


def _summary(model_type: str, n: int, by_index: dict[int, list[Layer]], mlp_kinds: list[str], b: _Builder,
             tower_notes: list[str], tie: bool) -> str:
    mixers: dict[str, int] = {}
    for i in range(n):
        kinds = sorted({("attention" if isinstance(x, AttentionLayer) and x.kind not in ("mla", "indexer")
                         else "MLA" if isinstance(x, AttentionLayer) and x.kind == "mla"
                         else x.kind if isinstance(x, MambaLayer) else "")
                        for x in by_index.get(i, []) if not (isinstance(x, AttentionLayer) and x.kind == "indexer")})
        key = "+".join(k for k in kinds if k) or {"moe": "MoE-only", "dense": "MLP-only"}.get(mlp_kinds[i], "empty")
        mixers[key] = mixers.get(key, 0) + 1
    parts = [f"{n} layers ({', '.join(f'{v} {k}' for k, v in mixers.items())})"]
    n_moe = mlp_kinds.count("moe")
    n_dense = mlp_kinds.count("dense")
    if n_moe:
        e = b.num_experts
        mi = b.g.first(("moe_intermediate_size", "expert_intermediate_size"), b.inter)
        shared = b.shared_inter(mi)
        parts.append(f"{n_moe} MoE layers x {e} experts ({'gated' if b.gated else 'non-gated'} "
                     f"{mi})" + (f" + shared {shared}" if shared else ""))
    if n_dense:
        parts.append(f"{n_dense} dense MLP{'s' if n_dense > 1 else ''} ({'gated' if b.gated else 'non-gated'})")
    parts.extend(tower_notes)
    if tie:
        parts.append("tied embeddings")
    return ", ".join(parts)
