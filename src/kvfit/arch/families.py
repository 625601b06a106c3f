"""Per-model_type quirks, as tables. Each row cites the vLLM 0.32 / transformers 5 code it mirrors.

normalize.py reads config.json as data and consults these tables; it never imports transformers
or vLLM. When a table and vLLM disagree, vLLM's code wins and the table is fixed.
"""

from __future__ import annotations

# Defaults that transformers' config classes fill in when a (nested) config omits a key.
# vLLM reads configs through transformers, so an absent key means the class default.
# transformers models/<type>/configuration_<type>.py::<Type>Config.__init__.
CLASS_DEFAULTS: dict[str, dict] = {
    "gemma3_text": {
        "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "max_position_embeddings": 131072, "sliding_window": 4096,
        "sliding_window_pattern": 6, "tie_word_embeddings": True,
    },
    "gemma2": {
        "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
        "head_dim": 256, "max_position_embeddings": 8192, "sliding_window": 4096,
        "tie_word_embeddings": True,
    },
    "llama": {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
    },
    "mistral": {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32, "sliding_window": 4096, "tie_word_embeddings": False,
    },
    "qwen2": {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 32768, "use_sliding_window": False, "max_window_layers": 28,
        "tie_word_embeddings": False,
    },
    "qwen3": {"max_window_layers": 28, "use_sliding_window": False},
    # transformers DeepseekV2Config / DeepseekV3Config (kimi_k2 uses the latter): untied LM head, a query
    # LoRA of 1536 unless the config says q_lora_rank null (DeepSeek-V2-Lite does).
    "deepseek_v2": {"tie_word_embeddings": False, "q_lora_rank": 1536},
    "deepseek_v3": {"tie_word_embeddings": False, "q_lora_rank": 1536},
    "kimi_k2": {"tie_word_embeddings": False, "q_lora_rank": 1536},
    # transformers WhisperConfig: 448 decoder positions, 1500 encoder positions.
    "whisper": {"max_target_positions": 448, "max_source_positions": 1500},
    # transformers Llama4TextConfig: iRoPE, chunked attention on 3 of every 4 layers.
    "llama4_text": {"no_rope_layer_interval": 4, "tie_word_embeddings": False},
    # transformers Qwen3NextConfig / Qwen3_5TextConfig: one full-attention layer in four.
    "qwen3_next": {"full_attention_interval": 4},
    "qwen3_5_text": {"full_attention_interval": 4},
    "qwen3_5_moe_text": {"full_attention_interval": 4},
    # transformers Gemma3nTextConfig (gemma3n/configuration_gemma3n.py).
    "gemma3n_text": {
        "vocab_size": 262400, "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 35,
        "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256, "max_position_embeddings": 32768,
        "sliding_window": 512, "num_kv_shared_layers": 15, "tie_word_embeddings": True,
        "hidden_size_per_layer_input": 256, "vocab_size_per_layer_input": 262144, "laurel_rank": 64,
        "altup_num_inputs": 4,
    },
    # transformers Gemma4TextConfig (gemma4/configuration_gemma4.py); global_head_dim is a kwarg its
    # __post_init__ pops with default 512.
    "gemma4_text": {
        "vocab_size": 262144, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 30,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
        "sliding_window": 512, "num_kv_shared_layers": 0, "tie_word_embeddings": True,
        "hidden_size_per_layer_input": 256, "vocab_size_per_layer_input": 262144, "global_head_dim": 512,
        "attention_k_eq_v": False,
    },
    # transformers Lfm2Config / Lfm2MoeConfig: every layer full attention unless full_attn_idxs / layer_types.
    "lfm2": {"tie_word_embeddings": True, "conv_bias": False, "block_multiple_of": 256,
             "block_ffn_dim_multiplier": 1.0, "block_auto_adjust_ff_dim": True},
    "lfm2_moe": {"tie_word_embeddings": True, "conv_bias": False, "num_dense_layers": 2, "use_expert_bias": True},
    # transformers Zamba2Config: attention_head_dim and mamba_headdim are computed (never read from the file).
    "zamba2": {"num_mem_blocks": 1, "mamba_d_state": 64, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_ngroups": 1,
               "n_mamba_heads": 8, "use_conv_bias": True, "add_bias_linear": False, "tie_word_embeddings": True,
               "use_shared_attention_adapter": False, "adapter_rank": 128, "max_position_embeddings": 4096},
}

