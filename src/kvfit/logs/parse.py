"""Parse vLLM startup logs (V0 0.2 .. 0.8, V1 0.8 .. 0.32) into numbers.

One parser serves two callers: ``kvfit smoke`` (live engine output) and ``kvfit explain``
(logs or tracebacks pasted by a user).  It matches on message text only, so it tolerates:

* process/level/time/file prefixes (``(EngineCore pid=326) INFO 10-06 17:00:11 [gpu_worker.py:955]``),
  ``vLLM STDOUT:`` wrappers, ``# `` comment markers, ANSI colour codes and carriage returns;
* thousands separators (``460,496``) and ``GB`` where vLLM meant GiB (old V0 lines);
* every historic layout of the same facts (see ``docs/vllm-kv-accounting.md`` §8, §9):

  - V0 ~0.4-0.5: ``Loading model weights took X GB`` / ``# GPU blocks: N, # CPU blocks: M``;
  - V0 ~0.6.4: ``Memory profiling results: total_gpu_memory=...GiB ... gpu_memory_utilization=0.90``;
  - V0 ~0.6.5-0.9: the 3-line ``the current vLLM instance can use total_gpu_memory (T) x
    gpu_memory_utilization (U) = R`` / ``model weights take ...`` block, ``# cuda blocks``;
  - V1 ~0.8-0.2x: ``Available KV cache memory``, ``GPU KV cache size: N tokens`` and
    ``Maximum concurrency for L tokens per request: Xx`` on one or two lines;
  - 0.32: ``Free memory on device (F/T GiB) on startup. Desired GPU memory utilization is (U, R GiB).
    Actual usage is ...``, CUDA-graph profiling lines, auto-fit lines, CPU-backend lines;
  - the error texts of §5 and §3.1 in all their wordings, and CUDA OOM tracebacks.

Facts are "first seen wins" (GiB figures in multi-GPU logs are usually the first rank's; vLLM prints block
counts once, as the minimum over ranks).  Every occurrence is also kept in ``LogFacts.all_values``.

Only the standard library is used.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LogError", "LogFacts", "parse_log", "ERROR_KINDS", "ENGINE_PHASES", "engine_phase", "signal_name"]

ERROR_KINDS = (
    "v0_max_seq_len",
    "v1_max_seq_len",
    "no_cache_memory",
    "free_memory_startup",
    "user_max_len_too_long",
    "cuda_oom",
    "cannot_autofit",
    "profiling_memory_changed",
    "engine_died",
)

# Where an engine was when it died, in start-up order (engine_phase).
ENGINE_PHASES = ("load", "profile", "KV sizing", "warm-up", "generate")

GIB = 1024**3


@dataclass
class LogError:
    """One error vLLM reported.

    ``numbers`` holds every number the message states, named; ``labels`` holds the non-numeric parts
    (e.g. ``derived_key`` = ``"max_position_embeddings"``, ``device`` = ``"cuda:0"``).
    ``phase`` is only set for ``cuda_oom`` (loading / profiling / graph_capture / sampling) and
    ``engine_died`` (one of ENGINE_PHASES, or None when the log does not show it).
    ``engine_died``: a vLLM process was killed by a signal or the engine core died (EngineDeadError);
    ``numbers`` may hold ``exit_code`` (negative: -signal), ``labels`` ``signal`` (e.g. "SIGILL"),
    ``process`` (e.g. "VllmWorker-0"), ``frame`` (the innermost Python frame Python's faulthandler printed,
    "function (file.py:line)"), ``evidence`` (which line said so) and ``exception`` (the engine core's
    error when no signal is known).
    """

    kind: str
    numbers: dict[str, float | int] = field(default_factory=dict)
    line: str = ""
    phase: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class LogFacts:
    model: str | None = None
    vllm_version: str | None = None
    engine: str | None = None
    device_label: str | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    total_gpu_memory_gib: float | None = None
    free_gpu_memory_gib: float | None = None
    model_weights_gib: float | None = None
    activation_peak_gib: float | None = None
    non_torch_memory_gib: float | None = None
    cuda_graph_gib: float | None = None
    available_kv_gib: float | None = None
    num_gpu_blocks: int | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    max_concurrency_len: int | None = None
    block_size: int | None = None
    errors: list[LogError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    # ---- extras (not required by callers, but useful for records and explanations) ----
    num_cpu_blocks: int | None = None
    model_loading_gib: float | None = None  # "Model loading took X GiB" / "Loading model weights took X GB"
    requested_memory_gib: float | None = None  # total x utilization, as printed
    consumed_memory_gib: float | None = None  # 0.32: "consumed memory (weights + non-torch)"
    non_kv_cache_memory_gib: float | None = None  # DEBUG "Total non KV cache memory"
    initial_memory_usage_gib: float | None = None  # ~0.6.4 one-liner
    peak_torch_memory_gib: float | None = None  # ~0.6.4 one-liner
    cuda_graph_estimate_gib: float | None = None  # "Estimated CUDA graph memory" / pool "(estimated)"
    pipeline_parallel_size: int | None = None
    auto_fit: dict[str, Any] | None = None  # {"from": 4096, "to": 3072} or {"full": 131072}
    startup_complete: bool = False  # "init engine (...) took" or a capacity report was seen
    settings: dict[str, Any] = field(default_factory=dict)  # launch settings found (flags, config line)
    env: dict[str, str | None] = field(default_factory=dict)  # VLLM_* / *GPU_MEMORY_UTILIZATION seen set
    all_values: dict[str, list[Any]] = field(default_factory=dict)  # every occurrence of each fact
    derived: list[str] = field(default_factory=list)  # facts filled by arithmetic, not printed


# --------------------------------------------------------------------------------------------------
# text helpers

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_FLOAT = r"-?\d+(?:\.\d+)?"
_INT = r"\d+(?:,\d{3})*"


def _f(s: str) -> float:
    return float(s.replace(",", ""))


def _i(s: str) -> int:
    s = s.replace(",", "").strip()
    return int(float(s)) if "." in s or "e" in s.lower() else int(s)


def _human_int(s: str) -> int | None:
    """vLLM's human_readable_int: 32k = 32000, 32K = 32768, 1m = 1e6, 1M = 2**20."""
    s = s.strip().strip("'\"").replace(",", "").replace("_", "")
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)([kKmMgG]?)", s)
    if not m:
        return None
    val, suf = float(m.group(1)), m.group(2)
    mult = {"": 1, "k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2, "g": 1000**3, "G": 1024**3}[suf]
    return int(val * mult)


def _to_gib(value: float, unit: str) -> float:
    unit = unit.upper()
    if unit.startswith("K"):
        return value / 1024**2
    if unit.startswith("M"):
        return value / 1024
    if unit.startswith("T"):
        return value * 1024
    if unit.startswith("B"):
        return value / GIB
    return value  # GiB / GB (vLLM's "GB" always meant GiB)


def _clean_lines(text: str) -> list[str]:
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [ln.rstrip() for ln in text.split("\n")]


# --------------------------------------------------------------------------------------------------
# regexes for facts (searched anywhere in a line)

R = re.compile

# version / engine / model
RX_ENGINE_INIT = R(r"Initializing an? (?:(V[01]) )?LLM engine(?: \(v?([0-9][\w.+\-]*)\))? with config:")
RX_API_VERSION = R(r"vLLM API server version v?([0-9][\w.+\-]*)")
RX_VLLM_VERSION = R(r"\bvLLM version:? v?([0-9]+\.[0-9]+[\w.+\-]*)")
RX_CONFIG_MODEL = R(r"\bmodel='([^']*)'")
RX_NONDEFAULT = R(r"non-default args: (\{.*\})")
RX_START_LOAD = R(r"Starting to load model (\S+?)(?:\.\.\.)?\s*$")
RX_ENV_LINE = R(
    r"Initializing a V1 LLM engine|\bEngineCore(?:_DP\d+)?\b|\[(?:gpu_worker|gpu_model_runner|kv_cache_utils|cpu_worker)\.py"
)
RX_CPU_HINT = R(
    r"for CPU_[A-Z_]+ backend|\bdevice_config=cpu\b|\[cpu_worker\.py|GiB CPU\)|Using LBHNC KV cache layout|"
    r"VLLM_CPU_KVCACHE_SPACE"
)

# settings
RX_USING_MAX_LEN = R(r"Using max model len (" + _INT + r")")
RX_CHUNKED = R(r"Chunked prefill is enabled with max_num_batched_tokens=(" + _INT + r")")
RX_BLOCK_SIZE_SET = R(r"Setting (?:kv cache|attention) block size to (\d+)")
RX_AUTOFIT_REDUCED = R(r"Auto-fit max_model_len: reduced from (" + _INT + r") to (" + _INT + r")")
RX_AUTOFIT_FULL = R(r"Auto-fit max_model_len: full model context length (" + _INT + r") fits")

# memory
RX_LOAD_V1 = R(r"Model loading took (" + _FLOAT + r")\s*(GiB|GB|MiB)")
RX_LOAD_V0 = R(r"Loading model weights took (" + _FLOAT + r")\s*(GiB|GB|MiB)")
RX_PROFILE_ONELINE = R(r"Memory profiling results:(.*)")
RX_KV_PAIR = R(r"(\w+)=(" + _FLOAT + r")\s*(GiB|GB|MiB)?")
RX_CAN_USE = R(
    r"can use\s+total_gpu_memory\s*\((" + _FLOAT + r")\s*GiB\)\s*x\s*(?:gpu_memory_utilization\s*)?\(?("
    + _FLOAT + r")\)?\s*=\s*(" + _FLOAT + r")\s*GiB"
)
RX_CAN_USE_TABLE = R(r"the current vLLM instance can use\s+(" + _FLOAT + r")\s*GiB")
RX_TOTAL_TABLE = R(r"^\W*total_gpu_memory[\s:=]+(" + _FLOAT + r")\s*GiB")
RX_UTIL_TABLE = R(r"^\W*gpu_memory_utilization[\s:=]+(" + _FLOAT + r")\s*$")
RX_WEIGHTS_TAKE = R(r"model weights take\s+(" + _FLOAT + r")\s*GiB")
RX_NON_TORCH = R(r"non_torch_memory(?:\s+takes)?[\s=:]+(" + _FLOAT + r")\s*GiB")
RX_NON_TORCH_FWD = R(r"non-torch forward increase memory:\s*(" + _FLOAT + r")\s*GiB")
RX_ACT_PEAK = R(r"PyTorch activation peak memory(?:\s+takes)?\s+(" + _FLOAT + r")\s*GiB")
RX_KV_REST = R(r"the rest (?:of the memory )?reserved for KV Cache is\s+(" + _FLOAT + r")\s*GiB")
RX_KV_TABLE = R(r"^\W*available_kv_cache_memory[\s:=]+(" + _FLOAT + r")\s*GiB")
RX_AVAILABLE_KV = R(r"Available KV cache memory:\s*(" + _FLOAT + r")\s*(GiB|GB)")
RX_DEBUG_INITIAL = R(
    r"Initial free memory:?\s*(" + _FLOAT + r")\s*GiB;\s*Requested memory:\s*(" + _FLOAT + r")\s*\(util\),\s*("
    + _FLOAT + r")\s*GiB"
)
RX_DEBUG_PROFILE = R(r"Total non KV cache memory:\s*(" + _FLOAT + r")\s*GiB")
RX_DEBUG_TORCH_PEAK = R(r"torch peak memory increase:\s*(" + _FLOAT + r")\s*GiB")
RX_DEBUG_CONSUMED = R(r"total consumed \(from mem_get_info\):\s*(" + _FLOAT + r")\s*GiB")
RX_DEBUG_WEIGHTS = R(r"weights memory:\s*(" + _FLOAT + r")\s*GiB")
RX_KV_BYTES_OVERRIDE = R(
    r"Initial free memory (" + _FLOAT + r") GiB, reserved (" + _FLOAT + r") GiB memory for KV Cache"
)
RX_FREE_032 = R(
    r"Free memory on device(?: \S+)? \((" + _FLOAT + r")/(" + _FLOAT + r") GiB\) on startup\. Desired GPU memory "
    r"utilization is \((" + _FLOAT + r"), (" + _FLOAT + r") GiB\)\."
)
RX_FREE_032_USAGE = R(
    r"Actual usage is (" + _FLOAT + r") GiB for consumed memory.*?, (" + _FLOAT + r") GiB for peak activation, and ("
    + _FLOAT + r") GiB for CUDAGraph memory"
)
RX_FREE_032_SUGGEST = R(
    r"`--kv-cache-memory=(\d+)` \((" + _FLOAT + r") GiB\) to fit into requested memory, or `--kv-cache-memory=(\d+)` \(("
    + _FLOAT + r") GiB\) to fully utilize"
)
RX_FREE_032_CURRENT = R(r"Current kv cache memory in use is (" + _FLOAT + r") GiB")
RX_CG_ESTIMATED = R(r"Estimated CUDA graph memory:\s*(" + _FLOAT + r")\s*GiB")
RX_CG_POOL = R(r"CUDA graph pool memory:\s*(" + _FLOAT + r")\s*GiB \(actual\),\s*(" + _FLOAT + r")\s*GiB \(estimated\)")
RX_CG_PROFILE_UTIL = R(
    r"The current --gpu-memory-utilization=(" + _FLOAT + r") is equivalent to --gpu-memory-utilization=("
    + _FLOAT + r") without CUDA graph memory profiling"
)
RX_GRAPH_CAPTURE = R(r"Graph capturing finished in (" + _FLOAT + r") secs?, took (" + _FLOAT + r")\s*(GiB|GB|MiB)")
RX_CPU_EXPLICIT = R(r"Explicitly set \((" + _FLOAT + r")/(" + _FLOAT + r")\) GiB for KV cache on node (\d+)")
RX_CPU_AUTO = R(
    r"Auto set \((" + _FLOAT + r")/(" + _FLOAT + r")\) GiB for KV cache on node (\d+)(?:, with (" + _FLOAT
    + r") GiB requested memory for the worker\. (" + _FLOAT + r") GiB memory was consumed by non-kv usages)?"
)
RX_OLD_CPU_KV = R(r"\bKV cache space:?\s*(" + _FLOAT + r")\s*(GiB|GB)")

# capacity
RX_BLOCKS = R(r"(?:#\s*)?\b([A-Za-z]+) blocks:\s*(" + _INT + r")(?:\s*,\s*#?\s*CPU blocks:\s*(" + _INT + r"))?")
RX_KV_SIZE = R(r"\b([A-Z][A-Za-z +]*?) KV cache size:\s*(" + _INT + r") tokens")
RX_CONCURRENCY = R(
    r"Maximum concurrency for (" + _INT + r") tokens(?: per |/)request.*?(\d+(?:\.\d+)?)\s*[x×]"
)
RX_INIT_DONE = R(r"init engine \(profile, create kv cache, warmup model\) took")
RX_NUM_GPU_BLOCKS_DEBUG = R(r"num_gpu_blocks(?: is)?[:=]\s*(" + _INT + r")")

# errors
RX_ERR_V0 = R(
    r"max seq len \((" + _INT + r")\) is larger than the maximum number of tokens that can be stored in KV cache "
    r"\((" + _INT + r")\)"
)
RX_ERR_V1 = R(
    r"To serve at least one request with the models?'s max seq len \((" + _INT + r")\),?\s*\((" + _FLOAT
    + r")\s*(GiB|GB) KV cache is needed,? which is larger than the available KV cache memory \((" + _FLOAT
    + r")\s*(GiB|GB)\)"
)
RX_ERR_V1_EST = R(r"estimated maximum model length is (" + _INT + r")")
RX_ERR_NO_MEM = R(r"No available memory for the cache blocks")
RX_ERR_FREE = R(
    r"Free memory on device(?: (\S+))? \((" + _FLOAT + r")/(" + _FLOAT + r") GiB\) on startup is less than desired "
    r"GPU memory utilization \((" + _FLOAT + r"), (" + _FLOAT + r") GiB\)"
)
RX_ERR_USER_LEN = R(
    r"User-specified max_model_len \((" + _INT + r")\) is greater than the derived max_model_len \(([A-Za-z_]+)=("
    + _FLOAT + r"|None)(?: or model_max_length=(" + _FLOAT + r"|None))?"
)
RX_ERR_AUTOFIT = R(r"Cannot auto-fit max_model_len")
RX_ERR_PROFILE_FREE = R(
    r"Error in memory profiling\. Initial free memory (" + _FLOAT + r") GiB, current free memory (" + _FLOAT + r") GiB"
)
# engine deaths (v1/executor/multiproc_executor.py, v1/utils.py, v1/engine/utils.py, v1/engine/exceptions.py
# in 0.32; Python's faulthandler; the shell and docker)
RX_WORKER_DIED = R(r"Worker proc (\S+) died unexpectedly \(exit code: (-?\d+|None)\)")
RX_PROC_DIED = R(r"Process (\S+) \(PID: \d+\) died with exit code (-?\d+)")
RX_CORE_DIED = R(r"Engine core process (\S+) died unexpectedly")
RX_CORE_INIT_FAILED = R(r"Engine core initialization failed\..*?Failed core proc\(s\): \{([^}]*)\}")
RX_CORE_EXITED = R(r"engine core exited unexpectedly")
RX_ENGINE_DEAD = R(r"\bEngineDeadError\b|EngineCore encountered an issue")
RX_CORE_FATAL = R(r"EngineCore encountered a fatal error")
RX_FAULTHANDLER = R(r"Fatal Python error: (Illegal instruction|Segmentation fault|Bus error|Floating[- ]point exception|"
                    r"Aborted)")
RX_FAULT_FRAME = R(r'^\s*File "([^"]*)", line (\d+) in (\S+)')
# bash: the whole line, or a job line ("bash: line 1:  4242 Killed    cmd", "[1]+  Killed    cmd")
RX_SHELL_SIGNAL = R(r"^(?:(?:\S+: )?line \d+:\s+\d+\s+|\[\d+\][+-]?\s+)?"
                    r"(Illegal instruction|Segmentation fault|Bus error|Killed|Aborted)(?: \(core dumped\))?"
                    r"(?:\s{2,}\S.*)?$")
RX_EXITED_CODE = R(r"\bexited with code (\d+)\b")
RX_EXCEPTION_LINE = R(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Interrupt)):\s*(.*)$")

