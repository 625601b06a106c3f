"""The real-engine fixtures: vLLM's CPU backend run on every launch of engine_cases.py, once per session,
and the generation probe (engine_oracle.py).

All shared-process cases run in one helper process (engine_runner.py, `if __name__ == "__main__"`), one
engine at a time, under `flock /tmp/kvfit-engine.lock` (other suites and engineers start engines too): the
~10 s import of torch and vLLM is paid once, not per case. VLLM_CPU_KVCACHE_SPACE is removed; every case
passes kv_cache_memory_bytes. If the helper dies on a case, that case is recorded as crashed (with the KV
numbers vLLM had already sized, if any) and the helper restarts on the remaining ones.

Without vLLM the engine tests skip with the reason, except under CI, where they fail
(engine_oracle.require_vllm). Under pytest-xdist every test here runs in one worker (tests/conftest.py's
scheduler; test_config_reader.py in a group of its own), so the engine batch and the probe run once while
the other workers run the rest.

KVFIT_ENGINE_RESULTS=FILE keeps the results in FILE and reuses the ones already there (for
iterating locally); CI leaves it unset and runs every engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))            # engine_cases, engine_oracle (importlib import mode)

from engine_cases import ALL_CASES      # noqa: E402
from engine_oracle import (engine_env, locked, require_vllm, run_generation_probe,  # noqa: E402
                           save_note)

DATA = HERE.parent / "data" / "engine"
RUN_TIMEOUT_S = 3600                     # the whole batch, waiting for the lock included


def _load(path: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """(finished results, partial results: KV numbers recorded before a case finished)."""
    done: dict[str, dict] = {}
    partial: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                (partial if r.get("partial") else done)[r["id"]] = r
    return done, partial


def run_engine_cases(cases, results_path: Path, log_path: Path) -> dict[str, dict]:
    """Shared-process cases in one helper, then each own-process case in a helper of its own."""
    batches = [[c for c in cases if not c.own_process]] + [[c] for c in cases if c.own_process]
    for batch in batches:
        _run_batch(batch, results_path, log_path)
    return _load(results_path)[0]


def _run_batch(cases, results_path: Path, log_path: Path) -> None:
    results, _ = _load(results_path)
    todo = [c for c in cases if c.id not in results]
    while todo:
        cases_path = results_path.with_suffix(".cases.json")
        cases_path.write_text(json.dumps([c.runner_case(str(DATA)) for c in todo]))
        cmd = locked([sys.executable, str(HERE / "engine_runner.py"), str(cases_path), str(results_path)])
        t0 = time.time()
        with open(log_path, "a") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=engine_env(),
                                timeout=RUN_TIMEOUT_S).returncode
        results, partial = _load(results_path)
        missing = [c for c in todo if c.id not in results]
        if missing:
            # the helper died on the first unfinished case: record it (with what vLLM had sized), go on
            first = missing[0].id
            crash = {"id": first, "crashed": True, "rc": rc, "seconds": round(time.time() - t0, 1)}
            if first in partial:
                crash.update(captured=partial[first].get("captured"), probes=partial[first].get("probes"))
            with open(results_path, "a") as f:
                f.write(json.dumps(crash) + "\n")
            results, _ = _load(results_path)
        todo = [c for c in cases if c.id not in results]


@pytest.fixture
def vllm_oracle() -> None:
    """For tests that need vLLM importable: skip without it, fail under CI."""
    require_vllm()


@pytest.fixture(scope="session")
def engine_results(tmp_path_factory) -> dict[str, dict]:
    require_vllm()
    keep = os.environ.get("KVFIT_ENGINE_RESULTS")
    results_path = Path(keep) if keep else tmp_path_factory.mktemp("engine") / "results.jsonl"
    log_path = results_path.with_suffix(".log")
    results = run_engine_cases(ALL_CASES, results_path, log_path)
    ran = sorted({c.isa or "host" for c in ALL_CASES if not results.get(c.id, {}).get("not_run")})
    not_run = sorted({c.isa or "host" for c in ALL_CASES if results.get(c.id, {}).get("not_run")})
    save_note("cpu_paths", ", ".join(ran) + (f" (not runnable here: {', '.join(not_run)}; kv/cpu_host.py's "
                                             "tests cover them from vLLM's code)" if not_run else ""))
    return results


@pytest.fixture(scope="session")
def host_probes() -> dict:
    """What vLLM's CPU platform sees on this machine: the torch probes platforms/cpu.py reads."""
    require_vllm()
    code = ("import json, torch; print(json.dumps({'amx_tile': torch.cpu._is_amx_tile_supported(), "
            "'avx512_bf16': torch.cpu._is_avx512_bf16_supported(), 'avx512': torch.cpu._is_avx512_supported()}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def generation_probe() -> dict:
    """Can vLLM's build generate on this host? (engine_oracle.run_generation_probe, once per session)"""
    require_vllm()
    verdict = run_generation_probe()
    save_note("probe", {k: v for k, v in verdict.items() if k != "log_tail"})
    return verdict