# Model types whose sliding window is read only when use_sliding_window is true
# (transformers Qwen2Config: `self.sliding_window = sliding_window if use_sliding_window else None`;
# Qwen2MoeConfig stores 0, which vLLM also treats as "no window").
USE_SLIDING_WINDOW_FLAG = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl",
                           "qwen2_5_vl_text", "qwen2_vl_text", "qwen3_vl_text"}

# transformers Qwen2Config / Qwen3Config build layer_types from max_window_layers:
# `"sliding_attention" if self.sliding_window is not None and i >= self.max_window_layers`.
LAYER_TYPES_FROM_MAX_WINDOW = {"qwen2", "qwen3", "qwen2_moe"}

# Models whose attention layers take their window from layer_types (vLLM passes
# per_layer_sliding_window): model_executor/models/llama.py (also Mistral, Phi-3 and the other
# Llama subclasses), gemma2.py, gemma3.py, granite.py, exaone4.py, commandr.py (Cohere 2),
# mimo_v2.py, step3p5.py. Every other model relies on CacheConfig.sliding_window, which
# engine/arg_utils.py sets only when layer_types is absent or all "sliding_attention".
PER_LAYER_WINDOW = {"llama", "mistral", "ministral", "phi3", "gemma2", "gemma3", "gemma3_text",
                    "granite", "exaone4", "cohere2", "mimo_v2_flash", "mimo_v2", "step3p5",
                    "olmo3", "apertus", "afmoe", "arcee"}

# Nemotron-H passes config.sliding_window to every attention layer (nemotron_h.py), whatever
# layer_types says.
WINDOW_ON_EVERY_ATTENTION = {"nemotron_h"}

# vLLM's Qwen2Model asserts `max_window_layers == num_hidden_layers` when layer_types mix
# sliding and full layers (model_executor/models/qwen2.py): such a launch fails.
MIXED_WINDOW_REFUSED = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe"}

# Attention modules that compute head_dim as hidden_size // num_attention_heads and ignore a
# head_dim key (model_executor/models/qwen2.py::Qwen2Attention).
HEAD_DIM_FROM_HIDDEN = {"qwen2", "qwen2_moe"}

# Falcon: multi_query without new_decoder_architecture means one KV head
# (vllm transformers_utils/model_arch_config_convertor.py, FalconConvertor).
FALCON_TYPES = {"falcon", "RefinedWeb", "RefinedWebModel"}

# is_deepseek_mla (vllm transformers_utils/model_arch_config_convertor.py): these types with
# kv_lora_rank set use MLA. One latent of kv_lora_rank + qk_rope_head_dim per token per layer.
MLA_TYPES = {"axk1", "deepseek_v2", "deepseek_v3", "deepseek_v32", "deepseek_mtp", "dots3_note",
             "glm5_next", "glm5_next_text", "glm_moe_dsa", "glm4_moe_lite", "glm4_moe_lite_mtp",
             "kimi_k2", "kimi_linear", "longcat_flash", "pangu_ultra_moe", "pangu_ultra_moe_mtp",
             "bailing_hybrid", "bailing_hybrid_mtp", "bailing_hybrid_v3_mtp", "hy_v4", "hy_v4_mtp"}

# DeepSeek-V3.2 sparse attention (models/deepseek_v32/attention.py, `is_v32 = hasattr(config,
# "index_topk")`): each indexed layer adds a DeepseekV32IndexerCache, an MLAAttentionSpec of
# head index_head_dim + index_head_dim // 128 * 4 bytes (fp8 values + fp32 scales, uint8).
INDEXER_QUANT_BLOCK = 128

# Gemma 2: layer i slides when i is even (transformers Gemma2Config.layer_types default
# `"sliding_attention" if bool((i + 1) % 2) else "full_attention"`).
ALTERNATING_SLIDING = {"gemma2"}

# Gemma 3 (configs without layer_types): sliding unless (i+1) % sliding_window_pattern == 0.
PATTERN_SLIDING = {"gemma3", "gemma3_text"}