_SIGNAL_NUMBERS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7,
                   "SIGFPE": 8, "SIGKILL": 9, "SIGSEGV": 11, "SIGPIPE": 13, "SIGTERM": 15}   # Linux numbering
_SIGNAL_TEXT = {"illegal instruction": "SIGILL", "segmentation fault": "SIGSEGV", "bus error": "SIGBUS",
                "floating-point exception": "SIGFPE", "floating point exception": "SIGFPE", "aborted": "SIGABRT",
                "killed": "SIGKILL"}


def signal_name(number: int) -> str | None:
    """Linux signal number -> name (SIGILL for 4); None for numbers kvfit does not name."""
    return next((k for k, v in _SIGNAL_NUMBERS.items() if v == number), None)


RX_OOM = R(r"\b(CUDA|HIP|XPU|NPU|MPS)? ?out of memory", re.IGNORECASE)
RX_OOM_TRIED = R(r"Tried to allocate (" + _FLOAT + r")\s*(KiB|MiB|GiB|TiB|B)\b")
RX_OOM_NEW = R(
    r"GPU (\d+) has a total capacity of (" + _FLOAT + r")\s*(KiB|MiB|GiB) of which (" + _FLOAT
    + r")\s*(KiB|MiB|GiB|B) is free"
)
RX_OOM_PROC = R(r"this process has (" + _FLOAT + r")\s*(KiB|MiB|GiB) memory in use")
RX_OOM_ALLOC = R(
    r"Of the allocated memory (" + _FLOAT + r")\s*(KiB|MiB|GiB) is allocated by PyTorch, and (" + _FLOAT
    + r")\s*(KiB|MiB|GiB) is reserved by PyTorch but unallocated"
)
RX_OOM_OLD = R(
    r"\(GPU (\d+); (" + _FLOAT + r")\s*(KiB|MiB|GiB) total capacity; (" + _FLOAT + r")\s*(KiB|MiB|GiB) already allocated; ("
    + _FLOAT + r")\s*(KiB|MiB|GiB|B) free;(?: (" + _FLOAT + r")\s*(KiB|MiB|GiB) allowed;)? (" + _FLOAT
    + r")\s*(KiB|MiB|GiB) reserved in total by PyTorch"
)
RX_OOM_SAMPLER = R(
    r"CUDA out of memory occurred when warming up (sampler|the pooler)(?: with (" + _INT + r") dummy requests)?"
)

