"""`kvfit smoke` / `kvfit check --smoke` on a REAL vLLM engine (vLLM's CPU backend, dummy weights).

The model is the spec's Appendix A `llama_a` (3 layers, 2 KV heads, head_dim 64, bf16); the numbers are
spec §7.3 runs A and C, and they must equal kvfit's prediction exactly (explicit KV budget). Engine runs are
serialised machine-wide by the runner's flock on /tmp/kvfit-engine.lock.

Also: the timeout and Ctrl-C leave no process behind (every process the run started carries a marker in its
environment; none may survive), the runner's process-tree cleanup on a plain process tree, and the message
when vLLM is missing. Tests that start an engine skip only when vLLM is not installed, and fail instead under
CI (engine_oracle.require_vllm).

Where vLLM's own build cannot generate on this host (the session's generation probe, engine_oracle.py, says
so and why in the terminal summary), the runs that generate end in an engine death: their KV assertions stay
as they are, and the generation assertions become assertions on kvfit's diagnosis of that death (exit 1,
phase "generate", the probe's signal and faulting frame, the engine log kvfit kept).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from engine_oracle import require_vllm
from kvfit.engine import smoke as S

needs_vllm = pytest.mark.usefixtures("vllm_oracle")      # skip without vLLM; fail under CI

LLAMA_A = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
           "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "num_hidden_layers": 3, "vocab_size": 1024, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
GiB = 1 << 30
ENGINE_WAIT_S = 3600      # includes waiting for other engine runs (the lock); each run takes ~30-90 s
CPU_FLAGS = ["--device", "cpu", "--dummy-weights", "--enforce-eager"]


@pytest.fixture(scope="module")
def llama_a(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("llama_a")
    (d / "config.json").write_text(json.dumps(LLAMA_A))
    return d


def _env(marker: str | None = None, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "KVFIT_", "CUDA_"))}
    e.update({"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    if marker:
        e["KVFIT_TEST_MARKER"] = marker
    e.update(extra)
    return e


def kvfit(*args: str, env: dict | None = None, timeout: float = ENGINE_WAIT_S) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True,
                       env=env or _env(), timeout=timeout)
    from kvfit_schema import check_output

    check_output(args, p.stdout)                      # any JSON it printed validates against the shipped schema
    return p


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries the marker (every process a test's run started)."""
    needle = f"KVFIT_TEST_MARKER={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != b"Z":
            found.append(int(name))
    return found


def wait_gone(marker: str, seconds: float = 10.0) -> list[int]:
    end = time.monotonic() + seconds
    left = marked_pids(marker)
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = marked_pids(marker)
    return left


# --- real engine: measured == predicted ---------------------------------------------------------

def assert_generation_or_diagnosed_death(code: int, rec: dict, probe: dict, out: str, *, text: bool) -> None:
    """Where vLLM generates here: exit 0 and two tokens. Where it cannot (the probe's verdict): exit 1 and
    kvfit's diagnosis of the death says what the probe saw, with the log kvfit kept (and, for the terminal
    output, prints it)."""
    smoke = rec["smoke"]
    if probe["can_generate"]:
        assert code == 0, out[-3000:]
        assert len(smoke["runner"]["generated_token_ids"]) == 2
        assert smoke["death"] is None and smoke["outcome"] == "pass"
        return
    assert code == 1, out[-3000:]
    death = smoke["death"]
    assert death is not None, smoke
    assert death["phase"] == "generate"                # the engine had started: the probe saw "PROBE up"
    assert smoke["runner"]["phase"] == "generate" and smoke["runner"]["generated_token_ids"] is None
    assert death["signal"] == probe["signal"]
    if probe["frame"]:
        assert death["frame"] == probe["frame"]
    assert smoke["outcome"] == f"engine died ({probe['signal'] or 'signal unknown'}) in generate"
    log = Path(smoke["engine_log"])
    assert log.is_file() and death["log_path"] == str(log)
    log_text = log.read_text()
    assert "KV cache size:" in log_text                # the log kvfit kept is the whole run's
    assert death["last_lines"] and all(ln in log_text for ln in death["last_lines"])
    if text:
        flat = " ".join(out.split())
        assert "the engine died while generating" in flat and f"killed by {probe['signal']}" in flat
        assert f"full engine log: {log}" in flat


