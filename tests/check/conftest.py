"""Shared helpers for the `kvfit check` (issue #2) tests.

Every run is hermetic: no network (HF_HUB_OFFLINE=1 unless a test monkeypatches huggingface_hub),
an empty Hugging Face cache in tmp_path, and a fake NVML (tests/check/fake_nvml/pynvml.py) first on
PYTHONPATH so the GPU of the machine running the suite is never probed. `check_json` pins
`--vllm-version 0.32.0` (the release the arithmetic is read from) unless a test passes its own, so an
installed vLLM of another release does not move the hand-computed numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))   # the test modules import _checkutil

from _checkutil import FAKE_NVML, InProc, Run


@pytest.fixture
def hermetic_env(tmp_path, monkeypatch):
    """Environment for in-process runs: empty HF cache, offline, no CUDA_VISIBLE_DEVICES."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))     # kvfit's own cache (paramcache)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    return cache


@pytest.fixture
def kvfit(tmp_path):
    """Run the installed CLI (`python -m kvfit`) in a subprocess; returns Run(rc, out, err).

    kwargs: env={...} overrides (None removes a variable), nvml={...} the fake NVML spec.
    """
    cache = tmp_path / "hf-cache-sub"
    cache.mkdir(exist_ok=True)

    def run(*args: str, env: dict | None = None, nvml: dict | None = None, timeout: float = 60) -> Run:
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "VLLM_", "KVFIT_"))}
        e.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "COLUMNS": "250",
                  "XDG_CACHE_HOME": str(tmp_path / "xdg-cache-sub"),
                  "PYTHONPATH": os.pathsep.join([str(FAKE_NVML), e.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                  "KVFIT_FAKE_NVML": json.dumps(nvml or {"fail": "NVML Shared Library Not Found"})})
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        proc = subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True,
                              env=e, timeout=timeout)
        return Run(proc)

    return run



@pytest.fixture
def cli(hermetic_env, monkeypatch):
    """Run `kvfit ARGS` in this process (fast; monkeypatching works). NVML reports no GPU. A crash (any
    exception other than kvfit's own errors) propagates."""
    from kvfit_harness import invoke

    from kvfit.gpu import nvml

    monkeypatch.setattr(nvml, "probe", lambda: nvml.ProbeResult((), "test: no GPU"))
    monkeypatch.setenv("COLUMNS", "250")

    def run(*args: str):
        return invoke(list(args))

    return run


@pytest.fixture
def check_json(cli):
    """`kvfit check ARGS --json` in process; asserts the exit code (default: 0 or 1) and returns the dict."""

    def run(*args: str, rc: int | tuple[int, ...] = (0, 1)) -> dict:
        if "--vllm-version" not in args:
            args = (*args, "--vllm-version", "0.32.0")
        r = cli("check", *args, "--json")
        codes = (rc,) if isinstance(rc, int) else rc
        assert r.rc in codes, r
        return r.json

    return run
