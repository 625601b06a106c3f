"""Runs vLLM's real CPU engine on tiny dummy-weight models and records its KV numbers.

Not a test module: tests/engine/conftest.py runs it as a subprocess, one at a time, under
`flock /tmp/kvfit-engine.lock`:

    python engine_runner.py CASES.json RESULTS.jsonl

CASES.json is a list of {"id", "model", "max_model_len", "kv_cache_memory_bytes", "kwargs", "env",
"isa"}. Each case builds one `vllm.LLM(...)` in this process (the engine core runs in-process with
VLLM_ENABLE_V1_MULTIPROCESSING=0 unless the case asks for several workers), reads what vLLM
decided, and appends one JSON line to RESULTS.jsonl as soon as it is known, so a crash loses
only the case that crashed. The KV numbers are also appended as a "partial" line the moment vLLM
has sized the cache, so a crash after that (warm-up) still leaves them. Nothing here computes a
KV number: every value is vLLM's own.

"isa" (kvfit's --cpu-isa names below this host's: avx512_bf16, avx512, avx2) runs the case on that
CPU path: the torch probes vLLM's CPU platform branches on (torch.cpu._is_amx_tile_supported,
_is_avx512_bf16_supported, _is_avx512_supported; kvfit/kv/cpu_host.py lists where) answer False
for the features the path lacks, for that case only. Only features are taken away, never added:
a path above the host's is not run (the result says so), since its kernels would not execute here.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import time
import traceback

_ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported", "_is_avx512_supported")
# what each path lacks (kvfit.kv.cpu_host.CpuHost.from_isa)
_LACKS = {"amx": (), "avx512_bf16": ("_is_amx_tile_supported",),
          "avx512": ("_is_amx_tile_supported", "_is_avx512_bf16_supported"),
          "avx2": _PROBES}


def _probes() -> dict:
    import torch

    return {"amx_tile": bool(torch.cpu._is_amx_tile_supported()),
            "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "avx512": bool(torch.cpu._is_avx512_supported())}


def _take_away(isa: str | None) -> dict | None:
    """Make the torch probes answer False for what `isa` lacks. Returns the originals (None: no change).
    Raises LookupError when the path needs a feature this host does not have."""
    if not isa:
        return None
    import torch

    host = _probes()
    need = {"amx": ("amx_tile", "avx512_bf16", "avx512"), "avx512_bf16": ("avx512_bf16", "avx512"),
            "avx512": ("avx512",), "avx2": ()}[isa]
    missing = [n for n in need if not host[n]]
    if missing:
        raise LookupError(f"this host lacks {', '.join(missing)}: the {isa} path cannot run here")
    saved = {n: getattr(torch.cpu, n) for n in _PROBES}
    for n in _LACKS[isa]:
        setattr(torch.cpu, n, lambda: False)
    return saved


def _clear_backend_caches() -> None:
    """vLLM caches the attention backend it selects (v1/attention/selector.py, functools.cache) by arguments
    that do not include the host: a case on another CPU path must select again."""
    from vllm.v1.attention import selector

    for name in ("_cached_get_attn_backend", "_cached_get_mamba_attn_backend"):
        fn = getattr(selector, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


def _restore(saved: dict | None) -> None:
    if saved:
        import torch

        for n, f in saved.items():
            setattr(torch.cpu, n, f)


def _group_summary(kv_cache_configs) -> dict:
    """What get_kv_cache_configs decided, per worker (diagnostics for failing comparisons)."""
    out = []
    for cfg in kv_cache_configs:
        groups = []
        for g in cfg.kv_cache_groups:
            spec = g.kv_cache_spec
            groups.append({"type": type(spec).__name__, "layers": len(g.layer_names),
                           "block_size": spec.block_size, "page_size_bytes": spec.page_size_bytes})
        out.append({"num_blocks": cfg.num_blocks, "groups": groups})
    return {"workers": out}


def run_case(case: dict, results_path: str | None = None) -> dict:
    from vllm import LLM
    import vllm.v1.engine.core as core

    captured: dict = {}
    try:
        saved_probes = _take_away(case.get("isa"))
    except LookupError as e:
        return {"id": case["id"], "not_run": str(e), "probes": _probes()}
    probes = _probes()
    _clear_backend_caches()
    original = core.get_kv_cache_configs

    def recording(vllm_config, kv_cache_specs, available_memory):
        configs = original(vllm_config, kv_cache_specs, available_memory)
        captured["kv"] = _group_summary(configs)
        captured["available_memory"] = list(available_memory)
        captured["max_model_len"] = vllm_config.model_config.max_model_len
        captured["num_blocks"] = min(c.num_blocks for c in configs)
        return configs

    original_capacity = core.update_kv_cache_capacity

    def recording_capacity(vllm_config, kv_cache_config):
        original_capacity(vllm_config, kv_cache_config)
        cc = vllm_config.cache_config
        captured.update(kv_cache_tokens=cc.kv_cache_size_tokens, max_concurrency=cc.kv_cache_max_concurrency,
                        block_size=cc.block_size, num_gpu_blocks=cc.num_gpu_blocks,
                        max_num_batched_tokens=vllm_config.scheduler_config.max_num_batched_tokens)
        if results_path:      # kept even if a later step (warm-up) kills this process
            _append(results_path, {"id": case["id"], "partial": True, "probes": probes, "captured": captured})

    core.get_kv_cache_configs = recording
    core.update_kv_cache_capacity = recording_capacity
    saved_env = {k: os.environ.get(k) for k in (case.get("env") or {})}
    os.environ.update(case.get("env") or {})
    # vLLM's CPU platform sets this once per process from the AVX512-BF16 probe; decide it per case
    os.environ.pop("VLLM_SSM_CONV_STATE_LAYOUT", None)
    kwargs = dict(model=case["model"], skip_tokenizer_init=True, load_format="dummy",
                  max_model_len=case["max_model_len"], enforce_eager=True,
                  kv_cache_memory_bytes=case["kv_cache_memory_bytes"])
    kwargs.update(case.get("kwargs") or {})
    result: dict = {"id": case["id"], "probes": probes}
    t0 = time.time()
    llm = None
    try:
        llm = LLM(**kwargs)
        vc = llm.llm_engine.vllm_config
        cc = vc.cache_config
        result.update(
            ok=True,
            num_blocks=cc.num_gpu_blocks,
            block_size=cc.block_size,
            kv_cache_tokens=cc.kv_cache_size_tokens,
            max_concurrency=cc.kv_cache_max_concurrency,
            max_model_len=vc.model_config.max_model_len,
            max_num_batched_tokens=vc.scheduler_config.max_num_batched_tokens,
            mamba_cache_mode=cc.mamba_cache_mode,
            mamba_ssm_cache_dtype=str(cc.mamba_ssm_cache_dtype),
            dtype=str(vc.model_config.dtype).replace("torch.", ""),
        )
    except Exception as e:  # vLLM refusing the launch is a result too
        message = str(e)
        m = _ESTIMATE.search(message)
        result.update(ok=False, error_type=type(e).__name__, error=message[:2000],
                      estimated_max_model_len=int(m.group(1)) if m else None,
                      traceback=traceback.format_exc()[-3000:])
    finally:
        core.get_kv_cache_configs = original
        core.update_kv_cache_capacity = original_capacity
        _restore(saved_probes)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result["captured"] = captured
    result["seconds"] = round(time.time() - t0, 2)
    if llm is not None:
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:
            pass
        del llm
    gc.collect()
    return result


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    cases_path, results_path = sys.argv[1], sys.argv[2]
    cases = json.load(open(cases_path))
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    for case in cases:
        _append(results_path, run_case(case, results_path))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)   # vLLM's background threads can hold a clean exit for a minute


if __name__ == "__main__":
    main()
