"""Turn parsed vLLM log facts into plain-language diagnoses and ranked, computed fixes.

Pure logic: no model lookups, no engine.  The CLI (``kvfit explain``) re-checks a fix with the model's
architecture when it knows the model; that is what ``Fix.exact`` is for:

* ``exact=True``  - the value is vLLM's own threshold as printed in the log (V0: ``max_model_len <=
  block_size * num_gpu_blocks``, which is exactly the "KV cache (Y)" number; V1: the "estimated maximum
  model length" vLLM computed by binary search; the derived max_model_len of the config error). Using it
  passes the very check that failed, given the same memory.
* ``exact=False`` - the value is arithmetic on rounded log figures (GiB to 0.01), or a direction that the
  log cannot quantify (e.g. how much activation memory a smaller batch saves).

Choices documented here:

* **Utilisation that would start** (``free_memory_startup``): vLLM requires
  ``free >= ceil(total * util)``.  We propose ``floor(free/total * 100)/100 - 0.01``: flooring to the
  2-decimal grid keeps ``util * total <= free``; the extra 0.01 absorbs the 0.01-GiB rounding of the printed
  figures and the drift of other processes' memory between launches (0.01 of an 80 GiB card is 0.8 GiB).
* **Raising utilisation** to fit a longer context: the extra KV bytes are ``(needed_tokens - have_tokens) *
  bytes_per_token`` where bytes/token is ``available_kv_gib / kv_tokens`` from the log (V0) or
  ``needed_gib - available_gib`` directly (V1); the new utilisation is ``util + extra/total`` rounded *up*
  to 0.01, plus 0.01 margin for the rounded GiB figures.  Proposed only when it stays within kvfit's ceiling
  for a GPU it has not probed (plan/policy.py, 0.95: the same on every path) and within
  the free memory when that is known); otherwise the explanation says the GPU is too small.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..plan.policy import UNPROBED_CEILING
from .parse import LogError, LogFacts

__all__ = ["Fix", "Diagnosis", "Explanation", "explain", "UTIL_MARGIN", "MAX_UTIL", "FAILURE_KINDS",
           "SIGNAL_MEANINGS"]

# Diagnosis kinds that mean the logged run failed (every error kind; "ok" is the only other kind).
FAILURE_KINDS = frozenset({"v0_max_seq_len", "v1_max_seq_len", "no_cache_memory", "free_memory_startup",
                           "user_max_len_too_long", "cuda_oom", "cannot_autofit", "profiling_memory_changed",
                           "engine_died"})
UTIL_MARGIN = 0.01
MAX_UTIL = UNPROBED_CEILING            # plan/policy.py: one ceiling on every path
GIB = 1024**3


@dataclass
class Fix:
    description: str
    flags: dict[str, str] = field(default_factory=dict)
    exact: bool = False
    env: dict[str, str] = field(default_factory=dict)  # environment variables to set, if any


@dataclass
class Diagnosis:
    kind: str
    title: str
    explanation: str
    fixes: list[Fix] = field(default_factory=list)


@dataclass
class Explanation:
    diagnoses: list[Diagnosis]
    warnings: list[str]
    model: str | None
    settings: dict


# --------------------------------------------------------------------------------------------------
# helpers



_FP8_FIX = Fix("Or store the KV cache in FP8 (half the bytes per token of a 16-bit cache), if your GPU and vLLM "
               "version support it: --kv-cache-dtype fp8.", {"--kv-cache-dtype": "fp8"}, exact=False)


def _more_gpus(facts: LogFacts, text: str) -> Fix:
    """Double the tensor parallel size; `text` says why, with {n} for the new size."""
    n = (facts.tensor_parallel_size or 1) * 2
    return Fix(text.format(n=n), {"--tensor-parallel-size": str(n)}, exact=False)

def _n(x: float | int | None) -> str:
    """Thousands-separated integer."""
    return f"{int(x):,}" if x is not None else "?"


def _g(x: float | None) -> str:
    return f"{x:.2f} GiB" if x is not None else "? GiB"


def _u(x: float) -> str:
    """Utilisation as vLLM flag text: 0.9 -> '0.9', 0.95 -> '0.95'."""
    return f"{round(x, 2):.2f}".rstrip("0").rstrip(".") if x < 1 else "1.0"


def _ceil2(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def _floor2(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


def _raise_util(facts: LogFacts, extra_gib: float) -> tuple[float | None, str]:
    """Utilisation that adds ``extra_gib`` to vLLM's budget, or (None, reason)."""
    util, total = facts.gpu_memory_utilization, facts.total_gpu_memory_gib
    if util is None or total is None or total <= 0:
        return None, "the log does not show both the GPU total and the utilisation"
    new = _ceil2(util + extra_gib / total) + UTIL_MARGIN
    limit = MAX_UTIL
    if facts.free_gpu_memory_gib is not None:
        limit = min(limit, _floor2(facts.free_gpu_memory_gib / total))
    if new > limit:
        return None, (
            f"it would need --gpu-memory-utilization {new:.2f} ({extra_gib:.2f} GiB more), above the "
            f"{limit:.2f} this GPU can give"
        )
    return new, ""