# env vars people set thinking vLLM reads them
RX_ENV_UTIL = R(r"(?<![A-Za-z0-9_])((?:VLLM_)?GPU_MEMORY_UTILIZATION)\b(?:\s*[=:]\s*[\"']?(" + _FLOAT + r"))?")
RX_ENV_ASSIGN = R(r"(?<![A-Za-z0-9_\-])(VLLM_[A-Z0-9_]+)\s*=\s*([^\s\"']+|\"[^\"]*\"|'[^']*')")
RX_ENV_YAML = R(r"name:\s*[\"']?((?:VLLM_)?GPU_MEMORY_UTILIZATION)[\"']?")

RX_WARNING = R(
    r"\bWARNING\b(?:\s+\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?)?\s*(?:\[[^\]]*\]|\S+\.py:\d+\])?\s*(.+)"
)

# traceback frames and phase markers
RX_FRAME = R(r'File "[^"]*", line \d+, in (\S+)')
RX_TRACEBACK = R(r"Traceback \(most recent call last\)")
RX_CMD = R(
    r"(?:^|[\s$>:])(?:vllm\s+serve\b|python3?(?:\.\d+)?\s+(?:-m\s+\S+|\S+\.py)|docker\s+run\b|"
    r"(?:uv\s+run\s+)?vllm\s+(?:bench|run-batch)\b)"
)

# --------------------------------------------------------------------------------------------------
# CLI flags

