"""`kvfit smoke`: run a real vLLM engine in its own process group and compare what it sized with kvfit's
prediction. No vLLM or torch import here; the engine runs in ``kvfit.engine.runner`` (a subprocess).

Process handling
  * The runner starts in a new session (``start_new_session``): it and every process vLLM spawns (engine
    core, workers, the resource tracker) share one process group and session that kvfit's own terminal
    signals do not reach.
  * Timeout: ``timeout`` seconds from the moment the runner holds the engine lock (waiting for another
    engine run to finish is bounded separately by ``lock_wait``).
  * On a timeout, Ctrl-C (SIGINT), SIGTERM or SIGHUP, and after every normal exit, kvfit sends SIGTERM to the
    group, waits ``GRACE_S``, then SIGKILLs what is left: every process of the group *and* of the session (a
    child that made its own group stays in the session). Nothing is left behind, so no GPU memory either.

Engine deaths
  * The engine runs with PYTHONFAULTHANDLER=1 (inherited by vLLM's engine core and workers), so a process
    killed by SIGILL, SIGSEGV, SIGBUS, SIGFPE or SIGABRT prints "Fatal Python error: <signal>" and its stack.
  * ``analyse_death`` says where (phase: load, profile, KV sizing, warm-up, generate) and how (the signal
    by name, from faulthandler, vLLM's "died unexpectedly (exit code: -N)" or the runner's own exit status)
    an engine died, with the last log lines; the full log of every run that did not pass is kept in
    ``log_dir()`` ($KVFIT_LOG_DIR, default <tmp>/kvfit-logs) and its path is reported.

Tolerance (documented in the README and in ``kvfit smoke --help``)
  * **Exact** when the KV budget is explicit (``--kv-cache-memory-bytes``, and always on the CPU backend,
    which needs an explicit budget): num_blocks and KV tokens must be equal, max concurrency equal to 1e-9
    (relative; 0.005 when only the log's 2-decimal figure is known), max_model_len and block size equal.
  * **Profiled** budget (CUDA with ``--gpu-memory-utilization``): KV tokens, num_blocks and concurrency
    within ``tolerance_pct`` (default 5 %) of the measured values; max_model_len and block size equal.
    5 % of a typical KV cache is a few hundred MiB, the size of the errors left in vLLM's non-KV memory
    (activation peak, CUDA-graph estimate, non-torch allocations) that kvfit models but cannot measure.
  * Batch sizes (max_num_batched_tokens, max_num_seqs) must match exactly when the runner could emulate the
    requested entrypoint's usage context (it reports which one vLLM used).
  * Weights, activation peak, non-torch memory and CUDA graphs are shown for information only.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..logs.diagnose import SIGNAL_MEANINGS
from ..logs.parse import ENGINE_PHASES, LogFacts, engine_phase, signal_name

GIB = 1 << 30
GRACE_S = 8.0
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_LOCK_WAIT_S = 1800.0
DEFAULT_TOLERANCE_PCT = 5.0
LOCK_ENV = "KVFIT_ENGINE_LOCK"
DEFAULT_LOCK = "/tmp/kvfit-engine.lock"
LOG_DIR_ENV = "KVFIT_LOG_DIR"


def lock_path() -> str:
    return os.environ.get(LOCK_ENV) or DEFAULT_LOCK


def log_dir() -> str:
    """Where kvfit keeps the full log of an engine run that did not pass."""
    return os.environ.get(LOG_DIR_ENV) or os.path.join(tempfile.gettempdir(), "kvfit-logs")


def find_vllm() -> bool:
    """Whether this Python can import vllm (checked without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # sys.modules["vllm"] is None (blocked) or a broken install
        return False


# --- running the engine ---------------------------------------------------------------------------

@dataclass
class EngineRun:
    returncode: int | None
    result: dict | None                    # what the runner wrote (None: it never got that far)
    log: list[str]                         # every line the engine tree printed
    timed_out: bool = False
    interrupted: str | None = None         # "SIGINT" / "SIGTERM" / "SIGHUP"
    lock_timed_out: bool = False
    lock_wait_s: float = 0.0
    elapsed_s: float = 0.0
    leftover_pids: list[int] = field(default_factory=list)   # processes that survived SIGKILL (never expected)
    log_path: str | None = None            # the full engine log, kept when the run did not pass

    @property
    def started(self) -> bool:
        """The engine came up and sized its KV cache."""
        r = self.result or {}
        return bool(r.get("ok")) or r.get("phase") == "generate"

    @property
    def ok(self) -> bool:
        return bool((self.result or {}).get("ok")) and not self.timed_out and not self.interrupted


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP arrived during an engine run; raised after the process tree is gone."""

    def __init__(self, signame: str, run: "EngineRun | None" = None):
        super().__init__(signame)
        self.signame = signame
        self.run = run


def _session_members(sid: int) -> list[int]:
    """PIDs whose session or process group is `sid` (Linux /proc; [] elsewhere)."""
    out: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] state, [1] ppid, [2] pgrp, [3] session
        if len(fields) > 3 and fields[0] != "Z" and (int(fields[2]) == sid or int(fields[3]) == sid):
            out.append(int(name))
    return out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_all(sid: int, sig: int) -> None:
    try:
        os.killpg(sid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in _session_members(sid):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_tree(proc: subprocess.Popen, grace: float = GRACE_S, hurry: Callable[[], bool] = lambda: False) -> list[int]:
    """SIGTERM the runner's process group and session, wait up to `grace` (less if `hurry()` turns true),
    SIGKILL the rest, reap the runner. Returns the PIDs that survived (never expected)."""
    sid = proc.pid
    if proc.poll() is None or _group_alive(sid) or _session_members(sid):
        _signal_all(sid, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end and not hurry():
            proc.poll()
            if proc.returncode is not None and not _group_alive(sid) and not _session_members(sid):
                break
            time.sleep(0.1)
        _signal_all(sid, signal.SIGKILL)
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        if not _session_members(sid):
            break
        time.sleep(0.1)
    return _session_members(sid)


def run_engine(spec: dict, *, timeout: float = DEFAULT_TIMEOUT_S, lock_wait: float = DEFAULT_LOCK_WAIT_S,
               echo: Callable[[str], None] | None = None, note: Callable[[str], None] | None = None,
               env: dict | None = None, python: str | None = None) -> EngineRun:
    """Run ``kvfit.engine.runner`` with `spec`; always returns with the whole process tree gone.

    `echo` receives each engine log line as it arrives; `note` receives kvfit's own progress messages.
    Raises Interrupted (after the cleanup) on SIGINT/SIGTERM/SIGHUP; a second signal shortens the cleanup.
    """
    spec = {**spec, "lock_path": spec.get("lock_path") or lock_path()}
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONFAULTHANDLER", "1")     # a worker killed by SIGILL/SIGSEGV/... prints its stack
    log: list[str] = []
    locked = threading.Event()
    received: list[str] = []
    run = EngineRun(None, None, log)

    def on_signal(signum, frame):  # noqa: ARG001
        received.append(signal.Signals(signum).name)
        if len(received) == 1:
            raise Interrupted(received[0])

    with tempfile.TemporaryDirectory(prefix="kvfit-smoke-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w", encoding="utf-8") as fh:
            json.dump(spec, fh)
        cmd = [python or sys.executable, "-m", "kvfit.engine.runner", spec_path, result_path]
        t0 = time.monotonic()
        old: dict = {}
        proc: subprocess.Popen | None = None
        reader_thread: threading.Thread | None = None

        def reader(p: subprocess.Popen) -> None:
            assert p.stdout is not None
            for raw in iter(p.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith("KVFIT_RUNNER "):
                    what = line[len("KVFIT_RUNNER "):]
                    if what == "locked":
                        locked.set()
                    elif what == "waiting-lock" and note:
                        note(f"waiting for another vLLM engine run to finish (lock {spec['lock_path']})")
                    continue
                log.append(line)
                if echo:
                    echo(line)

        try:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    old[sig] = signal.signal(sig, on_signal)
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=tmp)
            reader_thread = threading.Thread(target=reader, args=(proc,), daemon=True)
            reader_thread.start()
            run_deadline: float | None = None
            while proc.poll() is None:
                now = time.monotonic()
                if run_deadline is None and locked.is_set():
                    run.lock_wait_s = now - t0
                    run_deadline = now + timeout
                if run_deadline is None and now > t0 + lock_wait:
                    run.lock_timed_out = True
                    break
                if run_deadline is not None and now > run_deadline:
                    run.timed_out = True
                    break
                time.sleep(0.1)
        except Interrupted as e:
            run.interrupted = e.signame
        finally:
            try:
                if proc is not None:
                    run.leftover_pids = stop_tree(proc, hurry=lambda: len(received) > 1)
                    run.returncode = proc.returncode
                if reader_thread is not None:
                    reader_thread.join(timeout=5)
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)
        if received and not run.interrupted:
            run.interrupted = received[0]
        run.elapsed_s = time.monotonic() - t0
        try:
            with open(result_path, encoding="utf-8") as fh:
                run.result = json.load(fh)
        except (OSError, ValueError):
            run.result = None
        if run.result is not None and run.result.get("lock_wait_s") is not None:
            run.lock_wait_s = float(run.result["lock_wait_s"])
    if not run.ok and log:
        run.log_path = keep_log(log)
    if run.interrupted:
        raise Interrupted(run.interrupted, run)
    return run


def keep_log(lines: list[str]) -> str | None:
    """Write the engine's log to log_dir(); its path, or None when it cannot be written."""
    d = log_dir()
    try:
        os.makedirs(d, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=time.strftime("smoke-%Y%m%dT%H%M%S-"), suffix=".log", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    except OSError:
        return None
    return path


# --- engine deaths ---------------------------------------------------------------------------------

@dataclass
class Death:
    """How and where an engine died (a process killed by a signal, or the engine core gone)."""

    phase: str | None              # "import", "start-up" (not narrower), or one of logs.parse.ENGINE_PHASES
    signal: str | None             # "SIGILL", ...; None: not known
    exit_code: int | None          # as vLLM or the OS reported it (negative: -signal)
    process: str | None            # "VllmWorker-0", "EngineCore_DP0", "runner" (kvfit's engine process)
    meaning: str                   # what the signal usually means (logs.diagnose.SIGNAL_MEANINGS)
    frame: str | None              # innermost Python frame at the fault (faulthandler)
    error: str | None              # the error the runner saw (e.g. "EngineDeadError: ...")
    evidence: str | None           # which line told (faulthandler, vLLM's process monitor, the exit status)
    last_lines: list[str]          # the engine log up to the death
    log_path: str | None           # the full log kvfit kept


def analyse_death(run: EngineRun, facts: LogFacts, tail: int = 12) -> Death | None:
    """The death of the engine in `run`, or None when it did not die (it passed, timed out, was interrupted,
    or failed with an ordinary error such as vLLM's KV-cache check)."""
    if run.timed_out or run.interrupted or run.lock_timed_out:
        return None
    r = run.result or {}
    died = next((e for e in facts.errors if e.kind == "engine_died"), None)
    rc = run.returncode
    runner_sig = signal_name(-rc) if rc is not None and rc < 0 else None
    dead_error = r.get("error_type") == "EngineDeadError"
    if died is None and runner_sig is None and not dead_error:
        return None
    labels = died.labels if died else {}
    sig = labels.get("signal") or runner_sig
    code = died.numbers.get("exit_code") if died else None
    process = labels.get("process") or ("runner" if runner_sig else None)
    if code is None and runner_sig:
        code = rc
    phase = died.phase if died and died.phase else None
    if phase is None:
        runner_phase = r.get("phase")
        if runner_phase == "generate":
            phase = "generate"
        elif runner_phase in ("import", "platform"):
            phase = "import"
        else:
            phase = engine_phase(run.log) or "start-up"
    error = f"{r['error_type']}: {r.get('error', '')}".strip() if r.get("error_type") else None
    idx = _death_line(run.log, died.line if died else None)
    last = run.log[max(0, idx - tail + 1): idx + 1] if idx is not None else run.log[-tail:]
    if died and labels.get("evidence") == "Python's faulthandler" and idx is not None:
        after = run.log[idx + 1: idx + 400]
        cur = next((i for i, ln in enumerate(after) if ln.lstrip().startswith("Current thread")), None)
        if cur is not None:       # the faulting thread's innermost frames
            last += after[cur: cur + 7]
    meaning = SIGNAL_MEANINGS.get(sig or "", "the signal is not known: vLLM did not report the exit status; "
                                             "SIGKILL (out of memory) is the usual silent one")
    return Death(phase, sig, int(code) if code is not None else None, process, meaning, labels.get("frame"), error,
                 labels.get("evidence") or ("the runner's exit status" if runner_sig else "EngineDeadError"),
                 last, run.log_path)


def _death_line(log: list[str], line: str | None) -> int | None:
    if line:
        for i, ln in enumerate(log):
            if line.strip() and line.strip() in ln:
                return i
    return None


def death_dict(death: Death | None) -> dict | None:
    if death is None:
        return None
    from dataclasses import asdict

    return asdict(death)



# --- comparing --------------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    predicted: float | int | None
    measured: float | int | None
    unit: str                      # "GiB" | "" | "x" | "tokens" | "blocks"
    gated: bool                    # decides pass/miss
    ok: bool | None                # None: not compared (no measurement, or informational)
    rule: str = ""                 # "exact", "±5%", "info", ...
    source: str = ""               # where the measured value came from

    @property
    def diff_pct(self) -> float | None:
        if self.predicted is None or self.measured is None:
            return None
        if self.measured == 0:
            return 0.0 if self.predicted == 0 else None
        return (float(self.predicted) - float(self.measured)) / abs(float(self.measured)) * 100


@dataclass
class Comparison:
    rows: list[Row]
    exact: bool                    # explicit budget: exact comparison
    tolerance_pct: float
    passed: bool                   # every gated row ok
    missed: list[str]              # names of gated rows that missed


def _within(pred, meas, exact: bool, tol_pct: float, *, rel_eps: float = 0.0) -> bool:
    if pred is None or meas is None:
        return False
    if exact:
        if rel_eps:
            return math.isclose(float(pred), float(meas), rel_tol=rel_eps, abs_tol=rel_eps)
        return pred == meas
    if meas == 0:
        return pred == 0
    return abs(float(pred) - float(meas)) <= tol_pct / 100 * abs(float(meas))


def compare(res, facts: LogFacts, measured: dict | None, *, tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
            batch_comparable: bool = True) -> Comparison:
    """kvfit's prediction (a plan.Result) against what the engine sized (runner result + parsed log)."""
    m = measured or {}
    cache, model, sched = m.get("cache") or {}, m.get("model") or {}, m.get("scheduler") or {}
    exact = res.memory.explicit_kv_budget or res.settings.device == "cpu"
    rule = "exact" if exact else f"±{tolerance_pct:g}%"
    rows: list[Row] = []
    mem, cap, r, lay = res.memory, res.capacity, res.resolved, res.layout
    gpu = res.settings.device != "cpu"

    def gib(b):
        return None if b is None else b / GIB

    # available KV memory: the log prints it rounded to 0.01 GiB
    meas_kv = facts.available_kv_gib
    rows.append(Row("available KV memory", gib(mem.kv_available_bytes), meas_kv, "GiB", False,
                    None if meas_kv is None or not exact else abs(gib(mem.kv_available_bytes) - meas_kv) <= 0.005 + 1e-9,
                    "±0.005 GiB (log rounding)" if exact else "info", "log" if meas_kv is not None else ""))

    def pick(key_cfg, fact):
        if key_cfg is not None:
            return key_cfg, "engine"
        return fact, ("log" if fact is not None else "")

    blocks, src_b = pick(cache.get("num_gpu_blocks"), facts.num_gpu_blocks)
    rows.append(Row("num_blocks", cap.num_blocks, blocks, "blocks", True,
                    _within(cap.num_blocks, blocks, exact, tolerance_pct), rule, src_b))
    tokens, src_t = pick(cache.get("kv_cache_size_tokens"), facts.kv_cache_tokens)
    rows.append(Row("KV tokens", cap.kv_cache_tokens, tokens, "tokens", True,
                    _within(cap.kv_cache_tokens, tokens, exact, tolerance_pct), rule, src_t))
    conc, src_c = pick(cache.get("kv_cache_max_concurrency"), facts.max_concurrency)
    eps = 1e-9 if src_c == "engine" else 0.005
    conc_pred = cap.max_concurrency if math.isfinite(cap.max_concurrency) else None
    rows.append(Row("max concurrency", conc_pred, conc, "x", True,
                    _within(conc_pred, conc, exact, tolerance_pct, rel_eps=eps) if exact
                    else _within(conc_pred, conc, False, tolerance_pct), rule, src_c))
    for e in facts.errors:   # the engine refused: compare vLLM's own estimate of the longest length that fits
        if e.kind == "v1_max_seq_len" and e.numbers.get("estimated_max_len") is not None:
            est = int(e.numbers["estimated_max_len"])
            rows.append(Row("estimated max_model_len", cap.max_model_len_fit, est, "tokens", True,
                            _within(cap.max_model_len_fit, est, exact, tolerance_pct), rule, "log (error)"))
            break
    mml, src_l = pick(model.get("max_model_len"), facts.max_model_len)
    rows.append(Row("max_model_len", r.max_model_len, mml, "tokens", True, _within(r.max_model_len, mml, True, 0),
                    "exact", src_l))
    bs, src_bs = pick(cache.get("block_size"), facts.block_size)
    rows.append(Row("block size", lay.block_size, bs, "tokens", True, _within(lay.block_size, bs, True, 0),
                    "exact", src_bs))
    for name, pred, key in (("max_num_batched_tokens", r.max_num_batched_tokens, "max_num_batched_tokens"),
                            ("max_num_seqs", r.max_num_seqs, "max_num_seqs")):
        meas = sched.get(key)
        if meas is None and key == "max_num_batched_tokens":
            meas = facts.settings.get("max_num_batched_tokens") if isinstance(
                facts.settings.get("max_num_batched_tokens"), int) else None
        rows.append(Row(name, pred, meas, "tokens" if "tokens" in name else "", batch_comparable,
                        _within(pred, meas, True, 0) if batch_comparable else None,
                        "exact" if batch_comparable else "info (other usage context)",
                        "engine" if sched.get(key) is not None else ("log" if meas is not None else "")))
    # memory outside the KV cache: information only
    info = [("weights", mem.weights_bytes, facts.model_weights_gib),
            ("activation peak", mem.activation_bytes if gpu else None, facts.activation_peak_gib),
            ("non-torch memory", mem.non_torch_bytes if gpu else None, facts.non_torch_memory_gib),
            ("CUDA graphs", mem.cudagraph_bytes if gpu and not res.settings.enforce_eager else None,
             facts.cuda_graph_gib if facts.cuda_graph_gib is not None else facts.cuda_graph_estimate_gib)]
    for name, pred, meas in info:
        if name == "weights" and not gpu:
            pred = None
        rows.append(Row(name, gib(pred) if pred is not None else None, meas, "GiB", False, None, "info",
                        "log" if meas is not None else ""))
    for row in rows:
        if row.measured is None:
            row.ok = None
    missed = [row.name for row in rows if row.gated and row.ok is False]
    # a gated quantity the engine never reported (it failed before sizing) cannot pass
    unmeasured = [row.name for row in rows if row.gated and row.measured is None]
    passed = not missed and not unmeasured
    return Comparison(rows, exact, tolerance_pct, passed, missed + [f"{n} (not measured)" for n in unmeasured])
