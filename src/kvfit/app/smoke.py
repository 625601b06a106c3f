"""`kvfit smoke` (and `kvfit check --smoke`): predict, start a real vLLM engine, compare, record.

The engine runs in a subprocess (kvfit.engine.runner) in its own process group; this module never imports
vllm or torch. Process handling and the tolerance rules are in kvfit.engine.smoke.

Exit codes: 0 the engine started, generated, and every compared number is within tolerance; 1 the engine
failed, timed out, or the prediction missed; 2 bad input or no usable vLLM (install it next to kvfit: `pip install "kvfit-vllm[smoke]"`);
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

from .. import launch as L
from ..engine import smoke as S
from ..errors import BadInput, GpuError
from ..flags import vllm_values
from ..gpu.model import Gpu
from ..logs.parse import LogFacts, parse_log
from ..memory.profiles import installed_vllm_version, profile_for
from ..plan import evaluate as plan
from ..settings import Settings
from ..sources.resolve import resolve
from ..units import GiB
from .check import answer_for
from .inputs import Request, build

INSTALL_HINT = ('Install it next to kvfit: pip install "kvfit-vllm[smoke]" (CUDA build), or '
                'pip install "kvfit-vllm[smoke-cpu]" for vLLM\'s CPU backend; '
                'with pipx: pipx inject kvfit-vllm vllm.')
PROMPT_TOKEN_IDS = [1, 5, 6, 7]


def _kvfit_version() -> str:
    from .. import __version__

    return __version__


# --- inputs -----------------------------------------------------------------------------------------

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


def launch_choice(g, as_given: bool) -> tuple[Settings, plan.Result, str]:
    """What to start: the launch as given when it fits (or --as-given), else kvfit's recommendation (the same
    answer `kvfit check` gives), else as given to confirm the failure."""
    pl = g.plan
    given = pl.as_given
    if pl.ok or as_given:
        return given.settings, given.result, "as given" + ("" if given.result.fits else
                                                           " (kvfit predicts this launch fails)")
    rec = g.recommended
    if rec is not None and rec.option.meets and rec.needs is None and rec.launch is not None:
        o = rec.option
        return o.check.settings, o.check.result, (f"kvfit's recommendation: {o.label} (the flags given do not fit; "
                                                  "--as-given runs them anyway)")
    return given.settings, given.result, "as given (kvfit found no launch that fits here; the run confirms the failure)"


def llm_kwargs(model_arg: str, launch: Settings, res: plan.Result, *, dummy: bool, revision: str | None,
               pass_kv_bytes: bool) -> dict:
    """vllm.LLM(...) keyword arguments for the launch: every vLLM flag of kvfit's flag table that differs from
    vLLM's default, by its EngineArgs name."""
    kw: dict = {"model": model_arg, "skip_tokenizer_init": True,
                "gpu_memory_utilization": res.resolved.gpu_memory_utilization}
    if dummy:
        kw["load_format"] = "dummy"
    if revision and not Path(model_arg).exists():
        kw["revision"] = revision
    for key, value in vllm_values(launch).items():
        if key == "kv-cache-memory-bytes" and not pass_kv_bytes:
            continue
        if key == "max-model-len" and value == -1:
            value = -1
        kw[key.replace("-", "_")] = value
    kw.pop("device", None)                  # the installed vLLM build decides the platform
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
        "schema": "kvfit.smoke/1",
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