@pytest.fixture(scope="module")
def run_a(llama_a, tmp_path_factory):
    """Spec §7.3 run A through `kvfit check --smoke` (one engine run, shared by the tests below)."""
    require_vllm()
    rec_file = tmp_path_factory.mktemp("run_a") / "runs.jsonl"
    marker = uuid.uuid4().hex
    p = kvfit("check", str(llama_a), *CPU_FLAGS, "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "3000",
              "--smoke", "--record", str(rec_file), "--json", env=_env(marker))
    assert rec_file.exists(), p.stdout[-3000:] + p.stderr[-3000:]
    return p, json.loads(rec_file.read_text().splitlines()[0]), marker


@needs_vllm
def test_check_smoke_cpu_run_a_measured_equals_prediction(run_a, generation_probe):
    """Spec §7.3 run A through `kvfit check --smoke`: 5461 blocks, 682,625 tokens, 227.54x, exactly."""
    p, rec, marker = run_a
    assert_generation_or_diagnosed_death(p.returncode, rec, generation_probe, p.stdout + p.stderr, text=False)
    printed = json.loads(p.stdout)
    assert printed["obs_id"] == rec["obs_id"]
    pred, rep = rec["kvfit_prediction"]["capacity"], rec["reported"]

    # the engine's own numbers (vllm cache_config) equal kvfit's, and equal spec §7.3 run A
    assert rep["num_gpu_blocks"] == pred["num_blocks"] == 5461
    assert rep["kv_cache_tokens"] == pred["kv_cache_tokens"] == 682625
    assert rep["max_concurrency"] == pytest.approx(5461 / 24, rel=1e-12)
    assert round(pred["max_concurrency"], 4) == round(rep["max_concurrency"], 4)
    assert rep["kv_cache_gib"] == 1.0 and rep["startup_failed"] is False
    assert rec["block_size"] == 128 and rec["max_model_len"] == 3000
    # serve defaults on CPU (the runner builds the engine with vllm serve's usage context)
    assert rec["max_num_batched_tokens"] == 2048 and rec["max_num_seqs"] == 128
    assert rec["settings"]["usage_context"] == "OPENAI_API_SERVER"
    assert rec["smoke"]["passed"] is True and rec["smoke"]["exact"] is True
    gated = {r["name"]: r for r in rec["smoke"]["rows"] if r["gated"]}
    assert {"num_blocks", "KV tokens", "max concurrency", "max_model_len", "block size"} <= set(gated)
    assert all(r["ok"] for r in gated.values())

    # the record has the calibration schema (shared/calibration/observations.jsonl), plus the prediction
    calib_keys = {"obs_id", "confidence", "source", "model_id", "model_id_as_logged", "model_id_confidence",
                  "arch_key", "gpu", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
                  "gpu_memory_utilization_assumed", "max_model_len", "dtype", "quantization", "kv_cache_dtype",
                  "block_size", "enforce_eager", "vllm_version", "engine", "reported", "log_lines_verbatim",
                  "derived"}
    assert calib_keys <= set(rec)
    assert {"name", "total_gpu_memory_gib_reported", "count", "gpu_confidence"} <= set(rec["gpu"])
    assert rec["engine"] == "V1" and rec["vllm_version"].startswith("0.")
    assert rec["dtype"] == "bfloat16" and rec["load_format"] == "dummy"
    assert any("CPU KV cache size: 682,625 tokens" in ln for ln in rec["log_lines_verbatim"])
    assert rec["settings"]["kv_cache_memory_bytes"] == GiB
    assert wait_gone(marker) == []


@needs_vllm
def test_smoke_launches_the_recommended_flags_when_the_given_ones_do_not_fit(llama_a, tmp_path, generation_probe):
    """Spec §7.3 run C asks 4096 tokens of a 5,000,000-byte budget: kvfit launches its fix, 3072 (run D's number),
    and the engine sizes 25 blocks, int(25/24 x 3072) = 3200 tokens, as predicted. (Terminal output here: the
    record file carries the numbers.)"""
    rec_file = tmp_path / "c.jsonl"
    p = kvfit("smoke", str(llama_a), *CPU_FLAGS, "--kv-cache-memory-bytes", "5000000", "--max-model-len", "4096",
              "--record", str(rec_file))
    rec = json.loads(rec_file.read_text())
    assert_generation_or_diagnosed_death(p.returncode, rec, generation_probe, p.stdout + p.stderr, text=True)
    assert rec["settings"]["max_model_len"] == 3072
    assert rec["smoke"]["launched_with"].startswith("kvfit's recommendation: --max-model-len 3072")
    assert rec["reported"]["num_gpu_blocks"] == rec["kvfit_prediction"]["capacity"]["num_blocks"] == 25
    assert rec["reported"]["kv_cache_tokens"] == rec["kvfit_prediction"]["capacity"]["kv_cache_tokens"] == 3200
    assert rec["reported"]["max_concurrency"] == pytest.approx(25 / 24)


