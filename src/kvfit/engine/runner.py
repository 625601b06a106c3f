"""Start one real vLLM engine for `kvfit smoke` and report what it sized. Standard library + vLLM only.

Run by kvfit (never imported by it) as ``python -m kvfit.engine.runner SPEC.json RESULT.json`` in its own
process group, so that kvfit can stop the whole tree (engine core, workers) on a timeout or Ctrl-C.

* SPEC.json: ``{"llm_kwargs": {...vllm.LLM keyword arguments...}, "entrypoint": "serve"|"llm",
  "device": "cuda"|"cpu", "lock_path": "/tmp/kvfit-engine.lock", "prompt_token_ids": [...], "max_tokens": 2}``.
* RESULT.json holds the numbers vLLM stored on its config objects (cache_config's ``num_gpu_blocks``,
  ``kv_cache_size_tokens``, ``kv_cache_max_concurrency``; the resolved ``max_model_len``, batch sizes, ...),
  or the phase that failed and the error. It is rewritten (atomically) as each phase starts, so a runner
  killed by a signal (an engine core running in this process) still leaves the phase it died in and the
  numbers measured before. The engine's own log goes to stdout/stderr, which kvfit captures and parses
  with ``kvfit.logs.parse.parse_log``.
* Protocol lines on stdout: ``KVFIT_RUNNER waiting-lock`` (another engine run holds the lock),
  ``KVFIT_RUNNER locked`` (the engine starts now; kvfit's timeout counts from here), ``KVFIT_RUNNER engine
  {"cache": ...}`` (cache_config as soon as the engine is up) and ``KVFIT_RUNNER result {...}`` (RESULT.json
  as one JSON line).

Only one engine runs at a time on a machine: the runner holds an exclusive ``flock`` on ``lock_path``
(default /tmp/kvfit-engine.lock) from before vLLM is imported until it exits.

``entrypoint == "serve"`` makes ``vllm.LLM`` resolve its defaults as ``vllm serve`` does (usage context
OPENAI_API_SERVER: smaller max_num_batched_tokens / max_num_seqs defaults), so that the engine sized here is
the one the user's ``vllm serve`` command would size.

Exit codes: 0 engine started and generated; 3 the engine failed to start; 4 vLLM cannot be imported or
runs on another device type; 5 the engine started but generation failed; 2 bad spec.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

DEFAULT_LOCK = "/tmp/kvfit-engine.lock"


def _say(msg: str) -> None:
    sys.stdout.write(f"KVFIT_RUNNER {msg}\n")
    sys.stdout.flush()


def _lock(path: str | None):
    """Hold an exclusive flock on `path` for the life of this process (fd is close-on-exec)."""
    if not path:
        return None
    try:
        import fcntl
    except ImportError:  # not POSIX: vLLM does not run there either
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _say("waiting-lock")
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _plain(x):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return str(x)


def _attrs(obj, names) -> dict:
    return {n: _plain(getattr(obj, n, None)) for n in names} if obj is not None else {}


def _configs(llm) -> dict:
    engine = getattr(llm, "llm_engine", None)
    vc = getattr(engine, "vllm_config", None)

    def cfg(name):
        return getattr(vc, name, None) if vc is not None else getattr(engine, name, None)

    cc, mc, sc, pc = cfg("cache_config"), cfg("model_config"), cfg("scheduler_config"), cfg("parallel_config")
    out = {
        "cache": _attrs(cc, ("num_gpu_blocks", "num_cpu_blocks", "block_size", "kv_cache_size_tokens",
                             "kv_cache_max_concurrency", "cache_dtype", "gpu_memory_utilization",
                             "kv_cache_memory_bytes", "enable_prefix_caching")),
        "model": _attrs(mc, ("model", "max_model_len", "dtype", "quantization", "revision")),
        "scheduler": _attrs(sc, ("max_num_batched_tokens", "max_num_seqs", "enable_chunked_prefill",
                                 "chunked_prefill_enabled", "async_scheduling")),
        "parallel": _attrs(pc, ("tensor_parallel_size", "pipeline_parallel_size")),
    }
    try:
        out["model"]["vocab_size"] = int(mc.get_vocab_size())
    except Exception:  # noqa: BLE001 - optional
        out["model"]["vocab_size"] = None
    return out


def _serve_usage_context() -> str | None:
    """Make vllm.LLM build its engine with vllm serve's usage context. Returns the context used."""
    try:
        from vllm.usage.usage_lib import UsageContext
        import vllm.entrypoints.llm as llm_mod

        engine_cls = llm_mod.LLMEngine
        orig = engine_cls.from_engine_args.__func__
    except Exception:  # noqa: BLE001 - older layouts: keep the LLM class defaults and say so
        return None
    serve = UsageContext.OPENAI_API_SERVER

    def from_engine_args(cls, engine_args, usage_context=None, *args, **kwargs):
        return orig(cls, engine_args, serve, *args, **kwargs)

    engine_cls.from_engine_args = classmethod(from_engine_args)
    return serve.name


