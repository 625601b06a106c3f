"""`kvfit smoke` (and `kvfit check --smoke`): predict, start a real vLLM engine, compare, record.

The engine runs in a subprocess (kvfit.engine.runner) in its own process group; this module never imports
vllm or torch. Process handling and the tolerance rules are in kvfit.engine.smoke.

Exit codes: 0 the engine started, generated, and every compared number is within tolerance; 1 the engine
failed, timed out, or the prediction missed; 2 bad input or no usable vLLM (`pip install "kvfit[smoke]"`);
130 interrupted (the engine is stopped first).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..plan import evaluate as plan
from .check import cpu_kv_budget, make_settings
from ..arch.normalize import normalize
from ..engine import smoke as S
from ..logs.parse import LogFacts, parse_log
from ..errors import BadInput, GpuError
from ..gpu.model import Gpu
from ..memory.profiles import CURRENT_VERSION, installed_vllm_version, profile_for
from ..settings import Settings
from ..sources.resolve import resolve
from ..units import GiB

INSTALL_HINT = ('Install it next to kvfit: pip install "kvfit[smoke]" (CUDA build), or '
                'pip install "kvfit[smoke-cpu]" for vLLM\'s CPU backend.')
PROMPT_TOKEN_IDS = [1, 5, 6, 7]


def _kvfit_version() -> str:
    try:
        from importlib.metadata import version

        return version("kvfit")
    except Exception:  # noqa: BLE001
        return "unknown"


# --- inputs -----------------------------------------------------------------------------------------

def build_settings(*, max_model_len, gpu_memory_utilization, tensor_parallel_size, pipeline_parallel_size, dtype,
                   kv_cache_dtype, block_size, max_num_seqs, max_num_batched_tokens, enforce_eager,
                   kv_cache_memory_bytes, device, entrypoint) -> tuple[Settings, dict, list[str]]:
    """Settings as `kvfit check` builds them, plus the engine's environment changes and notes.

    CPU backend: the budget must be explicit. vLLM lets VLLM_CPU_KVCACHE_SPACE (integer GiB, read with int())
    override --kv-cache-memory-bytes; kvfit smoke gives the flag precedence by dropping the variable from the
    engine's environment, so the engine runs what kvfit predicts.
    """
    env_changes: dict[str, str | None] = {}
    notes: list[str] = []
    settings = make_settings(
        max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size, dtype=dtype,
        kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
        kv_cache_memory_bytes=kv_cache_memory_bytes, device=device, entrypoint=entrypoint)
    space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")
    if device == "cpu":
        if settings.kv_cache_memory_bytes is not None:
            if space.strip():
                env_changes["VLLM_CPU_KVCACHE_SPACE"] = None
                notes.append(f"VLLM_CPU_KVCACHE_SPACE={space} is unset for the engine: vLLM would let it override "
                             "--kv-cache-memory-bytes.")
        else:
            settings = cpu_kv_budget(settings)
    return settings, env_changes, notes


def load_source_model(ref: str, revision: str | None, offline: bool):
    src = resolve(ref, revision=revision, offline=offline)
    arch = normalize(src.config, hf_quant_config=src.hf_quant_config)
    return src, plan.Model(src.id, src.source, src.detail, arch, src.inventory)


def pick_gpu(gpu: str | None, gpu_memory: str | None, device: str, tp: int) -> tuple[Gpu, str | None]:
    from .check import pick_gpus

    gpus, probe_note = pick_gpus(gpu, gpu_memory, device, tp)
    if device == "cpu":
        return gpus[0], None
    if probe_note is not None:
        raise GpuError(f"no NVIDIA GPU visible here ({probe_note}); the smoke test needs the GPU it measures",
                       "Run it on the GPU host, or use vLLM's CPU backend: --device cpu --kv-cache-memory-bytes 1GiB.")
    note = None
    if gpu is not None or gpu_memory is not None:
        note = (f"predicting for {gpus[0].name} as named; the engine runs on the GPU CUDA gives it, so the "
                "comparison is only meaningful when that is the same GPU")
    return gpus[0], note


def engine_model(src, dummy: bool, tmp: Path) -> tuple[str, str]:
    """What to pass as vllm.LLM(model=...), and how it was chosen."""
    if src.source == "local":
        cfg = Path(src.detail)
        if cfg.name == "config.json":
            return str(cfg.parent.resolve()), "local directory"
    elif src.source in ("hf-cache", "hub") or not dummy:
        return src.id, "Hugging Face id (vLLM resolves it)"
    # a bundled catalog entry (or a config file not named config.json) with dummy weights: vLLM reads
    # kvfit's copy of config.json, so nothing is downloaded
    d = tmp / "model"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(src.config), encoding="utf-8")
    if src.hf_quant_config:
        (d / "hf_quant_config.json").write_text(json.dumps(src.hf_quant_config), encoding="utf-8")
    return str(d), f"kvfit's copy of config.json ({src.source})"


def launch_settings(res: plan.Result, settings: Settings, as_given: bool) -> tuple[Settings, str]:
    """The settings to start the engine with: as given when they fit (or --as-given), else kvfit's fix."""
    if res.fits or as_given:
        return settings, "as given" + ("" if res.fits else " (kvfit predicts this launch fails)")
    rec = res.recommendation
    if rec.gpu_memory_utilization is not None and settings.kv_cache_memory_bytes is None:
        return (replace(settings, gpu_memory_utilization=rec.gpu_memory_utilization),
                f"kvfit's recommendation: --gpu-memory-utilization {rec.gpu_memory_utilization:g} "
                "(the flags given do not fit; --as-given runs them anyway)")
    if rec.max_model_len:
        return (replace(settings, max_model_len=rec.max_model_len),
                f"kvfit's recommendation: --max-model-len {rec.max_model_len} "
                "(the flags given do not fit; --as-given runs them anyway)")
    return settings, "as given (kvfit found no flags that fit; the run confirms the failure)"


