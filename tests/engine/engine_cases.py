"""The launches the engine suite runs on vLLM's CPU backend, one row each.

Every row is one `vllm.LLM(model=tests/data/engine/<model>, skip_tokenizer_init=True,
load_format="dummy", max_model_len=L, enforce_eager=True, kv_cache_memory_bytes=B, **engine)`.
kvfit is asked about the same launch through `Settings` built from the same values (vLLM's flag
names are kvfit's). Budgets are inputs picked so that each family is seen fitting, failing with
vLLM's estimated maximum length, and auto-fitting; the expected numbers are whatever the engine
reports (nothing here is a kvfit output).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

MiB = 1 << 20
OK = 64 * MiB           # comfortably fits every tiny model at its test length

# Several CPU workers (tensor / pipeline parallel) need vLLM's multiprocessing executor and one
# thread-binding slot per worker: this machine exposes one NUMA node.
MULTIPROC = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "0|1"}


@dataclass(frozen=True)
class Case:
    id: str
    model: str                              # folder under tests/data/engine
    max_model_len: int | None               # -1: auto-fit
    budget: int                             # kv_cache_memory_bytes
    engine: dict = field(default_factory=dict)   # extra LLM(...) kwargs, vLLM's names
    env: dict = field(default_factory=dict)
    why: str = ""
    isa: str | None = None                  # the CPU path vLLM is made to see (engine_runner.py); None: the host's

    @property
    def own_process(self) -> bool:
        """vLLM 0.32's CPU platform re-registers its Triton kernel overrides for every speculative
        engine and fails the second time in one process: those launches get a helper of their own."""
        return "speculative_config" in self.engine

    def runner_case(self, data_dir: str) -> dict:
        return {"id": self.id, "model": f"{data_dir}/{self.model}", "max_model_len": self.max_model_len,
                "kv_cache_memory_bytes": self.budget, "kwargs": dict(self.engine), "env": dict(self.env),
                "isa": self.isa}


CASES: list[Case] = [
    # --- dense attention ------------------------------------------------------------------------
    Case("llama_gqa-L3000", "llama_gqa", 3000, OK, why="L not a multiple of block 128 (spec run A shape)"),
    Case("llama_gqa-default", "llama_gqa", None, OK, why="no --max-model-len: the derived 4096 (also run by the CLI test)"),
    Case("llama_gqa-too-small", "llama_gqa", 4096, 5_000_000, why="spec run C: estimated maximum 3072"),
    Case("llama_gqa-autofit", "llama_gqa", -1, 5_000_000, why="spec run D: auto-fit to one request"),
    Case("llama_gqa-block32", "llama_gqa", 3000, OK, {"block_size": 32}, why="--block-size on the CPU backend"),
    Case("llama_gqa-override", "llama_gqa", 3000, OK, {"num_gpu_blocks_override": 100},
         why="--num-gpu-blocks-override replaces the budget"),
    Case("llama_gqa-fp8", "llama_gqa", 3000, OK, {"kv_cache_dtype": "fp8"},
         why="1-byte KV (sized by vLLM; the CPU fp8 kernel may then refuse to run)"),
    Case("llama_mha_fp32-L2500", "llama_mha_fp32", 2500, OK, why="float32 config dtype -> bf16 on CPU, MHA"),
    Case("llama_mha_fp32-dtype32", "llama_mha_fp32", 2500, OK, {"dtype": "float32"}, why="--dtype float32: 4-byte KV"),
    Case("llama_mha_fp32-too-small", "llama_mha_fp32", 4096, 6_554_600),
    # --- sliding window -------------------------------------------------------------------------
    Case("swa_layer_types-L3000", "llama_swa_layer_types", 3000, OK),
    Case("swa_layer_types-mnbt512", "llama_swa_layer_types", 8192, OK, {"max_num_batched_tokens": 512},
         why="spec run B: the window cost follows max_num_batched_tokens"),
    Case("swa_layer_types-too-small", "llama_swa_layer_types", 8192, 13_239_272),
    Case("swa_layer_types-autofit", "llama_swa_layer_types", -1, 13_239_272),
    Case("mistral_swa-L3000", "mistral_swa", 3000, OK, why="model-wide window (no layer_types)"),
    Case("mistral_swa-mnbt512", "mistral_swa", 8192, OK, {"max_num_batched_tokens": 512}),
    Case("mistral_swa-autofit", "mistral_swa", -1, 3_539_944),
    Case("mistral_swa-disable-window", "mistral_swa", None, OK, {"disable_sliding_window": True},
         why="--disable-sliding-window caps max_model_len to the window, all layers full"),
    Case("mistral_swa-disable-window-too-long", "mistral_swa", 3000, OK, {"disable_sliding_window": True},
         why="a length above the window with --disable-sliding-window: vLLM and kvfit refuse"),
    Case("phi3_long_window-L3000", "phi3_long_window", 3000, OK, why="window longer than the model: one extra block"),
    Case("phi3_long_window-too-small", "phi3_long_window", 4096, 6_554_600),
    Case("qwen2_window_off-L3000", "qwen2_window_off", 3000, OK, why="use_sliding_window false: no window"),
    Case("qwen2_head_dim_ignored-L3000", "qwen2_head_dim_ignored", 3000, OK,
         why="Qwen2Attention uses hidden_size // heads (64), not the head_dim key (32)"),
    Case("qwen2_window_all-mnbt1024", "qwen2_window_all", 3000, OK, {"max_num_batched_tokens": 1024},
         why="max_window_layers 0: every layer slides"),
    Case("gemma2-L3000", "gemma2_alternating", 3000, OK),
    Case("gemma2-mnbt512", "gemma2_alternating", 4096, OK, {"max_num_batched_tokens": 512}),
    Case("gemma2-too-small", "gemma2_alternating", 4096, 6_423_528),
    Case("gemma2-disable-window", "gemma2_alternating", None, OK, {"disable_sliding_window": True}),
    Case("gemma3-L3000", "gemma3_pattern_padding", 3000, OK, why="sliding_window_pattern, 1 padding layer"),
    Case("gemma3-mnbt256", "gemma3_pattern_padding", 8192, OK, {"max_num_batched_tokens": 256}),
    Case("gemma3-too-small", "gemma3_pattern_padding", 8192, 16_647_144),
    Case("gemma3-autofit", "gemma3_pattern_padding", -1, 16_647_144),
    Case("gpt_oss-L3000", "gpt_oss_alternating", 3000, OK, why="even layers slide; yarn factor not applied"),
    Case("gpt_oss-mnbt512", "gpt_oss_alternating", 8192, OK, {"max_num_batched_tokens": 512}),
    Case("gpt_oss-autofit", "gpt_oss_alternating", -1, 9_700_328),
    # --- chunked local attention ----------------------------------------------------------------
    Case("llama4-L3000", "llama4_chunked", 3000, OK, why="hybrid manager stays on in 0.32"),
    Case("llama4-mnbt512", "llama4_chunked", 8192, OK, {"max_num_batched_tokens": 512}),
    Case("llama4-too-small", "llama4_chunked", 8192, 8_193_000),
    Case("llama4-hma-off", "llama4_chunked", 3000, OK, {"disable_hybrid_kv_cache_manager": True},
         why="chunked layers promoted to full attention"),
    # --- MLA ------------------------------------------------------------------------------------
    Case("mla-L3000", "deepseek_v2_mla", 3000, OK, why="CPU MLA: block 16, mnbt = max(L, 2048)"),
    Case("mla-too-small", "deepseek_v2_mla", 4096, 7_115_752),
    Case("mla-autofit", "deepseek_v2_mla", -1, 7_115_752),
    Case("mla-user-mnbt-block", "deepseek_v2_mla", 3000, OK, {"max_num_batched_tokens": 512, "block_size": 32},
         why="CPU MLA overrides both"),
    # --- mamba / linear-attention hybrids -------------------------------------------------------
    Case("qwen3_next-L3000", "qwen3_next_hybrid", 3000, OK, why="GDN + full, mamba page padded"),
    Case("qwen3_next-too-small", "qwen3_next_hybrid", 4096, 1_901_544),
    Case("qwen3_next-autofit", "qwen3_next_hybrid", -1, 1_901_544),
    Case("qwen3_next-no-prefix-caching", "qwen3_next_hybrid", 3000, OK, {"enable_prefix_caching": False},
         why="mamba_cache_mode none: one state block, mamba block = max_model_len"),
    Case("qwen3_next-ngram2", "qwen3_next_hybrid", 3000, OK,
         {"speculative_config": {"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 3,
                                 "prompt_lookup_min": 2}},
         why="speculative tokens: extra state blocks and a wider conv state"),
    Case("qwen3_next-mtp1", "qwen3_next_hybrid", 3000, OK,
         {"speculative_config": {"method": "mtp", "num_speculative_tokens": 1}},
         why="the MTP layer is one more full-attention KV layer"),
    Case("jamba-L3000", "jamba_hybrid", 3000, OK, why="mamba1 + attention"),
    Case("jamba-too-small", "jamba_hybrid", 4096, 3_408_872),
    Case("jamba-autofit", "jamba_hybrid", -1, 3_408_872),
    Case("granite4-L3000", "granite4_hybrid", 3000, OK, why="mamba2: attention block raised to 256"),
    Case("granite4-too-small", "granite4_hybrid", 4096, 2_491_368),
    Case("nemotron_h-L3000", "nemotron_h_hybrid", 3000, OK, why="pattern M*M-, ssm state float32 by default"),
    Case("nemotron_h-too-small", "nemotron_h_hybrid", 4096, 2_229_224),
    Case("nemotron_h-ssm-bf16", "nemotron_h_hybrid", 3000, OK, {"mamba_ssm_cache_dtype": "bfloat16"}),
    Case("falcon_h1-L3000", "falcon_h1_parallel", 3000, OK, why="attention and mamba in every layer"),
    Case("falcon_h1-too-small", "falcon_h1_parallel", 4096, 3_539_944),
    Case("falcon_h1-autofit", "falcon_h1_parallel", -1, 3_539_944),
    # --- per-layer heads and cross-layer KV sharing (issue 13) -----------------------------------
    Case("gemma4-L3000", "gemma4_per_layer_heads", 3000, OK,
         why="full layers: global_head_dim 128 x num_global_key_value_heads 1 (attention_k_eq_v); sliding 64 x 2"),
    Case("gemma4-mnbt512", "gemma4_per_layer_heads", 8192, OK, {"max_num_batched_tokens": 512}),
    Case("gemma4-too-small", "gemma4_per_layer_heads", 8192, 2_000_000),
    Case("gemma4-autofit", "gemma4_per_layer_heads", -1, 2_000_000),
    Case("gemma4-hma-off", "gemma4_per_layer_heads", 3000, OK, {"disable_hybrid_kv_cache_manager": True},
         why="sliding layers promoted to full attention: two head sizes in one group"),
    Case("gemma4_kv_shared-L3000", "gemma4_kv_shared", 3000, OK,
         why="the last 3 of 9 layers read earlier layers' KV (num_kv_shared_layers): 6 layers hold KV"),
    Case("gemma4_kv_shared-too-small", "gemma4_kv_shared", 8192, 2_000_000),
    Case("gemma3n-L3000", "gemma3n_kv_shared", 3000, OK, why="layers 5-9 share layers 3 (sliding) and 4 (full)"),
    Case("gemma3n-too-small", "gemma3n_kv_shared", 8192, 1_500_000),
    # --- short convolution (LFM2) and shared attention blocks (Zamba2) ----------------------------
    Case("lfm2-L3000", "lfm2_short_conv", 3000, OK, why="ShortConv state (conv_dim, conv_L_cache - 1)"),
    Case("lfm2-too-small", "lfm2_short_conv", 4096, 1_000_000),
    Case("lfm2-autofit", "lfm2_short_conv", -1, 1_000_000),
    Case("lfm2-no-prefix-caching", "lfm2_short_conv", 3000, OK, {"enable_prefix_caching": False}),
    Case("lfm2_moe-L3000", "lfm2_moe_short_conv", 3000, OK, why="short conv over hidden_size, MoE after 2 dense"),
    Case("zamba2-L3000", "zamba2_shared_attention", 3000, OK,
         why="mamba2 in all 6 layers, one KV cache per hybrid layer (2 of them, 2 shared blocks)"),
    Case("zamba2-too-small", "zamba2_shared_attention", 4096, 2_500_000),
    # --- attention-free -------------------------------------------------------------------------
    Case("falcon_mamba-L3000", "falcon_mamba_attention_free", 3000, OK, why="no length key: the user length stands"),
    Case("falcon_mamba-default", "falcon_mamba_attention_free", None, OK, why="no length key: 2048"),
    Case("falcon_mamba-too-small", "falcon_mamba_attention_free", 2048, 38_912 + 1000),
    Case("mamba2-L3000", "mamba2_attention_free", 3000, OK),
    Case("mamba2-prefix-caching", "mamba2_attention_free", 3000, OK, {"enable_prefix_caching": True},
         why="align mode: 2 + 1 checkpoint block"),
    # --- encoder-decoder ------------------------------------------------------------------------
    Case("whisper-L448", "whisper_cross", 448, OK, {"skip_tokenizer_init": False},
         why="cross attention sized by max_num_batched_tokens"),
    Case("whisper-mnbt2048", "whisper_cross", 448, OK, {"skip_tokenizer_init": False, "max_num_batched_tokens": 2048}),
    Case("whisper-mnbt1024-refused", "whisper_cross", 448, OK,
         {"skip_tokenizer_init": False, "max_num_batched_tokens": 1024},
         why="one 1500-token encoder input must fit a batch: vLLM and kvfit refuse"),
    Case("whisper-too-small", "whisper_cross", 448, 262_144 * 35 + 1000, {"skip_tokenizer_init": False}),
    Case("whisper-no-estimate", "whisper_cross", 448, 7_341_032, {"skip_tokenizer_init": False},
         why="not even the cross-attention blocks fit: no estimate in the message"),
    # --- parallelism (several workers: slower) --------------------------------------------------
    Case("qwen3_next-tp2", "qwen3_next_hybrid", 3000, OK, {"tensor_parallel_size": 2}, MULTIPROC,
         why="KV heads and GDN state split over 2 ranks"),
    Case("qwen3_next-tp2-ep", "qwen3_next_hybrid", 3000, OK, {"tensor_parallel_size": 2, "enable_expert_parallel": True},
         MULTIPROC, why="expert parallel over 2 ranks (2 of 4 experts each): KV as TP 2"),
    Case("gemma3-pp2", "gemma3_pattern_padding", 3000, OK, {"pipeline_parallel_size": 2}, MULTIPROC,
         why="groups projected on 2 stages"),
]

# --- the same launches on the CPU paths below AMX (kvfit/kv/cpu_host.py) ------------------------------
# engine_runner.py makes torch's probes answer False for what the path lacks (never adds a feature), so
# vLLM's CPU platform decides as on such a host: without AMX, MLA runs on CPU_MLA (block 16, no chunked
# prefill or prefix caching); without AVX512-BF16, the mamba ssm state keeps the dtype asked (auto: the
# conv dtype) instead of float32. On a host that is itself on a lower path the cases run unpatched, and a
# path above the host's is reported as not runnable.
_BY_ID = {c.id: c for c in CASES}
ISA_PATH_CASES: list[Case] = [
    replace(_BY_ID[cid], id=f"{cid}@{isa}", isa=isa)
    for isa, ids in (
        ("avx512_bf16", ("mla-L3000", "mla-autofit", "mla-user-mnbt-block", "nemotron_h-ssm-bf16")),
        ("avx2", ("mla-L3000", "mla-too-small", "mla-user-mnbt-block", "qwen3_next-L3000", "qwen3_next-too-small",
                  "jamba-L3000", "granite4-L3000", "nemotron_h-ssm-bf16", "falcon_h1-L3000", "mamba2-L3000")))
    for cid in ids]
CASES = CASES + ISA_PATH_CASES

# Launches whose engine run records the KV numbers but then stops for reasons unrelated to KV
# sizing on this host (the numbers were already logged). The test compares the recorded values.
ENCODER_ONLY = Case("bert-encoder-only", "bert_encoder_only", 512, OK, why="no KV cache at all")
ALL_CASES = CASES + [ENCODER_ONLY]
BY_ID = {c.id: c for c in ALL_CASES}