# GPT-OSS: vllm model_executor/models/gpt_oss.py `sliding_window if layer_idx % 2 == 0`; transformers
# GptOssConfig builds the same alternating layer_types when the config has none, so no model-wide
# window applies to the odd layers.
GPT_OSS = {"gpt_oss"}

# Llama 4: model_executor/models/llama4.py uses ChunkedLocalAttention on layers whose
# no_rope_layers entry is 1 (transformers default: `int((i + 1) % no_rope_layer_interval != 0)`).
CHUNKED_LOCAL = {"llama4_text", "llama4"}

# Models that vLLM refuses to run in float16 (config/model.py::_FLOAT16_NOT_SUPPORTED_MODELS).
NO_FP16 = {"gemma2", "gemma3", "gemma3_text", "glm4"}

# Encoder-only architectures: no KV cache at all (EncoderOnlyAttention returns no spec, so the
# engine sees an attention-free model: num_blocks = 1, no capacity line).
ENCODER_ONLY_TYPES = {"bert", "roberta", "xlm-roberta", "modernbert", "nomic_bert", "deberta",
                      "deberta-v2", "distilbert", "electra"}

# Encoder-decoder models with cross attention (CrossAttentionSpec, sized by
# max_num_encoder_input_tokens = max_num_batched_tokens).
ENCODER_DECODER_TYPES = {"whisper"}

# --- state-space / linear-attention layers (MambaSpec) ------------------------------------------
# Each row: how a model_type lays out its layers and which config keys size the state, mirroring
# the model's get_mamba_state_shape_from_config (model_executor/models/<file>.py) and
# MambaStateShapeCalculator (model_executor/layers/mamba/mamba_utils.py).
#
# mamba1 (MambaMixer): conv (d_inner/tp, d_conv-1), ssm (d_inner/tp, d_state).
# mamba2 (MambaMixer2): conv (conv_dim/tp, d_conv-1+num_spec), ssm (heads/tp, head_dim, d_state),
#        conv_dim = intermediate + 2*n_groups'*d_state, n_groups' padded up to tp when not divisible.
# gdn (GatedDeltaNet): conv (conv_dim/tp, kernel-1+num_spec), ssm (nv/tp, dv, dk),
#        conv_dim = dk*nk*2 + dv*nv.
MAMBA_FAMILIES: dict[str, dict] = {
    # jamba.py: layers_block_type from attn_layer_period/offset; mamba1 with d_inner = expand*hidden.
    "jamba": {"mixer": "mamba1", "layout": "jamba"},
    # mamba.py (MambaForCausalLM, also FalconMamba): every layer mamba1, d_inner = intermediate_size.
    "mamba": {"mixer": "mamba1", "layout": "all"},
    "falcon_mamba": {"mixer": "mamba1", "layout": "all"},
    # mamba2.py: every layer mamba2, intermediate = expand*hidden.
    "mamba2": {"mixer": "mamba2", "layout": "all"},
    # granitemoehybrid.py: layer_types mamba/attention; intermediate = mamba_expand*hidden.
    "granitemoehybrid": {"mixer": "mamba2", "layout": "layer_types"},
    # nemotron_h.py: hybrid_override_pattern M (mamba2) * (attention) - (MLP) E (MoE);
    # intermediate = mamba_num_heads*mamba_head_dim; ssm state float32 by default
    # (models/config.py::NemotronHForCausalLMConfig).
    "nemotron_h": {"mixer": "mamba2", "layout": "pattern"},
    # falcon_h1.py: attention and mamba2 side by side in every layer;
    # intermediate = mamba_d_ssm or mamba_expand*hidden.
    "falcon_h1": {"mixer": "mamba2", "layout": "parallel"},
    # bamba.py: attention on attn_layer_indices, mamba2 elsewhere.
    "bamba": {"mixer": "mamba2", "layout": "attn_indices"},
    # qwen3_next.py / qwen3_5.py: layer_types linear_attention (GatedDeltaNet) / full_attention.
    "qwen3_next": {"mixer": "gdn", "layout": "layer_types"},
    "qwen3_5_text": {"mixer": "gdn", "layout": "layer_types"},
    "qwen3_5_moe_text": {"mixer": "gdn", "layout": "layer_types"},
    # lfm2.py / lfm2_moe.py: layer_types full_attention / conv (ShortConv).
    "lfm2": {"mixer": "short_conv", "layout": "layer_types"},
    "lfm2_moe": {"mixer": "short_conv", "layout": "layer_types"},
    # zamba2.py: mamba2 in every layer (intermediate = mamba_expand * hidden), plus one attention on each
    # "hybrid" layer; vLLM registers every attention module before the mamba mixers.
    "zamba2": {"mixer": "mamba2", "layout": "zamba2"},
    # minimax_text_01.py: attn_type_list 0 (lightning linear attention) / 1 (full attention); see MINIMAX_LINEAR.
    "minimax": {"mixer": "linear_attn", "layout": "minimax"},
    "minimax_text_01": {"mixer": "linear_attn", "layout": "minimax"},
    "minimax_m1": {"mixer": "linear_attn", "layout": "minimax"},
    # plamo2.py: is_mamba(config, i) from mamba_step; see PLAMO2.
    "plamo2": {"mixer": "plamo2_mamba", "layout": "plamo2"},
}