def llm_kwargs(model_arg: str, launch: Settings, res: plan.Result, *, dummy: bool, revision: str | None,
               pass_kv_bytes: bool) -> dict:
    kw: dict = {"model": model_arg, "skip_tokenizer_init": True,
                "gpu_memory_utilization": res.resolved.gpu_memory_utilization}
    if dummy:
        kw["load_format"] = "dummy"
    if revision and not Path(model_arg).exists():
        kw["revision"] = revision
    if launch.max_model_len is not None:
        kw["max_model_len"] = launch.max_model_len
    if launch.kv_cache_memory_bytes is not None and pass_kv_bytes:
        kw["kv_cache_memory_bytes"] = launch.kv_cache_memory_bytes
    if launch.tensor_parallel_size != 1:
        kw["tensor_parallel_size"] = launch.tensor_parallel_size
    if launch.pipeline_parallel_size != 1:
        kw["pipeline_parallel_size"] = launch.pipeline_parallel_size
    if launch.dtype != "auto":
        kw["dtype"] = launch.dtype
    if launch.kv_cache_dtype != "auto":
        kw["kv_cache_dtype"] = launch.kv_cache_dtype
    for name in ("block_size", "max_num_seqs", "max_num_batched_tokens"):
        if getattr(launch, name) is not None:
            kw[name] = getattr(launch, name)
    if launch.enforce_eager:
        kw["enforce_eager"] = True
    return kw


# --- output -----------------------------------------------------------------------------------------

def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "GiB":
        return f"{v:.2f} GiB"
    if unit == "x":
        return f"{v:.2f}x" if math.isfinite(v) else "inf"
    return f"{int(v):,}"


def _check_mark(row: S.Row) -> str:
    if row.ok is True:
        return f"[green]✔[/] {row.rule}"
    if row.ok is False:
        return f"[red]✘[/] {row.rule}"
    if row.gated and row.measured is None:
        return "[dim]not measured[/]"
    return f"[dim]{row.rule or 'info'}[/]"


def render_comparison(cmp: S.Comparison, out: Console, title: str) -> None:
    t = Table(title=title, title_justify="left")
    for c, j in (("quantity", "left"), ("kvfit", "right"), ("vLLM", "right"), ("diff", "right"),
                 ("check", "left"), ("from", "left")):
        t.add_column(c, justify=j)
    for row in cmp.rows:
        d = row.diff_pct
        diff = "-" if d is None else ("=" if d == 0 else f"{d:+.2f}%")
        t.add_row(row.name, _fmt(row.predicted, row.unit), _fmt(row.measured, row.unit), diff, _check_mark(row),
                  row.source or "-")
    out.print(t)


