"""`kvfit check` with goals, a pasted launch or an output form: gather the inputs (the launch, its --config
file, the model, the GPUs), run goals.plan_goals, and render. The edge between I/O and the pure planner;
the manifest (CI gate) and `kvfit sweep` use the same preparation.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..plan import goals as G
from .. import launch as L
from ..plan import evaluate as plan
from ..errors import BadInput, GpuError, ModelNotFound
from ..gpu.model import Gpu
from ..gpu.catalog import catalog, common_gpus, from_entry, lookup
from ..memory.profiles import CURRENT_VERSION, Profile, installed_vllm_version, profile_for
from ..settings import Settings
from ..sources.model import read_text_file
from ..units import GiB, parse_human_int, parse_size


@dataclass
class Request:
    """Everything the user said, as typed (strings where the CLI or a manifest gives strings)."""

    model: str | None = None
    launch: L.Launch | None = None
    launch_dir: Path | None = None              # relative --config paths resolve here
    overrides: dict[str, Any] = field(default_factory=dict)   # launch key -> value, from kvfit's own flags
    gpu: str | None = None
    gpu_memory: str | None = None
    gpu_count: int | None = None
    vllm_version: str | None = None
    entrypoint: str | None = None
    device: str | None = None
    revision: str | None = None
    offline: bool = False
    context: str | int | None = None
    concurrency: int | None = None
    max_vram: str | None = None
    headroom: str | None = None


@dataclass(frozen=True)
class Prepared:
    model: plan.Model
    model_ref: str
    gpus: tuple[Gpu, ...]
    probe_note: str | None
    gpu_count: int | None
    settings: Settings
    variant: G.Variant
    profile: Profile
    goals: G.Goals
    launch: L.Launch                 # as given, with kvfit's flag overrides applied: what corrections edit
    notes: tuple[str, ...]


# --- inputs ---------------------------------------------------------------------------------------------

def read_launch_file(path: str) -> tuple[L.Launch, Path | None]:
    if path == "-":
        return L.parse(sys.stdin.read()), None
    p = Path(path).expanduser()
    text = read_text_file(p, f"--launch {path}", BadInput)
    return L.parse(text, filename=p.name), p.parent


def load_model(ref: str, revision: str | None, offline: bool) -> tuple[plan.Model, str | None]:
    """The model, falling back to the bundled entry named by a path's last two parts (a container path such
    as /models/meta-llama/Llama-3.1-8B-Instruct), said in a note."""
    from .check import load_model as load

    try:
        return load(ref, revision, offline), None
    except ModelNotFound:
        parts = [x for x in ref.replace("\\", "/").split("/") if x]
        if len(parts) >= 2:
            from ..sources.catalog import find_file

            guess = "/".join(parts[-2:])
            if find_file(guess) is not None:
                return load(guess, revision, True), (f"{ref} is not on this machine; checked the bundled {guess} "
                                                     "(pass the model id first to choose another)")
        raise


def _synth_launch(model: str) -> L.Launch:
    return L.Launch("serve", (L.Arg("model", model, L.POSITIONAL),), ("vllm", "serve"))


def parse_goals(req: Request, strict: bool) -> G.Goals:
    context = None
    if req.context is not None:
        context = req.context if isinstance(req.context, int) and not isinstance(req.context, bool) \
            else parse_human_int(str(req.context), "--context")
    max_vram = parse_size(str(req.max_vram), "--max-vram") if req.max_vram is not None else None
    return G.Goals(context, req.concurrency, max_vram, G.parse_headroom(req.headroom), strict=strict).validate()


def pick(req: Request, settings: Settings, launch_env: dict[str, str]) -> tuple[tuple[Gpu, ...], str | None, int | None]:
    """GPUs to plan on, a note when none was probed or named, and how many GPUs are present (None: unknown)."""
    count = req.gpu_count
    if count is None and launch_env.get("CUDA_VISIBLE_DEVICES"):
        ids = [x for x in launch_env["CUDA_VISIBLE_DEVICES"].split(",") if x.strip()]
        count = len(ids) or None
    world = settings.tensor_parallel_size * settings.pipeline_parallel_size
    if settings.device == "cpu":
        return (Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu"),), None, 1
    if req.gpu_memory is not None:
        total = parse_size(req.gpu_memory, "--gpu-memory")
        base = lookup(req.gpu) if req.gpu else Gpu(f"GPU with {total / GiB:.2f} GiB", total)
        return (Gpu(base.name, total, base.compute_capability, source="--gpu-memory"),), None, count
    if req.gpu is not None:
        return (lookup(req.gpu),), None, count
    from ..gpu.nvml import probe

    found = probe()
    if found.gpus:
        if len(found.gpus) < world:
            raise GpuError(f"the launch uses {world} GPUs (tensor x pipeline parallel); {len(found.gpus)} visible",
                           "Lower the parallel sizes, or check CUDA_VISIBLE_DEVICES.")
        used = sorted(found.gpus[:world], key=lambda g: g.free_bytes or 0)
        return (used[0],), None, count or len(found.gpus)
    return tuple(common_gpus()), found.reason, count


def prepare(req: Request, *, strict: bool = True) -> Prepared:
    notes: list[str] = []
    base = req.launch
    if base is None:
        if not req.model:
            raise BadInput("no model given", "Pass a model id (org/name), a local directory, or a launch after `--`.")
        base = _synth_launch(req.model)
    # kvfit's own flags override the launch's values (and show in the corrected launch)
    for key, value in req.overrides.items():
        if req.launch is not None and req.launch.has(key) and req.launch.get(key) != value:
            notes.append(f"--{key} {value} from kvfit's flags replaces the launch's {req.launch.get(key)}")
    launch = L.updated(base, req.overrides) if req.overrides else base
    effective = launch
    first = L.engine_args(launch)
    if first.config:
        cfg_path = Path(first.config).expanduser()
        if not cfg_path.is_absolute():
            cfg_path = (req.launch_dir or Path.cwd()) / cfg_path
        try:
            cfg_text = cfg_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"launch: --config {first.config}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        effective = L.with_config(launch, L.parse_yaml(cfg_text))
        notes.append(f"read vLLM's --config {first.config}")
    ea = L.engine_args(effective)
    notes.extend(ea.notes)
    ref = req.model or ea.model
    if not ref:
        raise BadInput("the launch names no model", "Put the model in the launch, or pass it before `--`.")
    if req.model and ea.model and req.model != ea.model:
        notes.append(f"checked {req.model}'s config for the launch's model {ea.model}")
    device = req.device or ea.settings.get("device") or "cuda"
    entrypoint = req.entrypoint or ea.entrypoint
    kwargs = {**ea.settings, "device": device, "entrypoint": entrypoint}
    settings = Settings(**kwargs).validate()
    env = launch.environment
    if device == "cpu" and settings.kv_cache_memory_bytes is None:
        space = (env.get("VLLM_CPU_KVCACHE_SPACE") or os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")).strip()
        if not space:
            raise BadInput("--device cpu needs the KV budget: --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE",
                           "vLLM's CPU backend otherwise sizes KV from this machine's free RAM at launch.")
        settings = replace(settings, kv_cache_memory_bytes=parse_size(space + "GiB", "VLLM_CPU_KVCACHE_SPACE"))
    variant = G.Variant(ea.quantization, ea.cpu_offload_gb).validate()
    version = req.vllm_version or installed_vllm_version() or CURRENT_VERSION
    profile = profile_for(version)
    model, note = load_model(ref, req.revision or ea.revision, req.offline)
    if note:
        notes.append(note)
    goals = parse_goals(req, strict)
    gpus, probe_note, count = pick(req, settings, env)
    return Prepared(model, ref, gpus, probe_note, count, settings, variant, profile, goals, launch, tuple(notes))


def catalog_gpus() -> tuple[Gpu, ...]:
    return tuple(from_entry(e) for e in catalog())


def plan_all(p: Prepared, alternatives: bool | None = None) -> list[G.Planning]:
    many = len(p.gpus) > 1
    cat = catalog_gpus()
    return [G.plan_goals(p.model, g, p.settings, p.profile, p.goals, p.variant, gpu_count=p.gpu_count,
                         catalog=cat, alternatives=False if many and alternatives is None else alternatives)
            for g in p.gpus]


# --- outputs ------------------------------------------------------------------------------------------

def corrected(p: Prepared, c: G.Check, extra: dict[str, Any] | None = None) -> L.Launch:
    """The launch as given with the check's changes applied, spelled the user's way."""
    ch = G.changes(p.settings, p.variant, c.settings, c.variant)
    if extra:
        ch.update(extra)
    return L.updated(p.launch, ch)


def recheck_args(p: Prepared, c: G.Check, fixed: L.Launch) -> list[str]:
    """`kvfit check` arguments that re-check this launch (the recommendation fed back)."""
    args: list[str] = []
    gpu = c.gpu
    if gpu.source == "catalog":
        args += ["--gpu", gpu.name]
    elif gpu.source == "--gpu-memory":
        args += ["--gpu-memory", str(gpu.total_bytes)]
        try:
            lookup(gpu.name)
            args += ["--gpu", gpu.name]
        except GpuError:
            pass
    if p.goals.context:
        args += ["--context", str(p.goals.context)]
    if p.goals.concurrency:
        args += ["--concurrency", str(p.goals.concurrency)]
    if p.goals.max_vram_bytes:
        args += ["--max-vram", str(p.goals.max_vram_bytes)]
    args += ["--headroom", str(c.headroom_bytes)]
    args += ["--vllm-version", p.profile.version]
    if p.settings.entrypoint != "serve":
        args += ["--entrypoint", p.settings.entrypoint]
    if p.settings.device != "cuda":
        args += ["--device", p.settings.device]
    words = ["vllm", "serve", *L.argv(fixed)]
    if fixed.model != p.model_ref:
        return [p.model_ref, *args, "--", *words]
    return [*args, "--", *words]


def recommendation(p: Prepared, pl: G.Planning, form: str) -> plan.Recommendation:
    """plan.Recommendation filled from the planner (so the report and the JSON show the planner's answer)."""
    rec = pl.recommended
    text = L.render(corrected(p, rec.check), form) if rec is not None else ""
    length = None
    as_given = pl.as_given
    if as_given.settings.device == "cuda" and as_given.result.layout.groups:
        length, _ = G.largest_length(p.model, as_given.gpu, replace(as_given.settings, kv_cache_memory_bytes=None),
                                     p.profile, p.goals, p.variant)
    reason = None
    if rec is None:
        reason = "no launch on this GPU meets the goals; see the alternatives"
    elif pl.min_utilization is None and as_given.settings.kv_cache_memory_bytes is not None:
        reason = "--kv-cache-memory-bytes sets the KV budget directly; utilization does not apply"
    return plan.Recommendation(length or None, pl.min_utilization, reason, text.rstrip("\n"))


def option_dict(p: Prepared, o: G.Option | None, form: str, check: G.Check | None = None) -> dict | None:
    c = check or (o.check if o else None)
    if c is None:
        return None
    fixed = corrected(p, c)
    r, cap = c.result.resolved, c.result.capacity
    d = {
        "label": o.label if o else c.label, "tier": o.tier if o else None,
        "meets": c.meets, "unmet": list(c.unmet), "requires": o.requires if o else None,
        "cost": o.cost if o else "",
        "gpu": c.gpu.name, "max_model_len": r.max_model_len,
        "gpu_memory_utilization": r.gpu_memory_utilization if c.settings.kv_cache_memory_bytes is None else None,
        "kv_cache_memory_bytes": c.settings.kv_cache_memory_bytes,
        "tensor_parallel_size": c.settings.tensor_parallel_size,
        "pipeline_parallel_size": c.settings.pipeline_parallel_size,
        "kv_cache_dtype": r.kv_cache_dtype, "max_num_seqs": r.max_num_seqs,
        "max_num_batched_tokens": r.max_num_batched_tokens, "enforce_eager": c.settings.enforce_eager,
        "quantization": c.variant.quantization, "cpu_offload_gb": c.variant.cpu_offload_gb or None,
        "sequences_resident": c.resident, "kv_cache_tokens": cap.kv_cache_tokens,
        "max_concurrency": None if not math.isfinite(cap.max_concurrency) else round(cap.max_concurrency, 4),
        "footprint_bytes": c.footprint_bytes, "headroom_bytes": c.headroom_bytes,
        "context_it_buys": o.max_len if o else None,
        "changes": {k: v for k, v in G.changes(p.settings, p.variant, c.settings, c.variant).items()},
        "notes": list(c.notes),
        "launch": {"form": form, "text": L.render(fixed, form), "argv": ["vllm", "serve", *L.argv(fixed)]},
        "recheck": recheck_args(p, c, fixed),
    }
    return d


def plan_dict(p: Prepared, pl: G.Planning, form: str) -> dict:
    g = p.goals
    return {
        "schema": "kvfit.plan/1",
        "goals": {"context": g.context, "concurrency": g.concurrency, "max_vram_bytes": g.max_vram_bytes,
                  "headroom_bytes": pl.as_given.headroom_bytes if g.strict else 0,
                  "headroom": g.headroom.text, "strict": g.strict},
        "meets": pl.meets, "unmet": list(pl.as_given.unmet),
        "sequences_resident": pl.as_given.resident, "footprint_bytes": pl.as_given.footprint_bytes,
        "utilization_ceiling": pl.ceiling, "min_gpu_memory_utilization": pl.min_utilization,
        "launch": {"form": p.launch.form, "text": L.render(p.launch), "notes": list(p.notes)},
        "recommended": option_dict(p, pl.recommended, form),
        "kv_pinned": option_dict(p, None, form, pl.kv_form) if pl.kv_form else None,
        "alternatives": [option_dict(p, o, form) for o in pl.alternatives],
        "notes": list(pl.notes) + list(pl.as_given.notes),
    }


def run(req: Request, *, fmt: str | None, as_json: bool, svg: str | None, strict: bool, out, err) -> int:
    from ..render import forms
    from ..render.json import result_dict

    p = prepare(req, strict=strict)
    plans = plan_all(p)
    form = fmt if fmt in L.FORMS else p.launch.form
    results = []
    for pl in plans:
        rec = recommendation(p, pl, form)
        results.append(replace(pl.as_given.result, recommendation=rec))
    ok = [pl.meets for pl in plans]
    code = 0 if (ok[0] if len(plans) == 1 else any(ok)) else 1

    if svg:
        from ..render import svg as svgmod

        svgmod.write(svg, svgmod.check_svg(results, plans, p, form))
    if fmt in L.FORMS:
        pick = next((i for i, pl in enumerate(plans) if pl.recommended is not None), None)
        if pick is None:
            err.print("kvfit: no launch meets the goals" + (f" on {plans[0].as_given.gpu.name}" if len(plans) == 1 else ""))
            return 1
        pl = plans[pick]
        text = L.render(corrected(p, pl.recommended.check), fmt)
        out.file.write(text if text.endswith("\n") else text + "\n")
        out.file.flush()
        label = "the launch as given meets the goals" if pl.recommended.tier == -1 and pl.meets else \
            f"recommended: {pl.recommended.label}"
        err.print(f"[dim]kvfit: {label} on {pl.as_given.gpu.name}[/]")
        return code
    if as_json or fmt == "json":
        if len(plans) == 1:
            d = result_dict(results[0])
            d["plan"] = plan_dict(p, plans[0], form)
            out.file.write(json.dumps(d, indent=2) + "\n")
        else:
            out.file.write(json.dumps({"schema": "kvfit.check-table/1", "gpu_probe": p.probe_note,
                                       "results": [{**result_dict(r), "plan": plan_dict(p, pl, form)}
                                                   for r, pl in zip(results, plans)]}, indent=2) + "\n")
        return code
    forms.render_planning(out, p, plans, results, form)
    return code


# --- from `kvfit check`'s flags -------------------------------------------------------------------------

PLANNING_OPTIONS = ("launch_args", "launch_file", "config_file", "context", "concurrency", "max_vram", "headroom",
                    "fmt", "svg", "quantization", "cpu_offload_gb", "gpu_count", "manifest", "junit")
GOAL_OPTIONS = ("context", "concurrency", "max_vram", "headroom")
# kvfit check option -> the vLLM flag (launch key) it sets
_OVERRIDES = {"max_model_len": "max-model-len", "gpu_memory_utilization": "gpu-memory-utilization",
              "tensor_parallel_size": "tensor-parallel-size", "pipeline_parallel_size": "pipeline-parallel-size",
              "dtype": "dtype", "kv_cache_dtype": "kv-cache-dtype", "block_size": "block-size",
              "max_num_seqs": "max-num-seqs", "max_num_batched_tokens": "max-num-batched-tokens",
              "enforce_eager": "enforce-eager", "kv_cache_memory_bytes": "kv-cache-memory-bytes",
              "quantization": "quantization", "cpu_offload_gb": "cpu-offload-gb", "revision": "revision"}
_PROGRAMS = ("vllm", "docker", "podman", "python", "python3", "exec", "sudo", "nohup")


def wanted(params: dict) -> bool:
    """Whether `kvfit check` was asked something only the planner answers."""
    return any(params.get(k) not in (None, (), [], False) for k in PLANNING_OPTIONS)


def _is_launch_start(tok: str) -> bool:
    base = tok.rsplit("/", 1)[-1]
    return base in _PROGRAMS or base.startswith("python") or bool(L.ASSIGN.match(tok))


def from_cli(params: dict, explicit: set[str], *, out, err) -> int:
    """`kvfit check` with planning options: build the Request from the typer parameters. `explicit`: the
    options given on the command line (those override a pasted launch's values)."""
    if params.get("manifest"):
        from .manifest import run_manifest

        if params.get("model") or params.get("launch_args"):
            raise BadInput("--manifest checks the models it lists; give no MODEL or launch with it")
        return run_manifest(params["manifest"], as_json=params.get("as_json") or params.get("fmt") == "json",
                            junit=params.get("junit"), svg=params.get("svg"), offline=params.get("offline", False),
                            out=out, err=err)
    if params.get("junit"):
        raise BadInput("--junit goes with --manifest", "Write the checks to a kvfit.toml; see README '## CI gate'.")
    fmt = params.get("fmt")
    if fmt is not None and fmt not in (*L.FORMS, "json"):
        raise BadInput(f"--format {fmt!r}: choose one of {', '.join((*L.FORMS, 'json'))}")
    req, strict = request_from_params(params, explicit)
    return run(req, fmt=fmt, as_json=bool(params.get("as_json")), svg=params.get("svg"), strict=strict,
               out=out, err=err)


def request_from_params(params: dict, explicit: set[str]) -> tuple[Request, bool]:
    """A Request from typer parameters (check and sweep); and whether any goal was asked."""
    model = params.get("model")
    words = list(params.get("launch_args") or ())
    launch = None
    launch_dir = None
    if model and _is_launch_start(model):
        words, model = [model, *words], None
    if words:
        launch = L.parse_argv(words)
    sources = [x for x in (words and "launch", params.get("launch_file"), params.get("config_file")) if x]
    if len(sources) > 1:
        raise BadInput("give one launch: after `--`, --launch FILE, or --config FILE")
    if params.get("launch_file"):
        launch, launch_dir = read_launch_file(params["launch_file"])
    if params.get("config_file"):
        launch, launch_dir = read_launch_file(params["config_file"])
        if launch.form != "yaml":
            raise BadInput(f"--config {params['config_file']}: expected a vLLM YAML config file")
    overrides: dict[str, Any] = {}
    for opt, key in _OVERRIDES.items():
        if opt not in explicit or params.get(opt) is None:
            continue
        v = params[opt]
        if opt == "gpu_memory_utilization":
            try:
                v = float(v)
            except ValueError:
                raise BadInput(f"--gpu-memory-utilization must be a number in (0, 1], got {v!r}") from None
        elif opt == "kv_cache_memory_bytes":
            v = parse_size(v, "--kv-cache-memory-bytes")
        elif opt == "enforce_eager" and not v:
            continue
        overrides[key] = v
    req = Request(model=model, launch=launch, launch_dir=launch_dir, overrides=overrides,
                  gpu=params.get("gpu"), gpu_memory=params.get("gpu_memory"), gpu_count=params.get("gpu_count"),
                  vllm_version=params.get("vllm_version"),
                  entrypoint=params.get("entrypoint") if "entrypoint" in explicit else None,
                  device=params.get("device") if "device" in explicit else None,
                  revision=params.get("revision"), offline=bool(params.get("offline")),
                  context=params.get("context"), concurrency=params.get("concurrency"),
                  max_vram=params.get("max_vram"), headroom=params.get("headroom"))
    strict = any(params.get(k) is not None for k in GOAL_OPTIONS)
    return req, strict


def explicit_params(ctx) -> set[str]:
    """Parameters given on the command line (typer vendors click, so compare the source by name)."""
    out = set()
    for name in ctx.params:
        src = ctx.get_parameter_source(name)
        if src is not None and getattr(src, "name", "") == "COMMANDLINE":
            out.add(name)
    return out