@needs_vllm
def test_smoke_as_given_reproduces_the_failure_kvfit_predicted(llama_a, tmp_path):
    """Run C as given: vLLM refuses (estimated maximum model length 3072 = kvfit's); exit 1; the advice is exact."""
    rec_file = tmp_path / "fail.jsonl"
    p = kvfit("smoke", str(llama_a), *CPU_FLAGS, "--kv-cache-memory-bytes", "5000000", "--max-model-len", "4096",
              "--as-given", "--record", str(rec_file))
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    out = " ".join(p.stdout.split())
    assert "FAILED the engine did not start" in out
    assert "kvfit predicted this failure" in out
    # the re-checked fix: the smallest CPU budget for one 4096-token request, (32 + null block) x 196,608 B
    assert "--kv-cache-memory-bytes 6488064" in out
    rec = json.loads(rec_file.read_text())
    assert rec["reported"]["startup_failed"] is True
    assert rec["reported"]["estimated_max_model_len"] == 3072 == rec["kvfit_prediction"]["capacity"]["max_model_len_fit"]
    est = next(r for r in rec["smoke"]["rows"] if r["name"] == "estimated max_model_len")
    assert est["ok"] is True
    assert rec["smoke"]["outcome"] == "engine failed to start (as predicted)"


# --- no process left behind ------------------------------------------------------------------------

@needs_vllm
def test_timeout_stops_the_engine_and_leaves_no_process(llama_a, run_a):
    """The timeout falls halfway through the engine's start-up as run A measured it (import, then engine), so
    the engine core and its worker are running when it strikes, on a fast host or a slow one."""
    timings = run_a[1]["smoke"]["runner"]
    timeout = round(max(2.0, timings["import_s"] + timings["engine_s"] / 2), 1)
    marker = uuid.uuid4().hex
    t0 = time.monotonic()
    p = kvfit("smoke", str(llama_a), *CPU_FLAGS, "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "3000",
              "--timeout", f"{timeout:g}", env=_env(marker))
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"did not finish within {timeout:g} s" in " ".join(p.stdout.split())
    assert "no process was left behind" in " ".join(p.stdout.split())
    assert wait_gone(marker, 2.0) == [], "processes of the timed-out run survived"
    assert time.monotonic() - t0 < ENGINE_WAIT_S


@needs_vllm
def test_ctrl_c_stops_the_engine_and_leaves_no_process(llama_a):
    """SIGINT (what Ctrl-C sends) once the engine core is up: exit 130, the whole tree gone."""
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "kvfit", "smoke", str(llama_a), *CPU_FLAGS,
                             "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "3000", "--show-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(marker))
    try:
        deadline = time.monotonic() + ENGINE_WAIT_S
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "EngineCore" in line or time.monotonic() > deadline:
                break
        assert any("EngineCore" in ln for ln in seen), "".join(seen[-30:])
        engine_tree = marked_pids(marker)
        assert len(engine_tree) >= 3          # kvfit, the runner, the engine core (at least)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out or "")[-2000:] + (err or "")[-2000:]
    assert "interrupted (SIGINT)" in err and "no process left behind" in err
    assert wait_gone(marker, 2.0) == [], "processes of the interrupted run survived"


def test_stop_tree_kills_the_group_and_the_session(tmp_path):
    """The cleanup itself, on a plain tree: a child, a grandchild, and one that left the process group."""
    marker = uuid.uuid4().hex
    script = tmp_path / "tree.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        subprocess.Popen(sleeper)
        subprocess.Popen([sys.executable, "-c",
                          "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
                          *sleeper])
        subprocess.Popen(sleeper, preexec_fn=os.setpgrp)   # its own group, same session
        print("ready", flush=True)
        time.sleep(600)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env(marker))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    end = time.monotonic() + 10
    while len(marked_pids(marker)) < 5 and time.monotonic() < end:
        time.sleep(0.1)
    assert len(marked_pids(marker)) == 5
    assert S.stop_tree(proc, grace=2.0) == []
    assert wait_gone(marker, 2.0) == []


# --- vLLM missing ---------------------------------------------------------------------------------