def _estimated_len(facts: LogFacts) -> int | None:
    for e in facts.errors:
        if e.kind == "v1_max_seq_len" and e.numbers.get("estimated_max_len"):
            return int(e.numbers["estimated_max_len"])
    return None


def build_record(*, src, m: plan.Model, gpu: Gpu, res: plan.Result, launch: Settings, kwargs: dict, env_changes,
                 run: S.EngineRun | None, facts: LogFacts, cmp: S.Comparison | None, outcome: str, code: int,
                 launched_with: str, dummy: bool, gpu_note: str | None) -> dict:
    """One run in the calibration schema (shared/calibration/observations.jsonl) plus kvfit's prediction."""
    from ..render.json import result_dict

    r = (run.result if run else None) or {}
    cache, model, sched, par = (r.get("cache") or {}, r.get("model") or {}, r.get("scheduler") or {},
                                r.get("parallel") or {})
    now = _dt.datetime.now(_dt.timezone.utc)
    cpu = launch.device == "cpu"
    dtype = str(model.get("dtype") or res.resolved.model_dtype).replace("torch.", "")
    startup_failed: bool | str = False
    if run is None or not run.started:
        startup_failed = "timeout" if run and run.timed_out else True
    reported = {
        "kv_cache_tokens": cache.get("kv_cache_size_tokens", facts.kv_cache_tokens),
        "num_gpu_blocks": cache.get("num_gpu_blocks", facts.num_gpu_blocks),
        "kv_cache_gib": facts.available_kv_gib,
        "model_weights_gib": facts.model_weights_gib,
        "activation_peak_gib": facts.activation_peak_gib,
        "non_torch_memory_gib": facts.non_torch_memory_gib,
        "cuda_graph_gib": facts.cuda_graph_gib,
        "total_gpu_memory_gib": facts.total_gpu_memory_gib,
        "free_gpu_memory_gib": facts.free_gpu_memory_gib,
        "max_concurrency": cache.get("kv_cache_max_concurrency", facts.max_concurrency),
        "max_concurrency_for_len": model.get("max_model_len", facts.max_concurrency_len),
        "estimated_max_model_len": _estimated_len(facts),
        "startup_failed": startup_failed,
    }
    if launch.kv_cache_memory_bytes is not None:
        reported["kv_cache_memory_bytes"] = launch.kv_cache_memory_bytes
    reported = {k: v for k, v in reported.items() if v is not None}
    ident = hashlib.sha256(f"{now.isoformat()}{m.id}{json.dumps(kwargs, sort_keys=True)}".encode()).hexdigest()[:8]
    total_reported = facts.total_gpu_memory_gib
    if total_reported is None and not cpu:
        total_reported = round(gpu.total_bytes / GiB, 2)
    settings = dict(kwargs)
    settings.update(device=launch.device, entrypoint=launch.entrypoint,
                    usage_context=r.get("usage_context"), launched_with=launched_with)
    if env_changes:
        settings["env_removed"] = sorted(k for k, v in env_changes.items() if v is None)
    if cpu and "kv_cache_memory_bytes" not in kwargs and os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        settings["env"] = {"VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"]}
    return {
        "obs_id": f"smoke-{now:%Y%m%dT%H%M%SZ}-{ident}",
        "confidence": "high",
        "source": {"kind": "kvfit_smoke", "repo": None, "url": None,
                   "locator": f"kvfit smoke {_kvfit_version()}, {now.isoformat(timespec='seconds')}",
                   "kvfit_version": _kvfit_version(), "date": now.isoformat(timespec="seconds")},
        "model_id": m.id,
        "model_id_as_logged": model.get("model") or facts.model or kwargs.get("model"),
        "model_id_confidence": "stated",
        "arch_key": m.id,
        "gpu": {
            "name": gpu.name,
            "memory_gb": None if cpu else round(gpu.total_bytes / 1e9),
            "total_gpu_memory_gib_reported": total_reported,
            "count": 0 if cpu else launch.tensor_parallel_size * launch.pipeline_parallel_size,
            "gpu_confidence": ("vLLM CPU backend" if cpu else
                               ("probed (NVML)" if gpu.source == "NVML" else f"named ({gpu.source})")),
            "total_bytes": None if cpu else gpu.total_bytes,
            "free_bytes_at_start": gpu.free_bytes,
            "note": gpu_note,
        },
        "tensor_parallel_size": par.get("tensor_parallel_size") or launch.tensor_parallel_size,
        "pipeline_parallel_size": par.get("pipeline_parallel_size") or launch.pipeline_parallel_size,
        "gpu_memory_utilization": cache.get("gpu_memory_utilization") or res.resolved.gpu_memory_utilization,
        "gpu_memory_utilization_assumed": False,
        "max_model_len": model.get("max_model_len") or res.resolved.max_model_len,
        "dtype": dtype,
        "quantization": model.get("quantization"),
        "kv_cache_dtype": cache.get("cache_dtype") or launch.kv_cache_dtype,
        "block_size": cache.get("block_size") or res.layout.block_size,
        "enforce_eager": launch.enforce_eager,
        "kv_cache_memory_bytes": launch.kv_cache_memory_bytes,
        "max_num_seqs": sched.get("max_num_seqs") or res.resolved.max_num_seqs,
        "max_num_batched_tokens": sched.get("max_num_batched_tokens") or res.resolved.max_num_batched_tokens,
        "vllm_version": r.get("vllm_version") or installed_vllm_version(),
        "engine": facts.engine or res.profile.engine,
        "device": launch.device,
        "load_format": "dummy" if dummy else "auto",
        "reported": reported,
        "log_lines_verbatim": list(facts.lines),
        "derived": {"expected_bytes_per_token_per_rank": res.layout.kv_bytes_per_token,
                    "bytes_per_block": res.layout.bytes_per_block,
                    "expected_formula": "kvfit layout (see kvfit_prediction.kv)"},
        "notes": f"kvfit smoke: {outcome}",
        "settings": settings,
        "kvfit_prediction": result_dict(res),
        "smoke": {
            "outcome": outcome, "exit_code": code, "launched_with": launched_with,
            "exact": cmp.exact if cmp else None, "tolerance_pct": cmp.tolerance_pct if cmp else None,
            "passed": cmp.passed if cmp else False,
            "rows": [{"name": x.name, "predicted": x.predicted, "measured": x.measured, "unit": x.unit,
                      "rule": x.rule, "gated": x.gated, "ok": x.ok, "source": x.source} for x in cmp.rows]
            if cmp else [],
            "runner": {k: r.get(k) for k in ("phase", "error_type", "error", "platform", "usage_context",
                                             "lock_wait_s", "import_s", "engine_s", "generate_s", "elapsed_s",
                                             "generated_token_ids")},
            "timed_out": bool(run and run.timed_out), "returncode": run.returncode if run else None,
            "leftover_pids": run.leftover_pids if run else [],
        },
    }