_FLAG_ALIASES = {
    "tp": "tensor_parallel_size",
    "pp": "pipeline_parallel_size",
    "dp": "data_parallel_size",
    "q": "quantization",
    "O": "compilation_config",
}
_BOOL_FLAGS = {
    "trust_remote_code",
    "enforce_eager",
    "enable_prefix_caching",
    "no_enable_prefix_caching",
    "enable_chunked_prefill",
    "no_enable_chunked_prefill",
    "disable_log_stats",
    "disable_log_requests",
    "enable_lora",
    "disable_custom_all_reduce",
    "skip_tokenizer_init",
    "enable_auto_tool_choice",
    "disable_sliding_window",
    "skip_mm_profiling",
    "async_scheduling",
    "no_async_scheduling",
    "enable_expert_parallel",
    "disable_frontend_multiprocessing",
    "rm",
    "it",
    "d",
    "detach",
    "privileged",
    "interactive",
    "tty",
}


def _parse_command(cmd: str) -> tuple[dict[str, str | bool], str | None, dict[str, str]]:
    """Return (flags, positional model, env assignments) of a shell command line."""
    try:
        toks = shlex.split(cmd, comments=False, posix=True)
    except ValueError:
        toks = cmd.split()
    flags: dict[str, str | bool] = {}
    env: dict[str, str] = {}
    positional_model: str | None = None
    after_serve = False
    is_docker = False
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "docker":
            is_docker = True
        if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", t):
            k, v = t.split("=", 1)
            env[k] = v
            i += 1
            continue
        if t in ("-e", "--env") and i + 1 < len(toks) and "=" in toks[i + 1]:
            k, v = toks[i + 1].split("=", 1)
            env[k] = v
            i += 2
            continue
        if t.startswith("-") and len(t) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", t):
            name = t.lstrip("-")
            val: str | bool | None = None
            if "=" in name:
                name, val = name.split("=", 1)
            name = _FLAG_ALIASES.get(name, name).replace("-", "_")
            if val is None:
                nxt = toks[i + 1] if i + 1 < len(toks) else None
                if (
                    name not in _BOOL_FLAGS
                    and nxt is not None
                    and (not nxt.startswith("-") or re.fullmatch(r"-\d+(\.\d+)?", nxt))
                ):
                    val = nxt
                    i += 1
                else:
                    val = True
            flags[name] = val
            i += 1
            continue
        if t == "serve" and i > 0 and toks[i - 1].endswith("vllm"):
            after_serve = True
        elif after_serve and positional_model is None and not is_docker:
            positional_model = t
        i += 1
    return flags, positional_model, env


# --------------------------------------------------------------------------------------------------
# parser


class _Collector:
    def __init__(self) -> None:
        self.facts = LogFacts()
        self._line_set: set[str] = set()

    def set(self, name: str, value: Any, line: str, *, overwrite: bool = False) -> None:
        if value is None:
            return
        f = self.facts
        f.all_values.setdefault(name, []).append(value)
        if overwrite or getattr(f, name) is None:
            setattr(f, name, value)
        self.keep(line)

    def take(self, rx: re.Pattern[str], line: str, *names: str | None, conv: Any = _f) -> re.Match[str] | None:
        """Search ``line`` with ``rx``; set group i's value (through ``conv``) as fact ``names[i-1]``."""
        m = rx.search(line)
        if m:
            for group, name in enumerate(names, 1):
                if name and m.group(group) is not None:
                    self.set(name, conv(m.group(group)), line)
        return m

    def keep(self, line: str) -> None:
        if line not in self._line_set:
            self._line_set.add(line)
            self.facts.lines.append(line)

    def setting(self, key: str, value: Any, line: str) -> None:
        if value is None:
            return
        self.facts.settings.setdefault(key, value)
        self.keep(line)


def _coerce_setting(key: str, raw: Any) -> Any:
    if isinstance(raw, bool) or raw is None:
        return raw
    s = str(raw).strip().strip("'\"")
    if key in ("max_model_len", "max_num_batched_tokens", "kv_cache_memory_bytes"):
        if s.lower() in ("auto", "-1"):
            return "auto" if key == "max_model_len" else s
        v = _human_int(s)
        return v if v is not None else s
    if key in (
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        "decode_context_parallel_size",
        "max_num_seqs",
        "block_size",
        "num_gpu_blocks_override",
        "max_seq_len_to_capture",
        "max_cudagraph_capture_size",
    ):
        try:
            return int(float(s))
        except ValueError:
            return s
    if key in ("gpu_memory_utilization", "cpu_offload_gb", "swap_space"):
        try:
            return float(s)
        except ValueError:
            return s
    if s in ("True", "true"):
        return True
    if s in ("False", "false"):
        return False
    if s == "None":
        return None
    return s


_SETTING_KEYS = {
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "decode_context_parallel_size",
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "enforce_eager",
    "kv_cache_dtype",
    "dtype",
    "quantization",
    "enable_chunked_prefill",
    "enable_prefix_caching",
    "cpu_offload_gb",
    "kv_cache_memory_bytes",
    "num_gpu_blocks_override",
    "device",
    "swap_space",
    "max_seq_len_to_capture",
    "trust_remote_code",
    "model",
}


def _apply_settings(c: _Collector, items: dict[str, Any], line: str) -> None:
    for k, raw in items.items():
        key = k.replace("-", "_")
        if key == "max_seq_len":
            key = "max_model_len"
        if key == "chunked_prefill_enabled":
            key = "enable_chunked_prefill"
        if key == "no_enable_prefix_caching" and raw is True:
            key, raw = "enable_prefix_caching", False
        if key == "no_enable_chunked_prefill" and raw is True:
            key, raw = "enable_chunked_prefill", False
        if key not in _SETTING_KEYS:
            continue
        val = _coerce_setting(key, raw)
        if key == "model":
            if isinstance(val, str) and val:
                c.set("model", val, line)
            continue
        c.setting(key, val, line)


def _parse_config_line(c: _Collector, line: str) -> None:
    """'Initializing ... with config: model='x', ..., max_seq_len=8192, tensor_parallel_size=1, ...'"""
    items: dict[str, Any] = {}
    for m in re.finditer(r"\b(\w+)=('(?:[^']*)'|[^,\s)]+)", line.split("with config:", 1)[-1]):
        items.setdefault(m.group(1), m.group(2).strip("'"))
    _apply_settings(c, items, line)


def _parse_nondefault(c: _Collector, line: str, blob: str) -> None:
    items: dict[str, Any]
    try:
        items = ast.literal_eval(blob)
        if not isinstance(items, dict):
            raise ValueError
    except Exception:
        items = {}
        for m in re.finditer(r"'(\w+)':\s*('(?:[^']*)'|[^,}]+)", blob):
            items[m.group(1)] = m.group(2).strip().strip("'")
    _apply_settings(c, {str(k): v for k, v in items.items()}, line)


def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for ln in lines:
        if ln.endswith("\\"):
            buf += ln[:-1] + " "
            continue
        out.append(buf + ln if buf else ln)
        buf = ""
    if buf:
        out.append(buf)
    return out


def _phase_from_frames(frames: list[str]) -> str | None:
    names = [f.lower() for f in frames]
    if any("sampler" in n or "pooler" in n for n in names):
        return "sampling"
    if any("capture" in n or "cudagraph" in n for n in names):
        return "graph_capture"
    if any(n in ("load_model", "load_weights", "_load_model", "get_model") or n.startswith("load_model") for n in names):
        return "loading"
    if any(
        n in ("profile_run", "_dummy_run", "determine_available_memory", "determine_num_available_blocks")
        or "profile" in n
        for n in names
    ):
        return "profiling"
    return None


