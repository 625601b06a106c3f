"""The launch as kvfit sees it: vLLM's own flag names, validated once, with nothing silently changed."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput

KV_CACHE_DTYPES = {
    "auto": None, "float16": 2, "half": 2, "bfloat16": 2, "float32": 4, "float": 4,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "int8": 1, "fp8_ds_mla": 1, "nvfp4_ds_mla": 1,
}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # vLLM config/lora.py::MaxLoRARanks
DTYPES = {"auto", "half", "float16", "bfloat16", "float", "float32"}
MAMBA_DTYPES = {"auto", "float32", "float16", "bfloat16"}      # config/cache.py::MambaDType
_DTYPE_CANON = {"half": "float16", "float": "float32"}


def replaced(obj, **changes):
    """dataclasses.replace for the frozen dataclasses on the planner's hot path (no __post_init__, no
    InitVar): a copy of the instance's fields with `changes`, without re-running __init__ field by field
    (Settings has some 50 fields; the searches copy it tens of thousands of times in a long manifest)."""
    fields = obj.__dataclass_fields__
    for k in changes:
        if k not in fields:
            raise TypeError(f"{type(obj).__name__} has no field {k!r}")
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new


@dataclass(frozen=True)
class Settings:
    max_model_len: int | None = None            # None: derived; -1: auto-fit
    gpu_memory_utilization: float | None = None  # None: the version's default
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    block_size: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False
    kv_cache_memory_bytes: int | None = None
    num_gpu_blocks_override: int | None = None
    disable_sliding_window: bool = False
    device: str = "cuda"                        # "cuda" | "cpu"
    entrypoint: str = "serve"                   # "serve" | "llm"
    cpu_offload_gb: float = 0.0                 # --cpu-offload-gb: GiB of weights per GPU moved to CPU
    enable_lora: bool = False                   # --enable-lora
    max_loras: int = 1                          # --max-loras (vLLM default 1)
    max_lora_rank: int = 16                     # --max-lora-rank (vLLM default 16)
    # KV accounting knobs (issue #3): vLLM's flag names, defaults as in 0.32.
    speculative_method: str | None = None       # --speculative-config method (ngram, mtp, eagle, draft_model, ...)
    num_speculative_tokens: int = 0             # --speculative-config num_speculative_tokens
    speculative_model: str | None = None        # --speculative-config model (draft / EAGLE head)
    enable_prefix_caching: bool | None = None   # None: vLLM's default for the model
    mamba_cache_dtype: str = "auto"             # --mamba-cache-dtype (conv state)
    mamba_ssm_cache_dtype: str = "auto"         # --mamba-ssm-cache-dtype
    disable_hybrid_kv_cache_manager: bool | None = None   # --disable-hybrid-kv-cache-manager
    cpu_avx512_bf16: bool = True                # --device cpu: host has AVX512-BF16 (vLLM then keeps ssm state fp32)
    cpu_amx: bool = False                       # --device cpu: host has AMX tiles (MLA uses the AMX backend)
    quantization: str | None = None             # --quantization (checked against the checkpoint, memory/variants.py)
    hf_overrides: str | None = None             # --hf-overrides as canonical JSON text (applied to config.json at load)
    rope_scaling: str | None = None             # --rope-scaling (0.4.3-0.11.0) as canonical JSON text
    rope_theta: float | None = None             # --rope-theta (0.5.0-0.11.0)
    # Multimodal profiling (memory/encoder.py): vLLM's flag names, defaults as in 0.32.
    limit_mm_per_prompt: str | None = None      # --limit-mm-per-prompt as canonical JSON text (modality -> count)
    mm_processor_kwargs: str | None = None      # --mm-processor-kwargs as canonical JSON text
    skip_mm_profiling: bool = False             # --skip-mm-profiling (V1, 0.10.1+)
    vllm_env: tuple[tuple[str, str], ...] = ()  # the VLLM_* variables the launch runs with (sorted)
    # Across GPUs and nodes (issue 16): vLLM's flag names, defaults as in 0.32 (config/parallel.py,
    # engine/arg_utils.py); what they change is memory/parallel.py.
    data_parallel_size: int = 1                 # --data-parallel-size: engine replicas (each with its own KV)
    data_parallel_size_local: int | None = None  # --data-parallel-size-local: replicas this node starts
    data_parallel_start_rank: int | None = None  # --data-parallel-start-rank: the first replica on this node
    enable_expert_parallel: bool = False        # --enable-expert-parallel: whole experts per rank
    decode_context_parallel_size: int = 1       # --decode-context-parallel-size: KV tokens sharded
    dcp_kv_cache_interleave_size: int = 1       # --dcp-kv-cache-interleave-size
    cp_kv_cache_interleave_size: int = 1        # --cp-kv-cache-interleave-size
    prefill_context_parallel_size: int = 1      # --prefill-context-parallel-size
    nnodes: int = 1                             # --nnodes: vLLM's own multi-node launcher
    node_rank: int = 0                          # --node-rank
    distributed_executor_backend: str | None = None   # --distributed-executor-backend (mp, ray, uni, ...)
    gpus_per_node: int | None = None            # kvfit's own: GPUs in one node (None: 8, said in a note)

    def validate(self) -> "Settings":
        if self.gpu_memory_utilization is not None:
            u = self.gpu_memory_utilization
            if not (0 < u <= 1):
                raise BadInput(f"--gpu-memory-utilization must be in (0, 1], got {u}",
                               "It is the fraction of the GPU's total memory vLLM may use, e.g. 0.9.")
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
                     "decode_context_parallel_size", "prefill_context_parallel_size", "nnodes",
                     "dcp_kv_cache_interleave_size", "cp_kv_cache_interleave_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens", "kv_cache_memory_bytes",
                     "num_gpu_blocks_override"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise BadInput(f"--{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")
        if self.block_size is not None and self.block_size % 16 and self.device == "cuda":
            raise BadInput(f"--block-size {self.block_size}: vLLM's CUDA attention backends take multiples of 16")
        if self.max_model_len is not None and self.max_model_len != -1 and self.max_model_len < 1:
            raise BadInput("--max-model-len must be positive, -1 or auto")
        if self.dtype not in DTYPES:
            raise BadInput(f"--dtype {self.dtype!r} is not one of {', '.join(sorted(DTYPES))}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise BadInput(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not one kvfit models",
                           "Known: " + ", ".join(sorted(KV_CACHE_DTYPES)))
        if self.device not in ("cuda", "cpu"):
            raise BadInput(f"--device must be cuda or cpu, got {self.device!r}")
        if self.entrypoint not in ("serve", "llm"):
            raise BadInput(f"--entrypoint must be serve or llm, got {self.entrypoint!r}")
        if isinstance(self.cpu_offload_gb, bool) or not isinstance(self.cpu_offload_gb, (int, float)) \
                or not (self.cpu_offload_gb >= 0) or self.cpu_offload_gb == float("inf"):
            raise BadInput(f"--cpu-offload-gb must be a number of GiB >= 0, got {self.cpu_offload_gb!r}")
        if not isinstance(self.max_loras, int) or isinstance(self.max_loras, bool) or self.max_loras < 1:
            raise BadInput(f"--max-loras must be a whole number >= 1, got {self.max_loras!r}")
        if self.max_lora_rank not in LORA_RANKS:
            raise BadInput(f"--max-lora-rank {self.max_lora_rank!r} is not one vLLM accepts",
                           "vLLM's config/lora.py allows " + ", ".join(map(str, LORA_RANKS)) + ".")
        for name in ("mamba_cache_dtype", "mamba_ssm_cache_dtype"):
            if getattr(self, name) not in MAMBA_DTYPES:
                raise BadInput(f"--{name.replace('_', '-')} {getattr(self, name)!r} is not one of "
                               + ", ".join(sorted(MAMBA_DTYPES)))
        if isinstance(self.num_speculative_tokens, bool) or not isinstance(self.num_speculative_tokens, int) \
                or self.num_speculative_tokens < 0:
            raise BadInput(f"num_speculative_tokens must be a whole number >= 0, got {self.num_speculative_tokens!r}")
        if self.speculative_method is not None and self.num_speculative_tokens < 1:
            raise BadInput("--speculative-config needs num_speculative_tokens >= 1")
        if (self.max_num_seqs is not None and self.max_num_batched_tokens is not None
                and self.max_num_batched_tokens < self.max_num_seqs):
            raise BadInput(f"--max-num-batched-tokens ({self.max_num_batched_tokens}) is smaller than "
                           f"--max-num-seqs ({self.max_num_seqs}); vLLM refuses that")
        return self

    @property
    def dtype_canonical(self) -> str:
        return _DTYPE_CANON.get(self.dtype, self.dtype)