def append_record(path: str, record: dict) -> None:
    p = Path(path).expanduser()
    try:
        with p.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:
        raise BadInput(f"--record {path}: cannot write: {e.strerror or e}") from e


# --- the command ------------------------------------------------------------------------------------

def run(*, model: str, max_model_len: str | None, gpu_memory_utilization: float | None,
        tensor_parallel_size: int, pipeline_parallel_size: int, dtype: str, kv_cache_dtype: str,
        block_size: int | None, max_num_seqs: int | None, max_num_batched_tokens: str | None,
        enforce_eager: bool, kv_cache_memory_bytes: str | None, gpu: str | None, gpu_memory: str | None,
        vllm_version: str | None, entrypoint: str, device: str, revision: str | None, offline: bool,
        as_json: bool, out: Console, err: Console, dummy_weights: bool = False, record: str | None = None,
        timeout: float = S.DEFAULT_TIMEOUT_S, tolerance: float = S.DEFAULT_TOLERANCE_PCT,
        as_given: bool = False, show_log: bool = False, show_check: bool = False) -> int:
    if not (timeout > 0 and math.isfinite(timeout)):
        raise BadInput(f"--timeout must be a positive number of seconds, got {timeout}")
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise BadInput(f"--tolerance must be a percentage >= 0, got {tolerance}")
    settings, env_changes, notes = build_settings(
        max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size, dtype=dtype,
        kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
        kv_cache_memory_bytes=kv_cache_memory_bytes, device=device, entrypoint=entrypoint)
    installed = installed_vllm_version()
    if vllm_version and installed and profile_for(vllm_version).version.split("+")[0] != installed.split("+")[0]:
        raise BadInput(f"--vllm-version {vllm_version}: the smoke test runs the installed vLLM {installed}",
                       "Drop --vllm-version (kvfit predicts for the installed release).")
    profile = profile_for(installed or CURRENT_VERSION)
    src, m = load_source_model(model, revision, offline)
    the_gpu, gpu_note = pick_gpu(gpu, gpu_memory, device, tensor_parallel_size)
    res_given = plan.evaluate(m, the_gpu, settings, profile)
    launch, launched_with = launch_settings(res_given, settings, as_given)
    res = res_given if launch == settings else plan.evaluate(m, the_gpu, launch, profile)
    if not S.find_vllm():
        raise BadInput("vLLM is not installed in this Python environment; kvfit smoke starts a real vLLM engine",
                       INSTALL_HINT)

    if show_check and not as_json:
        from ..render.report import render

        render(res_given, out)
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    pass_kv_bytes = kv_cache_memory_bytes is not None or device != "cpu"

    with tempfile.TemporaryDirectory(prefix="kvfit-smoke-model-") as tmp:
        model_arg, how = engine_model(src, dummy_weights, Path(tmp))
        kwargs = llm_kwargs(model_arg, launch, res, dummy=dummy_weights, revision=revision,
                            pass_kv_bytes=pass_kv_bytes)
        spec = {"llm_kwargs": kwargs, "entrypoint": launch.entrypoint, "device": launch.device,
                "prompt_token_ids": PROMPT_TOKEN_IDS, "max_tokens": 2}
        cmd = plan.serve_command(model_arg, launch, launch.max_model_len,
                                 res.resolved.gpu_memory_utilization if launch.device == "cuda" else None)
        if not as_json:
            out.print(f"[bold]kvfit smoke[/] {m.id} ({m.source}) on {the_gpu.name}, vLLM {installed or '?'}"
                      + (", dummy weights" if dummy_weights else ""))
            out.print(f"launch ({launched_with}; model: {how}):\n  {cmd}"
                      + (" --load-format dummy" if dummy_weights else "")
                      + (" --enforce-eager" if launch.enforce_eager and "--enforce-eager" not in cmd else ""))
            for n in notes + ([gpu_note] if gpu_note else []):
                out.print(f"[dim]note: {n}[/]")
            err.print(f"[dim]starting vLLM (timeout {timeout:g} s{', log below' if show_log else ''}) ...[/]")
        try:
            run_ = S.run_engine(spec, timeout=timeout, env=env,
                                echo=(lambda line: print(line, file=sys.stderr, flush=True)) if show_log else None,
                                note=lambda s: err.print(f"[dim]{s}[/]"))
        except S.Interrupted as e:
            left = e.run.leftover_pids if e.run else []
            err.print(f"kvfit: interrupted ({e.signame}); the engine was stopped"
                      + (f", but processes {left} survived" if left else ", no process left behind"))
            return 130

    facts = parse_log("\n".join(run_.log))
    r = run_.result or {}
    want_ctx = "OPENAI_API_SERVER" if launch.entrypoint == "serve" else "LLM_CLASS"
    cmp = S.compare(res, facts, r if run_.started else None, tolerance_pct=tolerance,
                    batch_comparable=r.get("usage_context") in (None, want_ctx))
    death = S.analyse_death(run_, facts)
    code, outcome, lines = _outcome(res, run_, facts, cmp, timeout, death)

    rec = build_record(src=src, m=m, gpu=the_gpu, res=res, launch=launch, kwargs=kwargs, env_changes=env_changes,
                       run=run_, facts=facts, cmp=cmp, outcome=outcome, code=code, launched_with=launched_with,
                       dummy=dummy_weights, gpu_note=gpu_note)
    rec["smoke"].update(death=S.death_dict(death), engine_log=run_.log_path)
    if record:
        append_record(record, rec)
    if as_json:
        out.print_json(json.dumps(rec))
        return code
    r_t = [f"{k[:-2]} {r[k]:.1f} s" for k in ("lock_wait_s", "import_s", "engine_s", "generate_s")
           if isinstance(r.get(k), (int, float))]
    if r_t:
        out.print(f"[dim]timings: {', '.join(r_t)}[/]")
    render_comparison(cmp, out, "predicted (kvfit) vs measured (vLLM)")
    for ln in lines:
        out.print(ln)
    if record:
        out.print(f"[dim]record appended to {record}[/]")
    return code