def _phase_from_markers(lines: list[str], upto: int) -> str | None:
    for ln in reversed(lines[max(0, upto - 400) : upto]):
        low = ln.lower()
        if "warming up sampler" in low or "dummy_sampler" in low:
            return "sampling"
        if RX_INIT_DONE.search(ln):
            return None
        if (
            "capturing" in low
            or "graph capturing" in low
            or "cuda graph" in low
            or "cudagraph" in low
            or "available kv cache memory" in low
            or "kv cache size:" in low
            or RX_BLOCKS.search(ln)
        ):
            return "graph_capture"
        if "model loading took" in low or "loading model weights took" in low or "memory profiling" in low:
            return "profiling"
        if (
            "starting to load model" in low
            or "loading weights" in low
            or "loading safetensors" in low
            or "loading pt checkpoint" in low
            or "load weights" in low
        ):
            return "loading"
    return None


def _oom_phase(lines: list[str], idx: int) -> str | None:
    # frames of the traceback that ends at this line (from the nearest "Traceback" header above it)
    start = None
    for j in range(idx, max(-1, idx - 400), -1):
        if RX_TRACEBACK.search(lines[j]):
            start = j
            break
    frames: list[str] = []
    if start is not None:
        for ln in lines[start:idx + 1]:
            m = RX_FRAME.search(ln)
            if m:
                frames.append(m.group(1))
    phase = _phase_from_frames(frames)
    if phase is None:
        phase = _phase_from_markers(lines, idx)
    return phase


_PHASE_RANK = {"sampling": 4, "graph_capture": 3, "loading": 2, "profiling": 1, None: 0}


def engine_phase(lines: list[str], upto: int | None = None) -> str | None:
    """The start-up phase an engine was in at line `upto` (default: the end), from vLLM's progress lines:
    "Starting to load model" (load), "Model loading took" (profile), the KV budget ("Available KV cache
    memory", the CPU backend's "GiB for KV cache on node") (KV sizing), the capacity line ("KV cache size:
    N tokens") (warm-up: CUDA graphs, the dummy sampler run), "init engine (profile, create kv cache, warmup
    model) took" (generate: the engine serves requests). None: no progress line seen."""
    end = len(lines) if upto is None else upto
    phase = None
    for ln in lines[:end]:
        low = ln.lower()
        if RX_INIT_DONE.search(ln):
            phase = "generate"
        elif RX_KV_SIZE.search(ln) or RX_CONCURRENCY.search(ln) or "graph capturing" in low:
            phase = "warm-up" if phase != "generate" else phase
        elif RX_AVAILABLE_KV.search(ln) or RX_CPU_EXPLICIT.search(ln) or RX_CPU_AUTO.search(ln) \
                or RX_FREE_032.search(ln):
            phase = "KV sizing" if phase not in ("warm-up", "generate") else phase
        elif RX_LOAD_V1.search(ln) or RX_LOAD_V0.search(ln):
            phase = "profile" if phase in (None, "load") else phase
        elif RX_START_LOAD.search(ln):
            phase = "load" if phase is None else phase
    return phase


def _phase_from_fault_frames(names: list[str]) -> str | None:
    """The phase a faulthandler / traceback stack shows (callers first or last, any order)."""
    low = [n.lower() for n in names]
    if any(n in ("load_model", "load_weights", "_load_model", "get_model") for n in low):
        return "load"
    if any(n in ("profile_run", "determine_available_memory", "_dummy_sampler_run") or n.startswith("profile")
           for n in low):
        return "profile"
    if any(n in ("initialize_kv_cache", "initialize_from_config", "get_kv_cache_configs", "_initialize_kv_caches",
                 "allocate_kv_cache", "_allocate_kv_cache_tensors", "initialize_kv_cache_tensors") for n in low):
        return "KV sizing"
    if any(n in ("compile_or_warm_up_model", "capture_model", "_dummy_run", "warming_up_model") for n in low):
        return "warm-up"
    if any(n in ("execute_model", "sample_tokens", "step", "step_with_batch_queue") for n in low):
        return "generate"
    return None


def _fault_stack(lines: list[str], idx: int) -> tuple[str | None, list[str]]:
    """After faulthandler's "Fatal Python error" at idx: (innermost frame "func (file.py:N)", all frame names)."""
    frames: list[tuple[str, str, str]] = []
    block = lines[idx + 1: idx + 400]
    # several threads: "Thread 0x... (most recent call first):" blocks, the faulting one is "Current thread"
    start = next((i + 1 for i, ln in enumerate(block) if _strip_prefix(ln).startswith("Current thread")), None)
    if start is None:
        start = next((i + 1 for i, ln in enumerate(block) if "(most recent call first)" in ln), 0)
    for ln in block[start:]:
        m = RX_FAULT_FRAME.search(_strip_prefix(ln))
        if m:
            frames.append((m.group(1), m.group(2), m.group(3)))
        elif frames:
            break
    if not frames:
        return None, []
    # the innermost frame outside torch's dispatch layers names the kernel (vllm/_custom_ops.py, a model file)
    path, line_no, func = next((f for f in frames if "/torch/" not in f[0]), frames[0])
    return f"{func} ({path.rsplit('/', 1)[-1]}:{line_no})", [f[2] for f in frames]


_PREFIX = R(r"^\((?:[\w\-]+ )?pid=\d+\)\s*")


def _strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line)


def _exit_signal(code: str | int | None) -> str | None:
    try:
        n = int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return signal_name(-n) if n < 0 else None