def _util_fix(facts: LogFacts, extra_gib: float, lead: str, note: str = " (from rounded log figures; re-check)"
              ) -> tuple[Fix | None, str]:
    """The fix "<lead>: --gpu-memory-utilization U" that adds ``extra_gib``, or (None, why it cannot)."""
    new, why = _raise_util(facts, extra_gib)
    if new is None:
        return None, f"Raising the utilisation is not enough: {why}."
    return Fix(f"{lead}: --gpu-memory-utilization {_u(new)}{note}.", {"--gpu-memory-utilization": _u(new)},
               exact=False), ""


def _settings(facts: LogFacts) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for k in ("max_model_len", "gpu_memory_utilization", "tensor_parallel_size", "block_size"):
        v = getattr(facts, k)
        if v is not None:
            s[k] = v
    if facts.pipeline_parallel_size is not None:
        s["pipeline_parallel_size"] = facts.pipeline_parallel_size
    for k, v in facts.settings.items():
        s.setdefault(k, v)
    return s


def _block_size(facts: LogFacts) -> int:
    if facts.block_size:
        return facts.block_size
    return 16


# --------------------------------------------------------------------------------------------------
# one function per error kind


def _v0_max_seq_len(facts: LogFacts, e: LogError) -> Diagnosis:
    x = int(e.numbers["max_model_len"])
    y = int(e.numbers["kv_tokens"])
    blocks = facts.num_gpu_blocks
    bs = (y // blocks) if blocks and y % blocks == 0 else _block_size(facts)
    short = x - y
    parts = [
        f"vLLM (V0 engine) requires one full-length request to fit in the KV cache: max_model_len must be "
        f"<= block_size x num_gpu_blocks.",
    ]
    cap = f"{_n(y)} tokens" + (f" ({_n(blocks)} blocks x {bs})" if blocks else "")
    mem = ""
    if facts.available_kv_gib is not None:
        mem = f" in the {_g(facts.available_kv_gib)} left for KV cache"
        if facts.total_gpu_memory_gib is not None and facts.gpu_memory_utilization is not None:
            mem += (
                f" (of {_g(facts.total_gpu_memory_gib)} x {facts.gpu_memory_utilization:.2f} after weights "
                f"and activations)"
            )
    parts.append(
        f"After loading the model and profiling, the cache holds {cap}{mem}, but max_model_len is {_n(x)}: "
        f"{_n(short)} tokens ({short / x:.0%}) short, so it refused to start."
    )
    fixes = [
        Fix(
            f"Cap the context at what the cache holds: --max-model-len {y} passes V0's check exactly "
            f"(a shorter profiling run can only leave more room).",
            {"--max-model-len": str(y)},
            exact=True,
        )
    ]
    if facts.available_kv_gib is not None and y > 0:
        per_token_gib = facts.available_kv_gib / y
        need_tokens = math.ceil(x / bs) * bs
        extra = (need_tokens - y) * per_token_gib
        fix, why = _util_fix(facts, extra, f"Keep max_model_len {_n(x)} and give vLLM about {extra:.2f} GiB "
                                           f"more for KV cache")
        if fix:
            fixes.append(fix)
        else:
            parts.append(why)
    else:
        fixes.append(
            Fix(
                "Or raise --gpu-memory-utilization; the log does not show the KV GiB figure and GPU total needed "
                "to compute the value (kvfit can, given the model).",
                {},
                exact=False,
            )
        )
    if x <= 2 * y:
        fixes.append(
            Fix(
                "Or store the KV cache in FP8 (half the bytes per token of a 16-bit cache), if your GPU and vLLM "
                "version support it: --kv-cache-dtype fp8.",
                {"--kv-cache-dtype": "fp8"},
                exact=False,
            )
        )
    fixes.append(_more_gpus(facts, "Or split the model over more GPUs (weights and KV heads per GPU shrink): --tensor-parallel-size {n}."))
    return Diagnosis(
        "v0_max_seq_len",
        f"max_model_len {_n(x)} does not fit: the KV cache holds only {_n(y)} tokens",
        " ".join(parts),
        fixes,
    )


def _v1_max_seq_len(facts: LogFacts, e: LogError) -> Diagnosis:
    x = int(e.numbers["max_model_len"])
    need = float(e.numbers["needed_gib"])
    have = float(e.numbers["available_gib"])
    est = e.numbers.get("estimated_max_len")
    dev = facts.device_label or "GPU"
    parts = [
        f"vLLM checks that one request of max_model_len ({_n(x)}) tokens fits in the KV cache.",
        f"That needs {need:.2f} GiB, but after weights"
        + (", activations and CUDA graphs" if dev != "CPU" else " and activations")
        + f" only {have:.2f} GiB was left for KV cache, so it refused to start.",
    ]
    fixes: list[Fix] = []
    if est:
        parts.append(f"vLLM computed that the longest context that fits in {have:.2f} GiB is {_n(est)} tokens.")
        fixes.append(
            Fix(
                f"Use the longest context that fits: --max-model-len {int(est)} (vLLM's own estimate for this memory).",
                {"--max-model-len": str(int(est))},
                exact=True,
            )
        )
    elif "Based on the available memory" in e.line or have <= 0:
        parts.append("Not even a short request fits (vLLM's estimate of the longest feasible context is 0).")
    elif need > 0:
        # older wordings print no estimate: scale by the GiB ratio, pessimistic about the 0.01-GiB rounding
        bs = _block_size(facts)
        approx = int(max(0.0, have - 0.005) / (need + 0.005) * x) // bs * bs
        if approx > 0:
            parts.append(f"By the GiB figures, about {_n(approx)} tokens fit.")
            fixes.append(
                Fix(
                    f"Use a context that fits: --max-model-len {approx} (scaled from the rounded GiB figures; "
                    f"this vLLM version prints no estimate).",
                    {"--max-model-len": str(approx)},
                    exact=False,
                )
            )
    if dev == "CPU":
        # upper bound of the rounded "needed" figure, +1% and 64 MiB for the null block vLLM reserves
        want = math.ceil((need + 0.005) * GIB * 1.01) + 64 * 1024**2
        fixes.append(
            Fix(
                f"Or give the CPU KV cache room for the full length: --kv-cache-memory-bytes {want} "
                f"(~{want / GIB:.2f} GiB; or VLLM_CPU_KVCACHE_SPACE={math.ceil(want / GIB)}, integer GiB).",
                {"--kv-cache-memory-bytes": str(want)},
                exact=False,
            )
        )
    else:
        fix, why = _util_fix(facts, need - have, f"Keep max_model_len {_n(x)} and add {need - have:.2f} GiB "
                                                 f"to vLLM's budget")
        if fix:
            fixes.append(fix)
        elif facts.gpu_memory_utilization is not None and facts.total_gpu_memory_gib is not None:
            parts.append(f"Raising the utilisation is not enough: {why}.")
        else:
            fixes.append(
                Fix(
                    f"Or raise --gpu-memory-utilization so that {need - have:.2f} GiB more goes to the KV cache "
                    f"(the log does not show the GPU total needed to compute the value).",
                    {},
                    exact=False,
                )
            )
        if need > 0 and have / need >= 0.5:
            fixes.append(
                Fix(
                    "Or store the KV cache in FP8 (half the bytes of a 16-bit cache), if supported: "
                    "--kv-cache-dtype fp8.",
                    {"--kv-cache-dtype": "fp8"},
                    exact=False,
                )
            )
        fixes.append(_more_gpus(facts, "Or spread the model over more GPUs: --tensor-parallel-size {n}."))
    title = f"max_model_len {_n(x)} does not fit: needs {need:.2f} GiB of KV cache, {have:.2f} GiB available"
    return Diagnosis("v1_max_seq_len", title, " ".join(parts), fixes)


def _no_cache_memory(facts: LogFacts, e: LogError) -> Diagnosis:
    parts = [
        "After loading the weights and profiling a dummy batch, nothing was left of vLLM's memory budget "
        "(gpu_memory_utilization x total) for the KV cache."
    ]
    fixes: list[Fix] = []
    if facts.requested_memory_gib is not None and facts.model_weights_gib is not None:
        parts.append(
            f"The budget was {_g(facts.requested_memory_gib)} and the weights alone took {_g(facts.model_weights_gib)}."
        )
    kv = facts.available_kv_gib
    if kv is not None and kv <= 0:
        # make the KV cache at least 1 GiB
        fix, why = _util_fix(facts, -kv + 1.0, f"Give vLLM {(-kv + 1.0):.2f} GiB more so about 1 GiB is left "
                                               f"for KV cache", note="")
        if fix:
            fixes.append(fix)
        else:
            parts.append(why)
    elif not fixes:
        util = facts.gpu_memory_utilization
        if util is not None and util < 0.95:
            fixes.append(
                Fix(
                    "Raise the memory budget (the log does not show how far short it is): "
                    f"--gpu-memory-utilization {_u(min(0.95, util + 0.05))}.",
                    {"--gpu-memory-utilization": _u(min(0.95, util + 0.05))},
                    exact=False,
                )
            )
        else:
            fixes.append(Fix("Raise --gpu-memory-utilization (the log does not show how far short it is).", {}, False))
    fixes.append(
        Fix(
            "Or shrink the profiling batch, which sets the activation peak: lower --max-num-batched-tokens "
            "and --max-num-seqs (V0 without chunked prefill profiles max_model_len tokens: lower --max-model-len).",
            _smaller_batch_flags(facts),
            exact=False,
        )
    )
    fixes.append(_more_gpus(facts, "Or split the weights over more GPUs: --tensor-parallel-size {n}, or use a quantized checkpoint."))
    return Diagnosis("no_cache_memory", "No memory left for the KV cache", " ".join(parts), fixes)


def _free_memory_startup(facts: LogFacts, e: LogError) -> Diagnosis:
    free = float(e.numbers["free_gib"])
    total = float(e.numbers["total_gib"])
    util = float(e.numbers["utilization"])
    req = float(e.numbers["requested_gib"])
    dev = e.labels.get("device")
    other = total - free
    parts = [
        f"At startup vLLM asks for gpu_memory_utilization x total = {util} x {total:.2f} GiB = {req:.2f} GiB and "
        f"checks that much is free on {dev or 'the device'}.",
        f"Only {free:.2f} GiB was free: {other:.2f} GiB was already in use (other processes, another vLLM "
        f"instance, or this process's CUDA context), so it refused to start.",
    ]
    fixes: list[Fix] = []
    start = _floor2(free / total) - UTIL_MARGIN
    if start > 0.05:
        fixes.append(
            Fix(
                f"Ask for what is free: --gpu-memory-utilization {_u(start)} (floor(free/total) minus "
                f"{UTIL_MARGIN} margin). This shrinks the KV cache by about {(util - start) * total:.2f} GiB, "
                f"so a long max_model_len may then fail the KV check.",
                {"--gpu-memory-utilization": _u(start)},
                exact=False,
            )
        )
    fixes.append(
        Fix(
            f"Or free the {other:.2f} GiB held by other processes on this GPU (check nvidia-smi), then keep "
            f"--gpu-memory-utilization {util}.",
            {},
            exact=False,
        )
    )
    return Diagnosis(
        "free_memory_startup",
        f"Not enough free GPU memory at startup: {free:.2f} GiB free, {req:.2f} GiB requested",
        " ".join(parts),
        fixes,
    )


def _user_max_len(facts: LogFacts, e: LogError) -> Diagnosis:
    x = int(e.numbers["max_model_len"])
    y = e.numbers.get("derived_max_len")
    key = e.labels.get("derived_key", "max_position_embeddings")
    parts = [
        f"The requested --max-model-len {_n(x)} is longer than the model's configured context "
        f"({key}={_n(y) if y is not None else 'None'} in config.json).",
        "vLLM rejects it before any memory sizing, because positions beyond the trained range can give "
        "wrong outputs or CUDA errors.",
    ]
    fixes: list[Fix] = []
    if y:
        fixes.append(
            Fix(
                f"Use the model's own limit: --max-model-len {int(y)}.",
                {"--max-model-len": str(int(y))},
                exact=True,
            )
        )
    fixes.append(
        Fix(
            "Or, only if the model really supports the longer context (e.g. RoPE scaling you configure "
            "yourself), set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. vLLM warns this must be used with extreme caution: "
            "outputs past the trained length may be wrong.",
            {},
            exact=False,
            env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"},
        )
    )
    return Diagnosis(
        "user_max_len_too_long",
        f"max_model_len {_n(x)} exceeds the model's limit of {_n(y) if y is not None else '?'}",
        " ".join(parts),
        fixes,
    )


def _smaller_batch_flags(facts: LogFacts) -> dict[str, str]:
    flags: dict[str, str] = {}
    mnbt = facts.settings.get("max_num_batched_tokens")
    if isinstance(mnbt, int) and mnbt > 512:
        flags["--max-num-batched-tokens"] = str(max(512, mnbt // 2))
    mns = facts.settings.get("max_num_seqs")
    if isinstance(mns, int) and mns > 8:
        flags["--max-num-seqs"] = str(max(8, mns // 2))
    return flags


def _cuda_oom(facts: LogFacts, e: LogError) -> Diagnosis:
    phase = e.phase
    tried = e.numbers.get("tried_alloc_gib")
    free = e.numbers.get("free_gib")
    cap = e.numbers.get("total_capacity_gib")
    what = "CUDA ran out of memory"
    if tried is not None:
        what += f" while allocating {tried:.2f} GiB"
    if free is not None and cap is not None:
        what += f" ({free:.2f} GiB of {cap:.2f} GiB free)"
    phase_words = {
        "profiling": "during the profiling run (a dummy forward pass of max_num_batched_tokens tokens that "
        "measures the activation peak before sizing the KV cache)",
        "graph_capture": "while capturing CUDA graphs, which happens after the KV cache has taken its share, so "
        "graphs must fit in the memory vLLM left unbudgeted",
        "sampling": "while warming up the sampler with max_num_seqs dummy requests (a [max_num_seqs x vocab] "
        "float32 logits tensor)",
        "loading": "while loading the weights: the model does not fit on this GPU as configured",
    }
    parts = [what + " " + phase_words.get(phase, "(the log does not show which startup phase)") + "."]
    fixes: list[Fix] = []
    util, total = facts.gpu_memory_utilization, facts.total_gpu_memory_gib
    if phase == "profiling":
        flags = _smaller_batch_flags(facts)
        fixes.append(
            Fix(
                "Shrink the profiling batch: lower --max-num-batched-tokens (activations scale with it) and "
                "--max-num-seqs." + ("" if flags else " The log does not show the current values; halve them."),
                flags or {"--max-num-batched-tokens": "2048"},
                exact=False,
            )
        )
        if facts.engine == "V0":
            fixes.append(
                Fix(
                    "On V0 without chunked prefill the profile batch is max_model_len tokens: enable chunked "
                    "prefill or lower --max-model-len.",
                    {"--enable-chunked-prefill": "true"},
                    exact=False,
                )
            )
        fixes.append(_more_gpus(facts, "Or spread the model over more GPUs: --tensor-parallel-size {n}."))
    elif phase == "graph_capture":
        fixes.append(
            Fix("Skip CUDA graphs (slower decoding, no graph memory): --enforce-eager.", {"--enforce-eager": ""}, False)
        )
        if util is not None and total:
            head = (tried or 0.5) + UTIL_MARGIN * total
            new = _floor2(util - head / total)
            if new > 0.05:
                fixes.append(
                    Fix(
                        f"Or leave room for the graphs: --gpu-memory-utilization {_u(new)} (at least the "
                        f"{(tried or 0.5):.2f} GiB it tried to allocate, plus margin; the KV cache shrinks by as much).",
                        {"--gpu-memory-utilization": _u(new)},
                        exact=False,
                    )
                )
        else:
            fixes.append(
                Fix(
                    "Or lower --gpu-memory-utilization by about the graph memory (0.01-0.05).",
                    {},
                    exact=False,
                )
            )
    elif phase == "sampling":
        n = e.numbers.get("dummy_requests") or facts.settings.get("max_num_seqs")
        new = max(1, int(n) // 2) if isinstance(n, (int, float)) and n else 128
        fixes.append(
            Fix(
                f"Warm up fewer requests at once: --max-num-seqs {new}"
                + (f" (it used {int(n)})." if n else "."),
                {"--max-num-seqs": str(new)},
                exact=False,
            )
        )
        fixes.append(_more_gpus(facts, "Or spread the model over more GPUs: --tensor-parallel-size {n}."))
    elif phase == "loading":
        fixes.append(_more_gpus(facts, "Split the weights over more GPUs: --tensor-parallel-size {n}."))
        fixes.append(
            Fix(
                "Or use a quantized checkpoint (AWQ/GPTQ/FP8), or offload part of the weights: --cpu-offload-gb.",
                {},
                exact=False,
            )
        )
    else:
        fixes.append(Fix("Disable CUDA graphs: --enforce-eager.", {"--enforce-eager": ""}, False))
        fixes.append(
            Fix(
                "Or lower --max-num-seqs / --max-num-batched-tokens.",
                _smaller_batch_flags(facts),
                exact=False,
            )
        )
    title = "CUDA out of memory" + (f" during {phase.replace('_', ' ')}" if phase else "")
    return Diagnosis("cuda_oom", title, " ".join(parts), fixes)


def _cannot_autofit(facts: LogFacts, e: LogError) -> Diagnosis:
    parts = [
        "With --max-model-len auto (-1) vLLM searches for the longest context one request can use, but after "
        "weights and activations there was not room for even a single token of KV cache."
    ]
    if facts.available_kv_gib is not None:
        parts.append(f"Available KV cache memory was {_g(facts.available_kv_gib)}.")
    util = facts.gpu_memory_utilization
    fixes = []
    if util is not None and util < 0.95:
        v = _u(min(0.95, util + 0.05))
        fixes.append(Fix(f"Raise the memory budget: --gpu-memory-utilization {v}.", {"--gpu-memory-utilization": v}))
    else:
        fixes.append(Fix("Raise --gpu-memory-utilization.", {}, False))
    fixes.append(_more_gpus(facts, "Or split the model over more GPUs: --tensor-parallel-size {n}."))
    return Diagnosis("cannot_autofit", "Auto-fit found no context length that fits", " ".join(parts), fixes)


def _profiling_changed(facts: LogFacts, e: LogError) -> Diagnosis:
    a = float(e.numbers["initial_free_gib"])
    b = float(e.numbers["current_free_gib"])
    return Diagnosis(
        "profiling_memory_changed",
        "Free GPU memory changed during vLLM's memory profiling",
        f"vLLM measured {a:.2f} GiB free before profiling and {b:.2f} GiB after; free memory grew, so another "
        f"process released GPU memory meanwhile and the measurement is invalid.",
        [Fix("Run vLLM alone on the GPU (or in its own container) and start it again.", {}, False)],
    )


# What a signal that kills a vLLM process usually means (kvfit smoke prints the same words).
SIGNAL_MEANINGS = {
    "SIGILL": "illegal instruction: this CPU (or the VM's virtual CPU) lacks an instruction the vLLM build, or a "
              "kernel vLLM picked for this CPU, uses",
    "SIGKILL": "killed from outside the process, usually by the kernel's out-of-memory killer (dmesg shows "
               "\"Out of memory: Killed process\") or a container's memory limit",
    "SIGSEGV": "segmentation fault: native code (a vLLM or torch kernel, a driver) touched invalid memory, often "
               "a mismatch between the vLLM build and torch or the driver",
    "SIGBUS": "bus error: usually a container's shared memory (/dev/shm) is too small for vLLM's workers",
    "SIGABRT": "aborted by native code (a failed assertion or an uncaught C++ exception; the lines before it "
               "name it)",
    "SIGFPE": "arithmetic fault in native code (an integer division by zero)",
    "SIGTERM": "terminated by another process (a supervisor, an orchestrator, a timeout)",
    "SIGINT": "interrupted (Ctrl-C)",
}
PHASE_WORDS = {"load": "while loading the model", "profile": "while profiling memory",
               "KV sizing": "while sizing the KV cache", "warm-up": "during warm-up (after sizing the KV cache)",
               "generate": "while generating (after start-up)"}


def _engine_died(facts: LogFacts, e: LogError) -> Diagnosis:
    sig, proc = e.labels.get("signal"), e.labels.get("process")
    code = e.numbers.get("exit_code")
    phase = e.phase
    title = "vLLM's engine died" + (f" {PHASE_WORDS[phase]}" if phase in PHASE_WORDS else "")
    if sig:
        title += f": {sig}"
    parts = []
    who = f"vLLM's process {proc}" if proc else "A vLLM process"
    if sig:
        parts.append(f"{who} was killed by {sig}" + (f" (exit code {int(code)})" if code is not None else "")
                     + f": {SIGNAL_MEANINGS.get(sig, 'see the lines before it')}.")
    elif proc:
        parts.append(f"{who} died without a Python error"
                     + (f" (exit code {int(code)})" if code is not None else " and vLLM did not get its exit code")
                     + ": a signal killed it. SIGKILL (the out-of-memory killer) leaves no other trace; SIGILL, "
                     "SIGSEGV, SIGBUS and SIGABRT print \"Fatal Python error\" and the stack when the engine runs "
                     "with PYTHONFAULTHANDLER=1 (kvfit smoke sets it).")
    else:
        parts.append("The engine core stopped (EngineDeadError)"
                     + (f" after {e.labels['exception']}" if e.labels.get("exception") else "") + ".")
    if e.labels.get("frame"):
        parts.append(f"It died in {e.labels['frame']}.")
    if facts.kv_cache_tokens is not None or facts.num_gpu_blocks is not None:
        dev = facts.device_label or "GPU"
        kv = []
        if facts.kv_cache_tokens is not None:
            kv.append(f"{_n(facts.kv_cache_tokens)} tokens")
        if facts.max_concurrency is not None and (facts.max_concurrency_len or facts.max_model_len):
            kv.append(f"{facts.max_concurrency:.2f}x at {_n(facts.max_concurrency_len or facts.max_model_len)} tokens")
        if facts.num_gpu_blocks is not None:
            kv.append(f"{_n(facts.num_gpu_blocks)} blocks")
        parts.append(f"Before that, vLLM had sized its {dev} KV cache ({', '.join(kv)}); the KV numbers are not the "
                     "problem.")
    fixes: list[Fix] = []
    frame = e.labels.get("frame") or ""
    if sig == "SIGILL" and "cpu_attention" in frame:
        fixes.append(Fix("vLLM's CPU attention ran its AMX kernel (bfloat16, block size a multiple of 32). Linux "
                         "gives a process AMX tile state only when it asks for it (arch_prctl "
                         "ARCH_REQ_XCOMP_PERM; torch.cpu._init_amx() asks); vLLM 0.32 does not ask, so the first "
                         "AMX instruction raises SIGILL. --dtype float32 makes vLLM pick its non-AMX kernel.",
                         {"--dtype": "float32"}, False))
    if sig == "SIGILL":
        fixes.append(Fix("Run vLLM on a CPU (or a VM exposing a CPU model) with the instruction sets its build and "
                         "kernels use (vLLM's CPU wheel picks AMX / AVX-512 kernels from CPUID, through torch), or "
                         "use a vLLM build made for this CPU.", {}, False))
    if not frame and sig != "SIGKILL" and (sig or proc):
        fixes.append(Fix("Run it again with PYTHONFAULTHANDLER=1 in the environment: the dying process then prints "
                         + ("which signal killed it and " if not sig else "") + "the Python stack it died in.",
                         {}, False, env={"PYTHONFAULTHANDLER": "1"}))
    if sig == "SIGKILL" or (sig is None and proc):
        fixes.append(Fix("Give the engine more memory, or make vLLM take less: a smaller --kv-cache-memory-bytes "
                         "(CPU backend) or --gpu-memory-utilization, fewer --max-num-seqs, a shorter --max-model-len. "
                         "`dmesg | grep -i oom` shows whether the OOM killer did it.", {}, False))
    elif sig == "SIGBUS":
        fixes.append(Fix("In a container: docker run --ipc=host (or a larger --shm-size).", {}, False))
    elif sig == "SIGSEGV":
        fixes.append(Fix("Check that vLLM and torch come from matching builds (pip show vllm torch) and report the "
                         "frame above to vLLM.", {}, False))
    return Diagnosis("engine_died", title, " ".join(parts), fixes)


_HANDLERS = {
    "v0_max_seq_len": _v0_max_seq_len,
    "v1_max_seq_len": _v1_max_seq_len,
    "no_cache_memory": _no_cache_memory,
    "free_memory_startup": _free_memory_startup,
    "user_max_len_too_long": _user_max_len,
    "cuda_oom": _cuda_oom,
    "cannot_autofit": _cannot_autofit,
    "profiling_memory_changed": _profiling_changed,
    "engine_died": _engine_died,
}


def _ok(facts: LogFacts) -> Diagnosis | None:
    tokens, conc, L = facts.kv_cache_tokens, facts.max_concurrency, facts.max_concurrency_len or facts.max_model_len
    kv = facts.available_kv_gib
    if tokens is None and kv is None and facts.num_gpu_blocks is None and conc is None:
        return None
    dev = facts.device_label or "GPU"
    bits = []
    title_bits = []
    if tokens is not None:
        derived = "kv_cache_tokens" in facts.derived
        bits.append(
            f"The {dev} KV cache holds {_n(tokens)} tokens"
            + (f" ({_n(facts.num_gpu_blocks)} blocks x {tokens // facts.num_gpu_blocks})" if derived else "")
            + (f" in {_g(kv)}" if kv is not None else "")
            + "."
        )
        title_bits.append(f"{_n(tokens)} tokens of KV cache")
    elif kv is not None:
        bits.append(f"{_g(kv)} was available for the KV cache.")
        title_bits.append(f"{_g(kv)} of KV cache")
    per_rank = facts.all_values.get("available_kv_gib", [])
    if len(set(per_rank)) > 1:
        bits.append(
            "The workers report different KV memory ("
            + ", ".join(f"{v:.2f}" for v in per_rank)
            + f" GiB); every worker gets the block count of the smallest ({min(per_rank):.2f} GiB)."
        )
    if conc is not None and L:
        bits.append(f"That is {conc:.2f}x concurrency for requests of {_n(L)} tokens.")
        title_bits.append(f"{conc:.2f}x at {_n(L)} tokens")
    if facts.total_gpu_memory_gib is not None and facts.gpu_memory_utilization is not None:
        budget = facts.requested_memory_gib or facts.total_gpu_memory_gib * facts.gpu_memory_utilization
        used = []
        if facts.model_weights_gib is not None:
            used.append(f"weights {_g(facts.model_weights_gib)}")
        if facts.activation_peak_gib is not None:
            used.append(f"activation peak {_g(facts.activation_peak_gib)}")
        if facts.non_torch_memory_gib is not None:
            used.append(f"non-torch {_g(facts.non_torch_memory_gib)}")
        if facts.cuda_graph_gib is not None:
            used.append(f"CUDA graphs {_g(facts.cuda_graph_gib)}")
        bits.append(
            f"Budget: {facts.gpu_memory_utilization} x {_g(facts.total_gpu_memory_gib)} = {_g(budget)}"
            + (f"; {', '.join(used)}." if used else ".")
        )
    if conc is not None and conc < 1.0:
        bits.append("Concurrency below 1x means one full-length request does not fit.")
    status = "vLLM started" if facts.startup_complete else "vLLM sized its KV cache"
    title = status + (": " + ", ".join(title_bits) if title_bits else "")
    return Diagnosis("ok", title, " ".join(bits), [])


def _env_warnings(facts: LogFacts) -> list[str]:
    out = []
    for name, val in facts.env.items():
        if name.endswith("GPU_MEMORY_UTILIZATION"):
            msg = (
                f"{name}" + (f"={val}" if val is not None else "") + " is set, but vLLM reads no such environment "
                "variable; the setting is the --gpu-memory-utilization flag (or gpu_memory_utilization= in Python)."
            )
            if facts.gpu_memory_utilization is not None:
                try:
                    differs = val is not None and abs(float(val) - facts.gpu_memory_utilization) > 1e-9
                except ValueError:
                    differs = False
                msg += f" vLLM ran with {facts.gpu_memory_utilization}" + (
                    f", not {val}." if differs else "."
                )
            out.append(msg)
    return out


_RELEVANT_WARNING = re.compile(
    r"KV cache|memory|max_model_len|max model len|block size|sliding window|prefix caching|"
    r"gpu_memory_utilization|cuda ?graph|max_num_(?:seqs|batched_tokens)",
    re.IGNORECASE,
)


def explain(facts: LogFacts) -> Explanation:
    diagnoses: list[Diagnosis] = []
    for e in facts.errors:
        handler = _HANDLERS.get(e.kind)
        if handler is not None:
            diagnoses.append(handler(facts, e))
    if not diagnoses:
        ok = _ok(facts)
        if ok is not None:
            diagnoses.append(ok)
    warnings = _env_warnings(facts) + [w for w in facts.warnings if _RELEVANT_WARNING.search(w)]
    if not diagnoses:
        warnings.append("No vLLM error or KV-cache capacity line was recognised in this text.")
    return Explanation(diagnoses=diagnoses, warnings=warnings, model=facts.model, settings=_settings(facts))