def test_vllm_missing_says_how_to_install_it(llama_a):
    """kvfit's Python cannot import vllm (blocked in sys.modules): exit 2 and the install command."""
    code = ("import sys; sys.modules['vllm'] = None; "
            f"sys.argv = ['kvfit', 'smoke', {str(llama_a)!r}, '--device', 'cpu', '--kv-cache-memory-bytes', '1GiB']; "
            "from kvfit.cli.main import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    err = " ".join(p.stderr.split())
    assert "vLLM is not installed" in err
    assert 'pip install "kvfit-vllm[smoke]"' in err


def test_check_smoke_vllm_missing_too(llama_a):
    code = ("import sys; sys.modules['vllm'] = None; "
            f"sys.argv = ['kvfit', 'check', {str(llama_a)!r}, '--device', 'cpu', '--kv-cache-memory-bytes', '1GiB', "
            "'--smoke']; from kvfit.cli.main import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert 'pip install "kvfit-vllm[smoke]"' in " ".join(p.stderr.split())


def test_engine_python_without_vllm_is_reported_not_crashed(llama_a, tmp_path):
    """kvfit sees vllm but the engine's Python cannot import it (a broken install): exit 2, the install hint,
    and the runner's result says which phase failed. No engine starts, so this runs without vLLM too."""
    fake = tmp_path / "fake"
    (fake / "vllm").mkdir(parents=True)
    (fake / "vllm" / "__init__.py").write_text("raise ImportError('simulated: vllm is broken here')\n")
    code = ("import sys; "
            f"sys.argv = ['kvfit', 'smoke', {str(llama_a)!r}, '--device', 'cpu', '--kv-cache-memory-bytes', '1GiB', "
            "'--dummy-weights', '--json']; from kvfit.cli.main import main; main()")
    env = _env(PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    rec = json.loads(p.stdout)
    assert rec["smoke"]["runner"]["phase"] == "import"
    assert "simulated: vllm is broken here" in rec["smoke"]["runner"]["error"]


# --- inputs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--device", "cpu"], "needs the KV budget"),
    (["--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--timeout", "0"], "--timeout must be"),
    (["--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--tolerance", "-1"], "--tolerance must be"),
    (["--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "9000"], "derived max_model_len"),
])
def test_bad_input_exits_2_before_any_engine_starts(llama_a, args, words):
    p = kvfit("smoke", str(llama_a), *args, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert words in " ".join(p.stderr.split())


def test_cpu_kvcache_space_must_be_whole_gib(llama_a):
    p = kvfit("smoke", str(llama_a), "--device", "cpu", env=_env(VLLM_CPU_KVCACHE_SPACE="1.5"), timeout=120)
    assert p.returncode == 2
    assert "whole number of GiB" in " ".join(p.stderr.split())


# --- the tolerance rules (no engine) ------------------------------------------------------------------

def _measured(res, scale: float = 1.0) -> dict:
    cap = res.capacity
    blocks = int(cap.num_blocks * scale)
    per_req = cap.blocks_per_request
    return {"cache": {"num_gpu_blocks": blocks, "kv_cache_size_tokens": int(blocks / per_req * res.resolved.max_model_len),
                      "kv_cache_max_concurrency": blocks / per_req, "block_size": res.layout.block_size},
            "model": {"max_model_len": res.resolved.max_model_len},
            "scheduler": {"max_num_batched_tokens": res.resolved.max_num_batched_tokens,
                          "max_num_seqs": res.resolved.max_num_seqs}}


@pytest.fixture(scope="module")
def profiled_and_explicit(llama_a):
    """llama_a on an 80 GiB GPU: vLLM profiles the budget (utilization) / gets it explicitly."""
    from kvfit.plan import evaluate as plan
    from kvfit.app.inputs import load_model
    from kvfit.gpu.model import Gpu
    from kvfit.memory.profiles import profile_for
    from kvfit.settings import Settings

    m = load_model(str(llama_a), None, True)[0]
    gpu = Gpu("H100 80GB", 85_520_809_984, (9, 0))
    prof = profile_for("0.32.0")
    profiled = plan.evaluate(m, gpu, Settings(max_model_len=4096), prof)
    explicit = plan.evaluate(m, gpu, Settings(max_model_len=4096, kv_cache_memory_bytes=GiB), prof)
    return profiled, explicit


def test_profiled_budget_passes_within_the_tolerance_and_misses_beyond(profiled_and_explicit):
    from kvfit.logs.parse import LogFacts

    profiled, _ = profiled_and_explicit
    ok = S.compare(profiled, LogFacts(), _measured(profiled, 0.96))
    assert not ok.exact and ok.passed, [(r.name, r.predicted, r.measured) for r in ok.rows if r.ok is False]
    miss = S.compare(profiled, LogFacts(), _measured(profiled, 0.94))
    assert not miss.passed and {"num_blocks", "KV tokens", "max concurrency"} <= set(miss.missed)
    assert S.compare(profiled, LogFacts(), _measured(profiled, 0.94), tolerance_pct=7).passed


def test_explicit_budget_must_match_exactly(profiled_and_explicit):
    from kvfit.logs.parse import LogFacts

    _, explicit = profiled_and_explicit
    assert S.compare(explicit, LogFacts(), _measured(explicit)).passed
    one_block_off = _measured(explicit)
    one_block_off["cache"]["num_gpu_blocks"] -= 1
    cmp = S.compare(explicit, LogFacts(), one_block_off, tolerance_pct=50)
    assert cmp.exact and not cmp.passed and cmp.missed == ["num_blocks"]


def test_nothing_measured_is_not_a_pass(profiled_and_explicit):
    from kvfit.logs.parse import LogFacts

    _, explicit = profiled_and_explicit
    cmp = S.compare(explicit, LogFacts(), None)
    assert not cmp.passed and "KV tokens (not measured)" in cmp.missed


# --- engine deaths (no engine: the real SIGILL log, tests/data/logs/README.md) --------------------------

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def _dead_run(log_name: str, **kw) -> S.EngineRun:
    lines = (LOGS / log_name).read_text().splitlines()
    run = S.EngineRun(kw.pop("returncode", 5), kw.pop("result", None), lines, **kw)
    return run


def test_death_from_the_kept_sigill_log():
    from kvfit.logs.parse import parse_log

    run = _dead_run("cpu_sigill_generate_faulthandler.log",
                    result={"ok": False, "phase": "generate", "error_type": "EngineDeadError",
                            "error": "EngineCore encountered an issue. See stack trace (above) for the root cause."},
                    log_path="/tmp/kvfit-logs/x.log")
    death = S.analyse_death(run, parse_log("\n".join(run.log)))
    assert (death.phase, death.signal, death.process) == ("generate", "SIGILL", "VllmWorker-0")
    assert death.frame == "cpu_attention_with_kv_cache (_custom_ops.py:3927)"
    assert death.error.startswith("EngineDeadError: EngineCore encountered an issue")
    assert death.meaning.startswith("illegal instruction")
    assert death.last_lines[-7].startswith("Current thread") and "cpu_attention_with_kv_cache" in death.last_lines[-5]
    assert any("Fatal Python error: Illegal instruction" == ln for ln in death.last_lines)
    assert death.log_path == "/tmp/kvfit-logs/x.log"

    from kvfit.render.death import death_lines

    text = "\n".join(death_lines(death, kv_measured=True))
    assert "the engine died while generating: VllmWorker-0 killed by [bold]SIGILL[/]" in text
    assert "full engine log: /tmp/kvfit-logs/x.log" in text and "measured before the death" in text


def test_death_of_the_runner_itself():
    """An engine core in the runner's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0) killed by SIGKILL: the
    runner's exit status says it; its last checkpoint and the log say where."""
    from kvfit.logs.parse import parse_log

    log = ["(EngineCore pid=1) INFO [cpu_model_runner.py:68] Starting to load model /m..."]
    run = S.EngineRun(-9, {"ok": False, "phase": "engine"}, log)
    death = S.analyse_death(run, parse_log("\n".join(log)))
    assert (death.phase, death.signal, death.process, death.exit_code) == ("load", "SIGKILL", "runner", -9)
    assert "out-of-memory" in death.meaning


def test_not_a_death():
    from kvfit.logs.parse import parse_log

    refused = _dead_run("cpu_run_c_error.log", returncode=3,
                        result={"ok": False, "phase": "engine", "error_type": "ValueError", "error": "To serve ..."})
    assert S.analyse_death(refused, parse_log("\n".join(refused.log))) is None
    timed_out = _dead_run("cpu_sigill_generate_faulthandler.log", returncode=-15, timed_out=True)
    assert S.analyse_death(timed_out, parse_log("\n".join(timed_out.log))) is None


def test_the_log_of_a_failed_run_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(S.LOG_DIR_ENV, str(tmp_path / "logs"))
    path = S.keep_log(["line one", "line two"])
    assert path is not None and Path(path).parent == tmp_path / "logs"
    assert Path(path).read_text() == "line one\nline two\n"
