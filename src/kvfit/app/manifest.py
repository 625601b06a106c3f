"""The CI gate: `kvfit check --manifest kvfit.toml` checks every model x GPU x requirement it lists.

Format (README "## CI gate"):

    [defaults]                    # optional; every [[check]] inherits these fields
    vllm_version = "0.32.0"

    [[check]]
    name = "orpheus-tts"          # required, unique
    model = "canopylabs/orpheus-3b-0.1-ft"     # or launch = "vllm serve ..." or launch_file = "deploy/serve.sh"
    gpus = ["RTX 4090", "L4"]     # or gpu = "A10", or gpu_memory = "23.58GiB"
    context = 8192                # goals: context, concurrency, max_vram, headroom
    concurrency = 4
    max_vram = "9GB"
    gpu_memory_utilization = 0.35 # vLLM settings, named as kvfit check's flags (with underscores)
    quantization = "fp8"

Fields are kvfit's flag table (kvfit/flags.py): every `kvfit check --flag` is a field `flag` (dashes as
underscores), parsed by the same function; plus name, description, model, launch, launch_file and gpus.
An entry passes when its launch, as written, meets its goals on every GPU it names (without goals: when it
fits), by the same answer `kvfit check` gives. Exit 0 when all pass, 1 when any fails, 2 when the manifest
is wrong (the message names the file, the entry and the field).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .. import launch as L
from ..errors import BadFlag, BadInput, ConfigError, GpuError, HubError, KvfitError, LaunchError, ModelNotFound
from ..flags import BY_DEST
from ..sources.model import read_text_file
from .check import answer
from .inputs import Request, models_remembered, parse_values

# fields beside the flag table's: name -> accepted TOML types
OWN_FIELDS: dict[str, tuple[type, ...]] = {"name": (str,), "description": (str,), "model": (str,), "launch": (str,),
                                           "launch_file": (str,), "gpus": (list,)}
FLAG_FIELDS = {d for d, f in BY_DEST.items() if f.group in ("launch", "input", "goal")}
FIELDS = set(OWN_FIELDS) | FLAG_FIELDS
TOP_LEVEL = {"defaults", "check"}


class ManifestError(BadInput):
    """A manifest that cannot be right: names the file, the entry and the field. Exit 2."""


def _toml():
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:          # Python 3.10: the tomli backport (a conditional dependency)
        import tomli as tomllib  # type: ignore[import-not-found,no-redef]
    return tomllib


def _entry_lines(text: str) -> list[int]:
    """The line of each [[check]] header, in order (tomllib keeps no positions)."""
    return [i + 1 for i, ln in enumerate(text.splitlines()) if re.match(r"^\s*\[\[\s*check\s*\]\]", ln)]


def _unknown(where: str, k: str) -> ManifestError:
    close = difflib.get_close_matches(k, sorted(FIELDS), n=1)
    hint = f"Did you mean {close[0]!r}?" if close else "Fields: " + ", ".join(sorted(FIELDS))
    return ManifestError(f"{where}: unknown field {k!r}", hint)


def _check_field(where: str, k: str, v: Any) -> None:
    if k not in FIELDS:
        raise _unknown(where, k)
    if k in OWN_FIELDS:
        if not isinstance(v, OWN_FIELDS[k]) or isinstance(v, bool):
            kind = "a list" if k == "gpus" else "a string"
            raise ManifestError(f"{where}: field {k!r} must be {kind}, got {v!r}")
        if k == "gpus" and (not v or not all(isinstance(x, str) and x.strip() for x in v)):
            raise ManifestError(f"{where}: field 'gpus' must be a non-empty list of GPU names")
        return
    f = BY_DEST[k]
    if f.switch and not isinstance(v, bool):
        raise ManifestError(f"{where}: field {k!r} must be true or false, got {v!r}")
    try:
        if f.parse is not None and not f.switch:
            f.parse(v)
    except KvfitError as e:
        raise ManifestError(f"{where}: field {k!r}: {e.message}", e.hint) from None


def load(path: str) -> tuple[list[dict], str, Path]:
    """Validated entries (defaults merged, each with 'line' and 'where'), the manifest text and its directory."""
    p = Path(path).expanduser()
    text = read_text_file(p, f"--manifest {path}", ManifestError)
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML ({e})") from None
    unknown = set(data) - TOP_LEVEL
    if unknown:
        raise ManifestError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}",
                            "A manifest has an optional [defaults] table and [[check]] entries.")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ManifestError(f"{path}: [defaults] must be a table")
    for k, v in defaults.items():
        if k == "name":
            raise ManifestError(f"{path}: [defaults]: field 'name' belongs to each [[check]]")
        _check_field(f"{path}: [defaults]", k, v)
    checks = data.get("check")
    if not isinstance(checks, list) or not checks:
        raise ManifestError(f"{path}: no [[check]] entries", "Add at least one [[check]] table; see README '## CI gate'.")
    lines = _entry_lines(text)
    names: set[str] = set()
    entries = []
    for i, raw in enumerate(checks):
        where0 = f"{path}: check[{i + 1}]"
        if not isinstance(raw, dict):
            raise ManifestError(f"{where0} must be a table")
        name = raw.get("name")
        where = f"{where0} {name!r}" if isinstance(name, str) else where0
        for k, v in raw.items():
            _check_field(where, k, v)
        if not isinstance(name, str) or not name.strip():
            raise ManifestError(f"{where0}: field 'name' is required")
        if name in names:
            raise ManifestError(f"{where}: field 'name' repeats an earlier entry's name")
        names.add(name)
        e = {**defaults, **raw, "line": lines[i] if i < len(lines) else None, "where": where}
        if not any(k in e for k in ("model", "launch", "launch_file")):
            raise ManifestError(f"{where}: needs one of the fields 'model', 'launch' or 'launch_file'")
        if "launch" in e and "launch_file" in e:
            raise ManifestError(f"{where}: field 'launch' and field 'launch_file' both given; keep one")
        if not any(k in e for k in ("gpu", "gpus", "gpu_memory")) and e.get("device") != "cpu":
            raise ManifestError(f"{where}: field 'gpu' is required (or 'gpus', 'gpu_memory')",
                                "CI runners usually have no GPU to probe; name the GPUs the deployment uses.")
        if "gpu" in e and "gpus" in e:
            raise ManifestError(f"{where}: field 'gpu' and field 'gpus' both given; keep one")
        entries.append(e)
    return entries, text, p.parent


def _field_of(e: dict, err: KvfitError) -> str:
    """The manifest field an error belongs to: the flag it names (typed errors carry it), else by kind."""
    flag = getattr(err, "flag", None)
    src = "launch_file" if "launch_file" in e else "launch" if "launch" in e else "model"
    if flag:
        return flag if flag in e else src
    if isinstance(err, GpuError):
        return "gpus" if "gpus" in e else "gpu"
    if isinstance(err, (ModelNotFound, ConfigError, HubError, LaunchError)):
        return src
    return src


def request_for(e: dict, gpu: str | None, base: Path, offline: bool) -> Request:
    launch = launch_dir = None
    if "launch" in e:
        launch = L.parse(e["launch"])
    elif "launch_file" in e:
        f = (base / e["launch_file"]).resolve()
        text = read_text_file(f, f"launch_file {e['launch_file']}", LaunchError)
        launch, launch_dir = L.parse(text, filename=f.name), f.parent
    raw = {k: v for k, v in e.items() if k in FLAG_FIELDS}
    raw["gpu"] = gpu
    if offline:
        raw["offline"] = True
    values = parse_values(raw)
    return Request(model=e.get("model"), launch=launch, launch_dir=launch_dir or base, values=values)


# A long manifest is checked by worker processes, one per CPU this process may use (the entries are
# independent; each worker remembers the models it loaded). KVFIT_MANIFEST_WORKERS=N sets the count (1: none).
PARALLEL_FROM = 200          # entries (GPU checks) from which workers pay for their start
CHUNK = 25                   # entries a worker takes at a time (results come back in manifest order)


def _workers(checks: int) -> int:
    env = os.environ.get("KVFIT_MANIFEST_WORKERS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    if checks < PARALLEL_FROM:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def run_entries(path: str, *, offline: bool = False, progress=None) -> dict:
    """Check every entry on every GPU it names. Raises ManifestError (exit 2) for a wrong manifest.
    `progress(done, total)` is called as GPU checks finish."""
    entries, _, base = load(path)
    jobs = [(i, gpu) for i, e in enumerate(entries) for gpu in (e.get("gpus") or [e.get("gpu")])]
    workers = _workers(len(jobs))
    if workers > 1 and "fork" in _mp_methods():
        results = _run_parallel(entries, jobs, base, offline, workers, progress)
    else:
        with models_remembered():
            results = _run(entries, jobs, base, offline, progress)
    passed = sum(r["ok"] for r in results)
    return {"schema": "kvfit.manifest/2", "manifest": path, "ok": passed == len(results), "passed": passed,
            "failed": len(results) - passed, "results": results}


def _mp_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


_WORKER: dict = {}


def _worker_start(entries: list[dict], base: Path, offline: bool) -> None:
    from .inputs import _LOADED

    _WORKER.update(entries=entries, base=base, offline=offline)
    _LOADED.set({})                   # this worker remembers the models it loads, across its chunks


def _worker_chunk(jobs: list[tuple[int, str]]):
    try:
        return "ok", _run(_WORKER["entries"], jobs, _WORKER["base"], _WORKER["offline"], None)
    except ManifestError as e:        # sent back as text: the parent raises it (exit 2)
        return "error", (e.message, e.hint)


def _run_parallel(entries, jobs, base: Path, offline: bool, workers: int, progress) -> list[dict]:
    import multiprocessing

    chunks = [jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    results: list[dict] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_start, initargs=(entries, base, offline)) as pool:
        for status, value in pool.imap(_worker_chunk, chunks):
            if status == "error":
                pool.terminate()
                raise ManifestError(*value)
            results.extend(value)
            if progress:
                progress(len(results), len(jobs))
    return results


def _run(entries: list[dict], jobs: list[tuple[int, str]], base: Path, offline: bool, progress) -> list[dict]:
    from ..render.json import gpu_answer_dict

    results: list[dict] = []
    for i, gpu in jobs:
        e = entries[i]
        t0 = time.perf_counter()
        try:
            a = answer(request_for(e, gpu, base, offline))
            if a.table:
                raise GpuError("no GPU named")
        except ManifestError:
            raise
        except KvfitError as ex:
            raise ManifestError(f"{e['where']}: field {_field_of(e, ex)!r}: {ex.message}", ex.hint) from None
        g = a.per_gpu[0]
        pl = g.plan
        as_given = pl.as_given
        form = a.inputs.launch.form
        rec = g.recommended
        fix = None
        if not g.ok and rec is not None and rec.launch is not None:
            fix = L.render(rec.launch, form).rstrip("\n")
        failed = pl.failed
        message = ("meets its goals" if pl.goals.active else "fits") if g.ok else (failed[1] if failed else "fails")
        if not g.ok and rec is not None:
            message += f" (kvfit recommends: {rec.option.label})"
        results.append({
            "name": e["name"], "model": a.inputs.model.id, "gpu": g.gpu.name, "line": e.get("line"),
            "ok": g.ok, "message": message,
            "max_model_len": as_given.max_model_len,
            "gpu_memory_utilization": as_given.utilization if as_given.settings.kv_cache_memory_bytes is None
            else None,
            "kv_cache_memory_bytes": as_given.settings.kv_cache_memory_bytes,
            "kv_cache_tokens": as_given.result.capacity.kv_cache_tokens, "sequences_resident": as_given.resident,
            "footprint_bytes": as_given.footprint_bytes,
            "goals": {"context": pl.goals.context, "concurrency": pl.goals.concurrency,
                      "max_vram_bytes": pl.goals.max_vram_bytes,
                      "headroom_bytes": pl.policy.headroom_bytes} if pl.goals.active else None,
            "fix": fix, "fix_label": rec.option.label if (not g.ok and rec) else None,
            "fix_needs": rec.needs if (not g.ok and rec) else None,
            "answer": gpu_answer_dict(a.inputs, g, form),
            "notes": list(a.inputs.notes), "time": round(time.perf_counter() - t0, 4),
        })
        if progress:
            progress(len(results), len(jobs))
    return results


def _progress(err):
    """'checked 340 of 1,000' on stderr, rewritten in place, only when stderr is a terminal and the
    manifest is long enough to wait for; erased when done."""
    stream = getattr(err, "file", None) or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return None
    state = {"last": 0.0, "shown": False}

    def show(done: int, total: int) -> None:
        if total < 20:
            return
        now = time.monotonic()
        if done < total and now - state["last"] < 0.1:
            return
        state["last"] = now
        if done < total:
            stream.write(f"\rkvfit: checked {done:,} of {total:,}")
            state["shown"] = True
        elif state["shown"]:
            stream.write("\r\033[K")
        stream.flush()
    return show


def run(path: str, *, as_json: bool, junit: str | None, svg: str | None, offline: bool, out, err) -> int:
    from ..render import ci

    data = run_entries(path, offline=offline, progress=_progress(err))
    if junit:
        from ..render.junit import junit_xml

        try:
            Path(junit).expanduser().write_text(junit_xml(data), encoding="utf-8")
        except OSError as e:
            raise BadInput(f"--junit {junit}: cannot write it ({e.strerror or e})") from None
    if svg:
        from ..render import svg as svgmod

        svgmod.write(svg, svgmod.manifest_svg(data))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        stream = sys.stderr if as_json else sys.stdout
        for line in ci.github_annotations(data):
            print(line, file=stream)
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            try:
                with open(summary_file, "a", encoding="utf-8") as f:
                    f.write(ci.step_summary(data))
            except OSError:
                pass
    if as_json:
        out.file.write(json.dumps(data, indent=2) + "\n")
    else:
        ci.render(data, out)
    return 0 if data["ok"] else 1
