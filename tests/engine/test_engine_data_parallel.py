"""Data parallel on vLLM's real CPU engine (issue 16): `--data-parallel-size 2` starts two engine cores, each
sizing the KV cache of its own requests; kvfit says what each reports and the total.

`LLM(data_parallel_size=2)` is refused by vLLM 0.32 in one process ("not supported for single-process usage",
entrypoints/llm.py), so this runs the OpenAI server (`python -m vllm.entrypoints.openai.api_server`, what
`vllm serve` runs) under the engine lock, reads the two engines' "CPU KV cache size" lines and stops it.
Tensor parallel (qwen3_next-tp2), expert parallel (qwen3_next-tp2-ep) and pipeline parallel (gemma3-pp2)
run in engine_cases.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine_oracle import engine_env, locked, require_vllm

from kvfit.app.inputs import Request, build
from kvfit.plan.evaluate import evaluate
from kvfit.plan.ranks import deployment

LLAMA = Path(__file__).resolve().parent.parent / "data" / "engine" / "llama_gqa"
KV_LINE = re.compile(r"\(EngineCore_DP(\d)[^)]*\).*CPU KV cache size: ([\d,]+) tokens, Maximum concurrency for "
                     r"([\d,]+) tokens per request: ([\d.]+)x")
TIMEOUT_S = 900                       # waiting for the lock included


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(p: subprocess.Popen) -> None:
    """Stop the server and its engine cores: the whole process group this test started (flock, the server,
    EngineCore_DP0/1), SIGTERM then, after 60 s, SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        t0 = time.time()
        while time.time() - t0 < wait:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                p.poll()
                return
            time.sleep(0.5)


def test_two_data_parallel_engines_each_report_kvfits_numbers(tmp_path):
    require_vllm()
    budget = 64 << 20
    args = ["--data-parallel-size", "2", "--max-model-len", "3000", "--kv-cache-memory-bytes", str(budget),
            "--enforce-eager"]
    cmd = locked([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(LLAMA),
                  "--load-format", "dummy", "--skip-tokenizer-init", "--port", str(_free_port()), *args])
    env = engine_env(VLLM_ENABLE_V1_MULTIPROCESSING="1", VLLM_CPU_OMP_THREADS_BIND="0|1")
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    log = tmp_path / "server.log"
    found: dict[int, tuple[int, int, float]] = {}
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            t0 = time.time()
            while time.time() - t0 < TIMEOUT_S and len(found) < 2 and p.poll() is None:
                time.sleep(2)
                for m in KV_LINE.finditer(log.read_text(errors="replace")):
                    found[int(m.group(1))] = (int(m.group(2).replace(",", "")), int(m.group(3).replace(",", "")),
                                              float(m.group(4)))
        finally:
            _stop_group(p)
    assert sorted(found) == [0, 1], log.read_text()[-3000:]
    inp = build(Request(model=str(LLAMA), values={"device": "cpu", "data_parallel_size": 2, "max_model_len": 3000,
                                                  "kv_cache_memory_bytes": budget, "offline": True}))
    res = evaluate(inp.model, inp.gpus[0], inp.settings, inp.profile)
    for tokens, length, conc in found.values():
        assert (tokens, length) == (res.capacity.kv_cache_tokens, 3000)
        assert conc == round(res.capacity.max_concurrency, 2)
    d = deployment(res)
    assert (d.engines, d.gpus) == (2, 2) and d.kv_tokens_total == sum(t for t, _, _ in found.values())