def _parse_death(c: _Collector, lines: list[str]) -> None:
    """One ``engine_died`` error from every sign of a dead engine process in the log (see LogError)."""
    nums: dict[str, float | int] = {}
    labels: dict[str, str] = {}
    where: int | None = None
    first_line = ""
    dead_engine = False

    def note(idx: int, line: str, evidence: str) -> None:
        nonlocal where, first_line
        if where is None:
            where, first_line = idx, line
        labels.setdefault("evidence", evidence)
        c.keep(line)

    frame_names: list[str] = []
    for idx, line in enumerate(lines):
        m = RX_FAULTHANDLER.search(line)
        if m:
            labels.setdefault("signal", _SIGNAL_TEXT[m.group(1).lower()])
            frame, frame_names = _fault_stack(lines, idx)
            if frame:
                labels.setdefault("frame", frame)
            note(idx, line, "Python's faulthandler")
            continue
        m = RX_WORKER_DIED.search(line) or RX_PROC_DIED.search(line)
        if m:
            labels.setdefault("process", m.group(1))
            sig = _exit_signal(m.group(2))
            if m.group(2) not in ("None", None):
                nums.setdefault("exit_code", int(m.group(2)))
            if sig:
                labels.setdefault("signal", sig)
            if sig or m.group(2) in ("None", None):      # a clean non-zero exit is not a death by signal
                note(idx, line, "vLLM's process monitor")
            continue
        m = RX_CORE_DIED.search(line)
        if m:
            labels.setdefault("process", m.group(1))
            note(idx, line, "vLLM's process monitor")
            continue
        m = RX_CORE_INIT_FAILED.search(line)
        if m:
            for name, code in re.findall(r"'([^']+)':\s*(-?\d+)", m.group(1)):
                sig = _exit_signal(code)
                if sig:
                    labels.setdefault("process", name)
                    labels.setdefault("signal", sig)
                    nums.setdefault("exit_code", int(code))
                    note(idx, line, "vLLM's process monitor")
            continue
        m = RX_SHELL_SIGNAL.search(line.strip())
        if m:
            labels.setdefault("signal", _SIGNAL_TEXT[m.group(1).lower()])
            note(idx, line, "the shell")
            continue
        m = RX_EXITED_CODE.search(line)
        if m and 128 < int(m.group(1)) < 160 and signal_name(int(m.group(1)) - 128):
            labels.setdefault("signal", signal_name(int(m.group(1)) - 128) or "")
            nums.setdefault("exit_code", int(m.group(1)))
            note(idx, line, "exit code 128 + signal")
            continue
        if RX_CORE_EXITED.search(line) or RX_ENGINE_DEAD.search(line) or RX_CORE_FATAL.search(line):
            if not dead_engine:
                c.keep(line)
            dead_engine = True
            if RX_CORE_FATAL.search(line) and "exception" not in labels:
                for later in lines[idx + 1: idx + 200]:
                    mm = RX_EXCEPTION_LINE.search(_strip_prefix(later).split("] ", 1)[-1].strip())
                    if mm:
                        labels["exception"] = f"{mm.group(1)}: {mm.group(2)}".strip()
                        break
            if where is None and labels.get("signal") is None:
                first_line = first_line or line
    signal_known = "signal" in labels
    if not (signal_known or where is not None or dead_engine):
        return
    if not signal_known and any(e.kind != "engine_died" for e in c.facts.errors):
        # EngineDeadError, or a worker gone without an exit code, after an error kvfit explains (an OOM, vLLM's
        # KV check): that error is the cause, the rest is the executor shutting down
        return
    if where is None:
        where = next((i for i, ln in enumerate(lines) if RX_ENGINE_DEAD.search(ln) or RX_CORE_FATAL.search(ln)
                      or RX_CORE_EXITED.search(ln)), len(lines))
        labels.setdefault("evidence", "EngineDeadError")
    phase = _phase_from_fault_frames(frame_names) if frame_names else None
    marker_phase = engine_phase(lines, where)
    if phase is None or (phase == "generate" and marker_phase not in (None, "generate")):
        phase = marker_phase          # the stack alone cannot tell serving from start-up steps
    if (signal_known or "process" in labels) and labels.get("exception", "").startswith("RuntimeError: cancelled"):
        labels.pop("exception")    # the executor's own message once a worker is gone
    c.facts.errors.append(LogError("engine_died", nums, first_line or lines[where] if where < len(lines) else first_line,
                                   phase=phase, labels=labels))


