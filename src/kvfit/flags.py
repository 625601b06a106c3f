"""THE flag table: every option kvfit takes, once.

For each flag: kvfit's spellings, the vLLM flag it mirrors (its launch key, the same name in a vLLM YAML
config, the keyword of `LLM(...)`), the field it sets (a Settings field for vLLM flags; the manifest field
is the same name), how a value is parsed (as vLLM parses it), its default and its help. Everything that
reads or writes flags is generated from this table:

* the command line (cli/main.py builds argparse from it; there is no second parser),
* the launch readers (a pasted `vllm serve` line, docker, YAML, Python, env: launch/engine_args.py maps
  each vLLM argument to its flag here and parses it with the same function),
* the manifest fields (app/manifest.py: a field is a flag's `dest`),
* the command writers (the recommended `vllm serve` line, every `--format`, explain's corrected launch:
  launch/write.py writes Settings back through `vllm_args`),
* the goal changes of the planner (`changed_flags`).

A vLLM flag kvfit knows reaches the evaluation on every path. A vLLM flag that changes GPU memory in a way
kvfit does not model is refused with exit 2 naming it (launch/grammar.py NOT_MODELLED), never dropped; flags
that do not touch GPU memory (--port, --served-model-name, ...) pass through untouched.

Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import BadFlag
from .kv.cpu_host import CPU_ISA_HELP, CPU_ISAS
from .settings import (DTYPES, KV_CACHE_DTYPES, LORA_RANKS, MAMBA_DTYPES, Settings)
from .units import parse_human_int, parse_max_model_len, parse_size

# --- value parsers: each takes what the user typed (a string from a command line, env or shell form; a
# typed value from YAML, Python or TOML) and returns the typed value, or raises BadFlag naming the flag.


def _bad(dest: str, message: str, hint: str | None = None) -> BadFlag:
    return BadFlag(message, hint, flag=dest)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def p_int(dest: str, flag: str, minimum: int = 1) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if _is_bool(v) or v is None:
            raise _bad(dest, f"{flag} must be a whole number, got {v!r}")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str):
            t = v.strip()
            body = t[1:] if t.startswith("-") else t
            if not (body.isascii() and body.isdigit()):
                raise _bad(dest, f"{flag} must be a whole number, got {v!r}")
            v = int(t)
        if not isinstance(v, int) or v < minimum:
            raise _bad(dest, f"{flag} must be a whole number >= {minimum}, got {v!r}")
        return v
    return parse


def p_human_int(dest: str, flag: str) -> Callable[[Any], int]:
    """vLLM's human_readable_int: 32k = 32000, 32K = 32768."""
    def parse(v: Any) -> int:
        if _is_bool(v) or v is None:
            raise _bad(dest, f"{flag} must be a whole number, got {v!r}")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        try:
            n = v if isinstance(v, int) else parse_human_int(str(v), flag)
        except BadFlag:
            raise
        except Exception as e:  # BadInput from units
            raise _bad(dest, getattr(e, "message", str(e)), getattr(e, "hint", None)) from None
        if n < 1:
            raise _bad(dest, f"{flag} must be >= 1, got {v!r}")
        return n
    return parse


