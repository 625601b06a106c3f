"""Engine deaths in vLLM logs: kvfit.logs.parse (engine_died), kvfit.logs.diagnose and `kvfit explain`.

Two real logs (tests/data/logs/README.md says how they were captured): vLLM 0.32.0's CPU engine on an AMX
host sizes its KV cache (682,625 tokens), then its worker dies of SIGILL at the first generation step.
``cpu_sigill_generate.log`` is plain ``LLM(...).generate(...)`` (vLLM's monitor prints "exit code: -4");
``cpu_sigill_generate_faulthandler.log`` is the log `kvfit smoke` kept (PYTHONFAULTHANDLER=1: Python names
the signal and the stack). The other cases are single lines in the formats of vLLM 0.32's messages
(v1/executor/multiproc_executor.py, v1/engine/utils.py, v1/utils.py), CPython's faulthandler, bash and
docker; their expected values are what those lines state.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit_harness import invoke
from kvfit.logs.diagnose import explain
from kvfit.logs.parse import engine_phase, parse_log

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
PLAIN = DATA / "cpu_sigill_generate.log"
FAULT = DATA / "cpu_sigill_generate_faulthandler.log"


def _died(text: str):
    facts = parse_log(text)
    died = [e for e in facts.errors if e.kind == "engine_died"]
    return facts, died


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "250")


# --- the real SIGILL logs ------------------------------------------------------------------------

def test_plain_vllm_sigill_log_is_a_death_after_kv_sizing():
    facts, died = _died(PLAIN.read_text())
    assert len(died) == 1
    e = died[0]
    assert e.labels["signal"] == "SIGILL" and e.numbers["exit_code"] == -4      # "(exit code: -4)"
    assert e.labels["process"] == "VllmWorker-0"
    assert e.phase == "generate"           # after "init engine (profile, create kv cache, warmup model) took"
    # the KV numbers printed before the death are still read
    assert facts.kv_cache_tokens == 682_625 and facts.max_concurrency == 227.54 and facts.device_label == "CPU"
    assert [e.kind for e in facts.errors] == ["engine_died"]


def test_plain_vllm_sigill_log_is_not_reported_as_a_healthy_start():
    ex = explain(parse_log(PLAIN.read_text()))
    assert [d.kind for d in ex.diagnoses] == ["engine_died"]
    d = ex.diagnoses[0]
    assert "SIGILL" in d.title and "generating" in d.title
    assert "682,625 tokens" in d.explanation and "exit code -4" in d.explanation
    # no frame in this log: run again with faulthandler to see where
    assert any(f.env == {"PYTHONFAULTHANDLER": "1"} for f in d.fixes)


def test_explain_cli_on_the_sigill_log():
    result = invoke(["explain", str(PLAIN), "--offline"])
    out = " ".join(result.out.split())
    assert result.exit_code == 0, result.out
    assert "✔ vLLM started" not in out and "✘ vLLM's engine died while generating" in out
    assert "killed by SIGILL" in out
    result = invoke(["explain", str(PLAIN), "--offline", "--json"])
    doc = json.loads(result.out)
    assert doc["failed"] is True and doc["diagnoses"][0]["kind"] == "engine_died"
    assert doc["facts"]["kv_cache_tokens"] == 682_625


def test_faulthandler_log_names_the_signal_and_the_kernel():
    facts, died = _died(FAULT.read_text())
    assert len(died) == 1
    e = died[0]
    assert e.labels["signal"] == "SIGILL"                       # "Fatal Python error: Illegal instruction"
    assert e.labels["evidence"] == "Python's faulthandler"
    # the faulting thread ("Current thread"), innermost frame outside torch's op dispatch
    assert e.labels["frame"] == "cpu_attention_with_kv_cache (_custom_ops.py:3927)"
    assert e.labels["process"] == "VllmWorker-0"                # "Worker proc VllmWorker-0 died unexpectedly"
    assert e.phase == "generate"
    d = explain(facts).diagnoses[0]
    amx = next(f for f in d.fixes if "AMX" in f.description)
    assert amx.flags == {"--dtype": "float32"}                  # float32 makes _get_attn_isa pick "vec"


# --- other deaths, one line each -------------------------------------------------------------------

KV_SIZED = ("(EngineCore pid=1) INFO 12-03 16:13:04 [kv_cache_utils.py:2327] CPU KV cache size: 682,625 tokens, "
            "Maximum concurrency for 3,000 tokens per request: 227.54x")
READY = "(EngineCore pid=1) INFO 12-03 16:13:07 [core.py:402] init engine (profile, create kv cache, warmup model) took 2.14 s"
LOADING = "(Worker pid=2) INFO 12-03 16:13:03 [cpu_model_runner.py:68] Starting to load model /m..."


@pytest.mark.parametrize("lines, signal, code, process, phase", [
    # multiproc_executor.py: "Worker proc %s died unexpectedly (exit code: %s), shutting down executor."
    ([LOADING, KV_SIZED, "(EngineCore pid=1) ERROR [multiproc_executor.py:315] Worker proc VllmWorker-1 died "
      "unexpectedly (exit code: -9), shutting down executor."], "SIGKILL", -9, "VllmWorker-1", "warm-up"),
    # v1/engine/utils.py: "Engine core initialization failed. ... Failed core proc(s): {name: exitcode}"
    ([LOADING, "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
      "{'EngineCore_DP0': -11}"], "SIGSEGV", -11, "EngineCore_DP0", "load"),
    # v1/utils.py: "Process {name} (PID: {pid}) died with exit code {exitcode}"
    (["RuntimeError: Process APIServer_0 (PID: 77) died with exit code -7"], "SIGBUS", -7, "APIServer_0", None),
    # bash, for a foreground job killed by a signal
    ([LOADING, KV_SIZED, READY, "Illegal instruction (core dumped)"], "SIGILL", None, None, "generate"),
    (["bash: line 1:  4242 Killed                  vllm serve Qwen/Qwen3-8B"], "SIGKILL", None, None, None),
    # docker compose: 128 + signal
    ([LOADING, "vllm-1 exited with code 137"], "SIGKILL", 137, None, "load"),
    # CPython faulthandler
    ([LOADING, KV_SIZED, "Fatal Python error: Aborted", "", "Current thread 0x01 (most recent call first):",
      '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 5 in _dummy_run',
      '  File "/x/vllm/v1/worker/gpu_worker.py", line 9 in compile_or_warm_up_model'], "SIGABRT", None, None,
     "warm-up"),
])
def test_death_lines(lines, signal, code, process, phase):
    facts, died = _died("\n".join(lines))
    assert len(died) == 1, facts.errors
    e = died[0]
    assert e.labels.get("signal") == signal
    assert e.numbers.get("exit_code") == code
    assert e.labels.get("process") == process
    assert e.phase == phase


def test_faulthandler_frames_decide_the_phase():
    """The stack beats the progress lines: a death in profile_run is profiling even after "Starting to load"."""
    text = "\n".join([LOADING, "Fatal Python error: Segmentation fault", "",
                      "Current thread 0x01 (most recent call first):",
                      '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 5 in _dummy_run',
                      '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 9 in profile_run',
                      '  File "/x/vllm/v1/worker/gpu_worker.py", line 3 in determine_available_memory'])
    _, died = _died(text)
    assert died[0].labels["signal"] == "SIGSEGV" and died[0].phase == "profile"
    assert died[0].labels["frame"] == "_dummy_run (gpu_model_runner.py:5)"


def test_clean_exits_and_ordinary_errors_are_not_deaths():
    for text in ["RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
                 "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
                 "{'EngineCore_DP0': 1}",
                 "vllm-1 exited with code 1",
                 "Killed 3 stale requests",
                 (DATA / "cpu_run_c_error.log").read_text()]:
        assert not [e for e in parse_log(text).errors if e.kind == "engine_died"], text[:80]


def test_engine_dead_error_after_an_explained_error_adds_nothing():
    """An OOM during sampling ends in EngineDeadError too: the OOM is the diagnosis, not a second death."""
    text = (DATA / "oom_sampling.log").read_text() + "\nvllm.v1.engine.exceptions.EngineDeadError: EngineCore " \
        "encountered an issue. See stack trace (above) for the root cause.\n"
    assert [e.kind for e in parse_log(text).errors] == ["cuda_oom"]


def test_engine_dead_error_alone_names_the_exception():
    text = "\n".join([LOADING, KV_SIZED, READY,
                      "(EngineCore pid=1) ERROR [core.py:1512] EngineCore encountered a fatal error.",
                      "(EngineCore pid=1) ERROR [core.py:1512] Traceback (most recent call last):",
                      "(EngineCore pid=1) ERROR [core.py:1512] ValueError: bad shape",
                      "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue."])
    _, died = _died(text)
    assert died[0].labels.get("signal") is None and died[0].labels["exception"] == "ValueError: bad shape"
    assert died[0].phase == "generate"


@pytest.mark.parametrize("upto, phase", [(0, None), (1, "load"), (2, "KV sizing"), (3, "warm-up"), (4, "generate")])
def test_engine_phase_from_progress_lines(upto, phase):
    lines = [LOADING, "(Worker pid=2) INFO [cpu_worker.py:260] Explicitly set (1.0/9.71) GiB for KV cache on node 0.",
             KV_SIZED, READY]
    assert engine_phase(lines, upto) == phase


def test_worker_gone_after_a_refused_start_is_not_a_death():
    """vLLM 0.32 refusing a too-small KV budget: the executor's monitor may log the worker's exit while the
    engine core shuts down ("exit code: None"): the KV error is the diagnosis."""
    text = (DATA / "cpu_run_c_error.log").read_text() + (
        "\n(EngineCore pid=17337) ERROR 12-03 16:46:54 [multiproc_executor.py:315] Worker proc VllmWorker-0 died "
        "unexpectedly (exit code: None), shutting down executor.\n")
    assert [e.kind for e in parse_log(text).errors] == ["v1_max_seq_len"]