def _parse_errors(c: _Collector, lines: list[str]) -> None:
    errors: list[LogError] = []
    for idx, line in enumerate(lines):
        m = RX_ERR_V0.search(line)
        if m:
            errors.append(
                LogError("v0_max_seq_len", {"max_model_len": _i(m.group(1)), "kv_tokens": _i(m.group(2))}, line)
            )
            continue
        m = RX_ERR_V1.search(line)
        if m:
            nums: dict[str, float | int] = {
                "max_model_len": _i(m.group(1)),
                "needed_gib": _f(m.group(2)),
                "available_gib": _f(m.group(4)),
            }
            est = RX_ERR_V1_EST.search(line)
            if est is None and idx + 1 < len(lines):
                est = RX_ERR_V1_EST.search(lines[idx + 1])
            if est:
                nums["estimated_max_len"] = _i(est.group(1))
            errors.append(LogError("v1_max_seq_len", nums, line, labels={"unit": m.group(3)}))
            continue
        m = RX_ERR_FREE.search(line)
        if m:
            labels = {"device": m.group(1)} if m.group(1) else {}
            errors.append(
                LogError(
                    "free_memory_startup",
                    {
                        "free_gib": _f(m.group(2)),
                        "total_gib": _f(m.group(3)),
                        "utilization": _f(m.group(4)),
                        "requested_gib": _f(m.group(5)),
                    },
                    line,
                    labels=labels,
                )
            )
            continue
        m = RX_ERR_USER_LEN.search(line)
        if m:
            nums = {"max_model_len": _i(m.group(1))}
            if m.group(3) != "None":
                nums["derived_max_len"] = int(_f(m.group(3)))
            if m.group(4) and m.group(4) != "None":
                nums["model_max_length"] = int(_f(m.group(4)))
            errors.append(LogError("user_max_len_too_long", nums, line, labels={"derived_key": m.group(2)}))
            continue
        if RX_ERR_AUTOFIT.search(line):
            errors.append(LogError("cannot_autofit", {}, line))
            continue
        if RX_ERR_NO_MEM.search(line):
            errors.append(LogError("no_cache_memory", {}, line))
            continue
        m = RX_ERR_PROFILE_FREE.search(line)
        if m:
            errors.append(
                LogError(
                    "profiling_memory_changed",
                    {"initial_free_gib": _f(m.group(1)), "current_free_gib": _f(m.group(2))},
                    line,
                )
            )
            continue
        m = RX_OOM_SAMPLER.search(line)
        if m:
            nums = {}
            if m.group(2):
                nums["dummy_requests"] = _i(m.group(2))
            errors.append(LogError("cuda_oom", nums, line, phase="sampling"))
            continue
        if RX_OOM.search(line) and (
            "Tried to allocate" in line
            or "OutOfMemoryError" in line
            or re.search(r"\b(?:CUDA|HIP|XPU)\s+out of memory", line, re.IGNORECASE)
        ):
            if "out of memory" not in line.lower():
                continue
            nums = {}
            mm = RX_OOM_TRIED.search(line)
            if mm:
                nums["tried_alloc_gib"] = _to_gib(_f(mm.group(1)), mm.group(2))
            mm = RX_OOM_NEW.search(line)
            if mm:
                nums["gpu_index"] = int(mm.group(1))
                nums["total_capacity_gib"] = _to_gib(_f(mm.group(2)), mm.group(3))
                nums["free_gib"] = _to_gib(_f(mm.group(4)), mm.group(5))
            mm = RX_OOM_PROC.search(line)
            if mm:
                nums["process_in_use_gib"] = _to_gib(_f(mm.group(1)), mm.group(2))
            mm = RX_OOM_ALLOC.search(line)
            if mm:
                nums["allocated_by_pytorch_gib"] = _to_gib(_f(mm.group(1)), mm.group(2))
                nums["reserved_unallocated_gib"] = _to_gib(_f(mm.group(3)), mm.group(4))
            mm = RX_OOM_OLD.search(line)
            if mm:
                nums["gpu_index"] = int(mm.group(1))
                nums["total_capacity_gib"] = _to_gib(_f(mm.group(2)), mm.group(3))
                nums["already_allocated_gib"] = _to_gib(_f(mm.group(4)), mm.group(5))
                nums["free_gib"] = _to_gib(_f(mm.group(6)), mm.group(7))
                nums["reserved_gib"] = _to_gib(_f(mm.group(10)), mm.group(11))
            errors.append(LogError("cuda_oom", nums, line, phase=_oom_phase(lines, idx)))
    # collapse repeats (the same error is printed by the worker, the engine core and the API server)
    out: list[LogError] = []
    seen: set[tuple] = set()
    oom: LogError | None = None
    for e in errors:
        if e.kind == "cuda_oom":
            if oom is None:
                oom = e
                out.append(e)
            else:  # merge chained OOM reports into one
                for k, v in e.numbers.items():
                    oom.numbers.setdefault(k, v)
                if _PHASE_RANK[e.phase] > _PHASE_RANK[oom.phase]:
                    oom.phase = e.phase
            c.keep(e.line)
            continue
        key = (e.kind, tuple(sorted(e.numbers.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
        c.keep(e.line)
    c.facts.errors = out


def parse_log(text: str) -> LogFacts:
    """Parse any vLLM log / traceback text into :class:`LogFacts`."""
    c = _Collector()
    f = c.facts
    lines = _clean_lines(text)
    engine_hint_v0 = engine_hint_v1 = False
    explicit_engine: str | None = None
    strong_v1 = False
    mml_from_errors: int | None = None

    for line in _join_continuations(lines):
        if not line.strip():
            continue

        # ---- commands pasted along with the log
        if RX_CMD.search(line) and not re.search(r"\b(INFO|WARNING|ERROR|DEBUG)\b", line):
            flags, pos_model, env = _parse_command(line)
            _apply_settings(c, dict(flags), line)
            if pos_model and not f.model:
                c.set("model", pos_model, line)
            for k, v in env.items():
                if k.startswith("VLLM_") or k.endswith("GPU_MEMORY_UTILIZATION"):
                    f.env.setdefault(k, v)
            c.keep(line)

        # ---- env vars (export X=..., -e X=..., yaml "name: X")
        if RX_CMD.search(line) or re.search(r"^\W*(?:export|set|ENV|env)\b|\s-e\s", line):
            for m in RX_ENV_ASSIGN.finditer(line):
                f.env.setdefault(m.group(1), m.group(2).strip("'\""))
        for m in RX_ENV_UTIL.finditer(line):
            if m.group(2) is not None or RX_ENV_YAML.search(line) or re.search(r"\b(export|set|env)\b", line):
                f.env.setdefault(m.group(1), m.group(2))
                c.keep(line)

        # ---- vLLM's own warnings (message text without the prefix)
        m = RX_WARNING.search(line)
        if m and m.group(1).strip() and m.group(1).strip() not in f.warnings:
            f.warnings.append(m.group(1).strip())

        # ---- version / engine / model
        m = RX_ENGINE_INIT.search(line)
        if m:
            if m.group(1):
                explicit_engine = explicit_engine or m.group(1)
            else:
                engine_hint_v0 = True  # "Initializing an LLM engine" is the old V0 wording
            if m.group(2):
                c.set("vllm_version", m.group(2), line)
            _parse_config_line(c, line)
        m = RX_API_VERSION.search(line) or RX_VLLM_VERSION.search(line)
        if m:
            c.set("vllm_version", m.group(1), line)
        m = RX_NONDEFAULT.search(line)
        if m:
            _parse_nondefault(c, line, m.group(1))
        m = RX_START_LOAD.search(line)
        if m:
            c.set("model", m.group(1), line)
        if RX_ENV_LINE.search(line):
            engine_hint_v1 = True
            strong_v1 = True
        if RX_CPU_HINT.search(line):
            c.set("device_label", "CPU", line)
        if re.search(r"\[(?:worker|gpu_executor|distributed_gpu_executor|executor_base|ray_gpu_executor)\.py|"
                     r"\s(?:worker|gpu_executor|distributed_gpu_executor|executor_base)\.py:\d+\]", line):
            engine_hint_v0 = True
        if "Falling back to V0" in line:
            explicit_engine = explicit_engine or "V0"

        # ---- settings lines
        m = RX_USING_MAX_LEN.search(line)
        if m:
            c.setting("max_model_len", _i(m.group(1)), line)
        m = RX_CHUNKED.search(line)
        if m:
            c.setting("max_num_batched_tokens", _i(m.group(1)), line)
            c.setting("enable_chunked_prefill", True, line)
        m = RX_BLOCK_SIZE_SET.search(line)
        if m:
            c.set("block_size", int(m.group(1)), line, overwrite=True)
        m = RX_AUTOFIT_REDUCED.search(line)
        if m:
            f.auto_fit = {"from": _i(m.group(1)), "to": _i(m.group(2))}
            c.keep(line)
        m = RX_AUTOFIT_FULL.search(line)
        if m:
            f.auto_fit = {"full": _i(m.group(1))}
            c.keep(line)

        # ---- memory
        m = RX_LOAD_V1.search(line) or RX_LOAD_V0.search(line)
        if m:
            c.set("model_loading_gib", _to_gib(_f(m.group(1)), m.group(2)), line)
            if RX_LOAD_V0.search(line):  # "Loading model weights took" is V0-only wording
                engine_hint_v0 = True
        m = RX_PROFILE_ONELINE.search(line)
        if m:
            engine_hint_v0 = True
            pairs = {k: _to_gib(_f(v), u) if u else _f(v) for k, v, u in RX_KV_PAIR.findall(m.group(1))}
            c.set("total_gpu_memory_gib", pairs.get("total_gpu_memory"), line)
            c.set("initial_memory_usage_gib", pairs.get("initial_memory_usage"), line)
            c.set("peak_torch_memory_gib", pairs.get("peak_torch_memory"), line)
            c.set("non_torch_memory_gib", pairs.get("non_torch_memory"), line)
            c.set("available_kv_gib", pairs.get("kv_cache_size"), line)
            c.set("gpu_memory_utilization", pairs.get("gpu_memory_utilization"), line)
        else:
            if c.take(RX_CAN_USE, line, "total_gpu_memory_gib", "gpu_memory_utilization", "requested_memory_gib"):
                engine_hint_v0 = True
            else:
                c.take(RX_CAN_USE_TABLE, line, "requested_memory_gib")
            c.take(RX_TOTAL_TABLE, line, "total_gpu_memory_gib")
            c.take(RX_UTIL_TABLE, line, "gpu_memory_utilization")
            if c.take(RX_WEIGHTS_TAKE, line, "model_weights_gib"):
                engine_hint_v0 = True
            m = RX_NON_TORCH.search(line) or RX_NON_TORCH_FWD.search(line)
            if m:
                c.set("non_torch_memory_gib", _f(m.group(1)), line)
            c.take(RX_ACT_PEAK, line, "activation_peak_gib")
            m = RX_KV_REST.search(line) or RX_KV_TABLE.search(line)
            if m:
                c.set("available_kv_gib", _f(m.group(1)), line)
        if c.take(RX_AVAILABLE_KV, line, "available_kv_gib"):
            engine_hint_v1 = True
        c.take(RX_KV_BYTES_OVERRIDE, line, "free_gpu_memory_gib", "available_kv_gib")
        c.take(RX_DEBUG_INITIAL, line, "free_gpu_memory_gib", "gpu_memory_utilization", "requested_memory_gib")
        m = RX_DEBUG_PROFILE.search(line)
        if m:
            c.set("non_kv_cache_memory_gib", _f(m.group(1)), line)
            c.take(RX_DEBUG_TORCH_PEAK, line, "activation_peak_gib")
            c.take(RX_DEBUG_CONSUMED, line, "consumed_memory_gib")
            c.take(RX_DEBUG_WEIGHTS, line, "model_weights_gib")
        m = RX_FREE_032.search(line)
        if m:
            engine_hint_v1 = True
            c.set("free_gpu_memory_gib", _f(m.group(1)), line)
            c.set("total_gpu_memory_gib", _f(m.group(2)), line)
            c.set("gpu_memory_utilization", _f(m.group(3)), line)
            c.set("requested_memory_gib", _f(m.group(4)), line)
            c.take(RX_FREE_032_USAGE, line, "consumed_memory_gib", "activation_peak_gib", "cuda_graph_gib")
            mm = RX_FREE_032_SUGGEST.search(line)
            if mm:
                f.settings.setdefault("suggested_kv_cache_memory_bytes_fit", int(mm.group(1)))
                f.settings.setdefault("suggested_kv_cache_memory_bytes_full", int(mm.group(3)))
            c.take(RX_FREE_032_CURRENT, line, "available_kv_gib")
        c.take(RX_CG_ESTIMATED, line, "cuda_graph_estimate_gib")
        c.take(RX_CG_POOL, line, "cuda_graph_gib", "cuda_graph_estimate_gib")
        m = RX_CG_PROFILE_UTIL.search(line)
        if m:
            c.set("gpu_memory_utilization", _f(m.group(1)), line)
            f.settings.setdefault("equivalent_utilization_without_cg_profiling", _f(m.group(2)))
        m = RX_GRAPH_CAPTURE.search(line)
        if m:
            c.set("cuda_graph_gib", _to_gib(_f(m.group(2)), m.group(3)), line)
        m = RX_CPU_EXPLICIT.search(line)
        if m:
            engine_hint_v1 = True
            c.set("device_label", "CPU", line)
            c.set("available_kv_gib", _f(m.group(1)), line)
            f.settings.setdefault("cpu_node_memory_gib", _f(m.group(2)))
        m = RX_CPU_AUTO.search(line)
        if m:
            engine_hint_v1 = True
            c.set("device_label", "CPU", line)
            c.set("available_kv_gib", _f(m.group(1)), line)
            f.settings.setdefault("cpu_node_memory_gib", _f(m.group(2)))
            if m.group(4):
                c.set("requested_memory_gib", _f(m.group(4)), line)
                c.set("consumed_memory_gib", _f(m.group(5)), line)

        # ---- capacity
        m = RX_BLOCKS.search(line)
        if m and m.group(1).upper() != "CPU" and "KV cache size" not in line:
            engine_hint_v0 = True
            c.set("num_gpu_blocks", _i(m.group(2)), line)
            if m.group(3):
                c.set("num_cpu_blocks", _i(m.group(3)), line)
        m = RX_KV_SIZE.search(line)
        if m:
            engine_hint_v1 = True
            label = m.group(1).strip().split()[-1] if m.group(1).strip() else m.group(1)
            label = "GPU" if m.group(1).strip().startswith("GPU") else label
            c.set("device_label", label, line)
            c.set("kv_cache_tokens", _i(m.group(2)), line)
            f.startup_complete = True
        m = RX_CONCURRENCY.search(line)
        if m:
            c.set("max_concurrency_len", _i(m.group(1)), line)
            c.set("max_concurrency", float(m.group(2)), line)
            f.startup_complete = True
        if RX_INIT_DONE.search(line):
            f.startup_complete = True
            engine_hint_v1 = True
            c.keep(line)

    _parse_errors(c, lines)
    _parse_death(c, lines)
    for e in f.errors:
        if e.kind == "v0_max_seq_len":
            engine_hint_v0 = True
        elif e.kind in ("v1_max_seq_len", "free_memory_startup", "cannot_autofit"):
            engine_hint_v1 = True
        if "max_model_len" in e.numbers and e.kind != "user_max_len_too_long" and mml_from_errors is None:
            mml_from_errors = int(e.numbers["max_model_len"])

    # ---- engine
    if explicit_engine:
        f.engine = explicit_engine
    elif engine_hint_v1 and not engine_hint_v0:
        f.engine = "V1"
    elif engine_hint_v0 and not engine_hint_v1:
        f.engine = "V0"
    elif engine_hint_v0 and engine_hint_v1:
        f.engine = "V1" if (strong_v1 or f.kv_cache_tokens is not None or f.device_label) else "V0"

    # ---- settings -> top-level facts
    s = f.settings
    if f.auto_fit and "to" in f.auto_fit:
        f.max_model_len = int(f.auto_fit["to"])
    elif isinstance(s.get("max_model_len"), int) and s["max_model_len"] > 0:
        f.max_model_len = s["max_model_len"]
    elif f.auto_fit and "full" in f.auto_fit:
        f.max_model_len = int(f.auto_fit["full"])
    elif mml_from_errors is not None:
        f.max_model_len = mml_from_errors
    elif f.max_concurrency_len is not None:
        f.max_model_len = f.max_concurrency_len
    if f.gpu_memory_utilization is None and isinstance(s.get("gpu_memory_utilization"), float):
        f.gpu_memory_utilization = s["gpu_memory_utilization"]
    if isinstance(s.get("tensor_parallel_size"), int):
        f.tensor_parallel_size = s["tensor_parallel_size"]
    if isinstance(s.get("pipeline_parallel_size"), int):
        f.pipeline_parallel_size = s["pipeline_parallel_size"]
    if f.block_size is None and isinstance(s.get("block_size"), int):
        f.block_size = s["block_size"]
    for e in f.errors:
        if e.kind == "free_memory_startup":
            if f.total_gpu_memory_gib is None:
                f.total_gpu_memory_gib = float(e.numbers["total_gib"])
            if f.free_gpu_memory_gib is None:
                f.free_gpu_memory_gib = float(e.numbers["free_gib"])
            if f.gpu_memory_utilization is None:
                f.gpu_memory_utilization = float(e.numbers["utilization"])
            if f.requested_memory_gib is None:
                f.requested_memory_gib = float(e.numbers["requested_gib"])
        if e.kind == "cuda_oom" and f.total_gpu_memory_gib is None and "total_capacity_gib" in e.numbers:
            f.total_gpu_memory_gib = round(float(e.numbers["total_capacity_gib"]), 2)
            f.derived.append("total_gpu_memory_gib")

    # total from the printed budget when only "Requested memory: U (util), R GiB" was logged
    if (
        f.total_gpu_memory_gib is None
        and f.requested_memory_gib is not None
        and f.gpu_memory_utilization
    ):
        f.total_gpu_memory_gib = round(f.requested_memory_gib / f.gpu_memory_utilization, 2)
        f.derived.append("total_gpu_memory_gib")

    # weights: the profiling figure when printed, otherwise the loading figure
    if f.model_weights_gib is None and f.model_loading_gib is not None:
        f.model_weights_gib = f.model_loading_gib

    # V0 block size: from the V0 error (kv_tokens = block_size * num_gpu_blocks) when both are present
    if f.block_size is None and f.num_gpu_blocks:
        for e in f.errors:
            if e.kind == "v0_max_seq_len" and e.numbers["kv_tokens"] % f.num_gpu_blocks == 0:
                f.block_size = int(e.numbers["kv_tokens"]) // f.num_gpu_blocks
                f.derived.append("block_size")
                break

    # V0 token capacity: blocks x block_size (16 is the V0 default on every GPU backend)
    if f.kv_cache_tokens is None:
        for e in f.errors:
            if e.kind == "v0_max_seq_len":
                f.kv_cache_tokens = int(e.numbers["kv_tokens"])
                break
    if f.kv_cache_tokens is None and f.num_gpu_blocks is not None:
        bs = f.block_size
        if bs is None and f.engine != "V1":
            bs = 16
            f.derived.append("block_size_assumed_16")
        if bs is not None:
            f.kv_cache_tokens = f.num_gpu_blocks * bs
            f.derived.append("kv_cache_tokens")
    return f
