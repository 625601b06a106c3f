"""The same comparison once through the command line: `kvfit check DIR --device cpu --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engine_cases import BY_ID
from engine_kvfit import DATA


def _isa(probes: dict) -> str:
    return "amx" if probes["amx_tile"] else ("avx512_bf16" if probes["avx512_bf16"] else "avx2")


def _kvfit_json(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([sys.executable, "-m", "kvfit", "check", *args, "--json"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    from kvfit_schema import check_output

    check_output(["check", *args, "--json"], r.stdout)     # validates against the shipped schema
    return json.loads(r.stdout)


def _assert_same(doc: dict, got: dict) -> None:
    assert not got.get("crashed") and got.get("ok"), got.get("error")
    cap, settings = doc["capacity"], doc["settings"]
    assert cap["num_blocks"] == got["num_blocks"]
    assert cap["kv_cache_tokens"] == got["kv_cache_tokens"]
    assert f"{cap['max_concurrency']:.2f}" == f"{got['max_concurrency']:.2f}"
    assert settings["max_model_len"] == got["max_model_len"]
    assert doc["kv"]["block_size"] == got["block_size"]


def test_cli_dense(engine_results):
    case = BY_ID["llama_gqa-default"]
    doc = _kvfit_json(str(DATA / case.model), "--device", "cpu", "--kv-cache-memory-bytes", str(case.budget),
                      "--cpu-isa", _isa(engine_results[case.id]["probes"]))
    _assert_same(doc, engine_results[case.id])


def test_cli_hybrid_with_speculative_tokens(engine_results):
    case = BY_ID["qwen3_next-ngram2"]
    spec = case.engine["speculative_config"]
    doc = _kvfit_json(str(DATA / case.model), "--device", "cpu", "--kv-cache-memory-bytes", str(case.budget),
                      "--max-model-len", str(case.max_model_len), "--entrypoint", "llm",
                      "--speculative-config", json.dumps({"method": spec["method"],
                                                          "num_speculative_tokens": spec["num_speculative_tokens"]}),
                      "--cpu-isa", _isa(engine_results[case.id]["probes"]))
    _assert_same(doc, engine_results[case.id])


def test_cli_mla_on_every_cpu_path_the_engine_ran(engine_results):
    """--cpu-isa names the path: the MLA launch on the host's path and on the lower ones (AMX_MLA keeps block
    128; CPU_MLA forces 16 and max_num_batched_tokens = max(L, 2048)), each against what vLLM sized there."""
    ran = 0
    for cid in ("mla-L3000", "mla-L3000@avx512_bf16", "mla-L3000@avx2"):
        got = engine_results[cid]
        if got.get("not_run"):
            continue
        case = BY_ID[cid]
        doc = _kvfit_json(str(DATA / case.model), "--device", "cpu", "--kv-cache-memory-bytes", str(case.budget),
                          "--max-model-len", str(case.max_model_len), "--entrypoint", "llm",
                          "--cpu-isa", _isa(got["probes"]))
        _assert_same(doc, got)
        assert doc["settings"]["max_num_batched_tokens"] == got["max_num_batched_tokens"]
        ran += 1
    assert ran >= 1