# transformers_utils/model_arch_config_convertor.py::MambaModelArchConfigConvertor: head size and KV
# heads 0 (other attention-free types keep the base convertor's values).
MAMBA_CONVERTOR_TYPES = {"mamba", "falcon_mamba"}

# Model types whose transformers config (>= 5.16, what vLLM 0.32 requires) names its state-space layers
# "linear_attention" in `layer_types`, whatever config.json says (transformers models/<type>/configuration_*.py:
# Jamba, Mamba, FalconMamba, Mamba2, GraniteMoeHybrid, NemotronH, Bamba map mamba layers to it; Qwen3-Next and
# Qwen3.5 list it in config.json). FalconH1's layers are "hybrid". vLLM's CPU platform keeps a float16/bfloat16
# ssm state only for these (platforms/cpu.py::_cpu_mamba_backend).
LINEAR_ATTENTION_LAYER_TYPES = {"jamba", "mamba", "falcon_mamba", "mamba2", "granitemoehybrid", "nemotron_h",
                                "bamba", "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text",
                                "zamba2"}   # Zamba2Config: layer_types -> layers_block_type, "mamba" remapped

# Model types whose mamba ssm state dtype is not "auto" by default: value = config key to read,
# fallback dtype. models/config.py::NemotronHForCausalLMConfig (float32 unless
# hf_config.mamba_ssm_cache_dtype) and Qwen3_5ForCausalLMConfig (text_config.mamba_ssm_dtype).
MAMBA_SSM_DTYPE_DEFAULT: dict[str, tuple[str, str | None]] = {
    "nemotron_h": ("mamba_ssm_cache_dtype", "float32"),
    "qwen3_5_text": ("mamba_ssm_dtype", None),
    "qwen3_5_moe_text": ("mamba_ssm_dtype", None),
}

# Speculative decoding methods (config/speculative.py). EAGLE-family methods use the target's
# hidden states (use_eagle) and look one token ahead during prefill (multi-module MTP: k tokens).
EAGLE_METHODS = {"eagle", "eagle3", "mtp", "dflash", "dspark"}
# Methods that keep async scheduling on (config/vllm.py): EAGLE/MTP, draft model, ngram_gpu, ...
ASYNC_SPEC_METHODS = EAGLE_METHODS | {"draft_model", "ngram_gpu", "extract_hidden_states"}
# Methods whose drafter brings attention layers of its own (draft config's layers).
DRAFT_MODEL_METHODS = {"draft_model", "eagle", "eagle3"}

# Nemotron-NAS / DeciLM (model_executor/models/nemotron_nas.py): block_configs per layer; attention
# with attention.no_op keeps no KV; others have num_attention_heads // n_heads_in_group KV heads.
BLOCK_CONFIGS = {"nemotron-nas", "deci"}

# MiMo-V2 (model_executor/models/mimo_v2.py): sliding layers (hybrid_layer_pattern 1) carry their own
# KV heads and head sizes (swa_*), V heads narrower than K (v_head_dim).
MIMO_V2 = {"mimo_v2_flash", "mimo_v2"}

# Convertors that delete a spurious attention_chunk_size
# (transformers_utils/model_arch_config_convertor.py::_strip_mimo_v2_attention_chunk_size).
CHUNK_SIZE_STRIPPED = MIMO_V2