def _generate(llm, vocab: int | None, ids: list[int], max_tokens: int) -> list[int]:
    from vllm import SamplingParams

    if vocab:
        ids = [i % vocab for i in ids]
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, detokenize=False)
    try:
        from vllm.inputs import TokensPrompt

        outs = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    except ImportError:  # very old releases
        outs = llm.generate(prompt_token_ids=[ids], sampling_params=params, use_tqdm=False)
    return list(outs[0].outputs[0].token_ids)


def run(spec: dict, result_path: str) -> int:
    result: dict = {"ok": False, "phase": "lock", "pid": os.getpid()}
    t0 = time.time()

    def checkpoint() -> None:
        result["elapsed_s"] = round(time.time() - t0, 2)
        tmp = result_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        os.replace(tmp, result_path)

    def finish(code: int) -> int:
        checkpoint()
        sys.stdout.write("KVFIT_RUNNER result " + json.dumps(result) + "\n")   # the same, as one JSON line
        sys.stdout.flush()
        return code

    _lock_fd = _lock(spec.get("lock_path", DEFAULT_LOCK))  # noqa: F841 - held until exit
    result["lock_wait_s"] = round(time.time() - t0, 2)
    _say("locked")

    result["phase"] = "import"
    try:
        import vllm
        from vllm import LLM
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result.update(error_type=type(e).__name__, error=str(e)[:4000])
        return finish(4)
    result["vllm_version"] = getattr(vllm, "__version__", None)
    try:
        from vllm.platforms import current_platform

        result["platform"] = str(getattr(current_platform, "device_type", "") or "") or None
    except Exception:  # noqa: BLE001
        result["platform"] = None
    want = spec.get("device")
    if want and result["platform"] and result["platform"] != want:
        result.update(phase="platform", error_type="PlatformMismatch",
                      error=f"this vLLM build runs on {result['platform']!r}, not {want!r}")
        return finish(4)
    result["import_s"] = round(time.time() - t0 - result["lock_wait_s"], 2)

    result["usage_context"] = "LLM_CLASS"
    if spec.get("entrypoint", "serve") == "serve":
        result["usage_context"] = _serve_usage_context() or "LLM_CLASS"

    result["phase"] = "engine"
    checkpoint()
    t1 = time.time()
    try:
        llm = LLM(**spec["llm_kwargs"])
    except BaseException as e:  # noqa: BLE001 - report every startup failure, then exit non-zero
        traceback.print_exc()
        result.update(error_type=type(e).__name__, error=str(e)[:4000], engine_s=round(time.time() - t1, 2))
        return finish(3)
    result["engine_s"] = round(time.time() - t1, 2)
    try:
        result.update(_configs(llm))
    except Exception as e:  # noqa: BLE001
        result["config_error"] = f"{type(e).__name__}: {e}"
    sys.stdout.write("KVFIT_RUNNER engine " + json.dumps({"cache": result.get("cache")}) + "\n")
    sys.stdout.flush()

    result["phase"] = "generate"
    checkpoint()
    t2 = time.time()
    try:
        result["generated_token_ids"] = _generate(llm, (result.get("model") or {}).get("vocab_size"),
                                                  list(spec.get("prompt_token_ids") or [1, 5, 6, 7]),
                                                  int(spec.get("max_tokens", 2)))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result.update(error_type=type(e).__name__, error=str(e)[:4000], generate_s=round(time.time() - t2, 2))
        return finish(5)
    result["generate_s"] = round(time.time() - t2, 2)
    result["ok"] = True
    result["phase"] = "done"
    code = finish(0)
    try:  # shut the engine down here, while logging still works; kvfit sweeps the group afterwards
        del llm
        import gc

        gc.collect()
    except Exception:  # noqa: BLE001
        pass
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m kvfit.engine.runner SPEC.json RESULT.json\n")
        return 2
    try:
        with open(argv[0], encoding="utf-8") as fh:
            spec = json.load(fh)
        if not isinstance(spec, dict) or not isinstance(spec.get("llm_kwargs"), dict):
            raise ValueError("spec needs an llm_kwargs object")
    except (OSError, ValueError) as e:
        sys.stderr.write(f"kvfit runner: bad spec {argv[0]}: {e}\n")
        return 2
    return run(spec, argv[1])


if __name__ == "__main__":
    sys.exit(main())