def run(req: Request, *, out: Console, err: Console, as_json: bool = False, dummy_weights: bool = False,
        record: str | None = None, timeout: float = S.DEFAULT_TIMEOUT_S, tolerance: float = S.DEFAULT_TOLERANCE_PCT,
        as_given: bool = False, show_log: bool = False, show_check: bool = False) -> int:
    if not (timeout > 0 and math.isfinite(timeout)):
        raise BadInput(f"--timeout must be a positive number of seconds, got {timeout}")
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise BadInput(f"--tolerance must be a percentage >= 0, got {tolerance}")
    vals = req.values
    installed = installed_vllm_version()
    if vals.get("vllm_version") and installed and \
            profile_for(vals["vllm_version"]).version.split("+")[0] != installed.split("+")[0]:
        raise BadInput(f"--vllm-version {vals['vllm_version']}: the smoke test runs the installed vLLM {installed}",
                       "Drop --vllm-version (kvfit predicts for the installed release).")
    # The engine's environment. vLLM's CPU backend lets VLLM_CPU_KVCACHE_SPACE override --kv-cache-memory-bytes;
    # smoke gives the flag precedence by unsetting the variable for the engine, and predicts with the same env.
    env = dict(os.environ if req.env is None else req.env)
    notes: list[str] = []
    space = env.get("VLLM_CPU_KVCACHE_SPACE", "")
    if vals.get("device") == "cpu" and vals.get("kv_cache_memory_bytes") is not None and space.strip():
        env.pop("VLLM_CPU_KVCACHE_SPACE")
        notes.append(f"VLLM_CPU_KVCACHE_SPACE={space} is unset for the engine: vLLM would let it override "
                     "--kv-cache-memory-bytes.")
    if installed and not vals.get("vllm_version"):
        vals = {**vals, "vllm_version": installed}
    inp = build(replace(req, values=vals, env=env))
    if len(inp.gpus) != 1:
        raise GpuError(f"no NVIDIA GPU visible here ({inp.probe_note}); the smoke test needs the GPU it measures",
                       "Run it on the GPU host, or use vLLM's CPU backend: --device cpu --kv-cache-memory-bytes 1GiB.")
    the_gpu = inp.gpus[0]
    gpu_note = None
    if inp.settings.device == "cuda" and (vals.get("gpu") or vals.get("gpu_memory")):
        gpu_note = (f"predicting for {the_gpu.name} as named; the engine runs on the GPU CUDA gives it, so the "
                    "comparison is only meaningful when that is the same GPU")
    a = answer_for(inp)
    g = a.per_gpu[0]
    res_given = g.plan.as_given.result
    launch, res, launched_with = launch_choice(g, as_given)
    m = inp.model
    if not S.find_vllm():
        raise BadInput("vLLM is not installed in this Python environment; kvfit smoke starts a real vLLM engine",
                       INSTALL_HINT)
    if show_check and not as_json:
        from ..render.report import render

        render(out, a)
    revision = vals.get("revision")
    src = resolve(inp.model_ref, revision=revision, offline=bool(vals.get("offline")))
    if vals.get("offline"):
        env["HF_HUB_OFFLINE"] = "1"
    pass_kv_bytes = vals.get("kv_cache_memory_bytes") is not None or launch.device != "cpu"
    env_changes = {"VLLM_CPU_KVCACHE_SPACE": None} if notes else {}

    with tempfile.TemporaryDirectory(prefix="kvfit-smoke-model-") as tmp:
        model_arg, how = engine_model(src, dummy_weights, Path(tmp))
        kwargs = llm_kwargs(model_arg, launch, res, dummy=dummy_weights, revision=revision,
                            pass_kv_bytes=pass_kv_bytes)
        spec = {"llm_kwargs": kwargs, "entrypoint": launch.entrypoint, "device": launch.device,
                "prompt_token_ids": PROMPT_TOKEN_IDS, "max_tokens": 2}
        shown = L.compose(model_arg, replace(launch, gpu_memory_utilization=res.resolved.gpu_memory_utilization
                                             if launch.device == "cuda" and launch.kv_cache_memory_bytes is None
                                             else launch.gpu_memory_utilization))
        if not as_json:
            out.print(f"[bold]kvfit smoke[/] {m.id} ({m.source}) on {the_gpu.name}, vLLM {installed or '?'}"
                      + (", dummy weights" if dummy_weights else ""))
            out.print(f"launch ({launched_with}; model: {how}):")
            out.print(L.render(shown).rstrip("\n") + (" --load-format dummy" if dummy_weights else ""),
                      markup=False, highlight=False, soft_wrap=True)
            for n in notes + list(inp.notes) + ([gpu_note] if gpu_note else []):
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
