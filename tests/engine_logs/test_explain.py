"""Tests for kvfit.engine.explain: diagnoses and computed fixes.

Expected flag values are worked out by hand from the log numbers (records' ``reported`` fields and the doc),
following the rules documented in explain.py's module docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.logs.diagnose import MAX_UTIL, Explanation, explain
from kvfit.logs.parse import parse_log

HERE = Path(__file__).resolve()
DATA = HERE.parents[1] / "data" / "logs"
SHARED_OBS = HERE.parents[2].parent / "shared" / "calibration" / "observations.jsonl"


def _records() -> list[dict]:
    path = DATA / "observations.jsonl"
    if not path.exists():
        path = SHARED_OBS
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = _records()
IDS = [r["obs_id"] for r in RECORDS]


def _explain_text(text: str) -> Explanation:
    return explain(parse_log(text))


def _explain_file(name: str) -> Explanation:
    return _explain_text((DATA / name).read_text(encoding="utf-8"))


def _all_flags(ex: Explanation) -> list[dict[str, str]]:
    return [fx.flags for d in ex.diagnoses for fx in d.fixes]


# ------------------------------------------------------------------------------------------------
# every calibration record


@pytest.mark.parametrize("rec", RECORDS, ids=IDS)
def test_record_diagnosis(rec):
    ex = _explain_text("\n".join(rec["log_lines_verbatim"]))
    kinds = [d.kind for d in ex.diagnoses]
    if rec["reported"].get("startup_failed") is True:
        x, y = rec["max_model_len"], rec["reported"]["kv_cache_tokens"]
        assert kinds == ["v0_max_seq_len"]
        d = ex.diagnoses[0]
        first = d.fixes[0]
        assert first.flags == {"--max-model-len": str(y)}  # V0 needs max_model_len <= block_size * blocks == Y
        assert first.exact is True
        assert f"{x:,}" in d.explanation and f"{y:,}" in d.explanation
        assert f"{x:,}" in d.title and f"{y:,}" in d.title
    else:
        # no error line in these excerpts: a capacity summary
        assert kinds == ["ok"]
        d = ex.diagnoses[0]
        assert d.fixes == []
        rep = rec["reported"]
        if "kv_cache_tokens" in rep and rec.get("block_size") in (None, 16):
            assert f"{rep['kv_cache_tokens']:,}" in d.title
        if "max_concurrency" in rep:
            assert f"{rep['max_concurrency']:.2f}x" in d.explanation
        if "kv_cache_gib" in rep and "kv_cache_tokens" not in rep:
            assert f"{rep['kv_cache_gib']:.2f} GiB" in d.explanation
    # sanity for every proposed utilisation
    for flags in _all_flags(ex):
        if "--gpu-memory-utilization" in flags:
            assert 0 < float(flags["--gpu-memory-utilization"]) <= MAX_UTIL
    assert not any("GPU_MEMORY_UTILIZATION" in w for w in ex.warnings)  # no env-var misuse in these logs


def test_canonical_gt021():
    """README: Orpheus 3B on a 24 GB card, max_model_len 131072, KV capacity 126,208 tokens, refused to start."""
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-021")
    ex = _explain_text("\n".join(rec["log_lines_verbatim"]))
    d = ex.diagnoses[0]
    assert d.kind == "v0_max_seq_len"
    assert d.fixes[0].flags == {"--max-model-len": "126208"}
    assert "7,888 blocks x 16" in d.explanation
    # the log lacks the GPU total and KV GiB figure, so no utilisation value can be computed from it alone
    util_fixes = [fx for fx in d.fixes if "--gpu-memory-utilization" in fx.flags]
    assert util_fixes == []
    assert any("gpu-memory-utilization" in fx.description and not fx.flags for fx in d.fixes)
    assert ex.settings["max_model_len"] == 131072


def test_gt027_util_cannot_fix():
    """gt-027: 4.60 GiB holds 37,696 tokens; 131,072 need ~11.4 GiB more, i.e. util 0.9 + 11.4/22.07 > 1."""
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-027")
    ex = _explain_text("\n".join(rec["log_lines_verbatim"]))
    d = ex.diagnoses[0]
    assert d.fixes[0].flags == {"--max-model-len": "37696"}
    assert not any("--gpu-memory-utilization" in fx.flags for fx in d.fixes)
    assert "not enough" in d.explanation


def test_gt025_settings_and_tp_fix():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-025")
    ex = _explain_text("\n".join(rec["log_lines_verbatim"]))
    assert ex.model == "/root/autodl-tmp/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert ex.settings["tensor_parallel_size"] == 2
    assert ex.settings["gpu_memory_utilization"] == 0.98
    assert {"--tensor-parallel-size": "4"} in _all_flags(ex)


# ------------------------------------------------------------------------------------------------
# hand-written logs


def test_v0_util_fix_computed():
    """gt-043 numbers + a 262,144 request: 45.21 GiB hold 237,040 tokens, so 25,104 more tokens need
    25,104 * 45.21 / 237,040 = 4.788 GiB; util 0.70 + 4.788/79.15 = 0.7605 -> ceil 0.77 -> +0.01 margin = 0.78."""
    ex = _explain_file("v0_error_util_fix.log")
    d = ex.diagnoses[0]
    assert d.kind == "v0_max_seq_len"
    assert d.fixes[0].flags == {"--max-model-len": "237040"}
    assert d.fixes[1].flags == {"--gpu-memory-utilization": "0.78"}
    assert d.fixes[1].exact is False
    assert ex.model == "/opt/tiger/test0/Phi-4"


def test_v1_fixes_estimate_and_util():
    """Requested 18.82 GiB at util 0.80 -> total 23.525 GiB; 10.00 - 8.60 = 1.40 GiB more ->
    0.80 + 1.40/23.525 = 0.8595 -> 0.86 + 0.01 = 0.87 (below free 23.17/23.525 = 0.98)."""
    ex = _explain_file("v1_011_error_util.log")
    d = ex.diagnoses[0]
    assert d.kind == "v1_max_seq_len"
    assert d.fixes[0].flags == {"--max-model-len": "70448"}
    assert d.fixes[0].exact is True
    assert d.fixes[1].flags == {"--gpu-memory-utilization": "0.87"}
    assert "81,920" in d.explanation and "10.00 GiB" in d.explanation and "8.60 GiB" in d.explanation


def test_v1_old_wording_without_estimate():
    """No estimate printed: (9.38-0.005)/(16.00+0.005) * 131072 = 76,775 -> multiple of 16 below: 76,768."""
    ex = _explain_file("v1_old_gb_error.log")
    d = ex.diagnoses[0]
    assert d.fixes[0].flags == {"--max-model-len": "76768"}
    assert d.fixes[0].exact is False


def test_cpu_run_c():
    """§7.3 run C: vLLM's estimate 3072 is the fix; CPU wording, no CUDA graphs."""
    ex = _explain_file("cpu_run_c_error.log")
    d = ex.diagnoses[0]
    assert d.kind == "v1_max_seq_len"
    assert d.fixes[0].flags == {"--max-model-len": "3072"}
    assert d.fixes[0].exact is True
    assert "CUDA" not in d.explanation
    assert any("--kv-cache-memory-bytes" in fx.flags for fx in d.fixes)
    assert not any("--tensor-parallel-size" in fx.flags for fx in d.fixes)