# --- Gemma 3n / Gemma 4: cross-layer KV sharing, per-layer head sizes -----------------------------
# gemma3n.py / gemma4.py: the last num_kv_shared_layers decoder layers build Attention with
# kv_sharing_target_layer_name set; v1/worker/gpu_model_runner.py::get_kv_cache_spec skips such layers
# ("doesn't allocate KV cache for the layer"): they own no KV cache and only project queries.
# Gemma 3n: a shared layer reads layer first_shared - 1 (full) or - 2 (sliding); a negative index means
# no target (the layer then keeps a cache of its own). Gemma 4: the last earlier layer of the same type.
GEMMA3N = {"gemma3n", "gemma3n_text"}
GEMMA4 = {"gemma4", "gemma4_text"}
KV_SHARING = GEMMA3N | GEMMA4
# Gemma 3n layer types default: full on every 5th layer (Gemma3nTextConfig.__post_init__); Gemma 4: full on
# every 6th and the last layer always full (Gemma4TextConfig.__post_init__ forces layer_types[-1]).
GEMMA3N_FULL_EVERY = 5
GEMMA4_FULL_EVERY = 6

# --- LFM2: short-convolution layers (MambaSpec, model_executor/layers/mamba/short_conv.py) ----------
# layer_types "full_attention" / "conv". One conv state (dim/tp, conv_L_cache - 1 + num_spec) in the
# mamba cache dtype (MambaStateShapeCalculator.short_conv_state_shape); dim = conv_dim (lfm2.py) or
# hidden_size (lfm2_moe.py). Head size hidden_size // num_attention_heads (Lfm2Attention).
LFM2 = {"lfm2", "lfm2_moe"}

# --- Zamba2 (zamba2.py): mamba2 in every layer, shared attention blocks on the "hybrid" layers -----
# Every hybrid layer owns its own KV cache (one Attention per hybrid layer, MHA: num_attention_heads KV
# heads of attention_head_dim = 2 * hidden_size // num_attention_heads, transformers Zamba2Config).
ZAMBA2 = {"zamba2"}

# --- Kimi-Linear (vllm/models/kimi_k3, transformers_utils/configs/kimi_linear.py) -----------------
# linear_attn_config.kda_layers (1-based) are KDA layers (MambaSpec, kimi_gdn_linear_attn.py): conv state
# (3 * num_heads * head_dim / tp, short_conv_kernel_size - 1 + num_spec) in the mamba cache dtype, recurrent
# state (num_heads / tp, head_dim, head_dim) in float32 (MambaStateDtypeCalculator.kda_state_dtype called
# without the ssm dtype); the other layers are MLA (kv_lora_rank + qk_rope_head_dim).
KIMI_LINEAR = {"kimi_linear"}

# Families whose KV kvfit does not derive (refused rather than guessed), with the reason.
NOT_MODELLED: dict[str, str] = {}
# The same refusal by architecture name (a config's model_type may be a custom one under auto_map).
NOT_MODELLED_ARCHITECTURES: dict[str, str] = {}

# --- MiniMax-Text-01 / MiniMax-M1 / MiniMax-VL-01: lightning linear attention (served 0.8.3-0.23.0) -----
# model_executor/models/minimax_text_01.py (0.10.1-0.23.0, the same in every release read): layer i is linear
# attention when decoder_attention_types[i] == 0, full attention when 1; decoder_attention_types is
# config.attn_type_list, else config.decoder_attention_types, else config.layer_types mapped
# ("linear_attention" 0, "full_attention" 1, anything else ValueError), else every layer full.
# Linear layers (MiniMaxText01LinearAttention, a MambaBase; 0.23.0 layers/mamba/linear/minimax_linear_attn.py)
# keep ONE state tensor (num_attention_heads / tp, head_dim, head_dim)
# (mamba_utils.py::MambaStateShapeCalculator.linear_attention_state_shape) in mamba_cache_dtype (auto: the
# model dtype; MambaStateDtypeCalculator.linear_attention_state_dtype, which raises "fp32 state for minimax is
# not yet supported" for mamba_cache_dtype float32 up to 0.20.x, memory/profiles.py). head_dim = config.head_dim,
# else hidden_size // num_attention_heads. Full layers: MiniMaxText01Attention, num_key_value_heads KV heads of
# head_dim; it passes no per-layer window (Attention takes cache_config.sliding_window).
MINIMAX_LINEAR = {"minimax", "minimax_text_01", "minimax_m1"}
MINIMAX_LINEAR_ARCHITECTURES = {"MiniMaxForCausalLM", "MiniMaxText01ForCausalLM", "MiniMaxM1ForCausalLM",
                                "MiniMaxVL01ForConditionalGeneration"}