def _outcome(res: plan.Result, run_: S.EngineRun, facts: LogFacts, cmp: S.Comparison,
             timeout: float, death: S.Death | None = None) -> tuple[int, str, list[str]]:
    r = run_.result or {}
    lines: list[str] = []
    rule = ("exact (explicit KV budget)" if cmp.exact else f"within {cmp.tolerance_pct:g}% (profiled budget)")
    if run_.leftover_pids:
        lines.append(f"[red]warning:[/] processes {run_.leftover_pids} survived SIGKILL")
    if death is not None:
        from ..render.death import death_lines

        measured = any(row.gated and row.measured is not None for row in cmp.rows)
        lines += death_lines(death, kv_measured=measured)
        if measured and not cmp.passed:
            lines.append(f"[red]✘ MISS[/] and {', '.join(cmp.missed)} differ from kvfit's prediction")
        return 1, f"engine died ({death.signal or 'signal unknown'}) in {death.phase}", lines
    if run_.lock_timed_out:
        return 1, "lock timeout", lines + ["[red]✘ FAILED[/] another vLLM engine run held the lock "
                                          f"({S.lock_path()}) for too long; nothing was started"]
    if r.get("phase") in ("import", "platform"):
        msg = r.get("error") or "vLLM could not be imported"
        lines.append(f"[red]✘ vLLM is not usable here:[/] {r.get('error_type', '')}: {msg}")
        lines.append("  " + INSTALL_HINT)
        return 2, "vLLM not usable", lines
    if run_.timed_out:
        lines.append(f"[red]✘ FAILED[/] the engine did not finish within {timeout:g} s; it was stopped"
                     + ("" if run_.leftover_pids else " and no process was left behind"))
        return 1, "timeout", lines
    if not run_.started:
        lines += _failure_lines(res, facts, r)
        predicted = not res.fits and any(e.kind in ("v0_max_seq_len", "v1_max_seq_len", "no_cache_memory",
                                                    "cannot_autofit", "free_memory_startup")
                                         for e in facts.errors)
        est = next((x for x in cmp.rows if x.name == "estimated max_model_len"), None)
        if predicted and (est is None or est.ok is not False):
            lines.append("[green]kvfit predicted this failure[/] (the check said the launch does not fit)")
            return 1, "engine failed to start (as predicted)", lines
        if predicted:
            lines.append("[yellow]kvfit predicted a failure, but not this one exactly[/]")
        else:
            lines.append("[red]kvfit predicted the launch would start: the prediction missed[/]")
        return 1, "engine failed to start", lines
    if not r.get("ok"):
        lines.append(f"[red]✘ FAILED[/] the engine started (KV numbers above) but generation failed: "
                     f"{r.get('error_type', '')}: {r.get('error', '')}")
        return 1, "generation failed", lines
    if cmp.passed:
        lines.append(f"[green]✔ PASS[/] the engine started and generated {len(r.get('generated_token_ids') or [])} "
                     f"tokens; measured numbers match kvfit's prediction: {rule}")
        return 0, "pass", lines
    lines.append(f"[red]✘ MISS[/] the engine started, but {', '.join(cmp.missed)} differ beyond the tolerance "
                 f"({rule})")
    return 1, "prediction missed", lines


def _failure_lines(res: plan.Result, facts: LogFacts, r: dict) -> list[str]:
    """What went wrong, in kvfit explain's words, with the fixes re-checked on the model that ran."""
    from rich.markup import escape

    from .explain import recheck
    from ..logs.diagnose import explain

    lines = [f"[red]✘ FAILED[/] the engine did not start ({escape(r.get('error_type') or 'no result')}"
             + (f": {escape(r['error'][:300])}" if r.get("error") else "") + ")"]
    expl = explain(facts)
    rc = None
    if any(d.kind != "ok" for d in expl.diagnoses):
        if not facts.model:
            facts.model = res.model.id
        rc = recheck(facts, expl, load=lambda *_: res.model)
    for d in expl.diagnoses:
        if d.kind == "ok":
            continue
        lines.append(f"[bold]{escape(d.title)}[/]")
        lines.append(f"  {escape(d.explanation)}")
        if rc is not None and rc.ok and rc.consistent is not False and rc.fixes:
            for f in rc.fixes:
                lines.append(f"  - {escape(f.description)}" + (" [green](exact)[/]" if f.exact else ""))
        else:
            for f in d.fixes[:2]:
                lines.append(f"  - {escape(f.description)}")
    return lines