def test_free_memory_startup_fix():
    """floor(10.45/79.25 * 100)/100 = 0.13, minus the 0.01 margin -> 0.12."""
    ex = _explain_file("free_memory_startup.log")
    d = ex.diagnoses[0]
    assert d.kind == "free_memory_startup"
    assert d.fixes[0].flags == {"--gpu-memory-utilization": "0.12"}
    assert "10.45" in d.explanation and "72.91" in d.explanation and "68.80" in d.explanation


def test_user_max_len_fixes():
    ex = _explain_file("cpu_user_max_len.log")
    d = ex.diagnoses[0]
    assert d.kind == "user_max_len_too_long"
    assert d.fixes[0].flags == {"--max-model-len": "6144"}
    assert d.fixes[1].env == {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    assert "caution" in d.fixes[1].description
    assert ex.warnings == []


def test_oom_profiling_fix():
    """non-default args: max_num_batched_tokens 16384, max_num_seqs 1024 -> halve both."""
    ex = _explain_file("oom_profiling.log")
    d = ex.diagnoses[0]
    assert (d.kind, d.title) == ("cuda_oom", "CUDA out of memory during profiling")
    assert d.fixes[0].flags == {"--max-num-batched-tokens": "8192", "--max-num-seqs": "512"}
    assert "3.38 GiB" in d.explanation


def test_oom_graph_capture_fix():
    """util 0.95, total 23.65: 0.95 - (20 MiB + 0.01*23.65 GiB)/23.65 = 0.9392 -> floor 0.93."""
    ex = _explain_file("oom_graph_capture.log")
    d = ex.diagnoses[0]
    assert d.title == "CUDA out of memory during graph capture"
    assert d.fixes[0].flags == {"--enforce-eager": ""}
    assert d.fixes[1].flags == {"--gpu-memory-utilization": "0.93"}


def test_oom_sampling_fix():
    """The sampler warm-up used 1024 dummy requests -> --max-num-seqs 512."""
    ex = _explain_file("oom_sampling.log")
    assert len(ex.diagnoses) == 1
    d = ex.diagnoses[0]
    assert d.title == "CUDA out of memory during sampling"
    assert d.fixes[0].flags == {"--max-num-seqs": "512"}


def test_oom_loading_fix():
    ex = _explain_file("oom_loading.log")
    d = ex.diagnoses[0]
    assert d.title == "CUDA out of memory during loading"
    assert d.fixes[0].flags == {"--tensor-parallel-size": "2"}
    assert ex.model == "meta-llama/Llama-3.3-70B-Instruct"


def test_env_var_warning_export():
    ex = _explain_file("env_util_export.log")
    assert len(ex.warnings) == 1
    w = ex.warnings[0]
    assert "VLLM_GPU_MEMORY_UTILIZATION=0.95" in w and "--gpu-memory-utilization" in w
    d = ex.diagnoses[0]
    assert d.kind == "v1_max_seq_len"
    assert d.fixes[0].flags == {"--max-model-len": "20960"}


def test_env_var_warning_docker():
    ex = _explain_file("env_util_docker.log")
    assert any("GPU_MEMORY_UTILIZATION=0.85" in w and "--gpu-memory-utilization" in w for w in ex.warnings)
    assert [d.kind for d in ex.diagnoses] == ["ok"]


def test_env_var_warning_states_used_value():
    ex = _explain_text(
        "VLLM_GPU_MEMORY_UTILIZATION=0.95 vllm serve org/model\n"
        "INFO [worker.py:1] the current vLLM instance can use total_gpu_memory (23.55GiB) x "
        "gpu_memory_utilization (0.90) = 21.20GiB\n"
    )
    assert any("vLLM ran with 0.9, not 0.95" in w for w in ex.warnings)
    assert ex.model == "org/model"


def test_ok_summary_v032():
    """§8.3: 460,496 tokens, 3.51x at 131,072, 56.21 GiB, budget 0.92 x 79.25 = 72.91 GiB."""
    ex = _explain_file("v032_h100_llama8b.log")
    assert [d.kind for d in ex.diagnoses] == ["ok"]
    d = ex.diagnoses[0]
    assert "460,496" in d.title and "3.51x" in d.title and "131,072" in d.title
    assert "56.21 GiB" in d.explanation and "72.91 GiB" in d.explanation
    assert ex.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert ex.settings["max_model_len"] == 131072
    assert ex.settings["gpu_memory_utilization"] == 0.92
    assert ex.settings["tensor_parallel_size"] == 1


@pytest.mark.parametrize(
    "name, tokens",
    [("cpu_run_a.log", "682,625"), ("cpu_run_b.log", "860,370"), ("cpu_run_d_autofit.log", "3,200")],
)
def test_ok_summary_cpu(name, tokens):
    ex = _explain_file(name)
    d = ex.diagnoses[0]
    assert d.kind == "ok"
    assert tokens in d.title
    assert "CPU KV cache" in d.explanation


def test_other_error_diagnoses():
    ex = _explain_text(
        "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`.\n"
        "ValueError: Cannot auto-fit max_model_len: not enough GPU memory available to serve even a single token.\n"
    )
    assert [d.kind for d in ex.diagnoses] == ["no_cache_memory", "cannot_autofit"]
    assert all(d.fixes for d in ex.diagnoses)


def test_no_cache_memory_with_negative_kv():
    """V0 profile: KV -1.23 GiB on 23.55 GiB at 0.9 -> need 2.23 GiB more for ~1 GiB KV:
    0.9 + 2.23/23.55 = 0.9947 -> too high (> 0.99) -> no utilisation value proposed."""
    ex = _explain_text(
        "INFO worker.py:241] the current vLLM instance can use total_gpu_memory (23.55GiB) x "
        "gpu_memory_utilization (0.90) = 21.20GiB\n"
        "INFO worker.py:241] model weights take 20.10GiB; non_torch_memory takes 0.10GiB; PyTorch activation peak "
        "memory takes 2.23GiB; the rest of the memory reserved for KV Cache is -1.23GiB.\n"
        "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
        "initializing the engine.\n"
    )
    d = ex.diagnoses[0]
    assert d.kind == "no_cache_memory"
    assert not any("--gpu-memory-utilization" in fx.flags for fx in d.fixes)
    assert "not enough" in d.explanation


def test_nothing_recognised():
    ex = _explain_text("just some text\n")
    assert ex.diagnoses == []
    assert ex.warnings and "No vLLM error" in ex.warnings[0]


def test_kv_relevant_vllm_warning_passed_through():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-049")
    facts = parse_log("\n".join(rec["log_lines_verbatim"]))
    assert facts.warnings == ["Add 2 padding layers, may waste at most 9.09% KV cache memory"]
    ex = explain(facts)
    assert ex.warnings == ["Add 2 padding layers, may waste at most 9.09% KV cache memory"]


def test_gt017_per_rank_kv_mentioned():
    """gt-017: ranks report 0.13, 0.04 and 0.09 GiB; the smallest decides the block count."""
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-017")
    d = _explain_text("\n".join(rec["log_lines_verbatim"])).diagnoses[0]
    assert d.kind == "ok"
    assert "0.13, 0.04, 0.09" in d.explanation and "smallest (0.04 GiB)" in d.explanation