# --- PLaMo2 (model_executor/models/plamo2.py, served 0.8.5-0.26.0) -----------------------------------------
# plamo2.py::is_mamba (0.10.2-0.26.0 alike): with num_hidden_layers <= mamba_step // 2 every layer but the last is
# mamba; otherwise layer i is mamba unless i % mamba_step == mamba_step // 2. Mamba layers (Plamo2MambaMixer, a
# MambaBase, not MambaMixer2: no prefill checkpoint block, no speculative widening) keep the mamba2 state with
# n_groups=0: conv (mamba_num_heads * hidden_size_per_head / tp, mamba_d_conv - 1), ssm (mamba_num_heads / tp,
# hidden_size_per_head, mamba_d_state) (MambaStateShapeCalculator.mamba2_state_shape; dtypes mamba2_state_dtype).
# Attention layers (Plamo2AttentionMixer): num_key_value_heads KV heads of hidden_size_per_head.
PLAMO2 = {"plamo2"}
PLAMO2_ARCHITECTURES = {"Plamo2ForCausalLM"}

# --- weights from config.json (arch/params.py) ------------------------------------------------------
# Which modules hold parameters, per family, as vLLM 0.32's model files build them. Small terms (norms,
# biases) are charged where the file creates them; the large ones (MLP gating, experts, towers) decide
# the accuracy.

# Llama 4 (llama4.py): MoE on every interleave_moe_layer_step-th layer, dense layers intermediate_size_mlp,
# one shared expert of intermediate_size per MoE layer.
LLAMA4 = {"llama4", "llama4_text"}

# MLPs with two matrices (up, down) instead of three (gate, up, down): gpt2.py, gpt_bigcode.py, opt.py,
# bloom.py, falcon.py, phi.py, gpt_neox.py, gpt_j.py, starcoder2.py, mpt.py, nemotron.py (relu2),
# nemotron_h.py (relu2, also its experts), whisper.py, persimmon.py, codegen (gpt_j layout).
NON_GATED_MLP = {"gpt2", "gpt_bigcode", "opt", "bloom", "falcon", "RefinedWeb", "RefinedWebModel", "phi",
                 "gpt_neox", "gptj", "starcoder2", "mpt", "nemotron", "nemotron_h", "whisper", "persimmon",
                 "codegen"}

# Every linear has a bias (the GPT-2 / OPT / BLOOM / NeoX era; starcoder2 via use_bias, falcon via bias).
ALL_BIAS = {"gpt2", "gpt_bigcode", "opt", "bloom", "phi", "gpt_neox", "whisper", "persimmon"}

# q/k/v biases whatever attention_bias says (qwen2.py Qwen2Attention: QKVParallelLinear(bias=True),
# o_proj without); families whose attention_bias covers q/k/v only (glm4.py, chatglm.py).
QKV_BIAS = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text", "qwen2_5_vl_text",
            "qwen2_5_omni_text", "qwen2_audio"}
QKV_BIAS_ONLY = {"glm4", "glm4_moe", "chatglm", "glm"}

# LayerNorm with a bias (two parameters per channel) instead of RMSNorm.
LAYERNORM_BIAS = {"gpt2", "gpt_bigcode", "opt", "bloom", "falcon", "RefinedWeb", "RefinedWebModel", "phi",
                  "gpt_neox", "gptj", "starcoder2", "whisper", "stablelm", "persimmon", "nemotron", "phi3small"}

# Norms per decoder layer where it is not one per mixer and one per MLP: Gemma 2/3 add pre- and
# post-feedforward norms (gemma2.py, gemma3.py); Nemotron-H has one norm per block (nemotron_h.py);
# Whisper's decoder layers norm self attention, cross attention and the MLP (whisper.py).
NORMS_PER_LAYER = {"gemma2": 4, "gemma3": 4, "gemma3_text": 4, "nemotron_h": 1, "whisper": 3, "gemma4": 4,
                   "gemma4_text": 4, "zamba2": 1, "gemma3n": 4,
                   "gemma3n_text": 4, "plamo2": 4}    # plamo2.py: pre/post mixer and pre/post MLP norms

