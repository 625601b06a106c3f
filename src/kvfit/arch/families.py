"""Per-model_type quirks, as tables. Each row cites the vLLM / transformers code it mirrors."""

from __future__ import annotations

# Defaults that transformers' config classes fill in when a (nested) config omits a key.
# vLLM reads configs through transformers, so an absent key means the class default.
# transformers models/gemma3/configuration_gemma3.py::Gemma3TextConfig.__init__,
# models/llama/configuration_llama.py::LlamaConfig.__init__, mistral, qwen2, gemma2 likewise.
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
        "max_position_embeddings": 32768, "use_sliding_window": False, "tie_word_embeddings": False,
    },
}

# Model types whose sliding window is read only when use_sliding_window is true
# (transformers Qwen2Config: `self.sliding_window = sliding_window if use_sliding_window else None`).
USE_SLIDING_WINDOW_FLAG = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl",
                           "qwen2_5_vl_text", "qwen2_vl_text", "qwen3_vl_text"}

# Falcon: multi_query without new_decoder_architecture means one KV head
# (vllm transformers_utils/model_arch_config_convertor.py, FalconConvertor).
FALCON_TYPES = {"falcon", "RefinedWeb", "RefinedWebModel"}

# is_deepseek_mla (vllm transformers_utils/model_arch_config_convertor.py): these types with
# kv_lora_rank set use MLA. One latent of kv_lora_rank + qk_rope_head_dim per token per layer.
MLA_TYPES = {"deepseek_v2", "deepseek_v3", "deepseek_v32", "deepseek_v4", "deepseek_mtp",
             "kimi_k2", "kimi_linear", "glm_moe_dsa", "glm4_moe_lite", "longcat_flash",
             "deepseek_vl_v2", "pangu_ultra_moe", "mistral_large_3"}

# Gemma 2: layer i slides when i is even (transformers Gemma2Config.layer_types default
# `"sliding_attention" if bool((i + 1) % 2) else "full_attention"`).
ALTERNATING_SLIDING = {"gemma2"}

# Gemma 3 (old configs without layer_types): sliding unless (i+1) % sliding_window_pattern == 0.
PATTERN_SLIDING = {"gemma3", "gemma3_text"}

# GPT-OSS: vllm model_executor/models/gpt_oss.py `sliding_window if layer_idx % 2 == 0`
# (its configs also carry layer_types, which say the same).
GPT_OSS = {"gpt_oss"}

# Models that vLLM refuses to run in float16 (config/model.py::_get_and_verify_dtype).
NO_FP16 = {"gemma2", "gemma3", "gemma3_text", "glm4"}

# Encoder-only architectures: no KV cache at all (EncoderOnlyAttentionSpec).
ENCODER_ONLY_TYPES = {"bert", "roberta", "xlm-roberta", "modernbert", "nomic_bert", "deberta",
                      "deberta-v2", "distilbert", "electra"}
