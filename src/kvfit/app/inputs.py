"""The one request builder: whatever form a launch arrives in (kvfit's flags, a pasted `vllm serve` line,
docker, YAML, Python, env, a manifest entry, a sweep, smoke, a log's command line), it becomes the same
Inputs here: the model (local, HF cache, bundled catalog, Hub), the GPU(s) (probe, --gpu, --gpu-memory,
CUDA_VISIBLE_DEVICES, docker --gpus), the Settings (through the flag table), the CPU KV budget and the
environment variables vLLM reads, the vLLM release, and the goals.
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .. import launch as L
from ..arch import families as F
from ..arch.normalize import normalize
from ..errors import BadFlag, BadInput, GpuError, LaunchError, ModelNotFound
from ..flags import BY_DEST, settings_from
from ..kv.cpu_host import CPU_ISAS, detect_cpu_isa
from ..gpu.catalog import catalog, caveats, common_gpus, from_entry, lookup
from ..gpu.model import Gpu
from ..memory.profiles import CURRENT_VERSION, Profile, engine_for, installed_vllm_version, profile_for
from ..plan.evaluate import Model
from ..plan.goals import Goals, parse_headroom
from ..settings import Settings
from ..sources.model import read_text_file
from ..sources.processor import pick as pick_processors
from ..sources.resolve import resolve
from ..units import GiB


@dataclass
class Request:
    """Everything the user said, typed: the model, a launch (kept to be corrected in its own form), kvfit's
    flag values by flag dest (they override the launch's), and the environment vLLM would see."""

    model: str | None = None
    launch: L.Launch | None = None
    launch_dir: Path | None = None            # relative --config paths resolve here
    values: dict[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] | None = None      # the process environment (None: os.environ)


@dataclass(frozen=True)
class Inputs:
    model: Model
    model_ref: str
    gpus: tuple[Gpu, ...]
    probe_note: str | None                    # why no GPU was probed (then gpus is the common table)
    gpu_count: int | None                     # GPUs like gpus[0] present (None: unknown)
    pin: tuple[int | None, str | None]        # the launch's own GPU pin (count, how it is written)
    settings: Settings
    profile: Profile
    goals: Goals
    launch: L.Launch                          # the launch to correct: the user's with kvfit's flags applied
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# --- the launch ------------------------------------------------------------------------------------------

def read_launch_file(path: str, stdin=None) -> tuple[L.Launch, Path | None]:
    if path == "-":
        return L.parse((stdin or sys.stdin).read()), None
    p = Path(path).expanduser()
    text = read_text_file(p, f"--launch {path}", LaunchError)
    return L.parse(text, filename=p.name), p.parent


def _with_config(launch: L.Launch, config: str | None, where: Path | None) -> tuple[L.Launch, list[str]]:
    if not config:
        return launch, []
    p = Path(config).expanduser()
    if not p.is_absolute():
        p = (where or Path.cwd()) / p
    text = read_text_file(p, f"launch: --config {config}", LaunchError)
    return L.with_config(launch, L.parse_yaml(text)), [f"read vLLM's --config {config}"]


# --- the model -------------------------------------------------------------------------------------------

def apply_hf_overrides(config: dict, overrides: dict) -> dict:
    """config.json with --hf-overrides applied as vLLM 0.32 applies them (config/model.py
    _apply_dict_overrides): a dict for a nested config updates it key by key; any other value replaces."""
    out = dict(config)
    for key, value in overrides.items():
        cur = out.get(key)
        if isinstance(value, dict) and isinstance(cur, dict) and (key.endswith("_config") or "model_type" in cur):
            out[key] = apply_hf_overrides(cur, value)
        else:
            out[key] = value
    return out


_LOADED: ContextVar[dict | None] = ContextVar("kvfit_loaded_models", default=None)


@contextmanager
def models_remembered():
    """Within this block (one manifest run), a model asked for again is the one loaded before: its config is
    read and normalized once, and the evaluation's memo (plan/evaluate.py) recognizes it."""
    token = _LOADED.set({})
    try:
        yield
    finally:
        _LOADED.reset(token)


def _installed_version() -> str | None:
    memo = _LOADED.get()
    if memo is None:
        return installed_vllm_version()
    if ("vllm",) not in memo:
        memo[("vllm",)] = installed_vllm_version()
    return memo[("vllm",)]


_IMAGE_VERSION = re.compile(r"(?:^|/)vllm/vllm-openai:v?(\d+\.\d+\.\d+(?:\.post\d+)?)(?:-[\w.]+)?$")


def image_version(launch: L.Launch | None) -> str | None:
    """The vLLM release a launch's container image names (vllm/vllm-openai:v0.10.2, :v0.31.0-ubuntu2404), so a
    docker run, compose file or Kubernetes manifest is answered with that release's rules; None for other
    images and for moving tags (latest, nightly)."""
    image = getattr(launch, "image", None) if launch is not None else None
    m = _IMAGE_VERSION.search(image or "")
    return m.group(1) if m else None


def load_model(ref: str, revision: str | None, offline: bool, hf_overrides: str | None = None
               ) -> tuple[Model, str | None]:
    """The model, and a note when a container path was checked against the bundled entry of its last two
    parts (/models/meta-llama/Llama-3.1-8B-Instruct)."""
    memo = _LOADED.get()
    if memo is None:
        return _load_model(ref, revision, offline, hf_overrides)
    key = (ref, revision, offline, hf_overrides)
    if key not in memo:
        memo[key] = _load_model(ref, revision, offline, hf_overrides)
    return memo[key]


def _load_model(ref: str, revision: str | None, offline: bool, hf_overrides: str | None = None
                ) -> tuple[Model, str | None]:
    note = None
    try:
        src = resolve(ref, revision=revision, offline=offline)
    except ModelNotFound:
        parts = [x for x in ref.replace("\\", "/").split("/") if x]
        from ..sources.catalog import find_file

        if len(parts) < 2 or find_file("/".join(parts[-2:])) is None:
            raise
        guess = "/".join(parts[-2:])
        src = resolve(guess, revision=revision, offline=True)
        note = f"{ref} is not on this machine; checked the bundled {guess} (pass the model id first to choose another)"
    config = src.config
    if hf_overrides:
        config = apply_hf_overrides(config, json.loads(hf_overrides))
    arch = normalize(config, hf_quant_config=src.hf_quant_config)
    procs = pick_processors(src.processors)
    return Model(src.id, src.source, src.detail, arch, src.inventory, src.config, procs.image, procs.video,
                 procs.origin), note


def with_draft(m: Model, settings: Settings, offline: bool) -> Model:
    """A draft model's or EAGLE head's attention layers are KV layers of the launch too."""
    if settings.speculative_method not in F.DRAFT_MODEL_METHODS or not settings.speculative_model:
        return m
    draft, _ = load_model(settings.speculative_model, None, offline)
    return replace(m, arch=m.arch.with_draft(draft.arch.layers))


# --- the GPU ---------------------------------------------------------------------------------------------

CPU = Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu")


def pick_gpus(values: Mapping[str, Any], settings: Settings, pin: int | None
              ) -> tuple[tuple[Gpu, ...], str | None, int | None]:
    """The GPU(s) to answer for, why none was probed (then the common table), and how many are present."""
    count = values.get("gpu_count") or pin
    if settings.device == "cpu":
        return (CPU,), None, 1
    gpu, total = values.get("gpu"), values.get("gpu_memory")
    if total is not None:
        base = lookup(gpu) if gpu else Gpu(f"GPU with {total / GiB:.2f} GiB", total)
        return (Gpu(base.name, total, base.compute_capability, source="--gpu-memory"),), None, count
    if gpu is not None:
        return (lookup(gpu),), None, count
    from ..gpu.nvml import probe

    found = probe()
    if found.gpus:
        world = settings.tensor_parallel_size * settings.pipeline_parallel_size
        visible = found.gpus[:pin] if pin else found.gpus
        if len(visible) < world:
            flags = f"--tensor-parallel-size {settings.tensor_parallel_size}" + (
                f" x --pipeline-parallel-size {settings.pipeline_parallel_size}"
                if settings.pipeline_parallel_size > 1 else "")
            raise GpuError(f"{flags} needs {world} GPUs; {len(visible)} visible",
                           "Lower the parallel sizes, or check CUDA_VISIBLE_DEVICES.")
        used = sorted(visible[:world], key=lambda g: g.free_bytes or 0)     # the least free memory decides
        return (used[0],), None, values.get("gpu_count") or len(found.gpus)
    return tuple(common_gpus()), found.reason, count


def catalog_gpus() -> tuple[Gpu, ...]:
    return tuple(from_entry(e) for e in catalog())


# --- the environment vLLM reads ---------------------------------------------------------------------------

def launch_env(launch: L.Launch | None, process: Mapping[str, str]) -> dict[str, str]:
    """The environment the launch runs with: a docker container sees only its -e/--env-file variables; a
    shell command, a Python script or a YAML config run in this environment plus the launch's own."""
    if launch is not None and launch.form == "docker":
        return dict(launch.environment)
    env = dict(process)
    if launch is not None:
        env.update(launch.environment)
    return env


def cpu_kv_budget(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """vLLM 0.32's CPU KV budget (platforms/cpu.py::check_and_update_config): a non-empty
    VLLM_CPU_KVCACHE_SPACE wins over --kv-cache-memory-bytes and is read with int() as GiB."""
    space = (env.get("VLLM_CPU_KVCACHE_SPACE") or "").strip()
    if space:
        try:
            gib = int(space)
        except ValueError:
            raise BadFlag(f"VLLM_CPU_KVCACHE_SPACE={space!r}: vLLM reads it with int() as whole GiB and would refuse "
                          "this value", "Set a whole number of GiB, or unset it and use --kv-cache-memory-bytes.",
                          flag="kv_cache_memory_bytes") from None
        if gib <= 0:
            raise BadFlag(f"VLLM_CPU_KVCACHE_SPACE={space!r} must be a positive number of GiB",
                          flag="kv_cache_memory_bytes")
        note = f"VLLM_CPU_KVCACHE_SPACE={space}: vLLM's CPU backend uses {gib} GiB of KV cache"
        if settings.kv_cache_memory_bytes is not None and settings.kv_cache_memory_bytes != gib * GiB:
            note += " (it overrides --kv-cache-memory-bytes, as in vLLM)"
        return replace(settings, kv_cache_memory_bytes=gib * GiB), [note]
    if settings.kv_cache_memory_bytes is None:
        raise BadFlag("--device cpu needs the KV budget: --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE",
                      "vLLM's CPU backend otherwise sizes KV from this machine's free RAM at launch.",
                      flag="kv_cache_memory_bytes")
    return settings, []


# vLLM environment variables that change what kvfit computes
VLLM_ENV = {"VLLM_USE_V1", "VLLM_ALLOW_LONG_MAX_MODEL_LEN", "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS",
            "VLLM_USE_FLASHINFER_SAMPLER", "VLLM_PP_LAYER_PARTITION", "VLLM_ATTENTION_BACKEND"}


def engine_profile(version: str, env: Mapping[str, str], s: Settings, model: Model, gpu: Gpu
                   ) -> tuple[Profile, str | None]:
    """The release's rules for this launch: the engine (V0 or V1) as the release chooses it (VLLM_USE_V1 from
    the launch or the shell, features V1 lacked in 0.8-0.10, compute capability), memory/profiles.py."""
    a = model.arch
    choice = engine_for(version, env, device=s.device, compute_capability=gpu.compute_capability,
                        kv_cache_dtype=s.kv_cache_dtype, quantization=s.quantization or a.quantization,
                        cpu_offload_gb=s.cpu_offload_gb, enable_lora=s.enable_lora,
                        pipeline_parallel_size=s.pipeline_parallel_size, speculative_method=s.speculative_method,
                        architectures=tuple(getattr(a, "architectures", ()) or ()),
                        has_inner_state=bool(a.mamba_layers), use_mla=a.use_mla,
                        sliding_window=a.sliding_window is not None)
    if choice.error:
        raise BadInput(choice.error)
    p = profile_for(version, gpu=gpu, engine=choice.engine)
    note = choice.reason if p.engine == "V0" and _v_ge(version, (0, 8, 0)) else None
    return p, note


def _v_ge(version: str, t: tuple[int, int, int]) -> bool:
    from ..memory.profiles import release_of

    return release_of(version) >= t


# --- goals ---------------------------------------------------------------------------------------------

def goals_from(values: Mapping[str, Any]) -> Goals:
    return Goals(values.get("context"), values.get("concurrency"), values.get("max_vram"),
                 parse_headroom(values.get("headroom"))).validate()


def parse_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Raw flag values (strings from argv, typed from TOML) parsed by their flags; None values dropped."""
    out: dict[str, Any] = {}
    for dest, v in raw.items():
        if v is None:
            continue
        f = BY_DEST.get(dest)
        if f is None:
            out[dest] = v
        elif f.switch:
            out[dest] = bool(v) if isinstance(v, bool) else f.parse(v) if f.parse else bool(v)
        else:
            out[dest] = f.parse(v) if f.parse else v
    return out


# --- the builder -----------------------------------------------------------------------------------------

def build(req: Request) -> Inputs:
    env_proc = os.environ if req.env is None else req.env
    notes: list[str] = []
    warnings: list[str] = []
    values = dict(req.values)
    launch = req.launch
    lv = None
    tagged = image_version(launch)
    version = values.get("vllm_version") or tagged or _installed_version() or CURRENT_VERSION
    if tagged and not values.get("vllm_version"):
        notes.append(f"vLLM {tagged}: the release the launch's image names ({launch.image}); --vllm-version "
                     "overrides it")
    elif tagged and version != tagged:
        notes.append(f"vLLM {version} (--vllm-version) in place of the {tagged} the launch's image names "
                     f"({launch.image})")
    if launch is not None:
        first = L.read_values(launch, version)
        merged, cfg_notes = _with_config(launch, first.config, req.launch_dir)
        notes += cfg_notes
        lv = L.read_values(merged, version)
        notes += lv.notes
        lv.require_resolved(set(values) | ({"model"} if req.model else set()))
        for dest, v in values.items():
            if dest in lv.values and lv.values[dest] != v and BY_DEST[dest].vllm:
                notes.append(f"{BY_DEST[dest].long} {BY_DEST[dest].text(v)} from kvfit's flags replaces the "
                             f"launch's {BY_DEST[dest].text(lv.values[dest])}")
        values = {**lv.values, **values}
    ref = req.model or (lv.model if lv else None)
    if not ref:
        raise BadInput("no model given" if launch is None else "the launch names no model",
                       "Pass a model id (org/name), a local directory, or a launch after `--`.")
    if req.model and lv and lv.model and req.model != lv.model:
        notes.append(f"checked {req.model}'s config for the launch's model {lv.model}")
    entrypoint = values.get("entrypoint") or (lv.entrypoint if lv else "serve")
    device = values.get("device", "cuda")
    if device == "cpu" and values.get("cpu_isa") is None:
        values["cpu_isa"] = detect_cpu_isa()
    env = launch_env(launch, env_proc)
    vllm_env = tuple(sorted((k, v) for k, v in env.items() if k in VLLM_ENV))
    own = dict(launch.environment) if launch is not None else {}
    for k, v in vllm_env:
        if own.get(k) != v:
            notes.append(f"{k}={v} from this shell's environment is taken into account (vLLM reads it at "
                         "launch): run the command where it is set")
    given = settings_from(values, Settings(entrypoint=entrypoint, device=device, vllm_env=vllm_env))
    settings = given
    if device == "cpu":
        settings, cpu_notes = cpu_kv_budget(settings, env)
        notes += cpu_notes
    settings = settings.validate()
    profile = profile_for(version)
    if profile.warning:
        warnings.append(profile.warning)
    model, note = load_model(ref, values.get("revision"), bool(values.get("offline")), settings.hf_overrides)
    if note:
        notes.append(note)
    model = with_draft(model, settings, bool(values.get("offline")))
    goals = goals_from(values)
    pin = launch.gpu_pin if launch is not None else (None, None)
    gpus, probe_note, count = pick_gpus(values, settings, pin[0])
    if probe_note is None:
        notes += caveats(gpus[0])
    profile, engine_note = engine_profile(version, env, settings, model, gpus[0])
    if engine_note:
        notes.append(engine_note)
    # the launch to correct: the user's, with kvfit's own flags written into it; else a composed one
    if launch is not None:
        base_settings = settings_from(lv.values, Settings(entrypoint=entrypoint, device=device))
        to_correct = L.apply(launch, base_settings, given)
    else:
        to_correct = L.compose(ref, given)
    return Inputs(model, ref, gpus, probe_note, count, pin, settings, profile, goals, to_correct,
                  tuple(notes), tuple(warnings))


__all__ = ["Request", "Inputs", "build", "read_launch_file", "load_model", "pick_gpus", "catalog_gpus",
           "detect_cpu_isa", "cpu_kv_budget", "goals_from", "parse_values", "CPU_ISAS"]