# Learned absolute positions: (config key, extra rows). opt.py OPTLearnedPositionalEmbedding adds 2.
LEARNED_POSITIONS = {"opt": ("max_position_embeddings", 2), "gpt2": ("n_positions", 0),
                     "gpt_bigcode": ("n_positions", 0), "whisper": ("max_target_positions", 0)}

# Pure state-space models: the mixer is the whole block (mamba.py, mamba2.py).
NO_MLP = {"mamba", "falcon_mamba", "mamba2"}

# Attention whose q_proj also produces an output gate (qwen3_next.py attn_output_gate, default on).
ATTN_OUTPUT_GATE = {"qwen3_next"}

# Per-head q/k RMSNorms (qwen3.py, gemma3.py ...); QK_NORM_FULL: norms over the whole q and k width
# (olmo2.py, olmoe.py; MiniMax-M2's qk_norm_type "per_layer").
QK_NORM = {"qwen3", "qwen3_moe", "qwen3_next", "qwen3_vl_text", "qwen3_vl_moe_text", "qwen3_5_text",
           "qwen3_5_moe_text", "gemma3", "gemma3_text", "olmo2", "olmoe", "gemma4", "gemma4_text", "lfm2",
           "lfm2_moe", "gemma3n", "gemma3n_text"}
QK_NORM_FULL = {"olmo2", "olmoe"}

# Routers with an e_score_correction_bias in float32 whatever topk_method says (nemotron_h.py, glm4_moe.py).
ROUTER_CORRECTION_BIAS = {"nemotron_h", "glm4_moe"}

# Routers built with the model's quant_config, so a quantized checkpoint quantizes them unless its ignore
# list names them (qwen3_moe.py, also used by qwen3_vl_moe.py / qwen3_omni_moe_thinker.py; lfm2_moe.py);
# every other MoE file builds its GateLinear without quant_config.
ROUTER_QUANTIZED = {"qwen3_moe", "qwen3_vl_moe_text", "qwen3_omni_moe_text", "lfm2_moe"}

# Routers kept in float32 (GateLinear(params_dtype=torch.float32): minimax_m2.py, glm4_moe.py,
# ernie45_moe.py, afmoe.py, step3p5.py; mimo_v2.py: moe_router_dtype, float32 by default).
# minimax_text_01.py MiniMaxText01MoE: gate ReplicatedLinear(params_dtype=torch.float32), 0.10.1-0.23.0.
ROUTER_FP32 = {"minimax_m2", "glm4_moe", "ernie4_5_moe", "afmoe", "step3p5", "mimo_v2_flash", "mimo_v2",
               "minimax", "minimax_text_01", "minimax_m1"}

# LM head always tied to the embedding, whatever tie_word_embeddings says (gemma2.py computes the
# logits from model.embed_tokens and builds no lm_head).
ALWAYS_TIED = {"gemma2"}

# use_qk_norm without weights (llama4.py: an L2 norm).
QK_NORM_NO_WEIGHTS = {"llama4", "llama4_text"}

# Shared expert with a sigmoid gate [1, hidden] (qwen2_moe.py, qwen3_next.py, qwen3_5.py).
SHARED_EXPERT_GATE = {"qwen2_moe", "qwen3_next", "qwen3_5_moe_text", "qwen3_5_moe"}

# Keys some configs use to state the parameter count.
DECLARED_TOTAL_KEYS = ("total_params", "num_parameters", "total_parameters", "n_params")

# Shared experts kept whole on every rank when the MoE runs sequence parallel (expert parallel with TP > 1
# and DP > 1, ParallelConfig.use_sequence_parallel_moe): the model builds them with
# disable_tp=is_sequence_parallel (vLLM 0.32 models/deepseek_v2.py DeepseekV2MLP, llama4.py Llama4MoE
# shared_expert, nemotron_h.py). Other models keep them TP-sliced (qwen3_moe.py Qwen3MoeMLP).
SP_MOE_SHARED_REPLICATED = {"deepseek_v2", "deepseek_v3", "deepseek_v32", "llama4", "llama4_text", "nemotron_h"}