def p_max_model_len(v: Any) -> int | None:
    if _is_bool(v) or v is None:
        raise _bad("max_model_len", f"--max-model-len must be a number, -1 or auto, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    try:
        return parse_max_model_len(str(v))
    except Exception as e:
        raise _bad("max_model_len", getattr(e, "message", str(e)), getattr(e, "hint", None)) from None


def p_float(dest: str, flag: str, lo: float, hi: float | None, lo_open: bool = True) -> Callable[[Any], float]:
    def parse(v: Any) -> float:
        if _is_bool(v) or v is None:
            raise _bad(dest, f"{flag} must be a number, got {v!r}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise _bad(dest, f"{flag} must be a number, got {v!r}") from None
        ok = math.isfinite(x) and (x > lo if lo_open else x >= lo) and (hi is None or x <= hi)
        if not ok:
            rng = f"({lo:g}, {hi:g}]" if hi is not None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
            raise _bad(dest, f"{flag} must be in {rng}, got {v!r}")
        return x
    return parse


def p_choice(dest: str, flag: str, choices) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            raise _bad(dest, f"{flag} {v!r} is not one of {', '.join(sorted(choices))}")
        return v
    return parse


def p_str(dest: str, flag: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise _bad(dest, f"{flag} needs a value, got {v!r}")
        return v.strip()
    return parse


def p_switch(dest: str, flag: str) -> Callable[[Any], bool]:
    """A vLLM boolean flag: present (True), `--no-...` (False), or true/false written out (YAML, env)."""
    def parse(v: Any) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return v.strip().lower() in ("true", "1", "yes", "on")
        raise _bad(dest, f"{flag} takes no value (or true/false), got {v!r}")
    return parse


def p_size(dest: str, flag: str, *, bare_bytes_from: int | None = None) -> Callable[[Any], int]:
    """A memory size. kvfit's own sizes (--gpu-memory, --max-vram) need a unit: a bare `24` is refused with
    a hint. vLLM's --kv-cache-memory-bytes takes bytes as vLLM does (human_readable_int: 4G = 4 GiB), but a
    bare number under 1 MiB is refused: no KV cache is that small."""
    def parse(v: Any) -> int:
        if _is_bool(v) or v is None:
            raise _bad(dest, f"{flag} must be a size such as 24GiB, got {v!r}")
        text = str(v).strip()
        bare = text.replace(".", "", 1).isdigit()
        if bare and (bare_bytes_from is None or float(text) < bare_bytes_from):
            n = text
            raise _bad(dest, f"{flag} {text}: a size needs a unit",
                       f"Did you mean {n}GiB or {n}GB? (GiB = 2^30 bytes, as CUDA counts; {n}B for bytes.)"
                       if bare_bytes_from is None else
                       f"{flag} is in bytes as vLLM reads it: {n} bytes is no KV cache. Did you mean {n}GiB?")
        try:
            return parse_size(text, flag)
        except Exception as e:
            raise _bad(dest, getattr(e, "message", str(e)), getattr(e, "hint", None)) from None
    return parse


def p_json_object(dest: str, flag: str) -> Callable[[Any], dict]:
    def parse(v: Any) -> dict:
        if isinstance(v, dict):
            return v
        try:
            d = json.loads(v) if isinstance(v, str) else None
        except ValueError as e:
            raise _bad(dest, f"{flag} must be a JSON object ({e})") from None
        if not isinstance(d, dict):
            raise _bad(dest, f"{flag} must be a JSON object, got {v!r}")
        return d
    return parse


def parse_speculative_config(v: Any) -> dict:
    """--speculative-config as vLLM takes it: method, num_speculative_tokens, model (draft / EAGLE head)."""
    spec = p_json_object("speculative_config", "--speculative-config")(v)
    method = spec.get("method") or ("draft_model" if spec.get("model") else None)
    n = spec.get("num_speculative_tokens")
    if not isinstance(method, str) or _is_bool(n) or not isinstance(n, int) or n < 1:
        raise _bad("speculative_config", "--speculative-config needs a method and num_speculative_tokens >= 1",
                   'e.g. \'{"method": "mtp", "num_speculative_tokens": 1}\'')
    model = spec.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("speculative_config", "--speculative-config model must be a model id or directory")
    known = {"method", "num_speculative_tokens", "model"}
    extra = sorted(set(spec) - known)
    if extra:
        raise _bad("speculative_config", f"--speculative-config keys {', '.join(extra)}: kvfit does not model "
                   "them", "kvfit models method, num_speculative_tokens and model.")
    return {"method": method, "num_speculative_tokens": n, "model": model}


# config/multimodal.py (0.32): ImageDummyOptions(count, width, height), VideoDummyOptions(count, num_frames,
# width, height), AudioDummyOptions(count, length), all extra="forbid"; other modalities BaseDummyOptions(count).
_MM_OPTIONS = {"image": ("count", "width", "height"), "video": ("count", "num_frames", "width", "height"),
               "audio": ("count", "length")}


def parse_limit_mm_per_prompt(v: Any) -> dict:
    """--limit-mm-per-prompt as vLLM reads it. 0.32 (engine/arg_utils.py: json.loads; config/multimodal.py
    MultiModalConfig._validate_limit_per_prompt): a JSON object of modality -> count (an int >= 0), or ->
    {"count": N, "width"/"height"/"num_frames"/"length": M > 0} (the dummy item's size, 0.11+). Releases
    up to 0.9.2 also took `image=16,video=2` (engine/arg_utils.py::nullable_kvs: keys lower-cased, int
    values); kvfit reads that form too and keeps the JSON form."""
    flag = "--limit-mm-per-prompt"
    if isinstance(v, str) and not v.strip().startswith("{"):
        out: dict[str, Any] = {}
        for item in v.split(","):
            parts = [x.lower().strip() for x in item.split("=")]
            if len(parts) != 2 or not parts[0]:
                raise _bad("limit_mm_per_prompt", f"{flag} must be a JSON object such as '{{\"image\": 2}}' "
                           f"(or image=2,video=1 for vLLM <= 0.9), got {v!r}")
            try:
                n = int(parts[1])
            except ValueError:
                raise _bad("limit_mm_per_prompt", f"{flag}: {parts[0]}={parts[1]} is not a whole number") from None
            if parts[0] in out and out[parts[0]] != n:
                raise _bad("limit_mm_per_prompt", f"{flag}: conflicting values for {parts[0]}")
            out[parts[0]] = n
        v = out
    d = p_json_object("limit_mm_per_prompt", flag)(v)
    out = {}
    for modality, x in d.items():
        if isinstance(x, bool) or isinstance(x, int):
            x = {"count": int(x)}
            simple = True
        elif isinstance(x, dict):
            simple = False
        else:
            raise _bad("limit_mm_per_prompt", f"{flag}: {modality} must be a count or an object of options, got {x!r}")
        allowed = _MM_OPTIONS.get(modality, ("count",))
        extra = sorted(set(x) - set(allowed)) if modality in _MM_OPTIONS else []
        if extra:
            raise _bad("limit_mm_per_prompt", f"{flag}: {modality} takes {', '.join(allowed)}, not {', '.join(extra)}")
        clean: dict[str, int] = {}
        for k, n in x.items():
            if k not in allowed:
                continue                              # BaseDummyOptions ignores other keys
            if n is None and k != "count":
                continue
            if isinstance(n, bool):
                n = int(n)
            if not isinstance(n, int) or n < (0 if k == "count" else 1):
                raise _bad("limit_mm_per_prompt", f"{flag}: {modality}.{k} must be a whole number "
                           f"{'>= 0' if k == 'count' else '> 0'}, got {n!r}")
            clean[k] = n
        out[modality] = clean["count"] if simple else clean
    return out


def p_cpu_isa(v: Any) -> str:
    if v not in CPU_ISAS:
        raise _bad("cpu_isa", f"--cpu-isa {v!r} is not one of {', '.join(CPU_ISAS)}")
    return v


# --- the table ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flag:
    dest: str                                  # the name everywhere: Settings field / manifest field / argparse dest
    names: tuple[str, ...]                     # kvfit's spellings, long first
    help: str
    group: str                                 # launch | input | goal | output | source | smoke | sweep
    parse: Callable[[Any], Any] | None = None  # user value -> typed (None: a switch, True when present)
    vllm: str | None = None                    # vLLM's launch key ("max-model-len"); None: kvfit's own
    switch: bool = False                       # takes no value
    negatable: bool = False                    # also --no-NAME (vLLM's BooleanOptionalAction)
    default: Any = None
    metavar: str | None = None
    commands: frozenset[str] = frozenset({"check", "smoke", "sweep"})
    # typed value -> Settings fields (default: {dest: value}); Settings -> typed value (default: getattr)
    to_settings: Callable[[Any], dict[str, Any]] | None = None
    from_settings: Callable[[Settings], Any] | None = None
    to_text: Callable[[Any], str] | None = None   # typed -> the text vLLM reads (default: str)
    choices: tuple[str, ...] | None = None

    @property
    def long(self) -> str:
        return self.names[0]

    def settings_of(self, value: Any) -> dict[str, Any]:
        return self.to_settings(value) if self.to_settings else {self.dest: value}

    def value_in(self, s: Settings) -> Any:
        return self.from_settings(s) if self.from_settings else getattr(s, self.dest)

    def text(self, value: Any) -> str:
        if self.to_text:
            return self.to_text(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _spec_settings(v: dict | None) -> dict[str, Any]:
    if not v:
        return {"speculative_method": None, "num_speculative_tokens": 0, "speculative_model": None}
    return {"speculative_method": v["method"], "num_speculative_tokens": v["num_speculative_tokens"],
            "speculative_model": v.get("model")}


def _spec_of(s: Settings) -> dict | None:
    if not s.speculative_method:
        return None
    d = {"method": s.speculative_method, "num_speculative_tokens": s.num_speculative_tokens}
    if s.speculative_model:
        d["model"] = s.speculative_model
    return d


def _json_text(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def _isa_settings(v: str | None) -> dict[str, Any]:
    if v is None:
        return {}
    return {"cpu_avx512_bf16": v in ("avx512_bf16", "amx"), "cpu_amx": v == "amx"}


_V = "launch"
FLAGS: tuple[Flag, ...] = (
    # vLLM flags kvfit models: each sets Settings fields and is written back into recommended launches
    Flag("max_model_len", ("--max-model-len",), "Context length: 32768, 32k (=32000), 32K (=32768), -1 or auto.",
         _V, p_max_model_len, vllm="max-model-len", metavar="LEN",
         to_text=lambda v: "auto" if v == -1 else str(v)),
    Flag("gpu_memory_utilization", ("--gpu-memory-utilization",),
         "Fraction of the GPU's memory vLLM may use (default: the vLLM release's).", _V,
         p_float("gpu_memory_utilization", "--gpu-memory-utilization", 0.0, 1.0), vllm="gpu-memory-utilization",
         metavar="FRACTION"),
    Flag("tensor_parallel_size", ("--tensor-parallel-size", "-tp"), "Tensor-parallel GPUs.", _V,
         p_int("tensor_parallel_size", "--tensor-parallel-size"), vllm="tensor-parallel-size", default=1, metavar="N"),
    Flag("pipeline_parallel_size", ("--pipeline-parallel-size", "-pp"), "Pipeline-parallel stages.", _V,
         p_int("pipeline_parallel_size", "--pipeline-parallel-size"), vllm="pipeline-parallel-size", default=1,
         metavar="N"),
    # across GPUs and nodes (issue 16; what they change: memory/parallel.py)
    Flag("data_parallel_size", ("--data-parallel-size", "-dp"),
         "Data-parallel engine replicas, each with TP x PP x PCP GPUs and its own KV cache (MoE layers: "
         "experts sliced, or placed with --enable-expert-parallel, over TP x PCP x DP).", _V,
         p_int("data_parallel_size", "--data-parallel-size"), vllm="data-parallel-size", default=1, metavar="N"),
    Flag("data_parallel_size_local", ("--data-parallel-size-local", "-dpl"),
         "Data-parallel replicas this node starts (multi-node data parallel).", _V,
         p_int("data_parallel_size_local", "--data-parallel-size-local", minimum=0),
         vllm="data-parallel-size-local", metavar="N"),
    Flag("data_parallel_start_rank", ("--data-parallel-start-rank", "-dpr"),
         "The first data-parallel replica this node starts (multi-node data parallel).", _V,
         p_int("data_parallel_start_rank", "--data-parallel-start-rank", minimum=0),
         vllm="data-parallel-start-rank", metavar="N"),
    Flag("enable_expert_parallel", ("--enable-expert-parallel", "-ep"),
         "MoE experts placed whole across TP x PCP x DP ranks instead of sliced.", _V,
         p_switch("enable_expert_parallel", "--enable-expert-parallel"), vllm="enable-expert-parallel",
         switch=True, negatable=True, default=False),
    Flag("decode_context_parallel_size", ("--decode-context-parallel-size", "-dcp"),
         "Decode context parallel: the KV cache's tokens sharded over this many TP ranks.", _V,
         p_int("decode_context_parallel_size", "--decode-context-parallel-size"),
         vllm="decode-context-parallel-size", default=1, metavar="N"),
    Flag("dcp_kv_cache_interleave_size", ("--dcp-kv-cache-interleave-size",),
         "With decode context parallel: tokens stored on one rank before the next (capacity unchanged).", _V,
         p_int("dcp_kv_cache_interleave_size", "--dcp-kv-cache-interleave-size"),
         vllm="dcp-kv-cache-interleave-size", default=1, metavar="N"),
    Flag("cp_kv_cache_interleave_size", ("--cp-kv-cache-interleave-size",),
         "Context parallel interleave size; must divide the KV block size (capacity unchanged).", _V,
         p_int("cp_kv_cache_interleave_size", "--cp-kv-cache-interleave-size"),
         vllm="cp-kv-cache-interleave-size", default=1, metavar="N"),
    Flag("prefill_context_parallel_size", ("--prefill-context-parallel-size", "-pcp"),
         "Prefill context parallel: more ranks per engine (KV replicated over them).", _V,
         p_int("prefill_context_parallel_size", "--prefill-context-parallel-size"),
         vllm="prefill-context-parallel-size", default=1, metavar="N"),
    Flag("nnodes", ("--nnodes",), "Nodes one launch spans (vLLM's multi-node launcher).", _V,
         p_int("nnodes", "--nnodes"), vllm="nnodes", default=1, metavar="N"),
    Flag("node_rank", ("--node-rank",), "This node's index with --nnodes.", _V,
         p_int("node_rank", "--node-rank", minimum=0), vllm="node-rank", default=0, metavar="N"),
    Flag("distributed_executor_backend", ("--distributed-executor-backend",),
         "mp, ray, uni or external_launcher (ray: TP/PP ranks over the Ray cluster's nodes).", _V,
         p_choice("distributed_executor_backend", "--distributed-executor-backend",
                  {"mp", "ray", "uni", "external_launcher"}),
         vllm="distributed-executor-backend", metavar="BACKEND",
         choices=("external_launcher", "mp", "ray", "uni")),
    Flag("dtype", ("--dtype",), "Model dtype.", _V, p_choice("dtype", "--dtype", DTYPES), vllm="dtype",
         default="auto", choices=tuple(sorted(DTYPES))),
    Flag("kv_cache_dtype", ("--kv-cache-dtype",), "KV cache dtype (fp8 halves the KV bytes).", _V,
         p_choice("kv_cache_dtype", "--kv-cache-dtype", KV_CACHE_DTYPES), vllm="kv-cache-dtype", default="auto",
         choices=tuple(sorted(KV_CACHE_DTYPES))),
    Flag("quantization", ("--quantization", "-q"),
         "Weight quantization, checked against the checkpoint's quantization_config as vLLM checks it "
         "(fp8 on an unquantized checkpoint: FP8 weights quantized at load).", _V,
         p_str("quantization", "--quantization"), vllm="quantization", metavar="METHOD"),
    Flag("block_size", ("--block-size",), "KV block size in tokens.", _V, p_int("block_size", "--block-size"),
         vllm="block-size", metavar="N"),
    Flag("max_num_seqs", ("--max-num-seqs",), "Sequences scheduled at once.", _V,
         p_int("max_num_seqs", "--max-num-seqs"), vllm="max-num-seqs", metavar="N"),
    Flag("max_num_batched_tokens", ("--max-num-batched-tokens",), "Tokens per scheduler step (prefill chunk).",
         _V, p_human_int("max_num_batched_tokens", "--max-num-batched-tokens"), vllm="max-num-batched-tokens",
         metavar="N"),
    Flag("enforce_eager", ("--enforce-eager",), "No CUDA graphs.", _V, p_switch("enforce_eager", "--enforce-eager"),
         vllm="enforce-eager", switch=True, default=False),
    Flag("kv_cache_memory_bytes", ("--kv-cache-memory-bytes",),
         "Explicit KV budget per GPU in bytes as vLLM reads it (4G = 4 GiB, 4294967296); vLLM then skips "
         "profiling.", _V,
         p_size("kv_cache_memory_bytes", "--kv-cache-memory-bytes", bare_bytes_from=1 << 20),
         vllm="kv-cache-memory-bytes", metavar="BYTES"),
    Flag("num_gpu_blocks_override", ("--num-gpu-blocks-override",), "Exact number of KV blocks.", _V,
         p_int("num_gpu_blocks_override", "--num-gpu-blocks-override"), vllm="num-gpu-blocks-override", metavar="N"),
    Flag("cpu_offload_gb", ("--cpu-offload-gb",), "GiB of weights per GPU vLLM keeps in CPU memory.", _V,
         p_float("cpu_offload_gb", "--cpu-offload-gb", 0.0, None, lo_open=False), vllm="cpu-offload-gb",
         default=0.0, metavar="GIB"),
    Flag("enable_lora", ("--enable-lora",), "LoRA adapters: vLLM preallocates max_loras slots per layer.", _V,
         p_switch("enable_lora", "--enable-lora"), vllm="enable-lora", switch=True, default=False),
    Flag("max_loras", ("--max-loras",), "With --enable-lora: adapters resident at once (vLLM default 1).", _V,
         p_int("max_loras", "--max-loras"), vllm="max-loras", default=1, metavar="N"),
    Flag("max_lora_rank", ("--max-lora-rank",), "With --enable-lora: the largest adapter rank (vLLM default 16).",
         _V, lambda v: _lora_rank(v), vllm="max-lora-rank", default=16, metavar="N"),
    Flag("speculative_config", ("--speculative-config",),
         'Speculative decoding as vLLM takes it: \'{"method": "mtp", "num_speculative_tokens": 1}\' '
         '(draft / EAGLE: "model").', _V, parse_speculative_config, vllm="speculative-config", metavar="JSON",
         to_settings=_spec_settings, from_settings=_spec_of, to_text=_json_text),
    Flag("enable_prefix_caching", ("--enable-prefix-caching",),
         "Prefix caching on (--no-enable-prefix-caching: off); mamba hybrids then keep states per block.", _V,
         p_switch("enable_prefix_caching", "--enable-prefix-caching"), vllm="enable-prefix-caching", switch=True,
         negatable=True),
    Flag("mamba_cache_dtype", ("--mamba-cache-dtype",), "Mamba conv state dtype.", _V,
         p_choice("mamba_cache_dtype", "--mamba-cache-dtype", MAMBA_DTYPES), vllm="mamba-cache-dtype",
         default="auto", choices=tuple(sorted(MAMBA_DTYPES))),
    Flag("mamba_ssm_cache_dtype", ("--mamba-ssm-cache-dtype",), "Mamba ssm state dtype.", _V,
         p_choice("mamba_ssm_cache_dtype", "--mamba-ssm-cache-dtype", MAMBA_DTYPES), vllm="mamba-ssm-cache-dtype",
         default="auto", choices=tuple(sorted(MAMBA_DTYPES))),
    Flag("disable_hybrid_kv_cache_manager", ("--disable-hybrid-kv-cache-manager",),
         "Sliding/chunked layers allocated as full attention.", _V,
         p_switch("disable_hybrid_kv_cache_manager", "--disable-hybrid-kv-cache-manager"),
         vllm="disable-hybrid-kv-cache-manager", switch=True,
         to_settings=lambda v: {"disable_hybrid_kv_cache_manager": True if v else None},
         from_settings=lambda s: bool(s.disable_hybrid_kv_cache_manager)),
    Flag("disable_sliding_window", ("--disable-sliding-window",), "No window; max_model_len capped to it.", _V,
         p_switch("disable_sliding_window", "--disable-sliding-window"), vllm="disable-sliding-window", switch=True,
         default=False),
    Flag("hf_overrides", ("--hf-overrides",),
         "JSON merged into config.json as vLLM does (e.g. rope_scaling for YaRN long context).", _V,
         p_json_object("hf_overrides", "--hf-overrides"), vllm="hf-overrides", metavar="JSON",
         to_settings=lambda v: {"hf_overrides": _json_text(v) if v else None},
         from_settings=lambda s: json.loads(s.hf_overrides) if s.hf_overrides else None, to_text=_json_text),
    Flag("rope_scaling", ("--rope-scaling",), "RoPE scaling as JSON (vLLM 0.4.3-0.11.0; later: --hf-overrides "
         "'{\"rope_scaling\": ...}').", _V, p_json_object("rope_scaling", "--rope-scaling"), vllm="rope-scaling",
         metavar="JSON", to_settings=lambda v: {"rope_scaling": _json_text(v) if v else None},
         from_settings=lambda s: json.loads(s.rope_scaling) if s.rope_scaling else None, to_text=_json_text),
    Flag("rope_theta", ("--rope-theta",), "RoPE theta (vLLM 0.5.0-0.11.0).", _V,
         p_float("rope_theta", "--rope-theta", 0.0, None), vllm="rope-theta", metavar="THETA"),
    Flag("limit_mm_per_prompt", ("--limit-mm-per-prompt",),
         'Multimodal items per prompt and modality, as JSON: \'{"image": 2, "video": 0}\' (0 drops a modality '
         "from vLLM's encoder profile; vLLM's default is 999, 1 in V0 and before 0.8.5).", _V,
         parse_limit_mm_per_prompt, vllm="limit-mm-per-prompt", metavar="JSON",
         to_settings=lambda v: {"limit_mm_per_prompt": _json_text(v) if v else None},
         from_settings=lambda s: json.loads(s.limit_mm_per_prompt) if s.limit_mm_per_prompt else None,
         to_text=_json_text),
    Flag("mm_processor_kwargs", ("--mm-processor-kwargs",),
         'Multimodal processor settings as JSON, e.g. \'{"max_pixels": 1003520}\': they size the dummy items '
         "vLLM profiles the encoder with.", _V, p_json_object("mm_processor_kwargs", "--mm-processor-kwargs"),
         vllm="mm-processor-kwargs", metavar="JSON",
         to_settings=lambda v: {"mm_processor_kwargs": _json_text(v) if v else None},
         from_settings=lambda s: json.loads(s.mm_processor_kwargs) if s.mm_processor_kwargs else None,
         to_text=_json_text),
    Flag("skip_mm_profiling", ("--skip-mm-profiling",),
         "vLLM profiles no multimodal encoder (V1, 0.10.1+): more KV, the encoder's memory unaccounted.", _V,
         p_switch("skip_mm_profiling", "--skip-mm-profiling"), vllm="skip-mm-profiling", switch=True,
         negatable=True, default=False),
    Flag("device", ("--device",), "cuda or cpu (vLLM's CPU backend).", _V,
         p_choice("device", "--device", {"cuda", "cpu"}), vllm="device", default="cuda", choices=("cuda", "cpu")),
    # kvfit's own inputs
    Flag("gpu", ("--gpu",), "A GPU from `kvfit gpus` (instead of probing this machine).", "input",
         p_str("gpu", "--gpu"), metavar="NAME"),
    Flag("gpu_memory", ("--gpu-memory",), "GPU total as CUDA reports it: 79.25GiB, 24GB.", "input",
         p_size("gpu_memory", "--gpu-memory"), metavar="SIZE"),
    Flag("gpu_count", ("--gpu-count",), "GPUs like --gpu present (tensor/pipeline-parallel alternatives).",
         "input", p_int("gpu_count", "--gpu-count"), metavar="N", commands=frozenset({"check"})),
    Flag("vllm_version", ("--vllm-version",), "vLLM release to model (default: installed, else the newest kvfit "
         "knows).", "input", p_str("vllm_version", "--vllm-version"), metavar="X.Y.Z"),
    Flag("entrypoint", ("--entrypoint",), "serve (vllm serve) or llm (Python LLM class): batch defaults differ.",
         "input", p_choice("entrypoint", "--entrypoint", {"serve", "llm"}), default="serve",
         choices=("serve", "llm")),
    Flag("cpu_isa", ("--cpu-isa",), CPU_ISA_HELP, "input", p_cpu_isa, metavar="ISA", choices=CPU_ISAS,
         to_settings=_isa_settings),
    Flag("gpus_per_node", ("--gpus-per-node",), "GPUs in one node, to lay a launch over nodes (default 8).",
         "input", p_int("gpus_per_node", "--gpus-per-node"), metavar="N",
         to_settings=lambda v: {"gpus_per_node": v}),
    Flag("revision", ("--revision",), "Hub revision (branch, tag or commit).", "input",
         p_str("revision", "--revision"), vllm="revision", metavar="REV"),
    Flag("offline", ("--offline",), "Never use the network (also HF_HUB_OFFLINE=1).", "input", switch=True,
         default=False),
    # goals
    Flag("context", ("--context",), "Goal: the max_model_len the deployment needs (32768, 32K).", "goal",
         p_human_int("context", "--context"), metavar="LEN", commands=frozenset({"check", "sweep"})),
    Flag("concurrency", ("--concurrency",), "Goal: this many sequences of that length resident at once.", "goal",
         p_int("concurrency", "--concurrency"), metavar="N", commands=frozenset({"check", "sweep"})),
    Flag("max_vram", ("--max-vram",), "Goal: at most this much GPU memory per GPU (9GB, 9GiB).", "goal",
         p_size("max_vram", "--max-vram"), metavar="SIZE", commands=frozenset({"check"})),
    Flag("headroom", ("--headroom",), "Safety margin kept in every recommendation: a size or N%% of the GPU "
         "(default 256MiB).", "goal", lambda v: str(v).strip(), metavar="SIZE", commands=frozenset({"check"})),
)


def _lora_rank(v: Any) -> int:
    n = p_int("max_lora_rank", "--max-lora-rank")(v)
    if n not in LORA_RANKS:
        raise _bad("max_lora_rank", f"--max-lora-rank {n} is not one vLLM accepts",
                   "vLLM's config/lora.py allows " + ", ".join(map(str, LORA_RANKS)) + ".")
    return n


BY_DEST: dict[str, Flag] = {f.dest: f for f in FLAGS}
BY_VLLM: dict[str, Flag] = {f.vllm: f for f in FLAGS if f.vllm}
LAUNCH_FLAGS: tuple[Flag, ...] = tuple(f for f in FLAGS if f.group == "launch")
GOALS = tuple(f.dest for f in FLAGS if f.group == "goal")

# the order vLLM flags are written in a command kvfit composes (the model first, then these). --device is
# read from older launches but never written: vLLM 0.32 has no --device flag (its build decides).
WRITE_ORDER = tuple(f.dest for f in LAUNCH_FLAGS if f.dest not in ("device",))


def settings_from(values: dict[str, Any], base: Settings | None = None) -> Settings:
    """Settings from typed flag values (dest -> value), over `base` (default: vLLM's defaults)."""
    from dataclasses import replace

    kw: dict[str, Any] = {}
    for dest, value in values.items():
        f = BY_DEST.get(dest)
        if f is None or f.group not in ("launch", "input") or value is None:
            continue
        if f.group == "input" and not f.to_settings:
            continue
        kw.update(f.settings_of(value))
    return replace(base or Settings(), **kw)


def vllm_values(s: Settings) -> dict[str, Any]:
    """The vLLM flags (launch keys) of Settings that differ from vLLM's defaults, typed, in WRITE_ORDER."""
    base = Settings(device=s.device)
    out: dict[str, Any] = {}
    for dest in WRITE_ORDER:
        f = BY_DEST[dest]
        v, d = f.value_in(s), f.value_in(base)
        if v != d and v is not None and v is not False:
            out[f.vllm] = v
        elif v is False and d is None and f.negatable:
            out[f.vllm] = False
    return out


def changed_flags(before: Settings, after: Settings) -> dict[str, Any]:
    """vLLM launch keys whose value differs between two launches: the typed new value, None to remove."""
    out: dict[str, Any] = {}
    for f in LAUNCH_FLAGS:
        a, b = f.value_in(before), f.value_in(after)
        if a != b:
            default = f.value_in(Settings(device=after.device))
            out[f.vllm] = None if (b == default and not f.negatable) or b is None else b
    return out


def describe(changes: dict[str, Any]) -> str:
    """'--max-model-len 8192 --enforce-eager' for a change set (launch key -> typed value or None)."""
    parts = []
    for key, v in changes.items():
        f = BY_VLLM.get(key)
        flag = f.long if f else "--" + key
        if v is True:
            parts.append(flag)
        elif v is False and f is not None and f.negatable:
            parts.append("--no-" + flag[2:])
        elif v is None or v is False:
            parts.append(f"no {flag}")
        else:
            parts.append(f"{flag} {f.text(v) if f else v}")
    return " ".join(parts) or "no change"


